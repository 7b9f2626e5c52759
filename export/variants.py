"""Variants of an exported model: fp16, int8 dynamic, int8 static (QDQ), and onnxruntime's offline
transformer fusions (fp32, onnxruntime only), each with its own card.

A variant is made from the fp32 ONNX file and its card, never from the checkpoint, and is used only
after a lossy parity gate against that fp32 graph on real inputs from a dataset dir: tensors of a
quantised model move by far more than fp32 tolerances, so what is gated is what a user reads, the
argmax path and the decoded text (thresholds below, recorded in the card).

Defaults per family (which op types to quantise, the fusions to expect) are its Family's variant_defaults.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from core.card import ModelCard, card_path_for, versions, write_card
from core.dataset_dir import DatasetDir, Sample
from core.metrics import corpus_scores
from core.onnx_graph import graph_report
from core.ort_session import create_session
from core.recipe import sha256_file
from export.attention_fusion import fuse_attention
from export.fallback import FallbackError, Measure, choose_fallback
from families.registry import get_family

log = logging.getLogger("export")

KINDS = ("fp16", "int8-dynamic", "int8-static", "fused")
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
# Lossy gate defaults: a variant may flip a few frames' argmax, but must keep almost every transcript.
MIN_ARGMAX_AGREEMENT = 0.97
MAX_TEXT_CER = 0.02


class VariantError(RuntimeError):
    """A variant that cannot be made, or that failed its parity gate (the report is attached)."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


@dataclass
class VariantOptions:
    kind: str
    op_types: list[str] | None = None  # None: the family's default for this kind
    exclude_nodes: list[str] = field(default_factory=list)
    per_channel: bool = False
    calibration: str = "MinMax"
    calibration_samples: int = 64
    parity_samples: int = 32
    min_argmax_agreement: float = MIN_ARGMAX_AGREEMENT
    max_text_cer: float = MAX_TEXT_CER
    keep_io_types: bool = True
    threads: int = 0
    # int8 kinds: keep the most sensitive nodes in fp32, as few as hold ΔWER (points, on --dataset) within this
    max_delta_wer: float | None = None
    sweep_samples: int = 64


def spread(samples: list[Sample], n: int) -> list[Sample]:
    """`n` samples spread evenly over the dataset (short and long ones, all speakers), deterministic."""
    if n >= len(samples):
        return list(samples)
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in sorted(set(idx.tolist()))]


def batch1_inputs(dataset: DatasetDir, card: ModelCard, samples: list[Sample]) -> Iterator[dict[str, np.ndarray]]:
    for s in samples:
        yield {spec.name: dataset.load(s, spec.name).astype(spec.dtype, copy=False) for spec in card.inputs}


class DatasetCalibrationReader:
    """onnxruntime's CalibrationDataReader over a preprocessed dataset dir, batch 1; `set_range` (with `len`)
    lets quantize_static collect a few samples at a time (its CalibStridedMinMax option)."""

    def __init__(self, dataset: DatasetDir, card: ModelCard, samples: list[Sample]) -> None:
        self._dataset, self._card, self._samples = dataset, card, samples
        self._iter = batch1_inputs(dataset, card, samples)

    def __len__(self) -> int:
        return len(self._samples)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = batch1_inputs(self._dataset, self._card, self._samples[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:  # part of the interface; calibration here reads the data once
        pass


def convert(src: Path, dst: Path, card: ModelCard, opts: VariantOptions, dataset: DatasetDir | None,
            scratch: Path | None = None) -> dict[str, Any]:
    """Write the variant model to `dst`; return what was done (for the card). int8-static keeps its
    pre-processed graph and calibration ranges in `scratch` when given, so a sweep calibrates once."""
    op_types = _op_types(card, opts)
    done: dict[str, Any] = {"kind": opts.kind, "op_types": op_types, "exclude_nodes": list(opts.exclude_nodes)}
    if opts.kind == "fused":
        # onnxruntime's offline transformer fusions (its session optimiser does not apply them): the
        # result holds com.microsoft contrib ops, so it runs on onnxruntime only, never on atc/OpenVINO.
        fusion = get_family(card.family).variant_defaults.get("fused")
        if not fusion:
            raise VariantError(f"no onnxruntime transformer fusion is declared for family {card.family!r}")
        from onnxruntime.transformers.optimizer import optimize_model

        # Self-attention first, by this repo's pass (onnxruntime's does not match the exporter's SDPA form),
        # then onnxruntime's fusions for the rest (SkipLayerNormalization, BiasGelu, ...).
        model = onnx.load(str(src))
        attention = fuse_attention(model)
        onnx.save(model, str(dst))
        optimised = optimize_model(str(dst), model_type=fusion["model_type"], num_heads=0, hidden_size=0,
                                   opt_level=0, use_gpu=False)
        optimised.save_model_to_file(str(dst))
        done.update({"op_types": "fp32", "model_type": fusion["model_type"], "runs_on": "onnxruntime only",
                     "attention_blocks_fused": attention,
                     "fused": {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}})
        return done
    if opts.kind == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=opts.keep_io_types,
                                         node_block_list=opts.exclude_nodes or None)
        onnx.save(model, str(dst))
        done["keep_io_types"] = opts.keep_io_types
        done["op_types"] = "all float ops"
        return done
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if opts.kind == "int8-dynamic":
        quantize_dynamic(src, dst, op_types_to_quantize=op_types, per_channel=opts.per_channel,
                         weight_type=QuantType.QInt8, nodes_to_exclude=opts.exclude_nodes or None)
        done.update({"weights": "int8 (QInt8), per tensor" if not opts.per_channel else "int8 per channel",
                     "activations": "quantised at run time (dynamic)"})
        return done
    if opts.kind != "int8-static":
        raise VariantError(f"unknown variant kind {opts.kind!r}; one of {', '.join(KINDS)}")
    if dataset is None:
        raise VariantError("int8-static needs --dataset (calibration inputs)")
    if opts.calibration not in CALIBRATION_METHODS:
        raise VariantError(f"--calibration must be one of {', '.join(CALIBRATION_METHODS)}")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    calib = spread(dataset.samples, opts.calibration_samples)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".calib-") as tmp:
        keep = scratch or Path(tmp)
        pre, cache = keep / "pre.onnx", keep / "calibration.json"
        if not pre.is_file():
            _pre_process(src, pre)
        # The ranges cover every tensor of the op types, so one calibration serves any set of excluded nodes.
        reader = None if cache.is_file() else DatasetCalibrationReader(dataset, card, calib)
        quantize_static(pre, dst, reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=op_types, per_channel=opts.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=opts.exclude_nodes or None,
                        calibrate_method=getattr(CalibrationMethod, opts.calibration),
                        extra_options={"CalibTensorRangeSymmetric": False, **_one_sample_at_a_time(opts)},
                        calibration_cache_path=cache)
    done.update({"format": "QDQ", "weights": "int8 (QInt8)", "activations": "uint8 (QUInt8), calibrated",
                 "calibration": {"method": opts.calibration, "samples": len(calib),
                                 "dataset": str(dataset.path)}})
    return done


def _one_sample_at_a_time(opts: VariantOptions) -> dict[str, Any]:
    """Entropy and Percentile build histograms from the activations of all samples collected at once, which
    fails on inputs of different lengths (numpy cannot stack them) and holds every activation of every sample
    in memory; collected one sample at a time, their histograms merge instead. MinMax keeps only per-sample
    minima and maxima, so it needs neither."""
    return {"CalibStridedMinMax": 1} if opts.calibration in ("Entropy", "Percentile") else {}


def _op_types(card: ModelCard, opts: VariantOptions) -> list[str] | None:
    """The op types to quantise: the options', else the family's default for the kind (None: onnxruntime's)."""
    if opts.op_types is not None:
        return opts.op_types
    return get_family(card.family).variant_defaults.get(opts.kind, {}).get("op_types")


def _pre_process(src: Path, dst: Path) -> None:
    """onnxruntime's recommended pre-processing (symbolic shapes + folding) before QDQ placement."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class SweepJudge:
    """The fp32 graph's output distributions and WER on the sweep utterances, once; then any variant file
    against them (ΔWER in points, mean KL divergence per valid frame)."""

    def __init__(self, fp32: Path, card: ModelCard, dataset: DatasetDir, samples: list[Sample], threads: int) -> None:
        self.card, self.samples, self.threads = card, samples, threads
        self.inputs = list(batch1_inputs(dataset, card, samples))
        self.refs = [s.transcript for s in samples]
        if not any(self.refs):
            raise VariantError(f"{dataset.path}: no transcripts, and the fallback sweep measures WER against them")
        self.logp, texts = self._run(fp32)
        self.wer = corpus_scores(self.refs, texts, convention=card.metrics)["wer"]

    def _run(self, model: Path) -> tuple[list[np.ndarray], list[str]]:
        sess = create_session(model, threads=self.threads)
        names = self.card.output_names
        logp, texts = [], []
        for sample, inputs in zip(self.samples, self.inputs):
            out = dict(zip(names, sess.run(names, inputs)))
            n = _valid_frames(self.card, out, sample)
            scores = out[self.card.scores_output.name][0][:n]
            logp.append(_log_softmax(scores.astype(np.float64)))
            texts.append(self.card.decode(scores.astype(np.float32), n))
        return logp, texts

    def __call__(self, model: Path) -> Measure:
        logp, texts = self._run(model)
        frames = sum(len(p) for p in logp)
        kl = sum(float((np.exp(p) * (p - q)).sum()) for p, q in zip(self.logp, logp)) / max(frames, 1)
        wer = corpus_scores(self.refs, texts, convention=self.card.metrics)["wer"]
        # A variant that makes NaN/inf is the most sensitive there is, not an unorderable one.
        return Measure(delta_wer=100 * (wer - self.wer), kl=kl if np.isfinite(kl) else float("inf"))


def sweep_fallback(onnx_path: Path, card: ModelCard, opts: VariantOptions, dataset: DatasetDir,
                   scratch: Path) -> dict[str, Any]:
    """export/fallback.py's choice of fp32 nodes for this int8 variant, measured on `dataset`."""
    if opts.kind not in ("int8-dynamic", "int8-static"):
        raise VariantError(f"--max-delta-wer applies to the int8 kinds, not {opts.kind}")
    samples = spread(dataset.samples, opts.sweep_samples)
    judge = SweepJudge(onnx_path, card, dataset, samples, opts.threads)
    source = onnx_path
    if opts.kind == "int8-static":
        # Node names as the quantiser sees them: after its pre-processing (which convert reuses from scratch).
        source = scratch / "pre.onnx"
        _pre_process(onnx_path, source)
    op_types = _op_types(card, opts)
    if op_types is None:
        from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

        op_types = list(QDQRegistry if opts.kind == "int8-static" else IntegerOpsRegistry)
    kept = set(opts.exclude_nodes)
    candidates = [n.name for n in onnx.load(str(source)).graph.node
                  if n.op_type in op_types and n.name and n.name not in kept]

    def quantise(excluded: list[str], out: Path) -> None:
        convert(onnx_path, out, card, replace(opts, exclude_nodes=[*opts.exclude_nodes, *excluded]), dataset, scratch)

    try:
        report = choose_fallback(candidates, quantise, judge, opts.max_delta_wer or 0.0, scratch)
    except FallbackError as exc:
        raise VariantError(f"{opts.kind} variant of {onnx_path}: {exc}") from exc
    return report | {"dataset": str(dataset.path), "samples": len(samples), "fp32_wer": judge.wer,
                     "measure": "ΔWER against the fp32 graph's WER on these utterances; nodes ranked by the KL "
                                "divergence of the outputs with that node alone quantised"}


def _valid_frames(card: ModelCard, outputs: dict[str, np.ndarray], sample: Sample) -> int:
    scores = card.scores_output
    if scores.lengths_from:
        return int(np.asarray(outputs[scores.lengths_from]).reshape(-1)[0])
    return card.output_frames(sample.length)


def lossy_parity(fp32: Path, variant: Path, card: ModelCard, dataset: DatasetDir,
                 opts: VariantOptions) -> dict[str, Any]:
    """Compare the variant with the fp32 graph on real inputs: argmax agreement and decoded text."""
    scores = card.scores_output
    names = card.output_names
    ref_sess = create_session(fp32, threads=opts.threads)
    var_sess = create_session(variant, threads=opts.threads)
    agree = total = nonfinite = 0
    max_abs = 0.0
    ref_text, var_text = [], []
    samples = spread(dataset.samples, opts.parity_samples)
    for sample, inputs in zip(samples, batch1_inputs(dataset, card, samples)):
        ref = dict(zip(names, ref_sess.run(names, inputs)))
        got = dict(zip(names, var_sess.run(names, inputs)))
        n = _valid_frames(card, ref, sample)
        a = ref[scores.name][0][:n].astype(np.float64)
        b = got[scores.name][0][:n].astype(np.float64)
        # argmax takes NaN for the maximum and max() skips it: count non-finite values before comparing.
        nonfinite += int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
        if a.size and np.isfinite(a).all() and np.isfinite(b).all():
            max_abs = max(max_abs, float(np.abs(a - b).max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
        ref_text.append(card.decode(a.astype(np.float32), n))
        var_text.append(card.decode(b.astype(np.float32), n))
    agreement = agree / total if total else 1.0
    text = corpus_scores(ref_text, var_text, convention=card.metrics)
    identical = sum(1 for r, v in zip(ref_text, var_text) if r == v)
    failures = []
    if nonfinite:
        failures.append(f"{nonfinite} non-finite values in the fp32 or variant outputs (NaN/inf never passes)")
    if agreement < opts.min_argmax_agreement:
        failures.append(f"argmax agreement {agreement:.4f} < {opts.min_argmax_agreement}")
    if text["cer"] > opts.max_text_cer:
        failures.append(f"CER of the variant's transcripts against the fp32 graph's {text['cer']:.4f} > "
                        f"{opts.max_text_cer}")
    return {
        "passed": not failures,
        "kind": "lossy: argmax path and decoded text against the fp32 ONNX graph on real inputs",
        "reference": f"{fp32.name} (fp32, onnxruntime CPU)",
        "dataset": str(dataset.path),
        "samples": len(samples),
        "frames": total,
        "argmax_agreement": agreement,
        "identical_transcripts": f"{identical}/{len(samples)}",
        "text_cer_vs_fp32": text["cer"],
        "text_wer_vs_fp32": text["wer"],
        "max_abs": max_abs,
        "nonfinite": nonfinite,
        "thresholds": {"min_argmax_agreement": opts.min_argmax_agreement, "max_text_cer": opts.max_text_cer},
        "failures": failures,
    }


def make_variant(onnx_path: Path, card: ModelCard, opts: VariantOptions, dataset: DatasetDir,
                 out_dir: Path | None = None, name: str | None = None) -> tuple[Path, ModelCard]:
    """Convert, gate, and write `<stem>.<kind>.onnx` + its card; nothing is left behind on failure."""
    out_dir = out_dir or onnx_path.parent
    name = name or f"{onnx_path.stem}.{opts.kind}"
    dst = out_dir / f"{name}.onnx"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".variant-") as tmp:
        candidate = Path(tmp) / f"{name}.onnx"
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        t0 = time.perf_counter()
        fallback = None
        if opts.max_delta_wer is not None:
            fallback = sweep_fallback(onnx_path, card, opts, dataset, scratch)
        chosen = opts if fallback is None else replace(opts, exclude_nodes=[*opts.exclude_nodes, *fallback["excluded"]])
        done = convert(onnx_path, candidate, card, chosen, dataset, scratch)
        if fallback is not None:
            done["fallback"] = fallback
        convert_s = time.perf_counter() - t0
        parity = lossy_parity(onnx_path, candidate, card, dataset, opts)
        if not parity["passed"]:
            raise VariantError(f"{opts.kind} variant of {onnx_path} FAILED its parity gate: "
                               + "; ".join(parity["failures"]), parity)
        entries = card.to_dict()
        if opts.kind == "fp16" and not opts.keep_io_types:
            for spec in entries["inputs"] + entries["outputs"]:
                if spec["dtype"] == "float32":
                    spec["dtype"] = "float16"
        entries.update({
            "onnx": dst.name,
            "precision": "fp32-fused" if opts.kind == "fused" else opts.kind,
            "variant": {**done, "from": onnx_path.name, "from_sha256": card.onnx_sha256,
                        "size_bytes": candidate.stat().st_size,
                        "fp32_size_bytes": onnx_path.stat().st_size, "convert_s": round(convert_s, 3)},
            "parity": parity,
            "graph": graph_report(candidate, get_family(card.family).variant_defaults.get("expected_fusions", {})),
            "variant_options": asdict(opts) | {"dataset": str(dataset.path.resolve())},
            "versions": versions(),
            "onnx_sha256": sha256_file(candidate),
        })
        out = ModelCard.from_dict(entries, f"the {opts.kind} card of {onnx_path}")
        write_card(out, card_path_for(dst))
        candidate.replace(dst)
    return dst, out
