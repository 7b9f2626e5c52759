"""Linear-predictive entropy model for the KLT codec's symbols (klt-lp-*): the same symbols as klt-ans-*,
fewer bits.

The boundary changes slowly from frame to frame, and the KLT leaves its components uncorrelated within a frame
but not across frames. So each frame's symbols are coded with a quantised Laplace whose mean is predicted from
the two previous frames' symbols (all components: a matrix fitted by least squares on the fit's training
utterances) and whose scale is each component's residual scale on those utterances. What the edge rounds and
what the decoder rebuilds are exactly klt-ans-Nx's; only the entropy model differs, so dWER is that of the
same step and only the bits fall.

The prediction is integer arithmetic (a fixed-point matrix on integer symbols), so encoder and decoder derive
bit-identical model parameters on any CPU; a float product could differ in its last bit between an edge and
a cloud with different SIMD units, and an ANS decoder fed a different model decodes garbage. The decoder runs
frame by frame (each frame's model needs the frame before); the encoder codes every frame at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np

from split.codecs.base import CodecError
from split.codecs.entropy import ans_check_end_marker, ans_decoder, ans_encoder, ans_payload

ORDER = 2           # previous frames the mean is predicted from
FRACTION_BITS = 16  # fixed point of the prediction matrix


@dataclass(frozen=True)
class Predictor:
    """mean(frame t) = [q(t-1), ..., q(t-ORDER), 1] @ matrix / 2**FRACTION_BITS, in steps; `scales` (C,) are
    the residual Laplace scales in steps (float32-exact, floored)."""

    matrix: np.ndarray  # (ORDER * C + 1, C) int64
    scales: np.ndarray  # (C,) float64 holding float32 values

    @property
    def channels(self) -> int:
        return int(self.scales.size)

    def to_json(self) -> dict[str, Any]:
        return {"order": ORDER, "fraction_bits": FRACTION_BITS, "matrix": self.matrix.astype(int).tolist(),
                "scales": self.scales.astype(float).tolist()}

    @classmethod
    def from_json(cls, doc: Any, channels: int, where: str) -> "Predictor":
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected an object")
        if doc.get("order") != ORDER or doc.get("fraction_bits") != FRACTION_BITS:
            raise ValueError(f"{where}: order {doc.get('order')!r} / fraction_bits {doc.get('fraction_bits')!r}, "
                             f"this code reads {ORDER} / {FRACTION_BITS}")
        try:
            matrix = np.asarray(doc.get("matrix"), dtype=np.float64)
            scales = np.asarray(doc.get("scales"), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: 'matrix' and 'scales' must be numeric arrays") from None
        if matrix.shape != (ORDER * channels + 1, channels) or scales.shape != (channels,):
            raise ValueError(f"{where}: 'matrix' {list(matrix.shape)} / 'scales' {list(scales.shape)}, expected "
                             f"{[ORDER * channels + 1, channels]} / {[channels]}")
        if not (np.isfinite(matrix).all() and (matrix == np.rint(matrix)).all() and np.abs(matrix).max() < 2 ** 40):
            raise ValueError(f"{where}: 'matrix' must hold integers of at most 40 bits")
        if not (np.isfinite(scales).all() and (scales > 0).all()):
            raise ValueError(f"{where}: 'scales' must be positive and finite")
        return cls(matrix.astype(np.int64), scales.astype(np.float32).astype(np.float64))

    def means(self, history: np.ndarray) -> np.ndarray:
        """Predicted means (rows, C) in steps from `history` (rows, ORDER * C) int64: exact integer products,
        one rounding at the end, so both sides get the same floats."""
        ones = np.ones((history.shape[0], 1), dtype=np.int64)
        num = np.concatenate([history, ones], axis=1) @ self.matrix
        return num.astype(np.float64) / float(1 << FRACTION_BITS)


def history_rows(q: np.ndarray) -> np.ndarray:
    """For symbols (frames, C): row t holds q(t-1), ..., q(t-ORDER) (zeros before the first frame)."""
    frames, c = q.shape
    q = q.astype(np.int64)
    cols = [np.vstack([np.zeros((k, c), dtype=np.int64), q[:frames - k]])[:frames] for k in range(1, ORDER + 1)]
    return np.concatenate(cols, axis=1)


def fit_predictor(sequences: list[tuple[np.ndarray, np.ndarray]], min_scale: float) -> Predictor:
    """Least squares of the continuous components (z / step) on the previous frames' symbols, per utterance
    (symbols (frames, C) int, values (frames, C) float); scales are the mean absolute residual, floored."""
    if not sequences:
        raise ValueError("no utterances to fit the predictor on")
    history = np.vstack([history_rows(q) for q, _ in sequences])
    y = np.vstack([u for _, u in sequences]).astype(np.float64)
    x1 = np.concatenate([history.astype(np.float64), np.ones((history.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(x1, y, rcond=None)
    matrix = np.rint(coef * (1 << FRACTION_BITS)).astype(np.int64)
    # The residual of the prediction as the coder will make it: the fixed-point matrix on integer symbols.
    residual = y - Predictor(matrix, np.ones(y.shape[1])).means(history)
    scales = np.maximum(np.abs(residual).mean(axis=0), min_scale)
    return Predictor(matrix, scales.astype(np.float32).astype(np.float64))


class PredictiveLaplaceAns:
    """EntropyStage over int16 KLT symbols (any leading axes, C components last): ANS with a quantised
    Laplace per symbol, its mean predicted from the previous frames. Frames of a batch follow each other as
    one sequence. The stream ends in the end marker of split/codecs/entropy.py."""

    def __init__(self, predictor: Predictor, limit: int) -> None:
        self.predictor, self.limit = predictor, limit
        self.model = constriction.stream.model.QuantizedLaplace(-limit, limit)

    def _frames(self, count: int) -> int:
        c = self.predictor.channels
        if count % c:
            raise CodecError(f"klt: {count} values are not whole frames of {c} components")
        return count // c

    def _means(self, history: np.ndarray) -> np.ndarray:
        return np.clip(self.predictor.means(history), -self.limit, self.limit)

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        flat = symbols.ravel().astype(np.int32)
        if flat.size == 0:
            return b"", {}
        q = flat.reshape(self._frames(flat.size), self.predictor.channels)
        means = self._means(history_rows(q))
        scales = np.broadcast_to(self.predictor.scales, q.shape)
        coder = ans_encoder()
        coder.encode_reverse(q.ravel(), self.model, means.ravel(), np.ascontiguousarray(scales).ravel())
        return ans_payload(coder), {}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        # The model comes from the fit: Codec.decode has checked `transform_crc` (KltTransform) before this.
        if count == 0:
            return np.zeros(0, dtype=dtype)
        frames, c = self._frames(count), self.predictor.channels
        coder = ans_decoder(payload)
        q = np.zeros((frames, c), dtype=np.int64)
        history = np.zeros((1, ORDER * c), dtype=np.int64)
        try:
            for t in range(frames):
                q[t] = coder.decode(self.model, self._means(history)[0], self.predictor.scales)
                history = np.concatenate([q[t], history[0, : (ORDER - 1) * c]])[None]
        except Exception as exc:  # constriction raises plain exceptions on an invalid stream
            raise CodecError(f"ANS payload does not decode: {exc}") from None
        ans_check_end_marker(coder)
        return q.ravel().astype(dtype)
