"""Turn utterances into a dataset dir for one model card (resumable, atomic per file)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from core.audio import SAMPLE_RATE, decode_audio, num_samples
from core.cli_types import io_threads
from core.corpora import Utterance
from core.dataset_dir import (FORMAT_VERSION, HEADER, MANIFEST, BinRef, DatasetDirError, Sample,
                                    atomic_write_bytes, atomic_write_json, read_manifest, write_bin)
from core.fsio import DirLock
from core.guide import guide_profile
from core.model_card import ModelCard
from core.text import log_dropped, to_labels
from families.registry import extract, frames_for
from preprocess.modelzoo_batched import build_batched

log = logging.getLogger("preprocess")
# fn(item) over items, results in any order: how the utterances still to do get written.
Mapper = Callable[[Callable[[Any], Any], list[Any]], Iterable[Any]]
# Threads that decode and extract features in one process: enough to overlap file I/O with compute and to
# use a few cores, few enough that a small set does not pay for idle threads.
DEFAULT_THREADS = io_threads()
SYNC_EVERY_S = 1.0  # the manifest reaches the disk at least this often while samples are written


@dataclass
class BuildOptions:
    layout: str = "default"  # default | modelzoo (the card's guide profile picks the writer: core/guide.py)
    pad_to: int | None = None  # pad every sample's time axis to this many frames
    sample_rate: int = SAMPLE_RATE
    raw_rate: int | None = None
    resample: bool = False
    downmix: bool = False
    batch_size: int = 1  # clips per batch file, for a guide layout of batch files (core/guide.py guide_batch_size)
    max_samples: int | None = None  # longer clips are skipped, named in the log and the header


def _input_plan(card: ModelCard, layout: str) -> list[dict[str, Any]]:
    """One entry per model input: its name, folder, dtype, role and time axis (batch axis included)."""
    plan = []
    lengths_folder = guide_profile(card).get("lengths_folder") if layout == "modelzoo" else None
    for spec in card.inputs:
        folder = spec.name
        if lengths_folder and spec.role == "lengths":
            folder = lengths_folder  # the guide's folder name for the lengths input
        plan.append({"name": spec.name, "folder": folder, "dtype": spec.dtype, "role": spec.role,
                     "time_axis": spec.time_axis, "shape": list(spec.shape)})
    return plan


def source_fingerprint(utts: list[Utterance]) -> str:
    """What the dataset was made from: each audio file's path, size and mtime, and each transcript's text.

    Hashing every recording would cost a second read of the corpus; size + mtime catches a replaced or
    re-encoded file, and the transcripts are already in memory, so their content is hashed exactly.
    """
    h = hashlib.sha256()
    for u in utts:
        try:
            st = Path(u.audio).stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except FileNotFoundError:
            stamp = "missing"  # load_audio names the file when it gets to it
        h.update(f"{u.uid}\0{u.audio}\0{stamp}\0{u.transcript}\n".encode())
    return h.hexdigest()


def _settings_hash(source: dict[str, Any], card: ModelCard, opts: BuildOptions, n: int) -> str:
    entries = card.to_dict()  # the card's JSON, so the hash is the one earlier dataset dirs recorded
    blob = json.dumps({"source": source, "feature": entries["feature"], "inputs": entries["inputs"],
                       "labels": entries["labels"], "opts": opts.__dict__, "n": n}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _hashes(source: dict[str, Any], card: ModelCard, opts: BuildOptions,
            utts: list[Utterance]) -> dict[str, str]:
    """settings_hash: the command's settings; config_hash: those plus the sources' content (what runners key on)."""
    settings = _settings_hash(source, card, opts, len(utts))
    content = source_fingerprint(utts)
    return {"settings_hash": settings, "source_fingerprint": content,
            "config_hash": hashlib.sha256(f"{settings}:{content}".encode()).hexdigest()[:16]}


def _reuse_or_clear(out: Path, hashes: dict[str, str], force: bool) -> bool:
    """True when `out` already holds this exact dataset, finished; otherwise clear what cannot be resumed.

    A dir made with other settings is refused without --force. One made with the same settings from
    sources that changed since (a corrected transcript, a replaced recording) is rebuilt with a warning,
    since keeping its samples would silently score the old data. --force always starts over.
    """
    header_path = out / HEADER
    if not header_path.is_file():
        return False
    try:
        old = json.loads(header_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = {}  # a damaged header: nothing in the dir can be trusted, start over
    if not force and old.get("config_hash") == hashes["config_hash"]:
        if old.get("complete"):
            listed = sum(1 for _ in read_manifest(out / MANIFEST))
            if listed == old.get("num_samples"):
                log.info("%s is complete (%d samples); nothing to do (--force to redo)", out, listed)
                return True
            log.warning("%s: the manifest lists %d samples, the header says %d; repairing it", out, listed,
                        old.get("num_samples", 0))
        return False  # an interrupted (or damaged) build of this same dataset: resume it
    if not force and old.get("settings_hash") not in (None, hashes["settings_hash"]):
        raise DatasetDirError(f"{out} holds a dataset made with other settings; use another --out or --force")
    if not force and old:
        log.warning("%s: %s; rebuilding it", out, "the source audio or transcripts changed since it was made"
                    if old.get("settings_hash") else "made by an older version that did not record its sources")
    for p in [out / MANIFEST, header_path]:
        p.unlink(missing_ok=True)
    return False


def _modelzoo_size(length: int, max_length: int) -> int:
    """deepspeech.pytorch's collate stores length/max (a Python float) in a float32 tensor and the guide
    multiplies back in float32 and truncates, so some utterances come out one frame short; reproduced
    on purpose in modelzoo mode."""
    pct = np.float32(length / max_length)
    return int(np.float32(pct * np.float32(max_length)))


def plan_keys(utts: list[Utterance], card: ModelCard, opts: BuildOptions) -> list[tuple[str, Utterance, int]]:
    """(key, utterance, frames) in the order the runners will read them. Frames are counted (from each
    file's header) only where they matter before decoding: the ModelZoo order and padding, or --pad-to;
    otherwise they are 0 and each sample's length comes from its features."""
    feat = card.feature.params()
    if opts.layout == "modelzoo" or opts.pad_to is not None:
        frames = [frames_for(num_samples(u.audio, sample_rate=opts.sample_rate, raw_rate=opts.raw_rate), feat)
                  for u in utts]
    else:
        frames = [0] * len(utts)
    if opts.layout == "modelzoo":
        # The guide's collate sorts the whole set longest first (a stable sort) and numbers from 1.
        order = sorted(range(len(utts)), key=lambda i: -frames[i])
        return [(f"data{rank}", utts[i], frames[i]) for rank, i in enumerate(order, start=1)]
    width = max(6, len(str(len(utts))))
    return [(f"{i:0{width}d}", u, f) for i, (u, f) in enumerate(zip(utts, frames), start=1)]


def build_dataset(utts: list[Utterance], out: Path, card: ModelCard, source: dict[str, Any],
                  opts: BuildOptions, *, card_path: Path | None = None, force: bool = False,
                  progress: bool = True, mapper: Mapper | None = None, threads: int = DEFAULT_THREADS) -> Path:
    """Write the dataset dir; rerunning the same command resumes and skips what is already valid.

    `mapper(fn, items)` applies `write_sample` to the utterances still to do, in any order (default: this
    process, `threads` threads; preprocess/ray_build.py spreads it over Ray).
    One writer at a time: a second process writing the same dir is refused (DirLockedError, a ValueError).
    """
    if not utts:
        raise DatasetDirError(f"no utterances to write into {out}")
    if threads < 1:
        raise ValueError(f"threads {threads}: expected at least 1")
    out = Path(out)
    with DirLock(out, "dataset dir"), _local_mapper(threads) as local:
        return _build_locked(utts, out, card, source, opts, card_path, force, progress, mapper, local)


@contextmanager
def _local_mapper(threads: int) -> Iterator[Mapper]:
    """map over a thread pool, results in order: decoding (libsndfile) and the features' FFTs and array work
    release the GIL, and one sample's file writes overlap another's compute. Pending samples are cancelled
    when one fails."""
    if threads == 1:
        yield map
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="preprocess")
    try:
        yield lambda fn, items: pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _build_locked(utts: list[Utterance], out: Path, card: ModelCard, source: dict[str, Any],
                  opts: BuildOptions, card_path: Path | None, force: bool, progress: bool,
                  mapper: Mapper | None, local: Mapper) -> Path:
    batched = opts.layout == "modelzoo" and guide_profile(card)["layout"] == "batch_files"
    plan = _input_plan(card, opts.layout)
    if batched and mapper is not None:
        raise DatasetDirError("ModelZoo batch files are built in one process; drop --ray")
    if batched:
        return _build_batched(utts, out, card, source, opts, card_path, force, progress)
    too_long: list[str] = []
    if opts.max_samples:
        keep = []
        for u in utts:
            if num_samples(u.audio, sample_rate=opts.sample_rate, raw_rate=opts.raw_rate) <= opts.max_samples:
                keep.append(u)
            else:
                too_long.append(str(u.audio))
        if too_long:
            log.warning("skipping %d clips longer than %d samples: %s%s", len(too_long), opts.max_samples,
                        ", ".join(too_long[:5]), " ..." if len(too_long) > 5 else "")
        utts = keep
        if not utts:
            raise DatasetDirError(f"every clip is longer than --max-samples {opts.max_samples}")
    keyed = plan_keys(utts, card, opts)  # after the length filter: in the ModelZoo layout it reads every header
    max_frames = max(f for _, _, f in keyed)
    pad_to = opts.pad_to
    if opts.layout == "modelzoo" and pad_to is None:
        pad_to = max_frames
    if pad_to is not None and max_frames > pad_to:
        longest = max(keyed, key=lambda k: k[2])[1]
        raise DatasetDirError(f"{longest.audio}: {max_frames} frames, longer than --pad-to {pad_to} "
                              "(nothing is truncated: raise --pad-to or drop the file)")
    hashes = _hashes(source, card, opts, utts)
    header_path = out / HEADER
    if _reuse_or_clear(out, hashes, force):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for p in plan:
        (out / p["folder"]).mkdir(exist_ok=True)
    header = _header(card, source, opts, hashes, card_path)
    header.update({
        "pad_to": pad_to,
        "inputs": [{k: p[k] for k in ("name", "folder", "dtype", "role", "time_axis")} for p in plan],
        "num_samples": len(keyed),
        "skipped_too_long": too_long,
    })
    atomic_write_json(header_path, header)

    listed = list(read_manifest(out / MANIFEST))
    done = {s.key: s for s in listed}
    valid = {k for k, s in done.items() if all(
        (out / _folder(plan, name) / ref.file).is_file()
        and (out / _folder(plan, name) / ref.file).stat().st_size == ref.nbytes for name, ref in s.inputs.items())}
    if len(valid) != len(listed):
        # Rewrite the manifest without the entries whose files are gone or damaged, and without any
        # sample listed twice (from writers that raced before the dir lock existed).
        kept = "".join(done[k].to_json() + "\n" for k, _, _ in keyed if k in valid)
        atomic_write_bytes(out / MANIFEST, kept.encode())
    elif done:
        _ensure_trailing_newline(out / MANIFEST)
    if valid:
        log.info("resuming %s: %d of %d samples already written", out, len(valid), len(keyed))

    dropped: Counter = Counter()
    todo = [(k, u, f) for k, u, f in keyed if k not in valid]
    write = partial(write_sample, out=out, card=card, plan=plan, opts=opts, pad_to=pad_to)
    drops_by_key: dict[str, Counter] = {}
    with open(out / MANIFEST, "a") as manifest:
        synced = time.monotonic()
        for sample, drops in tqdm((mapper or local)(write, todo), total=len(todo), desc=f"preprocess {out.name}",
                                  unit="utt", disable=not progress):
            drops_by_key[sample.key] = drops
            manifest.write(sample.to_json() + "\n")
            # Flushed per sample, so a killed process loses nothing written; synced to disk at most every
            # SYNC_EVERY_S (an fsync per sample cost more than decoding short clips), so a power loss loses
            # at most that much (a resume redoes samples the manifest does not list; a torn line is skipped).
            manifest.flush()
            if time.monotonic() - synced >= SYNC_EVERY_S:
                os.fsync(manifest.fileno())
                synced = time.monotonic()
        manifest.flush()
        os.fsync(manifest.fileno())
    for key, _, _ in todo:  # counted in manifest order, whatever order a mapper wrote them in
        dropped.update(drops_by_key[key])
    if mapper is not None:
        _order_manifest(out / MANIFEST, [k for k, _, _ in keyed])
    log_dropped(dropped, log)
    if opts.layout == "modelzoo":
        _write_modelzoo_extras(out, card, plan)
    header["complete"] = True
    header["dropped_chars"] = dict(dropped)
    atomic_write_json(header_path, header)
    return out


def write_sample(item: tuple[str, Utterance, int], *, out: Path, card: ModelCard, plan: list[dict[str, Any]],
                 opts: BuildOptions, pad_to: int | None) -> tuple[Sample, Counter]:
    """One utterance's input files (atomic) and its manifest entry, plus the characters its labels dropped."""
    key, utt, _ = item
    audio = decode_audio(utt.audio, sample_rate=opts.sample_rate, raw_rate=opts.raw_rate,
                         resample=opts.resample, downmix=opts.downmix)
    feats = extract(audio, card.feature.params())
    length = int(feats.shape[-1])
    target = pad_to or length
    if length > target:
        raise DatasetDirError(f"{utt.audio}: {length} frames, longer than the padded length {target}")
    text, drops = to_labels(utt.transcript, list(card.labels), blank=card.blank_label, word_delimiter=card.delimiter)
    refs: dict[str, BinRef] = {}
    stored_length = _modelzoo_size(length, target) if opts.layout == "modelzoo" else length
    for p in plan:
        if p["role"] == "lengths":
            arr = np.array([stored_length], dtype=p["dtype"])
        else:
            arr = np.zeros((*feats.shape[:-1], target), dtype=np.float32)
            arr[..., :length] = feats
            arr = arr[None]  # batch axis: one file is one batch-1 model input
            if arr.ndim != len(p["shape"]):
                arr = arr.reshape((1,) * (len(p["shape"]) - arr.ndim) + arr.shape)
        refs[p["name"]] = write_bin(out / p["folder"] / f"{key}.bin", arr, p["dtype"])
    sample = Sample(key=key, uid=utt.uid, audio=str(utt.audio), transcript_raw=utt.transcript,
                    transcript=text, num_samples=int(audio.size), length=length, padded_length=target,
                    inputs=refs, speaker=utt.speaker)
    return sample, drops


def _order_manifest(path: Path, keys: list[str]) -> None:
    """Rewrite the manifest in `keys` order (a mapper may have finished the samples in any order)."""
    lines = path.read_bytes().decode().splitlines(keepends=True)
    by_key = {json.loads(line)["key"]: line for line in lines if line.strip()}
    ordered = "".join(by_key[k] for k in keys if k in by_key)
    if ordered != "".join(lines):
        atomic_write_bytes(path, ordered.encode())


def _header(card: ModelCard, source: dict[str, Any], opts: BuildOptions, hashes: dict[str, str],
            card_path: Path | None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "complete": False,
        **hashes,
        "source": source,
        "layout": opts.layout,
        "card": {"family": card.family, "path": str(card_path) if card_path else None,
                 "onnx_sha256": card.onnx_sha256},
        "feature": card.feature.params(),
        "labels": list(card.labels),
        "blank_index": card.blank_index,
        "metrics_convention": card.metrics_convention,
    }


def _build_batched(utts: list[Utterance], out: Path, card: ModelCard, source: dict[str, Any],
                   opts: BuildOptions, card_path: Path | None, force: bool, progress: bool) -> Path:
    hashes = _hashes(source, card, opts, utts)
    if _reuse_or_clear(out, hashes, force):
        return out
    out.mkdir(parents=True, exist_ok=True)
    return build_batched(utts, out, card, _header(card, source, opts, hashes, card_path), opts.batch_size,
                         sample_rate=opts.sample_rate, raw_rate=opts.raw_rate, resample=opts.resample,
                         progress=progress)


def _folder(plan: list[dict[str, Any]], name: str) -> str:
    return next(p["folder"] for p in plan if p["name"] == name)


def _ensure_trailing_newline(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        # A torn final line from an interrupted run: drop it so appends start on a clean line.
        atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])


def _write_modelzoo_extras(out: Path, card: ModelCard, plan: list[dict[str, Any]]) -> None:
    """sorted_padded: sizes.txt (in the lengths folder), targets.txt and target_sizes.txt as the DeepSpeech
    guide's preprocess writes them."""
    samples = sorted(read_manifest(out / MANIFEST), key=lambda s: int(s.key[4:]))
    index = {lab: i for i, lab in enumerate(card.labels)}
    lengths_name = next((p["name"] for p in plan if p["role"] == "lengths"), None)
    lengths_dir = out / _folder(plan, lengths_name) if lengths_name else None
    sizes = []
    for s in samples:
        if lengths_dir:
            ref = s.inputs[lengths_name]
            sizes.append(int(np.fromfile(lengths_dir / ref.file, dtype="<i4")[0]))
    targets = [[index[ch] for ch in s.transcript if ch in index and index[ch] != card.blank_index] for s in samples]
    if lengths_dir:
        atomic_write_bytes(lengths_dir / "sizes.txt", "".join(f"{n} " for n in sizes).encode())
    atomic_write_bytes(out / "targets.txt", "".join(f"{t} " for ts in targets for t in ts).encode())
    atomic_write_bytes(out / "target_sizes.txt", "".join(f"{len(ts)} " for ts in targets).encode())
