"""One interface for every backend, and the run loop that turns a dataset dir into a run dir.

A backend only maps a batch of named numpy inputs to named numpy outputs. Batching (padding each
input's time axis per the card), warm-up, timing and the run dir (core/run_dir.py) are the same for all.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from core.dataset_dir import DatasetDir, Sample, write_bin
from core.fsio import DirLock, sha256_file
from core.guide import guide_feature
from core.model_card import ModelCard
from core.run_dir import RUN_JSON, RunError, cached_run, finish_run

# Default frame budget of one batch, as seconds of audio in the input's time steps (batch size x the
# longest clip's padded length): a handful of ordinary clips fit, while one very long clip runs alone.
DEFAULT_BATCH_AUDIO_S = 240.0
log = logging.getLogger("runners")


class Backend(Protocol):
    name: str

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; inputs and outputs are keyed by the card's tensor names."""

    def info(self) -> dict[str, Any]:
        """Versions, threads, providers: whatever decides this backend's numbers."""


@dataclass
class RunOptions:
    batch_size: int = 1
    warmup: int = 2
    sort_by_length: bool = True
    progress: bool = True
    force: bool = False
    max_batch_frames: int | None = None  # None: DEFAULT_BATCH_AUDIO_S of this dataset's audio


def open_dataset_for(path: Path, card: ModelCard) -> DatasetDir:
    """The dataset dir, refused if it was preprocessed with another feature config than the card's (or its
    guide profile's, for a --modelzoo dataset)."""
    dataset = DatasetDir.open(path)
    expected = guide_feature(card) if dataset.header.get("layout") == "modelzoo" else card.feature.params()
    if dataset.header.get("feature") != expected:
        raise RunError(f"{path} was made with another feature config than {card.onnx}'s card; "
                       "preprocess it again with this card")
    return dataset


def default_batch_frames(dataset: DatasetDir) -> int:
    """DEFAULT_BATCH_AUDIO_S seconds of audio in the dataset's input time steps (frames or samples)."""
    rate = float(dataset.header["feature"]["sample_rate"])
    steps_per_s = max((s.length * rate / s.num_samples for s in dataset.samples if s.num_samples), default=rate)
    return max(1, int(DEFAULT_BATCH_AUDIO_S * steps_per_s))


def make_batches(samples: list[Sample], batch_size: int, sort_by_length: bool,
                 max_batch_frames: int | None = None) -> list[list[Sample]]:
    """Batches of at most `batch_size` samples whose padded size (count x longest padded length) stays within
    `max_batch_frames`; a clip longer than the budget by itself runs alone and is named in the log.
    Sorting by length first keeps padding small, and is undone in the run dir."""
    order = sorted(samples, key=lambda s: -s.length) if sort_by_length and batch_size > 1 else list(samples)
    if max_batch_frames:
        for s in order:
            if s.padded_length > max_batch_frames:
                log.warning("long clip %s (%s): %d time steps, over the batch budget of %d (--max-batch-frames); "
                            "it runs in a batch of its own", s.key, s.audio, s.padded_length, max_batch_frames)
    batches: list[list[Sample]] = []
    current: list[Sample] = []
    longest = 0
    for s in order:
        grown = max(longest, s.padded_length)
        if current and (len(current) >= batch_size or
                        (max_batch_frames and grown * (len(current) + 1) > max_batch_frames)):
            batches.append(current)
            current, grown = [], s.padded_length
        current.append(s)
        longest = grown
    if current:
        batches.append(current)
    return batches


def check_finite(arrays: dict[str, np.ndarray], batch: list[Sample], what: str) -> None:
    """Refuse NaN or infinity in a batch's inputs or outputs, naming the first sample that holds one."""
    for name, arr in arrays.items():
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        bad = ~np.isfinite(arr[: len(batch)].reshape(min(len(batch), arr.shape[0]), -1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            sample = batch[row]
            kinds = "NaN" if np.isnan(arr[row]).any() else "infinity"
            raise RunError(f"sample {sample.key} ({sample.audio}): {what} {name} holds {kinds}; expected finite "
                           "values (preprocess it again, or check the model)")


def assemble(dataset: DatasetDir, card: ModelCard, batch: list[Sample],
             batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Stack samples into model inputs, zero-padding each input's time axis to the batch's longest.

    A model with a static batch dimension gets its last, partial batch filled up with copies of the
    last sample; their outputs are discarded.
    """
    rows = list(batch)
    if batch_size and len(rows) < batch_size:
        rows += [rows[-1]] * (batch_size - len(rows))
    inputs: dict[str, np.ndarray] = {}
    for spec in card.inputs:
        name = spec.name
        arrays = [dataset.load(s, name) for s in rows]
        axis = spec.time_axis
        if axis is not None:
            fixed = spec.shape[axis]
            target = fixed if isinstance(fixed, int) else max(a.shape[axis] for a in arrays)
            padded = []
            for a, s in zip(arrays, rows):
                if a.shape[axis] > target:
                    raise RunError(f"sample {s.key}: input {name} has {a.shape[axis]} frames, the model takes {target}")
                widths = [(0, 0)] * a.ndim
                widths[axis] = (0, target - a.shape[axis])
                padded.append(np.pad(a, widths) if target > a.shape[axis] else a)
            arrays = padded
        stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        inputs[name] = stacked.astype(spec.dtype, copy=False)
    return inputs


def batch_input_length(card: ModelCard, inputs: dict[str, np.ndarray]) -> int | None:
    """The time length a batch was padded to (what the outputs' time axis follows), for score's checks."""
    spec = card.time_input
    return int(inputs[spec.name].shape[spec.time_axis]) if spec else None


def run_dataset(backend: Backend, dataset: DatasetDir, card: ModelCard, out: Path, opts: RunOptions,
                model_path: Path | None = None) -> dict[str, Any]:
    """Run every sample through `backend`, write the run dir, return run.json's content.

    One writer at a time: a second process writing the same run dir is refused (DirLockedError).
    """
    with DirLock(out, "run dir"):
        return _run_locked(backend, dataset, card, Path(out), opts, model_path)


def model_sha256(model_path: Path | None, backend: Backend, card: ModelCard) -> str | None:
    """The sha256 of what the backend actually loaded: the model file, else the checkpoint it reports."""
    if model_path is not None and Path(model_path).is_file():
        return sha256_file(Path(model_path))
    return backend.info().get("checkpoint_sha256") or card.onnx_sha256


def _run_locked(backend: Backend, dataset: DatasetDir, card: ModelCard, out: Path, opts: RunOptions,
                model_path: Path | None) -> dict[str, Any]:
    fixed = card.static_batch
    # A static batch cannot be cut by a budget: every batch holds exactly `fixed` rows.
    budget = None if fixed else (opts.max_batch_frames or default_batch_frames(dataset))
    config = {
        "backend": backend.name,
        "backend_info": backend.info(),
        "model_sha256": model_sha256(model_path, backend, card),
        "dataset": str(dataset.path.resolve()),
        "dataset_hash": dataset.header.get("config_hash"),
        "batch_size": opts.batch_size,
        "max_batch_frames": budget,
        "warmup": opts.warmup,
        "sort_by_length": opts.sort_by_length,
    }
    cached = cached_run(out, config, opts.force)
    if cached:
        return cached
    if fixed and opts.batch_size != fixed:
        raise RunError(f"the model has a static batch of {fixed}; run it with --batch-size {fixed}")
    batches = make_batches(dataset.samples, opts.batch_size, opts.sort_by_length, budget)
    if not batches:
        raise RunError(f"{dataset.path}: no samples")
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_JSON).unlink(missing_ok=True)  # a run dir without run.json is never taken as finished
    for spec in card.outputs:
        (out / spec.name).mkdir(exist_ok=True)

    warm = assemble(dataset, card, batches[0], fixed)
    for _ in range(opts.warmup):
        backend.infer(warm)

    latencies_ms: list[float] = []
    samples_meta: list[dict[str, Any]] = []
    wall0 = time.perf_counter()
    for batch_index, batch in enumerate(tqdm(batches, desc=f"{backend.name} bs{opts.batch_size}", unit="batch",
                                             disable=not opts.progress)):
        inputs = assemble(dataset, card, batch, fixed)
        check_finite(inputs, batch, "input")
        padded_to = batch_input_length(card, inputs)
        t0 = time.perf_counter()
        outputs = backend.infer(inputs)
        latencies_ms.append((time.perf_counter() - t0) * 1000.0)
        for spec in card.outputs:
            if spec.name not in outputs:
                raise RunError(f"backend {backend.name} returned no output {spec.name!r}")
        check_finite(outputs, batch, "output")
        for row, sample in enumerate(batch):
            shapes = {}
            for spec in card.outputs:
                ref = write_bin(out / spec.name / f"{sample.key}.bin", outputs[spec.name][row], spec.dtype)
                shapes[spec.name] = list(ref.shape)
            samples_meta.append({"key": sample.key, "batch": batch_index, "shapes": shapes,
                                 "input_length": padded_to})
    wall_s = time.perf_counter() - wall0
    # A backend may have work to do once the timed batches are done (e.g. write a profile into the run dir);
    # what it returns is added to run.json.
    finish = getattr(backend, "finish", None)
    extra = finish(out) if callable(finish) else None
    return finish_run(out, config=config, backend=backend.name, backend_info=backend.info(), card=card,
                      dataset=dataset, batch_size=opts.batch_size, batches=len(batches), latencies_ms=latencies_ms,
                      wall_s=wall_s, samples_meta=samples_meta, model_path=model_path,
                      batching="sorted by length" if opts.sort_by_length and opts.batch_size > 1 else "manifest order",
                      warmup=opts.warmup, extra={"max_batch_frames": budget, **(extra or {})})
