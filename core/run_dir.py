"""The run dir: what a runner writes and what postprocess reads.

Run dir::

    <run>/run.json               backend, versions, threads, machine, batch size, latencies, seq/s
    <run>/<output>/<key>.bin     one file per sample and model output: that sample's row, as produced

run.json is written last (atomically), so a run dir without it is never taken as finished.
"""
from __future__ import annotations

import hashlib
import json
import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.dataset_dir import DatasetDir, atomic_write_json
from core.fsio import read_json_file
from core.machine import machine_info
from core.model_card import ModelCard

log = logging.getLogger("runners")

RUN_JSON = "run.json"
# The keys postprocess reads from run.json; a run.json without them is refused by name.
RUN_KEYS = ("backend", "batch_size", "model", "dataset", "outputs", "samples")


class RunError(RuntimeError):
    """A run that cannot proceed: wrong inputs for the model, a backend failure, a bad run dir."""


def cached_run(out: Path, config: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The finished run in `out` if it was made with exactly `config` (so a rerun can skip it).

    `config` names the model by its file's sha256 and the dataset by its content hash, so a model or
    dataset rebuilt at the same path is run again.
    """
    previous = out / RUN_JSON
    if force or not previous.is_file():
        return None
    try:
        old = json.loads(previous.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged run.json marks nothing as finished; the run is redone
    if not isinstance(old, dict) or old.get("config") != config:
        return None
    log.info("%s is up to date (same model, dataset and settings); --force to run again", out)
    return old


def decoding_fingerprint(card: ModelCard) -> str:
    """What decoding a run's outputs depends on (family, labels, blank), so score can tell a card that fits
    the run (the model's own, a variant's, a streaming export's) from another model's."""
    facts = {"family": card.family, "labels": list(card.labels), "blank_index": card.blank_index}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def finish_run(out: Path, *, config: dict[str, Any], backend: str, backend_info: dict[str, Any],
               card: ModelCard, dataset: DatasetDir, batch_size: int, batches: int,
               latencies_ms: list[float], wall_s: float, samples_meta: list[dict[str, Any]],
               model_path: Path | None, batching: str, warmup: int,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write run.json for a run dir whose output files are in place; it is the last file written."""
    n = len(samples_meta)
    scored = {m["key"] for m in samples_meta}
    audio_s = (sum(s.num_samples for s in dataset.samples if s.key in scored)
               / float(dataset.header["feature"]["sample_rate"]))
    compute_s = sum(latencies_ms) / 1000.0
    per_batch = sorted(latencies_ms)
    summary = {
        "config": config,
        "backend": backend,
        "backend_info": backend_info,
        "model": {"path": str(model_path) if model_path else None, "family": card.family,
                  "precision": card.precision, "onnx_sha256": card.onnx_sha256,
                  "sha256": config.get("model_sha256"), "decoding": decoding_fingerprint(card)},
        "dataset": {"path": str(dataset.path), "samples": n, "layout": dataset.header.get("layout"),
                    "audio_seconds": round(audio_s, 3)},
        "batch_size": batch_size,
        "batches": batches,
        "batching": batching,
        "warmup_batches": warmup,
        "batch_latency_ms": [round(x, 4) for x in latencies_ms],
        "latency_ms": {
            "p50": float(np.percentile(per_batch, 50)) if per_batch else None,
            "p90": float(np.percentile(per_batch, 90)) if per_batch else None,
            "mean": statistics.fmean(per_batch) if per_batch else None,
            "per": "batch",
        },
        "compute_s": round(compute_s, 6),
        "wall_s": round(wall_s, 6),
        "seq_per_s": n / compute_s if compute_s > 0 else None,
        "seq_per_s_wall": n / wall_s if wall_s > 0 else None,
        "rtf": compute_s / audio_s if audio_s > 0 else None,
        "outputs": [{"name": s.name, "dtype": s.dtype, "role": s.role,
                     "time_axis": s.time_axis, "lengths_from": s.lengths_from} for s in card.outputs],
        "samples": samples_meta,
        "machine": machine_info(),
        # ru_maxrss is in KiB on Linux: the most memory this process held, model and batches included, and
        # the largest of its finished child processes (msame, ais_bench).
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        summary.update(extra)
    atomic_write_json(out / RUN_JSON, summary)
    return summary


def open_run(path: Path) -> dict[str, Any]:
    """run.json of a finished run dir; a missing, corrupt or incomplete one is refused, naming the file."""
    run_json = Path(path) / RUN_JSON
    if not run_json.is_file():
        raise RunError(f"not a finished run dir (no {RUN_JSON}): {path}")
    return read_json_file(run_json, "run summary", required=RUN_KEYS, error=RunError)
