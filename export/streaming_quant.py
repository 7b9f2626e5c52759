"""Static int8 (QDQ) of a streaming graph, calibrated chunk by chunk with the caches the fp32 graph produced.

A streaming graph's activations depend on its state inputs as much as on its chunk, so calibrating it on
chunks with zero states (what a plain per-input reader would give) measures the ranges of a stream's
first chunk only. As the ESP-DL guide does, each calibration utterance is rolled out through the fp32
graph, and every chunk is recorded together with the state tensors the fp32 graph fed it; those feeds
are onnxruntime's calibration data. The int8 graph is then rolled out on its own (carrying its own
states, as deployed) and gated against the fp32 streaming rollout (argmax agreement over valid frames,
transcript CER), with WER against the references for int8 streaming, fp32 streaming and the offline
model (which fp32 streaming equals, by the export gate).

Made through ``python -m export variant --kind int8-static --model DIR/model.onnx --dataset DS`` when
the card is a streaming card.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.card import CardError, ModelCard, load_model_and_card, versions
from core.dataset_dir import DatasetDir, Sample
from core.metrics import corpus_scores
from core.stream_runner import StreamRunner, ort_step, rollout, spec_from_card
from core.streaming import json_safe, write_streaming_export

log = logging.getLogger("export")

# Conv carries the two front convolutions and the Lookahead, MatMul the classifier; the RNN cells stay
# fp32 (onnxruntime has no QDQ kernels for GRU/LSTM).
STREAMING_INT8_OP_TYPES = ["Conv", "MatMul", "Gemm"]


class StreamingQuantError(RuntimeError):
    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


def utterance_features(dataset: DatasetDir, card: ModelCard, sample: Sample) -> np.ndarray:
    name = card.streaming.features_input
    return np.ascontiguousarray(dataset.load(sample, name)[..., :sample.length], dtype=np.float32)


def chunk_feeds(runner: StreamRunner, features: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Every graph feed of one utterance's rollout through `runner`: each chunk with the states it received."""
    spec = runner.spec
    c = spec.chunk_frames
    state = {s.name: s.zeros(1) for s in spec.states}
    feeds = []
    total = features.shape[-1]
    for t in range(0, max(total, 1), c):
        n = min(c, total - t)
        chunk = np.zeros((1, *spec.feature_shape, c), np.float32)
        chunk[..., :n] = features[..., t:t + n]
        lengths, end = np.array([n], np.int64), np.array([t + c >= total])
        feeds.append({"chunk": chunk, "chunk_lengths": lengths, "end": end, **state})
        _, _, state = runner.step(chunk, lengths, end, state)
    return feeds


class ChunkCalibrationReader:
    """onnxruntime's CalibrationDataReader: the fp32 rollout's chunk feeds, caches included."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def _spread(samples: list[Sample], n: int) -> list[Sample]:
    if n >= len(samples):
        return list(samples)
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in sorted(set(idx.tolist()))]


def _rollout(runner: StreamRunner, features: np.ndarray) -> np.ndarray:
    return rollout(runner, features)[0]


def make_streaming_int8(onnx_path: Path, card: ModelCard, dataset: DatasetDir, out_dir: Path, name: str, *,
                        calibration_samples: int = 16, parity_samples: int = 16, min_argmax_agreement: float = 0.97,
                        max_text_cer: float = 0.02, per_channel: bool = False, threads: int = 0) -> ModelCard:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    spec = spec_from_card(card)
    fp32 = StreamRunner(spec, ort_step(onnx_path, threads=threads))
    calib = _spread(dataset.samples, calibration_samples)
    feeds = [f for s in calib for f in chunk_feeds(fp32, utterance_features(dataset, card, s))]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".calib-") as tmp:
        candidate = Path(tmp) / f"{name}.onnx"
        quantize_static(onnx_path, candidate, ChunkCalibrationReader(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=STREAMING_INT8_OP_TYPES, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        int8 = StreamRunner(spec, ort_step(candidate, threads=threads))
        report = streaming_int8_report(fp32, int8, dataset, card, _spread(dataset.samples, parity_samples))
        report["thresholds"] = {"min_argmax_agreement": min_argmax_agreement, "max_text_cer": max_text_cer}
        report["passed"] = bool(report["argmax_agreement"] >= min_argmax_agreement
                                and report["text_cer_vs_fp32"] <= max_text_cer)
        if not report["passed"]:
            raise StreamingQuantError(
                f"int8 streaming graph differs from fp32 streaming beyond the gate: argmax agreement "
                f"{report['argmax_agreement']:.4f} (min {min_argmax_agreement}), transcript CER "
                f"{report['text_cer_vs_fp32']:.4f} (max {max_text_cer})", report)
        import onnx

        proto = onnx.load(str(candidate))
    entries = card.to_dict()
    entries.update({
        "onnx": f"{name}.onnx",
        "precision": "int8",
        "made_by": "onnxruntime.quantization.quantize_static (QDQ) of the fp32 streaming graph",
        "variant": {"kind": "int8-static", "format": "QDQ", "op_types": STREAMING_INT8_OP_TYPES,
                    "weights": "int8 (QInt8)" + (" per channel" if per_channel else ""),
                    "activations": "uint8 (QUInt8), calibrated with MinMax",
                    "calibration": {"what": "chunk by chunk, each chunk with the state tensors the fp32 graph fed "
                                            "it (ESP-DL)", "samples": len(calib), "chunks": len(feeds),
                                    "dataset": str(dataset.path)},
                    "fp32_onnx": str(onnx_path), "fp32_sha256": card.onnx_sha256},
        "parity": {**report, "kind": "int8 streaming rollout vs fp32 streaming rollout (lossy gate)"},
        "versions": versions(),
    })
    new_card = ModelCard.from_dict(json_safe(entries), f"the int8 card of {onnx_path}")
    return write_streaming_export(proto, new_card, out_dir, name)[1]


def streaming_int8_report(fp32: StreamRunner, int8: StreamRunner, dataset: DatasetDir, card: ModelCard,
                          samples: list[Sample]) -> dict[str, Any]:
    agree = total = 0
    refs, hyp32, hyp8 = [], [], []
    for s in samples:
        x = utterance_features(dataset, card, s)
        a, b = _rollout(fp32, x), _rollout(int8, x)
        if a.shape != b.shape:
            raise StreamingQuantError(f"sample {s.key}: int8 rollout gave {b.shape[0]} frames, fp32 {a.shape[0]}")
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
        refs.append(s.transcript)
        hyp32.append(card.decode(a, None))
        hyp8.append(card.decode(b, None))
    convention = card.metrics
    vs_fp32 = corpus_scores(hyp32, hyp8, convention=convention)
    w32 = corpus_scores(refs, hyp32, convention=convention)
    w8 = corpus_scores(refs, hyp8, convention=convention)
    return {
        "samples": len(samples),
        "argmax_agreement": agree / total if total else 1.0,
        "identical_transcripts": sum(x == y for x, y in zip(hyp32, hyp8)),
        "text_cer_vs_fp32": float(vs_fp32["cer"]),
        "wer": {"int8_streaming": w8["wer"], "fp32_streaming": w32["wer"],
                "offline": w32["wer"], "offline_note": "fp32 streaming equals offline (export gate)"},
        "cer": {"int8_streaming": w8["cer"], "fp32_streaming": w32["cer"]},
    }


def streaming_variant_cli(args: Any) -> int | None:
    """`python -m export variant` on a streaming card: int8-static with cached calibration; None otherwise."""
    try:
        _, card = load_model_and_card(args.model, args.card)
    except CardError:
        return None  # the variant command reports it
    if card.streaming is None:
        return None
    if args.kind != "int8-static":
        log.error("%s is a streaming export: its variant is int8-static (calibrated with the fp32 caches), "
                  "not %s", args.model, args.kind)
        return 2
    if args.max_delta_wer is not None:
        log.error("%s is a streaming export: --max-delta-wer (per-node fallback) is not supported for it yet",
                  args.model)
        return 2
    if card.precision_name != "fp32":
        log.error("%s is already a %s variant; make variants from the fp32 export", args.model, card.precision)
        return 2
    try:
        dataset = DatasetDir.open(args.dataset)
        out = make_streaming_int8(args.model, card, dataset, args.out or args.model.parent,
                                  args.name or f"{args.model.stem}.int8-static",
                                  calibration_samples=args.calibration_samples, parity_samples=args.parity_samples,
                                  min_argmax_agreement=args.min_argmax_agreement, max_text_cer=args.max_text_cer,
                                  per_channel=args.per_channel, threads=args.threads)
    except StreamingQuantError as exc:
        log.error("%s", exc)
        return 3 if exc.report else 2
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    par = out.parity.to_dict()
    log.info("wrote %s: calibrated on %d chunks with the fp32 caches; argmax agreement %.4f, WER int8 %.3f, "
             "fp32 streaming %.3f", out.onnx, out.variant["calibration"]["chunks"], par["argmax_agreement"],
             par["wer"]["int8_streaming"], par["wer"]["fp32_streaming"])
    return 0
