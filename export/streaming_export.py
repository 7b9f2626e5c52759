"""Streaming export of any streaming family: build the chunk graph, gate it on parity, write it with its card.

The gate runs every sweep utterance three ways and compares each with the family's offline forward of the
whole utterance: the streaming module in PyTorch, the exported graph in onnxruntime, and the graph again
with the features pushed in odd-sized pieces (the runner's buffering must not matter). It passes only
if every rollout's probabilities are within ``atol`` of the offline ones and every greedy transcript is
identical. Nothing is written unless it passes.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from core.card import CARD_VERSION, ModelCard, card_path_for, versions
from core.ctc import greedy_decode
from core.parity import ParityError
from core.recipe import LoadedModel, sha256_file
from core.stream_runner import StreamRunner, ort_step, rollout
from core.streaming import (StreamingSpec, describe_io, export_streaming_onnx, json_safe, max_abs_diff, state_card,
                              sweep_lengths, torch_step, write_streaming_export)
from families.registry import family_module, streaming_module

log = logging.getLogger("export")

STREAMING_ATOL = 1e-4


def offline_probs(model: LoadedModel, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The offline forward of one utterance of `length` frames: its features and valid probabilities."""
    inputs = model.make_inputs([length], None)
    with torch.no_grad():
        outs = model.module(*(inputs[s.name] for s in model.inputs))
    names = [s.name for s in model.outputs]
    probs_spec = model.outputs[0]
    probs = outs[0].numpy()
    if probs_spec.lengths_from in names:
        frames = int(outs[names.index(probs_spec.lengths_from)][0])
    else:
        frames = probs.shape[1]
    return inputs[model.inputs[0].name].numpy(), probs[:, :frames]


def streaming_parity(model: LoadedModel, streaming: torch.nn.Module, onnx_path: Path, *, threads: int = 0,
                     atol: float = STREAMING_ATOL, lengths: list[int] | None = None) -> dict[str, Any]:
    spec: StreamingSpec = streaming.streaming_spec
    labels, blank = model.card_facts["labels"], model.card_facts["blank_index"]
    delimiter = model.card_facts.get("word_delimiter")
    if delimiter == " ":
        delimiter = None
    runners = {"torch": (StreamRunner(spec, torch_step(streaming)), None),
               "onnxruntime": (StreamRunner(spec, ort_step(onnx_path, threads=threads)), None)}
    runners["onnxruntime_pushed_in_pieces"] = (runners["onnxruntime"][0], 7)
    report: dict[str, Any] = {"atol": atol, "chunk_frames": spec.chunk_frames, "cases": [], "passed": True,
                              "max_abs": {k: 0.0 for k in runners}}
    for length in lengths or sweep_lengths(spec):
        features, ref = offline_probs(model, length)
        ref_text = greedy_decode(ref[0], None, labels, blank, delimiter)
        case: dict[str, Any] = {"frames": length, "output_frames": int(ref.shape[1])}
        for name, (runner, pieces) in runners.items():
            got = rollout(runner, features, pieces)
            diff = max_abs_diff(got, ref) if got.shape == ref.shape else float("inf")
            same_text = got.shape == ref.shape and greedy_decode(got[0], None, labels, blank, delimiter) == ref_text
            case[name] = {"max_abs": diff, "same_transcript": same_text, "output_frames": int(got.shape[1])}
            report["max_abs"][name] = max(report["max_abs"][name], diff)
            if not (diff <= atol and same_text):
                report["passed"] = False
        report["cases"].append(case)
    return report


def export_streaming_family(family: str, source: Path, chunk_frames: int, out_dir: Path, *, name: str = "model",
                            threads: int = 0) -> ModelCard:
    """Load the family's artifact, build its streaming form, export, gate, and write `<name>.onnx` + card."""
    model: LoadedModel = family_module(family).load(source)
    streaming = streaming_module(family).streaming_model(model.module, chunk_frames)
    spec: StreamingSpec = streaming.streaming_spec
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".stream-") as tmp_name:
        candidate = Path(tmp_name) / f"{name}.onnx"
        t0 = time.perf_counter()
        proto = export_streaming_onnx(streaming, candidate, opset=model.opset)
        onnx.save(proto, str(candidate))
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        parity = streaming_parity(model, streaming, candidate, threads=threads)
        if not parity["passed"]:
            raise ParityError(f"streaming rollout differs from the offline forward (atol {parity['atol']}): "
                              f"max abs {parity['max_abs']}", parity)
        parity_s = time.perf_counter() - t0
    inputs, outputs = describe_io(spec)
    facts = model.card_facts
    entries: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "family": family,
        "onnx": f"{name}.onnx",
        "precision": "fp32",
        "made_by": "torch.onnx.export (TorchScript-based, dynamo=False) of streaming_forward",
        "opset": model.opset,
        "inputs": inputs,
        "outputs": outputs,
        "labels": facts["labels"],
        "blank_index": facts["blank_index"],
        "word_delimiter": facts.get("word_delimiter"),
        "feature": facts["feature"],
        "metrics_convention": facts.get("metrics_convention"),
        "architecture": facts.get("architecture"),
        # The offline features input: the dataset dir folder a streaming dataset run reads.
        "streaming": {**state_card(spec), "features_input": model.inputs[0].name},
        "source": model.source,
        "export_options": {"streaming": True, "chunk_frames": spec.chunk_frames},  # streaming_cli's up-to-date key
        "parity": {**parity, "kind": "streaming rollout vs offline forward"},
        "timings_s": {"export": round(export_s, 3), "parity": round(parity_s, 3)},
        "versions": versions(),
    }
    card = ModelCard.from_dict(json_safe(entries), f"the {family} streaming card")
    return write_streaming_export(proto, card, out_dir, name)[1]


def streaming_cli(args: Any, family: str, source: Path) -> int:
    """`python -m export FAMILY --streaming --chunk-frames N`: exit 0, 2 (bad input) or 3 (parity failed)."""
    if not args.streaming:
        log.error("--chunk-frames is an option of --streaming exports; add --streaming")
        return 2
    if args.chunk_frames is None or args.chunk_frames < 1:
        log.error("--streaming needs --chunk-frames N, a positive number of feature frames per chunk")
        return 2
    if getattr(args, "static_shape", None):
        log.error("--static-shape does not apply to --streaming: the chunk graph's shape is fixed by --chunk-frames")
        return 2
    if not source.is_file():
        log.error("checkpoint not found: %s", source)
        return 2
    from core.gated_export import up_to_date

    onnx_path = args.out / f"{args.name}.onnx"
    options = {"streaming": True, "chunk_frames": args.chunk_frames}
    if not args.force and up_to_date(onnx_path, sha256_file(source), options):
        log.info("%s is up to date (same checkpoint and chunk size, parity passed); --force to redo", onnx_path)
        return 0
    try:
        card = export_streaming_family(family, source, args.chunk_frames, args.out, name=args.name,
                                       threads=args.threads)
    except ParityError as exc:
        failed = args.out / f"{args.name}.parity_failed.json"
        failed.write_text(json.dumps(json_safe(exc.report), indent=2) + "\n")
        log.error("%s\nfull report: %s", exc, failed)
        return 3
    except ValueError as exc:  # CheckpointError, StreamingRefused: the message says what is wrong
        log.error("%s: %s", source, exc)
        return 2
    streaming = card.streaming
    lat = streaming.latency or {}
    log.info("wrote %s and %s", onnx_path, card_path_for(onnx_path))
    log.info("chunk %d frames; states %s; output delay %d frames; latency %.0f ms (algorithmic %.0f ms)",
             streaming.chunk_frames, ", ".join(s.name for s in streaming.states),
             lat["output_delay_frames"], lat["latency_ms"], lat["algorithmic_latency_ms"])
    log.info("parity passed: max abs %s", card.parity.max_abs)
    return 0
