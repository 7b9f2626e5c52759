"""A dataset dir through a streaming graph, chunk by chunk, into the same run dir the offline runners write.

Several utterances stream at once, one state row each (``--batch-size``): every row starts from zeros,
gets its utterance's chunks, pads its last chunk and flushes; a row that has ended gets empty end chunks
(whose outputs are dropped) until the slowest stream of the group ends. Each sample's concatenated
probabilities go to ``<run>/probs/<key>.bin`` with its frame count in ``probs_lengths/``, so postprocess
scores the run unchanged. ``--show-partials`` prints each stream's greedy transcript as it grows.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from core.dataset_dir import DatasetDir, Sample, write_bin
from core.model_card import ModelCard
from core.run_dir import RunError, cached_run, finish_run
from core.stream_runner import StreamError, StreamRunner, ort_step, spec_from_card
from core.streaming import CHUNK_OUTPUTS, torch_step
from families.registry import family_module, streaming_module
from runners.backend_spec import card_checkpoint

log = logging.getLogger("runners.stream")


def features_input(card: ModelCard, dataset: DatasetDir) -> str:
    """The dataset's feature input (what preprocess wrote for the offline card, e.g. DeepSpeech2's spect)."""
    name = card.streaming.features_input
    names = [s["name"] for s in dataset.header["inputs"]]
    if name not in names:
        raise RunError(f"{dataset.path} has no feature input {name!r} for this streaming model (has {names})")
    return name


def _load_features(dataset: DatasetDir, sample: Sample, name: str) -> np.ndarray:
    x = dataset.load(sample, name)
    return np.ascontiguousarray(x[..., :sample.length], dtype=np.float32)


def stream_group(runner: StreamRunner, features: list[np.ndarray], on_chunk: Callable[[int, np.ndarray], None]
                 ) -> tuple[list[np.ndarray], list[float], list[int]]:
    """Stream several utterances side by side; returns each one's probabilities, per-chunk compute (ms), and
    the index of the chunk call at which each stream emitted its first output frame (-1: none)."""
    spec = runner.spec
    c, rows = spec.chunk_frames, len(features)
    state = {s.name: s.zeros(rows) for s in spec.states}
    outs: list[list[np.ndarray]] = [[] for _ in range(rows)]
    first = [-1] * rows
    done = [False] * rows
    latencies: list[float] = []
    t = call = 0
    while not all(done):
        chunk = np.zeros((rows, *spec.feature_shape, c), dtype=np.float32)
        lengths = np.zeros(rows, dtype=np.int64)
        end = np.ones(rows, dtype=bool)
        for row, f in enumerate(features):
            if done[row]:
                continue
            n = max(0, min(c, f.shape[-1] - t))
            chunk[row, ..., :n] = f[0, ..., t:t + n]
            lengths[row], end[row] = n, t + c >= f.shape[-1]
        t0 = time.perf_counter()
        probs, counts, state = runner.step(chunk, lengths, end, state)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        for row in range(rows):
            if done[row]:
                continue
            new = probs[row, :int(counts[row])]
            if len(new):
                outs[row].append(new)
                if first[row] < 0:
                    first[row] = call
                on_chunk(row, np.concatenate(outs[row]))
            done[row] = bool(end[row])
        t += c
        call += 1
    empty = np.zeros((0, spec.classes), np.float32)
    return [np.concatenate(o) if o else empty for o in outs], latencies, first


def run_streaming_dataset(runner: StreamRunner, backend_name: str, backend_info: dict[str, Any], dataset: DatasetDir,
                          card: ModelCard, out: Path, *, streams: int = 1, warmup: int = 1,
                          progress: bool = True, force: bool = False, show_partials: bool = False,
                          model_path: Path | None = None) -> dict[str, Any]:
    if streams < 1:
        raise RunError(f"--batch-size (parallel streams) must be at least 1, not {streams}")
    config = {"backend": backend_name, "backend_info": backend_info, "model_sha256": card.onnx_sha256,
              "dataset": str(dataset.path.resolve()), "dataset_hash": dataset.header.get("config_hash"),
              "batch_size": streams, "warmup": warmup, "streaming": True,
              "chunk_frames": runner.spec.chunk_frames}
    cached = cached_run(out, config, force)
    if cached:
        return cached
    name = features_input(card, dataset)
    samples = list(dataset.samples)
    if not samples:
        raise RunError(f"{dataset.path}: no samples")
    run_card = card.replace(outputs=tuple(o for o in card.outputs if o.name in CHUNK_OUTPUTS))
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)
    for o in run_card.outputs:
        (out / o.name).mkdir(exist_ok=True)
    latency = dict(card.streaming.latency or {})
    frame_ms = float(latency.get("frame_ms", 10.0))
    first_features = _load_features(dataset, samples[0], name)
    for _ in range(warmup):
        stream_group(runner, [first_features], lambda row, p: None)

    groups = [samples[i:i + streams] for i in range(0, len(samples), streams)]
    chunk_ms: list[float] = []
    group_ms: list[float] = []
    first_partial_ms: list[float] = []
    samples_meta: list[dict[str, Any]] = []
    wall0 = time.perf_counter()
    for index, group in enumerate(tqdm(groups, desc=f"{backend_name} streaming x{streams}", unit="group",
                                       disable=not progress)):
        features = [_load_features(dataset, s, name) for s in group]
        last_text = [""] * len(group)

        def on_chunk(row: int, probs: np.ndarray) -> None:
            if not show_partials:
                return
            text = card.decode(probs, None)
            if text != last_text[row]:
                last_text[row] = text
                print(f"{group[row].key} [{probs.shape[0]} frames] {text}", flush=True)

        try:
            results, latencies, first = stream_group(runner, features, on_chunk)
        except StreamError as exc:
            raise RunError(f"samples {[s.key for s in group]}: {exc}") from None
        chunk_ms.extend(latencies)
        group_ms.append(sum(latencies))
        for row, (sample, probs) in enumerate(zip(group, results)):
            if first[row] >= 0:
                # Audio that had to arrive before the first output: the chunks up to that call; plus the
                # compute of those calls.
                first_partial_ms.append((first[row] + 1) * runner.spec.chunk_frames * frame_ms
                                        + sum(latencies[:first[row] + 1]))
            ref_p = write_bin(out / "probs" / f"{sample.key}.bin", probs, "float32")
            ref_l = write_bin(out / "probs_lengths" / f"{sample.key}.bin", np.array([probs.shape[0]]), "int64")
            samples_meta.append({"key": sample.key, "batch": index,
                                 "shapes": {"probs": list(ref_p.shape), "probs_lengths": list(ref_l.shape)}})
            if show_partials:
                print(f"{sample.key} [final] {card.decode(probs, None)}", flush=True)
    wall_s = time.perf_counter() - wall0
    extra = {"streaming": {
        "chunk_frames": runner.spec.chunk_frames,
        "streams": streams,
        "chunks": len(chunk_ms),
        "chunk_compute_ms": {"p50": float(np.percentile(chunk_ms, 50)), "p90": float(np.percentile(chunk_ms, 90)),
                             "per": "chunk call (all streams of a group)"},
        "first_partial_ms": {"p50": float(np.percentile(first_partial_ms, 50)) if first_partial_ms else None,
                             "what": "audio up to the chunk that first emitted output, plus compute so far"},
        "latency": latency,
    }}
    return finish_run(out, config=config, backend=backend_name, backend_info=backend_info, card=run_card,
                      dataset=dataset, batch_size=streams, batches=len(groups), latencies_ms=group_ms,
                      wall_s=wall_s, samples_meta=samples_meta, model_path=model_path,
                      batching=f"{streams} streams side by side, manifest order", warmup=warmup, extra=extra)


def streaming_backend(args: Any, card: ModelCard) -> tuple[StreamRunner, str, dict[str, Any]]:
    """The step function for `--backend onnxruntime` (the graph) or `--backend torch` (the checkpoint's module)."""
    spec = spec_from_card(card)
    if args.backend == "onnxruntime":
        import onnxruntime as ort

        providers = [p for p in args.providers.split(",") if p]
        return (StreamRunner(spec, ort_step(args.model, threads=args.threads, providers=providers)), "onnxruntime",
                {"onnxruntime": ort.__version__, "providers": providers, "intra_op_threads": args.threads})
    if args.backend == "torch":
        import torch

        checkpoint = args.checkpoint or card_checkpoint(card)
        if args.threads:
            torch.set_num_threads(args.threads)
        model = family_module(card.family).load(checkpoint)
        streaming = streaming_module(card.family).streaming_model(model.module, spec.chunk_frames)
        return (StreamRunner(spec, torch_step(streaming)), "torch",
                {"torch": torch.__version__, "threads": torch.get_num_threads(), "checkpoint": str(checkpoint)})
    raise RunError(f"--streaming runs on --backend onnxruntime or torch, not {args.backend}")
