"""Dataset readers: AN4 (raw release and deepspeech.pytorch JSON manifest) and LibriSpeech.

Each reader yields Utterance records (id, audio path, raw transcript) in the dataset's own order and
raises DatasetError, naming the file, when the layout is not what the real dataset has.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

log = logging.getLogger("preprocess")


class DatasetError(ValueError):
    """A dataset folder or manifest that does not have the expected layout."""


@dataclass(frozen=True)
class Utterance:
    uid: str
    audio: Path
    transcript: str
    speaker: str = ""


T = TypeVar("T")


def spread_evenly(items: Sequence[T], n: int) -> list[T]:
    """`n` of `items` at even steps over the whole list (a corpus in reading order: every speaker, not the
    first few); all of them when there are no more than `n`."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def warn_empty_transcripts(utts: list[Utterance], source: Path) -> list[Utterance]:
    """Log how many utterances have an empty transcript (they can only add insertions when scored)."""
    empty = [u.uid for u in utts if not u.transcript.strip()]
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        log.warning("%s: %d of %d utterances have an empty transcript (%s); they are kept, and scoring counts "
                    "them as empty references", source, len(empty), len(utts), shown)
    return utts


# `<s> TEXT </s> (utt-id)`; real AN4 also has lines without the <s> markers, so they are optional.
_AN4_LINE = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<uid>[^()\s]+)\)\s*$")
AN4_AUDIO_DIRS = {"train": "an4_clstk", "test": "an4test_clstk"}


def _an4_audio_path(root: Path, split: str, fid: str, where: str) -> Path:
    """Where a fileids entry's audio lies.

    The real release lists `<audio dir>/<speaker>/<utt-id>` relative to `wav/` (e.g.
    `an4test_clstk/fcaw/an406-fcaw-b`), and deepspeech.pytorch's data/an4.py joins `wav/` + entry the
    same way. Older demo corpora of this repo listed `<speaker>/<utt-id>`; those still resolve under the
    split's audio dir.
    """
    parts = fid.split("/")
    if len(parts) == 3 and all(parts):
        return root / "wav" / f"{fid}.raw"
    if len(parts) == 2 and all(parts):
        return root / "wav" / AN4_AUDIO_DIRS[split] / f"{fid}.raw"
    raise DatasetError(f"{where}: expected '{AN4_AUDIO_DIRS[split]}/<speaker>/<utt-id>' (the real AN4 layout, "
                       f"relative to wav/), got {fid!r}")


def read_an4_raw(root: Path, split: str = "test") -> list[Utterance]:
    """AN4's raw release: `an4/etc/an4_<split>.{fileids,transcription}` + `an4/wav/<fileid>.raw`.

    `root` may be the `an4` folder itself or its parent.
    """
    root = Path(root)
    if not (root / "etc").is_dir() and (root / "an4" / "etc").is_dir():
        root = root / "an4"
    if split not in AN4_AUDIO_DIRS:
        raise DatasetError(f"AN4 split {split!r} is not one of {sorted(AN4_AUDIO_DIRS)}")
    fileids = root / "etc" / f"an4_{split}.fileids"
    trans = root / "etc" / f"an4_{split}.transcription"
    for f in (fileids, trans):
        if not f.is_file():
            raise DatasetError(f"AN4 file not found: {f} (expected the raw AN4 release layout an4/etc, an4/wav)")
    ids = [(n, line.strip()) for n, line in enumerate(fileids.read_text().splitlines(), start=1) if line.strip()]
    lines = [(n, line) for n, line in enumerate(trans.read_text().splitlines(), start=1) if line.strip()]
    if len(ids) != len(lines):
        raise DatasetError(f"{fileids} lists {len(ids)} utterances but {trans} has {len(lines)} lines")
    out: list[Utterance] = []
    for (id_lineno, fid), (lineno, line) in zip(ids, lines):
        m = _AN4_LINE.match(line)
        if not m:
            raise DatasetError(f"{trans}:{lineno}: expected '<s> TEXT </s> (utt-id)', got {line!r}")
        uid = m.group("uid")
        if Path(fid).name != uid:
            raise DatasetError(f"{trans}:{lineno}: utterance {uid!r} does not match {fileids}:{id_lineno} "
                               f"entry {fid!r}")
        audio = _an4_audio_path(root, split, fid, f"{fileids}:{id_lineno}")
        out.append(Utterance(uid=uid, audio=audio, transcript=m.group("text"), speaker=Path(fid).parent.name))
    return warn_empty_transcripts(out, trans)


def read_ds_manifest(path: Path) -> list[Utterance]:
    """deepspeech.pytorch's JSON manifest: {"root_path": ..., "samples": [{"wav_path", "transcript_path"}]}.

    Paths join as V3.0's loader joins them (os.path.join(root_path, path): an absolute path wins). V3.0's
    create_manifest always writes an absolute root_path; a relative one is taken from the manifest's own
    folder here (V3.0 would take it from the working directory), so a moved manifest + data pair still reads.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
        root = Path(manifest["root_path"])
        samples = manifest["samples"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: expected a deepspeech.pytorch manifest "
                           f'{{"root_path": ..., "samples": [{{"wav_path", "transcript_path"}}]}} ({exc})') from None
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    out: list[Utterance] = []
    for i, sample in enumerate(samples):
        try:
            wav, txt = root / sample["wav_path"], root / sample["transcript_path"]
        except (KeyError, TypeError):
            raise DatasetError(f"{path}: sample {i} lacks wav_path/transcript_path") from None
        if not txt.is_file():
            raise DatasetError(f"{path}: sample {i}: transcript file not found: {txt}")
        out.append(Utterance(uid=wav.stem, audio=wav, transcript=txt.read_text().replace("\n", " ").strip()))
    return warn_empty_transcripts(out, path)


# Files the real release keeps in LibriSpeech/ beside the split folders.
LIBRISPEECH_ROOT_FILES = ("SPEAKERS.TXT", "CHAPTERS.TXT", "BOOKS.TXT", "LICENSE.TXT", "README.TXT")


def librispeech_splits(root: Path) -> list[str]:
    """Split folders under a `LibriSpeech/` root: those holding `<spk>/<chapter>/*.trans.txt`."""
    return sorted(d.name for d in Path(root).iterdir() if d.is_dir() and next(d.glob("*/*/*.trans.txt"), None))


def _librispeech_split_dir(path: Path, split: str | None) -> Path:
    """The split folder meant by `path` (a split folder, or the `LibriSpeech/` root plus `split`)."""
    if not path.is_dir():
        raise DatasetError(f"LibriSpeech folder not found: {path}")
    is_root = any((path / f).is_file() for f in LIBRISPEECH_ROOT_FILES) or not next(path.glob("*/*/*.trans.txt"), None)
    if not is_root:
        if split and split != path.name:
            raise DatasetError(f"{path} is the LibriSpeech split {path.name!r}, not {split!r}")
        return path
    splits = librispeech_splits(path)
    if split:
        if split not in splits:
            raise DatasetError(f"{path}: no LibriSpeech split {split!r} here (found: {', '.join(splits) or 'none'})")
        return path / split
    if len(splits) == 1:
        log.info("%s: using its only split, %s", path, splits[0])
        return path / splits[0]
    if not splits:
        raise DatasetError(f"{path}: no */*/*.trans.txt files (expected LibriSpeech/<split>/<spk>/<chapter>/)")
    raise DatasetError(f"{path} is a LibriSpeech root with several splits ({', '.join(splits)}); name one with "
                       f"--split, or pass {path / splits[0]}")


def read_librispeech(path: Path, split: str | None = None) -> list[Utterance]:
    """`<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt` + `<spk>-<chapter>-<utt>.flac`, sorted by id.

    `path` is one split folder (`LibriSpeech/test-clean`) or the `LibriSpeech/` root that the release
    unpacks to (SPEAKERS.TXT, CHAPTERS.TXT, ... beside the split folders); a root needs `split` unless it
    holds only one split.
    """
    split_dir = _librispeech_split_dir(Path(path), split)
    out: list[Utterance] = []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        for lineno, line in enumerate(trans.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            audio = trans.parent / f"{uid}.flac"
            if not audio.is_file():
                raise DatasetError(f"{trans}:{lineno}: audio for {uid} not found: {audio}")
            out.append(Utterance(uid=uid, audio=audio, transcript=text, speaker=uid.split("-")[0]))
    if not out:
        raise DatasetError(f"{split_dir}: no */*/*.trans.txt files (expected LibriSpeech/<split>/<spk>/<chapter>/)")
    return warn_empty_transcripts(sorted(out, key=lambda u: u.uid), split_dir)


# A corpus by the name a Family's bench defaults give it: one folder in -> its test utterances.
CORPUS_READERS: dict[str, Callable[[Path], list[Utterance]]] = {
    "an4_raw": lambda root: read_an4_raw(root, "test"),
    "librispeech": read_librispeech,
}
