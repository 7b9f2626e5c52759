"""Benchmark rows for the stages around the model: preprocessing speed, and how much of a whole
pipeline run (preprocess -> run -> score) is not model execution.

Both run the real stages (build_dataset, run_dataset with onnxruntime, score_run) into a scratch dir.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core.card import ModelCard, load_model_and_card
from core.corpora import CORPUS_READERS, Utterance
from core.dataset_dir import DatasetDir
from core.fsio import atomic_write_bytes
from families.registry import get_family
from postprocess.score import score_run
from preprocess.build import BuildOptions, build_dataset
from runners.base import Backend, RunOptions, assemble, run_dataset


def utterances_for(card: ModelCard, data: Path, limit: int) -> tuple[list[Utterance], dict[str, Any]]:
    """The test utterances of the corpus the card's family benchmarks on (its bench defaults)."""
    corpus = get_family(card.family).bench.corpus
    return CORPUS_READERS[corpus](data)[:limit], {"kind": corpus, "path": str(data)}


@contextmanager
def one_core() -> Iterator[int]:
    """Pin this process to one CPU (the 'on one core' of the preprocessing target)."""
    if not hasattr(os, "sched_getaffinity"):
        yield os.cpu_count() or 1
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield 1
    finally:
        os.sched_setaffinity(0, before)


def preprocessing_rtf(onnx_path: Path, data: Path, limit: int = 200, scratch: Path | None = None) -> dict[str, Any]:
    """Audio seconds preprocessed per second on one core: read audio, features, .bin + manifest."""
    _, card = load_model_and_card(onnx_path)
    utts, source = utterances_for(card, data, limit)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp, one_core():
        # Untimed warm-up: the first STFT pays for FFT planning and lazy imports, not per-audio work; and every
        # audio file is read once, so that the timed pass measures the CPU's work rather than how cold the
        # page cache happened to be (a first read from this VM's disk costs more than decoding the file).
        build_dataset(utts[:2], Path(tmp) / "warm", card, source, BuildOptions(), progress=False)
        read_audio_files(utts)
        t0 = time.perf_counter()
        out = build_dataset(utts, Path(tmp) / "ds", card, source, BuildOptions(), progress=False)
        seconds = time.perf_counter() - t0
        ds = DatasetDir.open(out)
        audio_s = sum(s.num_samples for s in ds.samples) / float(ds.header["feature"]["sample_rate"])
    return {"stage": "preprocess", "utterances": len(utts), "audio_s": audio_s, "seconds": seconds,
            "x_real_time": audio_s / seconds if seconds > 0 else None, "cores": 1, "page_cache": "warm"}


def read_audio_files(utts: list[Utterance]) -> None:
    """Read every utterance's audio file once (bytes only), leaving it in the page cache."""
    for utt in utts:
        Path(utt.audio).read_bytes()


def pipeline_share(onnx_path: Path, data: Path, threads: int, limit: int = 200, repeats: int = 3,
                   scratch: Path | None = None) -> dict[str, Any]:
    """Wall time of preprocess + onnxruntime run + scoring, and the share that is not model execution (the
    run's timed batches), medians of `repeats` pipeline runs.

    After each run the same session runs the same inputs again with nothing around it (read beforehand,
    outputs dropped): `model_alone_s`. If the run's file traffic slowed its timed batches, the share would
    look better than it is; `in_run_over_alone` shows whether it does. The share itself is taken within one
    wall-clock window (the run's own batches): on a noisy host, a model-alone time from another moment
    moves it more than that effect.

    The share depends on the model (a small demo model makes the same work around it look big), so the
    row also gives that work per utterance (decoding, features, files and scoring do not grow with the model), and
    what creating one file costs on the scratch dir's file system: a run writes one file per input and per
    output (msame's layout), and on some virtual disks file creation alone is a large part of the rest.
    """
    from runners.onnxruntime_backend import OnnxRuntimeBackend

    _, card = load_model_and_card(onnx_path)
    utts, source = utterances_for(card, data, limit)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        build_dataset(utts[:2], Path(tmp) / "warm", card, source, BuildOptions(), progress=False)
        read_audio_files(utts)  # as in preprocessing_rtf: every repeat starts from a warm page cache
        create_ms = file_create_ms(Path(tmp) / "files")
        for r in range(repeats):
            t0 = time.perf_counter()
            ds_path = build_dataset(utts, Path(tmp) / f"ds{r}", card, source, BuildOptions(), progress=False)
            t_pre = time.perf_counter() - t0
            t0 = time.perf_counter()
            ds = DatasetDir.open(ds_path)
            backend = OnnxRuntimeBackend(onnx_path, card, threads=threads)
            run = run_dataset(backend, ds, card, Path(tmp) / f"run{r}", RunOptions(batch_size=1, progress=False))
            t_run = time.perf_counter() - t0
            t0 = time.perf_counter()
            score_run(Path(tmp) / f"run{r}", ds, card)
            t_score = time.perf_counter() - t0
            total = t_pre + t_run + t_score
            alone = model_alone_s(backend, ds, card)
            runs.append({"preprocess_s": t_pre, "run_wall_s": t_run, "model_execution_s": run["compute_s"],
                         "model_alone_s": alone, "score_s": t_score, "total_s": total,
                         "not_model_share": 1 - run["compute_s"] / total, "in_run_over_alone": run["compute_s"] / alone})
        files = sum(1 for p in (Path(tmp) / "ds0").rglob("*") if p.is_file()) + \
            sum(1 for p in (Path(tmp) / "run0").rglob("*") if p.is_file())
        mount, fs_type = filesystem_of(Path(tmp))
    result: dict[str, Any] = {"stage": "pipeline", "utterances": len(utts), "threads": threads, "repeats": repeats}
    result.update({key: statistics.median(r[key] for r in runs) for key in runs[0]})
    result.update({"files_written": files, "file_create_ms": create_ms,
                   "scratch": {"dir": str(Path(tmp).parent), "mount": mount, "fs_type": fs_type}})
    result["note"] = ("medians; run_wall_s includes session creation and warm-up; model_execution_s is the run's "
                      "timed batches, model_alone_s the same batches with no file traffic beside them; "
                      "not_model_share = 1 - model_execution_s / total_s; files_written by one preprocess + run "
                      "(inputs, outputs, manifests, headers), file_create_ms one atomic small-file write there")
    return result


def file_create_ms(folder: Path, count: int = 200) -> float:
    """Milliseconds to create one small file the way every stage writes (core.fsio.atomic_write_bytes:
    a temporary file renamed into place), the mean over `count` new files in `folder`: what a run pays for
    its files is their total."""
    folder.mkdir(parents=True)
    data = bytes(4096)
    t0 = time.perf_counter()
    for i in range(count):
        atomic_write_bytes(folder / f"{i}.bin", data)
    return 1000 * (time.perf_counter() - t0) / count


def filesystem_of(path: Path) -> tuple[str | None, str | None]:
    """(mount point, file system type) that `path` lives on, from /proc/mounts; (None, None) elsewhere."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None, None
    resolved = str(Path(path).resolve())
    best: tuple[str | None, str | None] = (None, None)
    for mount, fs_type in mounts:
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0] or ""):
            best = (mount, fs_type)
    return best


def model_alone_s(backend: Backend, dataset: DatasetDir, card: ModelCard) -> float:
    """Seconds the backend takes over the dataset's samples one by one, inputs in memory, after warm-up."""
    feeds = [assemble(dataset, card, [s]) for s in dataset.samples]
    for _ in range(RunOptions.warmup):
        backend.infer(feeds[0])
    seconds = 0.0
    for feed in feeds:
        t0 = time.perf_counter()
        backend.infer(feed)
        seconds += time.perf_counter() - t0
    return seconds
