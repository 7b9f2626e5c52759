"""Codecs for the split boundary tensor, registered by name.

| name | what travels |
|---|---|
| fp32, fp16 | the values (4 / 2 bytes each) |
| int8, int8-channel | symmetric int8, one scale per tensor / per channel (last axis) |
| int8-huffman, int8-zstd, int8-lz4 | per-tensor int8 symbols through Huffman / zstd / lz4 |
| q4-ans, q3-ans, q2-ans | 4/3/2-bit clipped uniform quantisation, ANS-coded with its histogram |
| ae, ae-int8-zstd, ae-q4-ans | the autoencoder's latent as fp32 / int8+zstd / 4-bit+ANS (needs the AE ONNX pair) |
| klt-ans, klt-ans-2x, klt-ans-4x | the fitted KLT's components at its step (2x, 4x: that much coarser), ANS with the fit's Laplace model (needs klt.json) |
| klt-ans-4x-pf | klt-ans-4x on the wire; the decoder adds the learned post-filter (klt_postfilter_4x.onnx) |
| klt-lp-2x, klt-lp-3x | klt-ans-Nx's symbols, ANS with each frame's Laplace means predicted from the two frames before (klt.json's predictors) |
| klt-lp-3x-pf, klt-lp-4x-pf | klt-lp-Nx on the wire; the decoder adds the post-filter of that step |

`get_codec(name, learned)` builds one, `learned` being the folder holding the learned parts (ae_*.onnx,
klt.json) or a `Learned`; `measure(codec, x)` reports bits per element, bytes, ratio vs fp32, encode/decode
time and the reconstruction error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from split.codecs.autoencoder import DECODER_FILE, ENCODER_FILE, Autoencoder
from split.codecs.base import Codec, CodecError, Encoded
from split.codecs.entropy import Ans, Huffman, Lz4, Raw, Zstd
from split.codecs.klt import KLT_FILE, LIMIT, KltFit, KltQuantizer, KltTransform, LaplaceAns, coarseness_tag, load_klt
from split.codecs.postfilter import PostFilter, load_postfilters, missing, postfilter_file
from split.codecs.predictive import PredictiveLaplaceAns
from split.codecs.quantizers import Float16, Float32, Int8Linear, LowBit

__all__ = ["CODECS", "Codec", "CodecError", "Encoded", "Learned", "get_codec", "measure", "codec_names"]

INT8_ALPHABET = (-128, 127)


@dataclass(frozen=True)
class Learned:
    """The learned codec parts one side holds: the autoencoder pair and/or a KLT fit."""

    autoencoder: Autoencoder | None = None
    klt: KltFit | None = None
    postfilters: dict[str, PostFilter] = field(default_factory=dict)  # by coarseness tag ("4x")

    @classmethod
    def from_dir(cls, directory: Path | None) -> "Learned":
        """What the folder holds (ae_encoder/ae_decoder.onnx, klt.json); an empty Learned for None."""
        if directory is None:
            return cls()
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"learned codec folder not found: {directory} (expected a folder with "
                                    f"{ENCODER_FILE} / {DECODER_FILE} and/or {KLT_FILE})")
        has_ae = (directory / ENCODER_FILE).is_file() or (directory / DECODER_FILE).is_file()
        klt = load_klt(directory / KLT_FILE) if (directory / KLT_FILE).is_file() else None
        return cls(Autoencoder.from_dir(directory) if has_ae else None, klt,
                   load_postfilters(directory, klt.crc if klt is not None else None))

    def has(self, need: str | None) -> bool:
        return need is None or getattr(self, need) is not None


@dataclass(frozen=True)
class CodecSpec:
    build: Callable[[Learned], Codec]
    needs: str | None = None  # "autoencoder" or "klt": the learned part it runs on
    description: str = ""
    postfilter: str | None = None  # the post-filter's tag the decoder also needs (not the edge)
    predictor: str | None = None  # the klt.json predictor's tag both sides need


def _plain(name: str, quantizer: Any, entropy: Any, lossless: bool, description: str) -> CodecSpec:
    return CodecSpec(lambda _: Codec(name, quantizer, entropy, None, lossless, description), None, description)


def _ae(name: str, quantizer: Any, entropy: Any, description: str) -> CodecSpec:
    return CodecSpec(lambda learned: Codec(name, quantizer, entropy, learned.autoencoder, False, description),
                     "autoencoder", description)


def _klt(name: str, coarseness: float, description: str, postfilter: bool = False,
         predicted: bool = False) -> CodecSpec:
    tag = coarseness_tag(coarseness) if postfilter else None

    def build(learned: Learned) -> Codec:
        fit = learned.klt
        assert fit is not None
        pf = learned.postfilters.get(tag) if tag else None
        transform = KltTransform(fit, pf, missing(coarseness) if tag and pf is None else None)
        if predicted:
            predictor = fit.predictors.get(coarseness_tag(coarseness))
            if predictor is None:
                raise CodecError(f"codec {name!r} needs klt.json's predictor for {coarseness_tag(coarseness)} "
                                 f"(fitted by `python -m split fit-klt`; this fit has "
                                 f"{', '.join(fit.predictors) or 'none'})")
            entropy: Any = PredictiveLaplaceAns(predictor, LIMIT)
        else:
            entropy = LaplaceAns(fit, coarseness)
        return Codec(name, KltQuantizer(fit, coarseness), entropy, transform, False, description)
    return CodecSpec(build, "klt", description, tag, coarseness_tag(coarseness) if predicted else None)


def _klt_lp(coarseness: float, postfilter: bool = False) -> tuple[str, CodecSpec]:
    tag = coarseness_tag(coarseness)
    name = f"klt-lp-{tag}" + ("-pf" if postfilter else "")
    what = (f"klt-lp-{tag}, and the decoder's learned post-filter ({postfilter_file(coarseness)})" if postfilter
            else f"klt-ans-{tag}'s symbols, ANS with Laplace means predicted from the two previous frames")
    return name, _klt(name, coarseness, what, postfilter=postfilter, predicted=True)


CODECS: dict[str, CodecSpec] = {
    "fp32": _plain("fp32", Float32(), Raw(), True, "raw float32"),
    "fp16": _plain("fp16", Float16(), Raw(), False, "float16 (saturating)"),
    "int8": _plain("int8", Int8Linear(), Raw(), False, "symmetric int8, per-tensor scale"),
    "int8-channel": _plain("int8-channel", Int8Linear(per_channel=True), Raw(), False,
                           "symmetric int8, per-channel scale"),
    "int8-huffman": _plain("int8-huffman", Int8Linear(), Huffman(INT8_ALPHABET), False,
                           "int8 symbols, Huffman (dahuffman, canonical table as fields)"),
    "int8-zstd": _plain("int8-zstd", Int8Linear(), Zstd(), False, "int8 symbols, zstd level 3"),
    "int8-lz4": _plain("int8-lz4", Int8Linear(), Lz4(), False, "int8 symbols, lz4 block"),
    **{f"q{b}-ans": _plain(f"q{b}-ans", LowBit(b), Ans(1 << b), False,
                           f"{b}-bit clipped (mean +- 3 std) uniform, ANS (constriction)") for b in (4, 3, 2)},
    "ae": _ae("ae", Float32(), Raw(), "autoencoder latent, float32"),
    "ae-int8-zstd": _ae("ae-int8-zstd", Int8Linear(), Zstd(), "autoencoder latent, int8 + zstd"),
    "ae-q4-ans": _ae("ae-q4-ans", LowBit(4), Ans(16), "autoencoder latent, 4-bit clipped + ANS"),
    "klt-ans": _klt("klt-ans", 1.0, "fitted KLT (klt.json) at its step, ANS with the fit's Laplace model"),
    "klt-ans-2x": _klt("klt-ans-2x", 2.0, "fitted KLT at twice its step, ANS with the fit's Laplace model"),
    "klt-ans-4x": _klt("klt-ans-4x", 4.0, "fitted KLT at four times its step, ANS with the fit's Laplace model"),
    "klt-ans-4x-pf": _klt("klt-ans-4x-pf", 4.0, f"klt-ans-4x, and the decoder's learned post-filter "
                          f"({postfilter_file(4.0)})", postfilter=True),
    **dict(_klt_lp(c, pf) for c, pf in ((2.0, False), (3.0, False), (3.0, True), (4.0, True))),
}

_NEEDS_FILES = {"autoencoder": f"{ENCODER_FILE} / {DECODER_FILE}", "klt": f"{KLT_FILE} (python -m split fit-klt)"}


def codec_names(learned: Learned | None = None) -> list[str]:
    """The codecs that can run (encode and decode) with these learned parts (None: every registered codec)."""
    return [n for n, spec in CODECS.items() if learned is None or _can_run(spec, learned)]


def _can_run(spec: CodecSpec, learned: Learned) -> bool:
    if not learned.has(spec.needs):
        return False
    if spec.postfilter is not None and spec.postfilter not in learned.postfilters:
        return False
    return spec.predictor is None or (learned.klt is not None and spec.predictor in learned.klt.predictors)


def get_codec(name: str, learned: Learned | Autoencoder | Path | None = None) -> Codec:
    """The codec registered as `name`; learned codecs need their part (a Learned, an Autoencoder, or the
    folder holding ae_*.onnx / klt.json)."""
    spec = CODECS.get(name)
    if spec is None:
        raise CodecError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    if spec.needs is None:
        return spec.build(Learned())
    if isinstance(learned, Autoencoder):
        learned = Learned(autoencoder=learned)
    elif not isinstance(learned, Learned):
        learned = Learned.from_dir(learned)
    if not learned.has(spec.needs):
        raise CodecError(f"codec {name!r} needs the {spec.needs} ({_NEEDS_FILES[spec.needs]})")
    return spec.build(learned)


def measure(codec: Codec, x: np.ndarray, repeats: int = 1) -> tuple[dict[str, Any], np.ndarray]:
    """Encode and decode `x` (median of `repeats`): size and error figures, and the decoded tensor."""
    x = np.asarray(x, dtype=np.float32)
    enc_times, dec_times = [], []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        encoded = codec.encode(x)
        t1 = time.perf_counter()
        y = codec.decode(encoded.payload, encoded.params, x.shape)
        t2 = time.perf_counter()
        enc_times.append((t1 - t0) * 1e3)
        dec_times.append((t2 - t1) * 1e3)
    n = max(x.size, 1)
    err = np.abs(y - x)
    report = {
        "codec": codec.name,
        "elements": int(x.size),
        "payload_bytes": len(encoded.payload),
        "bits_per_element": 8.0 * len(encoded.payload) / n,
        "ratio_vs_fp32": (4.0 * x.size) / max(len(encoded.payload), 1),
        "encode_ms": float(np.median(enc_times)),
        "decode_ms": float(np.median(dec_times)),
        "max_abs_error": float(err.max()) if err.size else 0.0,
        "rmse": float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
        "params": encoded.params,
    }
    return report, y
