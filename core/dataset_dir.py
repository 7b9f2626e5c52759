"""The dataset dir: model inputs as raw little-endian .bin files plus a manifest.

Layout::

    <dir>/dataset.json        header: source, feature config, card, layout, inputs, complete flag
    <dir>/manifest.jsonl      one JSON object per sample, in run order
    <dir>/<folder>/<key>.bin  one folder per model input, one batch-1 tensor per file

This is what msame and ais_bench read (a folder per input, files paired by name), and what every
runner here reads through the manifest. Keys are zero-padded numbers, so msame's lexicographic and
ais_bench's natural sort agree with the manifest order. (`--modelzoo` keeps the Ascend guide's
`data{i}` names, where the two sorts differ; the manifest still records the order.)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.fsio import atomic_write_bytes, atomic_write_json, read_json_file

__all__ = ["HEADER", "MANIFEST", "FORMAT_VERSION", "DatasetDirError", "BinRef", "Sample", "DatasetDir",
           "atomic_write_bytes", "atomic_write_json", "write_bin", "read_bin", "read_manifest", "natural_key"]

HEADER = "dataset.json"
MANIFEST = "manifest.jsonl"
FORMAT_VERSION = 1


class DatasetDirError(ValueError):
    """A dataset dir that is incomplete, inconsistent, or has a .bin that does not match its manifest."""


@dataclass(frozen=True)
class BinRef:
    """Where one sample's input lives: a whole file, or row `row` of a batch file of `shape`."""

    file: str
    dtype: str
    shape: tuple[int, ...]
    row: int | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class Sample:
    key: str
    uid: str
    audio: str
    transcript_raw: str
    transcript: str
    num_samples: int
    length: int
    padded_length: int
    inputs: dict[str, BinRef]
    speaker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = {
            "key": self.key, "uid": self.uid, "speaker": self.speaker, "audio": self.audio, "transcript_raw": self.transcript_raw,
            "transcript": self.transcript, "num_samples": self.num_samples, "length": self.length,
            "padded_length": self.padded_length,
            "inputs": {k: _ref_json(v) for k, v in self.inputs.items()},
        }
        if self.extra:
            d["extra"] = self.extra
        return json.dumps(d, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        return cls(
            key=d["key"], uid=d["uid"], audio=d["audio"], transcript_raw=d["transcript_raw"],
            transcript=d["transcript"], num_samples=int(d["num_samples"]), length=int(d["length"]),
            padded_length=int(d["padded_length"]),
            inputs={k: BinRef(v["file"], v["dtype"], tuple(int(x) for x in v["shape"]), v.get("row"))
                    for k, v in d["inputs"].items()},
            speaker=d.get("speaker", ""),
            extra=d.get("extra", {}),
        )


def _ref_json(ref: BinRef) -> dict[str, Any]:
    d: dict[str, Any] = {"file": ref.file, "dtype": ref.dtype, "shape": list(ref.shape)}
    if ref.row is not None:
        d["row"] = ref.row
    return d


def write_bin(path: Path, array: np.ndarray, dtype: str) -> BinRef:
    """Write `array` as raw little-endian `dtype`; the file appears only when complete."""
    arr = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    atomic_write_bytes(path, arr.tobytes())
    return BinRef(file=path.name, dtype=dtype, shape=tuple(int(x) for x in arr.shape))


def read_bin(path: Path, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Read a raw tensor, refusing a file whose size does not match the manifest's shape and dtype."""
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatasetDirError(f"input file not found: {path}") from None
    if size != expected:
        raise DatasetDirError(f"{path}: {size} bytes, expected {expected} for {dtype} shape {list(shape)} "
                              "(truncated or from another run?)")
    return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


class DatasetDir:
    """A finished dataset dir, opened for reading."""

    def __init__(self, path: Path, header: dict[str, Any], samples: list[Sample]) -> None:
        self.path = path
        self.header = header
        self.samples = samples
        self._batch_cache: tuple[Path, np.ndarray] | None = None

    @classmethod
    def open(cls, path: Path, *, require_complete: bool = True) -> "DatasetDir":
        path = Path(path)
        head = path / HEADER
        if not head.is_file():
            raise DatasetDirError(f"not a dataset dir (no {HEADER}): {path}; run `python -m preprocess` first")
        header = read_json_file(head, "dataset header", error=DatasetDirError)
        if require_complete and not header.get("complete"):
            raise DatasetDirError(f"dataset dir {path} is incomplete (preprocess was interrupted); "
                                  "rerun the same preprocess command to resume it")
        samples = sorted(read_manifest(path / MANIFEST), key=lambda s: natural_key(s.key))
        if require_complete and len(samples) != header.get("num_samples"):
            raise DatasetDirError(f"{path / MANIFEST} lists {len(samples)} samples, the header says "
                                  f"{header.get('num_samples')}")
        return cls(path, header, samples)

    def input_path(self, sample: Sample, name: str) -> Path:
        folder = self.folder_of(name)
        return self.path / folder / sample.inputs[name].file

    def folder_of(self, name: str) -> str:
        for spec in self.header["inputs"]:
            if spec["name"] == name:
                return spec["folder"]
        raise DatasetDirError(f"{self.path}: no input named {name!r} (has {[s['name'] for s in self.header['inputs']]})")

    def load(self, sample: Sample, name: str) -> np.ndarray:
        """The sample's input as a batch-1 array (a row of a batch file keeps its batch axis)."""
        ref = sample.inputs[name]
        path = self.input_path(sample, name)
        if ref.row is None:
            return read_bin(path, ref.dtype, ref.shape)
        if self._batch_cache is None or self._batch_cache[0] != path:
            self._batch_cache = (path, read_bin(path, ref.dtype, ref.shape))
        return self._batch_cache[1][ref.row: ref.row + 1]


def natural_key(key: str) -> tuple[Any, ...]:
    """Sort key that orders data2 before data10 (ais_bench's order; the manifest's own order)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key))


def read_manifest(path: Path) -> Iterator[Sample]:
    """Samples of a manifest; a torn last line (an interrupted append) is ignored, anything else refused."""
    if not path.is_file():
        return
    lines = path.read_text().split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Sample.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError) as exc:
            if lineno == len(lines):  # the final line had no newline yet: an interrupted write
                return
            raise DatasetDirError(f"{path}:{lineno}: malformed manifest line ({exc})") from None
