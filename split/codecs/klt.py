"""Transform coding of the boundary tensor: a fitted Karhunen-Loeve transform (KLT), one uniform step, and ANS
with a per-component Laplace model that both sides know from the fit.

Why: the boundary's channels are strongly correlated, so quantising them one by one spends bits on what
their neighbours already say. Rotating each frame onto the principal axes of the fit data concentrates
the energy in a few components; one uniform step for all of them then leaves the weak ones at zero, which
the entropy coder sends almost for free (reverse water-filling, the textbook optimum for squared error).

With a Fisher matrix F (the expected outer product of the Tail's log-likelihood gradient at the boundary,
`python -m split fit-klt --checkpoint`), the fit whitens by F^(1/2) before the principal axes are taken, so
the error that is spread evenly is the one the Tail's output is sensitive to rather than plain squared
error: directions the Tail ignores (its first LayerNorm removes each frame's mean, for one) get no bits.

Where the Tail opens with a LayerNorm over the channels (its only use of the boundary), the Tail cannot see
each frame's mean and scale, so the fit can drop them (`frame_normalize`): every frame is standardised
before the transform and the decoder returns the standardised frame, which the Tail maps to the same
output (up to LayerNorm's epsilon) while two numbers per frame are never coded. The decoded tensor then
differs from the boundary by exactly that per-frame shift and scale (the codec table's RMSE says so).

The fit is a JSON file (`klt.json`, beside ae_*.onnx in the folder given as --autoencoder): mean, forward and
inverse matrices, each component's Laplace scale on the fit data, the step, and the klt-lp codecs'
frame-to-frame predictors. Edge and cloud must hold
the same fit: every request carries the file's CRC-32 (`transform_crc`) and the step (`scale`), and a
decoder refuses others.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import constriction
import numpy as np

from core.fsio import atomic_write_bytes
from split.codecs.base import CodecError, require_finite
from split.codecs.entropy import ans_check_end_marker, ans_decoder, ans_encoder, ans_payload
from split.codecs.predictive import Predictor, fit_predictor

KLT_FILE = "klt.json"
FORMAT = "split-klt"
VERSION = 1
# Symbols are clipped to +-LIMIT steps: far beyond anything a fit's step leaves (the largest component
# spans a few tens of steps), and the bound that keeps the ANS alphabet finite.
LIMIT = 2047
# The Laplace scale (in steps) below which every component's model is floored: a component that is all
# zero on the fit data must still code what a new utterance holds there at a bounded cost (a few bits per
# nonzero symbol at this floor) while a zero stays cheap (about a twentieth of a bit).
MIN_SCALE_STEPS = 0.15


@dataclass(frozen=True)
class KltFit:
    mean: np.ndarray      # (C,)
    forward: np.ndarray   # (C, C): z = (x - mean) @ forward
    inverse: np.ndarray   # (C, C): x = z @ inverse + mean
    scales: np.ndarray    # (C,) mean |z_c| on the fit data (the Laplace scale of each component)
    step: float           # the uniform step on z (float32-exact: it travels as a float field)
    weighting: str = "none"  # "fisher" when fitted with the Tail's Fisher matrix
    frame_normalize: bool = False  # standardise each frame first (a Tail that opens with LayerNorm)
    meta: dict[str, Any] = field(default_factory=dict)
    # klt-lp-Nx's entropy models (split/codecs/predictive.py), by coarseness tag ("3x"); fitted with the KLT
    predictors: dict[str, Predictor] = field(default_factory=dict)
    crc: int = 0          # CRC-32 of the file's bytes, set by `load` / `to_bytes`

    @property
    def channels(self) -> int:
        return int(self.mean.size)

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": VERSION, "channels": self.channels, "weighting": self.weighting,
               "frame_normalize": self.frame_normalize, "step": float(np.float32(self.step)),
               "mean": self.mean.astype(float).tolist(),
               "forward": self.forward.astype(float).tolist(), "inverse": self.inverse.astype(float).tolist(),
               "scales": self.scales.astype(float).tolist(), "meta": self.meta}
        if self.predictors:
            doc["predictors"] = {tag: p.to_json() for tag, p in self.predictors.items()}
        return (json.dumps(doc, indent=None, separators=(",", ":")) + "\n").encode()

    def save(self, path: Path) -> "KltFit":
        """Write atomically; returns the fit as loaded back (with its CRC)."""
        atomic_write_bytes(Path(path), self.to_bytes())
        return load_klt(path)

    def forward_transform(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 0 or x.shape[-1] != self.channels:
            raise CodecError(f"klt: the tensor's last axis has {x.shape[-1] if x.ndim else 0} channels, the fit "
                             f"has {self.channels}")
        x = x.astype(np.float64)
        if self.frame_normalize:
            x = standardize_frames(x)
        # einsum, not `@`: a matrix this small is not worth BLAS's thread pool, whose threads spin and stall
        # when the edge or the server shares its cores.
        return np.einsum("...c,cd->...d", x - self.mean, self.forward).astype(np.float32)

    def inverse_transform(self, z: np.ndarray, channels: int) -> np.ndarray:
        if channels != self.channels:
            raise CodecError(f"klt: the request's shape has {channels} channels, this fit has {self.channels}")
        return (np.einsum("...c,cd->...d", z.astype(np.float64), self.inverse) + self.mean).astype(np.float32)


def load_klt(path: Path) -> KltFit:
    """Read and check a klt.json; every problem is a ValueError naming the file and the field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"KLT fit not found: {path} (make one with `python -m split fit-klt`)") from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a KLT fit (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a KLT fit (format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: KLT fit version {doc.get('version')!r}, this code reads version {VERSION}")
    c = doc.get("channels")
    if not isinstance(c, int) or c < 1:
        raise ValueError(f"{path}: 'channels' must be a positive integer, got {c!r}")

    def array(key: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            a = np.asarray(doc.get(key), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: {key!r} is not a numeric array") from None
        if a.shape != shape:
            raise ValueError(f"{path}: {key!r} has shape {list(a.shape)}, expected {list(shape)}")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: {key!r} holds NaN or inf")
        return a

    normalize = doc.get("frame_normalize", False)
    if not isinstance(normalize, bool):
        raise ValueError(f"{path}: 'frame_normalize' must be true or false, got {normalize!r}")
    step = doc.get("step")
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not np.isfinite(step) or step <= 0:
        raise ValueError(f"{path}: 'step' must be a positive number, got {step!r}")
    scales = array("scales", (c,))
    if (scales < 0).any():
        raise ValueError(f"{path}: 'scales' holds a negative scale")
    predictors = doc.get("predictors", {})
    if not isinstance(predictors, dict):
        raise ValueError(f"{path}: 'predictors' must be an object keyed by coarseness (e.g. \"3x\")")
    return KltFit(mean=array("mean", (c,)), forward=array("forward", (c, c)), inverse=array("inverse", (c, c)),
                  scales=scales, step=float(np.float32(step)), weighting=str(doc.get("weighting", "none")),
                  frame_normalize=normalize,
                  meta=doc.get("meta") if isinstance(doc.get("meta"), dict) else {},
                  predictors={str(tag): Predictor.from_json(p, c, f"{path}: predictors[{tag!r}]")
                              for tag, p in predictors.items()},
                  crc=zlib.crc32(raw))


# LayerNormalization's default epsilon; the standardised frame is what the Tail's LayerNorm computes anyway.
FRAME_EPSILON = 1e-5


def standardize_frames(x: np.ndarray) -> np.ndarray:
    """Each frame (last axis) shifted to mean 0 and scaled to variance 1, as a LayerNorm without affine."""
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + FRAME_EPSILON)


def fit_klt(x: np.ndarray, *, relative_step: float, fisher: np.ndarray | None = None,
            frame_normalize: bool = False, meta: dict[str, Any] | None = None) -> KltFit:
    """The KLT of the rows of `x` (N, C) (standardised first with `frame_normalize`; `fisher` must then be
    taken at the standardised frames), weighted by `fisher` (C, C) when given; the step is `relative_step`
    times the strongest component's standard deviation."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"fit data must be (frames, channels) with at least 2 frames, got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("fit data holds NaN or inf")
    if not relative_step > 0:
        raise ValueError(f"relative step must be positive, got {relative_step}")
    if frame_normalize:
        x = standardize_frames(x)
    c = x.shape[1]
    mean = x.mean(axis=0)
    if fisher is None:
        weight, unweight = np.eye(c), np.eye(c)
    else:
        fisher = np.asarray(fisher, dtype=np.float64)
        if fisher.shape != (c, c) or not np.isfinite(fisher).all():
            raise ValueError(f"Fisher matrix must be a finite ({c}, {c}) matrix, got {list(fisher.shape)}")
        ev, u = np.linalg.eigh((fisher + fisher.T) / 2)
        # Directions the Tail is blind to keep a small weight, so the transform stays invertible.
        ev = np.maximum(ev, max(float(ev.max()), 1e-30) * 1e-8)
        weight = u @ np.diag(np.sqrt(ev)) @ u.T
        unweight = u @ np.diag(1 / np.sqrt(ev)) @ u.T
    cov = np.cov(((x - mean) @ weight).T)
    ev, v = np.linalg.eigh(cov)
    order = np.argsort(ev)[::-1]
    v = v[:, order]
    forward, inverse = weight @ v, v.T @ unweight
    z = (x - mean) @ forward
    step = float(np.float32(relative_step * max(float(z[:, 0].std()), 1e-12)))
    return KltFit(mean=mean, forward=forward, inverse=inverse, scales=np.abs(z).mean(axis=0), step=step,
                  weighting="none" if fisher is None else "fisher", frame_normalize=frame_normalize,
                  meta=dict(meta or {}))


# The steps klt-lp codecs exist for (fit-klt fits a predictor for each).
PREDICTED_COARSENESS = (2.0, 3.0, 4.0)


def with_predictors(fit: KltFit, boundaries: list[np.ndarray],
                    coarsenesses: tuple[float, ...] = PREDICTED_COARSENESS) -> KltFit:
    """The fit with a frame-to-frame predictor per coarseness, fitted on these utterances' boundaries
    ((frames, C) each, in order)."""
    zs = [fit.forward_transform(b) for b in boundaries]
    predictors = {}
    for coarseness in coarsenesses:
        quantizer = KltQuantizer(fit, coarseness)
        sequences = [(quantizer.quantize(z)[0], z.astype(np.float64) / quantizer.step) for z in zs]
        predictors[coarseness_tag(coarseness)] = fit_predictor(sequences, MIN_SCALE_STEPS)
    return replace(fit, predictors=predictors)


def coarseness_tag(coarseness: float) -> str:
    """How files and fits name a coarseness ("4x")."""
    return f"{coarseness:g}x"


def klt_step(fit: KltFit, coarseness: float) -> float:
    """The step of a codec that far coarser than the fit's, float32-exact (it travels as a float field)."""
    return float(np.float32(fit.step * coarseness))


def component_scales_in_steps(fit: KltFit, step: float) -> np.ndarray:
    """Each component's Laplace scale in steps, floored (see MIN_SCALE_STEPS)."""
    return np.maximum(fit.scales / step, MIN_SCALE_STEPS)


class KltQuantizer:
    """z -> round(z / step) as int16 within +-LIMIT; the step is the fit's times `coarseness`.

    A nonzero symbol is decoded to the mean of the component's Laplace model within its bin rather than
    to the bin's centre: where a component's scale is small against the step, most of a bin's mass lies
    on its side near zero, and the centre overshoots. Both sides know the model from the fit, so nothing
    more travels; the edge's rounding is unchanged."""

    symbol_dtype = np.dtype("<i2")

    def __init__(self, fit: KltFit, coarseness: float = 1.0) -> None:
        self.step = klt_step(fit, coarseness)
        b = component_scales_in_steps(fit, self.step)
        # Mean of a Laplace of scale b (in steps) over the bin [k - 1/2, k + 1/2], k >= 1, less k: the
        # exponential's mean truncated to a width of one step, from the bin's lower edge.
        self.bin_offsets = (b - 1.0 / np.expm1(1.0 / b) - 0.5).astype(np.float32)

    def quantize(self, z: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        q = np.clip(np.rint(z / self.step), -LIMIT, LIMIT).astype(self.symbol_dtype)
        return q, {"scale": self.step}

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        step = require_finite(params, "scale")
        if np.float32(step) != np.float32(self.step):
            raise CodecError(f"codec parameter 'scale' (the KLT step) is {step:g}, this codec uses {self.step:g}")
        q = symbols.reshape(shape).astype(np.float32)
        if shape and shape[-1] != self.bin_offsets.size:
            raise CodecError(f"klt: shape {list(shape)} does not end in the fit's {self.bin_offsets.size} components")
        return (q + np.sign(q) * self.bin_offsets) * np.float32(self.step)


def laplace_pmf(scale_steps: float) -> np.ndarray:
    """P(k) for k in -LIMIT..LIMIT of a zero-mean Laplace of this scale (in steps) rounded to integers.

    Edge and cloud build these tables separately, and constriction's quantisation of them must come out the
    same bit for bit on both, or the cloud decodes garbage. So they are made from +, *, / and - only, which
    IEEE rounds the same on every CPU, never from a library exp (numpy and libm pick a SIMD or FMA variant by
    CPU, and those differ in the last bit). Each side of the mass is computed from the tails directly, not as
    1 - tail, whose rounding near 1 would leave the right-hand tail at multiples of 2^-53: noise, and
    exactly the entries a last-bit difference would change."""
    b = float(scale_steps)
    ratio = _exp_basic(-1.0 / b)
    # tail[j] = P(X > j + 1/2) = 0.5 * exp(-(j + 1/2) / b), by repeated multiplication (sequential: the same
    # products everywhere); values that would be subnormal are set to zero, so a process that flushes
    # subnormals (some BLAS and ML runtimes set that CPU mode) builds the same table.
    steps = np.full(LIMIT + 1, ratio)
    steps[0] = 0.5 * _exp_basic(-0.5 / b)
    tail = np.cumprod(steps)
    tail[tail < np.finfo(np.float64).tiny] = 0.0
    side = tail[:-1] - tail[1:]  # P(k) for k = 1..LIMIT
    center = 1.0 - 2.0 * tail[0]
    return np.concatenate([side[::-1], [center], side])


def _exp_basic(x: float) -> float:
    """exp(x) for -64 <= x <= 0 from +, * and / alone (see laplace_pmf): a Taylor series of x / 2^8, squared
    8 times. Accurate to far better than an entropy model needs; what matters is that it is the same
    everywhere."""
    if not -64.0 <= x <= 0.0:
        raise ValueError(f"_exp_basic: {x} is outside [-64, 0]")
    y = x / 256.0
    term = total = 1.0
    for n in range(1, 13):
        term = term * y / n
        total = total + term
    for _ in range(8):
        total = total * total
    return total


class LaplaceAns:
    """ANS over int16 symbols, component c (the last axis) modelled as a quantised Laplace of the fit's
    scale; nothing about the model travels.

    Each component's model is a categorical table over -LIMIT..LIMIT built once from the fit (constriction's
    leaky categorical gives every symbol a nonzero probability); coding a column against one fixed table is
    much faster than a Laplace model with a parameter per symbol. Components are coded
    column by column over all frames.

    The stream ends in the end marker of split/codecs/entropy.py, so a truncated or padded payload is
    refused instead of decoded."""

    def __init__(self, fit: KltFit, coarseness: float = 1.0) -> None:
        scales = component_scales_in_steps(fit, klt_step(fit, coarseness))
        self.models = [constriction.stream.model.Categorical(laplace_pmf(float(b)), perfect=False) for b in scales]

    def _columns(self, count: int) -> int:
        c = len(self.models)
        if count % c:
            raise CodecError(f"klt: {count} values are not whole frames of {c} components")
        return count // c

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        flat = symbols.ravel().astype(np.int32)
        if flat.size == 0:
            return b"", {}
        rows = flat.reshape(self._columns(flat.size), len(self.models)) + LIMIT
        coder = ans_encoder()
        for c in reversed(range(len(self.models))):
            coder.encode_reverse(np.ascontiguousarray(rows[:, c]), self.models[c])
        return ans_payload(coder), {}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        # The model comes from the fit: Codec.decode has checked `transform_crc` (KltTransform) before this.
        if count == 0:
            return np.zeros(0, dtype=dtype)
        frames = self._columns(count)
        coder = ans_decoder(payload)
        try:
            columns = [coder.decode(model, frames) for model in self.models]
        except Exception as exc:  # constriction raises plain exceptions on an invalid stream
            raise CodecError(f"ANS payload does not decode: {exc}") from None
        ans_check_end_marker(coder)
        return (np.stack(columns, axis=1).astype(np.int32) - LIMIT).ravel().astype(dtype)


class KltTransform:
    """The Transform protocol of split/codecs/base.py over a fit; its fingerprint is klt.json's CRC-32."""

    requires_fingerprint = True  # the entropy models come from the fit: never decode against another
    what = "KLT fits (klt.json)"

    def __init__(self, fit: KltFit, postfilter: Callable[[np.ndarray], np.ndarray] | None = None,
                 missing_postfilter: CodecError | None = None) -> None:
        """`postfilter` runs after the inverse transform (the decoder only); `missing_postfilter` is the error
        a decode raises where the codec wants a post-filter this side does not hold."""
        self.fit = fit
        self.latent_dim = fit.channels
        self.fingerprint = fit.crc
        self.postfilter, self.missing_postfilter = postfilter, missing_postfilter

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fit.forward_transform(x)

    def inverse(self, z: np.ndarray, channels: int) -> np.ndarray:
        if self.missing_postfilter is not None:
            raise self.missing_postfilter
        x = self.fit.inverse_transform(z, channels)
        return self.postfilter(x) if self.postfilter is not None else x
