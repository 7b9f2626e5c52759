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


def preprocessing_rtf(onnx_path: Path, data: Path, limit: int = 200) -> dict[str, Any]:
    """Audio seconds preprocessed per second on one core: read audio, features, .bin + manifest."""
    _, card = load_model_and_card(onnx_path)
    utts, source = utterances_for(card, data, limit)
    with tempfile.TemporaryDirectory() as tmp, one_core():
        # Untimed warm-up: the first STFT pays for FFT planning and lazy imports, not per-audio work.
        build_dataset(utts[:2], Path(tmp) / "warm", card, source, BuildOptions(), progress=False)
        t0 = time.perf_counter()
        out = build_dataset(utts, Path(tmp) / "ds", card, source, BuildOptions(), progress=False)
        seconds = time.perf_counter() - t0
        ds = DatasetDir.open(out)
        audio_s = sum(s.num_samples for s in ds.samples) / float(ds.header["feature"]["sample_rate"])
    return {"stage": "preprocess", "utterances": len(utts), "audio_s": audio_s, "seconds": seconds,
            "x_real_time": audio_s / seconds if seconds > 0 else None, "cores": 1}


def pipeline_share(onnx_path: Path, data: Path, threads: int, limit: int = 200, repeats: int = 3) -> dict[str, Any]:
    """Wall time of preprocess + onnxruntime run + scoring, and the share that is not model execution (the
    run's timed batches), medians of `repeats` pipeline runs.

    After each run the same session runs the same inputs again with nothing around it (read beforehand,
    outputs dropped): `model_alone_s`. If the run's file traffic slowed its timed batches, the share would
    look better than it is; `in_run_over_alone` shows whether it does. The share itself is taken within one
    wall-clock window (the run's own batches): on a noisy host, a model-alone time from another moment
    moves it more than that effect.
    """
    from runners.onnxruntime_backend import OnnxRuntimeBackend

    _, card = load_model_and_card(onnx_path)
    utts, source = utterances_for(card, data, limit)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(utts[:2], Path(tmp) / "warm", card, source, BuildOptions(), progress=False)
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
    result: dict[str, Any] = {"stage": "pipeline", "utterances": len(utts), "threads": threads, "repeats": repeats}
    result.update({key: statistics.median(r[key] for r in runs) for key in runs[0]})
    result["note"] = ("medians; run_wall_s includes session creation and warm-up; model_execution_s is the run's "
                      "timed batches, model_alone_s the same batches with no file traffic beside them; "
                      "not_model_share = 1 - model_execution_s / total_s")
    return result


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
