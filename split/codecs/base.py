"""A codec = an optional learned transform, a quantiser, and an entropy stage.

encode(tensor) gives the payload bytes and a dict of plain parameters (numbers and lists of numbers, the
exact fields of `CodecParams` in split/proto/split.proto); decode(payload, params, shape) gives the float32
tensor back. Nothing is ever pickled: a Huffman table travels as (symbols, code lengths), an ANS model as
symbol counts, a quantiser as its scale or clip range.

Every decode checks its parameters before use and raises `CodecError` naming what was wrong, so the
server can answer INVALID_ARGUMENT instead of crashing on a hostile or corrupted request.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# Params every codec adds: a checksum of the payload, so corruption is reported as such rather than as
# whatever a decoder happens to make of flipped bits.
CRC_KEY = "crc32"


class CodecError(ValueError):
    """A payload or parameter set that cannot be decoded (names the field and what was expected)."""


@dataclass(frozen=True)
class Encoded:
    payload: bytes
    params: dict[str, Any] = field(default_factory=dict)


class Quantizer(Protocol):
    """Float tensor <-> symbol array (dtype `symbol_dtype`) plus parameters."""

    symbol_dtype: np.dtype

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]: ...

    def dequantize(self, symbols: np.ndarray, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray: ...


class EntropyStage(Protocol):
    """Symbol array <-> bytes plus parameters; `unpack` must return exactly `count` symbols or raise."""

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]: ...

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray: ...


# The parameter naming which learned transform encoded a payload (a CRC-32 both sides derive from the same
# file), so an edge and a cloud holding different fits or autoencoders refuse instead of decoding garbage.
TRANSFORM_KEY = "transform_crc"


class Transform(Protocol):
    """A learned transform (the autoencoder, the KLT): (..., C) <-> (..., latent_dim).

    `fingerprint` is the CRC-32 of what defines it (None where this side cannot tell, e.g. a bare ONNX
    autoencoder without its card); it travels as `transform_crc` and is checked where both sides know it."""

    latent_dim: int
    fingerprint: int | None
    requires_fingerprint: bool  # a payload without `transform_crc` is refused
    what: str  # what two sides that disagree hold, for the message

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def inverse(self, z: np.ndarray, channels: int) -> np.ndarray: ...


def require(params: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """params[key], checked to be present and of `kind` (lists: every element)."""
    if key not in params:
        raise CodecError(f"codec parameter {key!r} is missing")
    value = params[key]
    if isinstance(value, list):
        if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise CodecError(f"codec parameter {key!r} must be a list of {_kind_name(kind)}")
    elif not isinstance(value, kind) or isinstance(value, bool):
        raise CodecError(f"codec parameter {key!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def require_finite(params: dict[str, Any], key: str) -> float:
    value = float(require(params, key, (int, float)))
    if not math.isfinite(value):
        raise CodecError(f"codec parameter {key!r} is not finite ({value})")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


@dataclass
class Codec:
    """One registered codec: transform (optional) -> quantiser -> entropy stage."""

    name: str
    quantizer: Quantizer
    entropy: EntropyStage
    transform: Transform | None = None
    lossless: bool = False
    description: str = ""

    def encode(self, x: np.ndarray) -> Encoded:
        x = np.asarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise CodecError(f"{self.name}: the tensor to encode holds NaN or inf")
        z = self.transform.forward(x) if self.transform is not None else x
        symbols, qparams = self.quantizer.quantize(z)
        payload, eparams = self.entropy.pack(symbols)
        params = {**qparams, **eparams, CRC_KEY: zlib.crc32(payload)}
        if self.transform is not None and self.transform.fingerprint is not None:
            params[TRANSFORM_KEY] = self.transform.fingerprint
        return Encoded(payload=payload, params=params)

    def decode(self, payload: bytes, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise CodecError(f"shape {list(shape)} has a negative dimension")
        crc = require(params, CRC_KEY, int)
        if zlib.crc32(payload) != crc:
            raise CodecError(f"{self.name}: payload checksum mismatch ({len(payload)} bytes; corrupted or "
                             "truncated in transit)")
        inner_shape = shape
        if self.transform is not None:
            self._check_transform(params)
            if not shape:
                raise CodecError(f"{self.name}: needs a tensor with a channel axis, got shape []")
            inner_shape = shape[:-1] + (self.transform.latent_dim,)
        count = int(np.prod(inner_shape, dtype=np.int64))
        symbols = self.entropy.unpack(payload, params, count, self.quantizer.symbol_dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below, by name
            z = self.quantizer.dequantize(symbols, params, inner_shape)
            x = self.transform.inverse(z, shape[-1]) if self.transform is not None else z
            x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            # Valid-looking but extreme parameters (a scale near float32's limit) overflow here.
            raise CodecError(f"{self.name}: the decoded tensor holds NaN or inf (parameters out of range)")
        return x

    def _check_transform(self, params: dict[str, Any]) -> None:
        """Refuse a payload made with another transform (both sides know its fingerprint and they differ),
        or without a fingerprint where the transform requires one."""
        transform = self.transform
        assert transform is not None
        if TRANSFORM_KEY not in params or transform.fingerprint is None:
            if transform.requires_fingerprint:
                raise CodecError(f"codec parameter {TRANSFORM_KEY!r} is missing")
            return
        theirs = require(params, TRANSFORM_KEY, int)
        if theirs != transform.fingerprint:
            raise CodecError(f"codec parameter {TRANSFORM_KEY!r} is {theirs:#010x}, this side's is "
                             f"{transform.fingerprint:#010x}: edge and cloud hold different {transform.what}")
