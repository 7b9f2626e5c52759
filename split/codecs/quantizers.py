"""Quantisers: float tensor -> symbols (+ parameters) and back.

- `Float32`, `Float16`: the values themselves (fp16 saturates at its largest finite value rather than
  turning large activations into inf).
- `Int8Linear`: symmetric linear int8, one scale per tensor or one per channel (the last axis, which for
  the split boundary is the feature axis; per-channel follows features whose ranges differ a lot).
- `LowBit`: 2-4 bit uniform quantisation clipped at mean +- k std (mid-rise bins, reconstruction at the
  bin centre); the clipping trades a little error on rare outliers for a much finer step everywhere else,
  and the skewed symbol histogram is what the entropy stage then exploits.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from split.codecs.base import CodecError, require, require_finite

FP16_MAX = float(np.finfo(np.float16).max)


def _reshape(symbols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if symbols.size != int(np.prod(shape, dtype=np.int64)):
        raise CodecError(f"{symbols.size} decoded values do not fill shape {list(shape)}")
    return symbols.reshape(shape)


class Float32:
    symbol_dtype = np.dtype("<f4")

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return x.astype(self.symbol_dtype), {}

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        out = _reshape(symbols, shape).astype(np.float32)
        if not np.isfinite(out).all():
            raise CodecError("float32 payload holds NaN or inf")
        return out


class Float16:
    symbol_dtype = np.dtype("<f2")

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return np.clip(x, -FP16_MAX, FP16_MAX).astype(self.symbol_dtype), {}

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        out = _reshape(symbols, shape).astype(np.float32)
        if not np.isfinite(out).all():
            raise CodecError("float16 payload holds NaN or inf")
        return out


class Int8Linear:
    """Symmetric int8 in [-127, 127]; scale = max|x| / 127 per tensor or per last-axis channel."""

    symbol_dtype = np.dtype("i1")

    def __init__(self, per_channel: bool = False) -> None:
        self.per_channel = per_channel

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        if self.per_channel:
            if x.ndim == 0:
                raise CodecError("per-channel int8 needs a tensor with a channel axis")
            peak = np.abs(x).reshape(-1, x.shape[-1]).max(axis=0) if x.size else np.zeros(x.shape[-1])
        else:
            peak = np.array(np.abs(x).max() if x.size else 0.0)
        # An all-zero channel still needs a positive scale to stay invertible.
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
        params: dict[str, Any] = {"scales": scale.tolist()} if self.per_channel else {"scale": float(scale)}
        return q, params

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        q = _reshape(symbols, shape)
        if self.per_channel:
            scales = np.asarray(require(params, "scales", (int, float)), dtype=np.float32)
            channels = shape[-1] if shape else 0
            if scales.size != channels:
                raise CodecError(f"codec parameter 'scales' has {scales.size} values, the tensor has {channels} "
                                 "channels")
            scale = scales
        else:
            scale = np.float32(require_finite(params, "scale"))
        if not (np.isfinite(scale).all() and (np.asarray(scale) > 0).all()):
            raise CodecError("int8 scale(s) must be finite and positive")
        return q.astype(np.float32) * scale


class LowBit:
    """`bits`-bit uniform quantiser over [lo, hi] = mean -/+ clip_sigmas * std (within min..max)."""

    symbol_dtype = np.dtype("u1")

    def __init__(self, bits: int, clip_sigmas: float = 3.0) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be 1..8, got {bits}")
        self.bits = bits
        self.clip_sigmas = clip_sigmas

    @property
    def levels(self) -> int:
        return 1 << self.bits

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        if x.size:
            mean, std = float(x.mean()), float(x.std())
            lo = max(float(x.min()), mean - self.clip_sigmas * std)
            hi = min(float(x.max()), mean + self.clip_sigmas * std)
        else:
            lo, hi = 0.0, 0.0
        if hi <= lo:  # a constant tensor: any positive width reproduces it at the first bin's centre
            hi = lo + 1e-6
            lo = lo - 1e-6
        step = (hi - lo) / self.levels
        q = np.clip(np.floor((x - lo) / step), 0, self.levels - 1).astype(np.uint8)
        return q, {"bits": self.bits, "lo": lo, "hi": hi}

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        bits = require(params, "bits", int)
        if bits != self.bits:
            raise CodecError(f"codec parameter 'bits' is {bits}, this codec uses {self.bits}")
        lo, hi = require_finite(params, "lo"), require_finite(params, "hi")
        if not hi > lo:
            raise CodecError(f"codec parameters need lo < hi, got lo={lo} hi={hi}")
        q = _reshape(symbols, shape)
        if q.size and int(q.max()) >= self.levels:
            raise CodecError(f"decoded symbol {int(q.max())} is outside the {self.bits}-bit alphabet")
        step = (hi - lo) / self.levels
        return (lo + (q.astype(np.float32) + 0.5) * step).astype(np.float32)
