"""Chunk-by-chunk running of any streaming graph (the contract of core/streaming.py), from its card alone.

A :class:`StreamRunner` wraps one step function (an onnxruntime session, or a PyTorch module in tests)
and checks everything that crosses it: chunk shape and dtype, every state tensor's name, shape and dtype.
A :class:`Stream` is one utterance: it buffers incoming feature frames into chunks, carries the state,
and at the end pads the last partial chunk with zeros, marks it as the end, and returns what the flush
emits. Each stream's state is a :class:`StreamState` that knows whose it is and how far it got, so a state
handed to the wrong stream (or one that was tampered with) is refused instead of silently decoding
garbage.

The runners (``python -m runners stream``, ``--streaming``) and the streaming export's parity gate all roll
out through this one implementation.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core.card import load_model_and_card
from core.model_card import ModelCard
from core.streaming import NEXT_SUFFIX, StreamingSpec

log = logging.getLogger("runners.stream")

Step = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
_stream_ids = itertools.count(1)


class StreamError(ValueError):
    """Input that a streaming graph cannot take: named, with what was expected."""


@dataclass
class StreamState:
    """The state tensors of one stream (stream axis of size 1) plus who owns them and how far they got."""

    stream_id: str
    frames_seen: int
    tensors: dict[str, np.ndarray]
    finished: bool = False


def spec_from_card(card: ModelCard) -> StreamingSpec:
    if card.streaming is None:
        raise StreamError(f"the card of {card.onnx} has no 'streaming' entry: it is not a "
                          "streaming export (python -m export deepspeech2 --streaming --chunk-frames N)")
    return StreamingSpec.from_dict(card.streaming.to_dict())


def ort_step(model_path: Path, *, threads: int = 0, providers: list[str] | None = None) -> Step:
    """A step function over an onnxruntime session of a streaming graph."""
    from core.ort_session import create_session

    session = create_session(model_path, threads=threads, providers=providers)
    names = [o.name for o in session.get_outputs()]

    def step(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feeds)))

    return step


class StreamRunner:
    """Runs chunks through a streaming step function, checking every tensor against the spec."""

    def __init__(self, spec: StreamingSpec, step: Step) -> None:
        self.spec = spec
        self._step = step

    @classmethod
    def from_onnx(cls, model_path: Path, card: ModelCard | None = None, *, threads: int = 0,
                  providers: list[str] | None = None) -> "StreamRunner":
        if card is None:
            _, card = load_model_and_card(Path(model_path))
        return cls(spec_from_card(card), ort_step(Path(model_path), threads=threads, providers=providers))

    # -- checks -----------------------------------------------------------------------------------------
    def check_chunk(self, chunk: np.ndarray) -> None:
        expected = (*self.spec.feature_shape, self.spec.chunk_frames)
        if not isinstance(chunk, np.ndarray) or chunk.dtype != np.float32:
            raise StreamError(f"chunk: expected a float32 array, got {getattr(chunk, 'dtype', type(chunk).__name__)}")
        if chunk.ndim != len(expected) + 1 or tuple(chunk.shape[1:]) != expected:
            raise StreamError(f"chunk: expected shape (streams, {', '.join(map(str, expected))}) - this graph "
                              f"takes chunks of exactly {self.spec.chunk_frames} frames - got {tuple(chunk.shape)}")

    def check_state(self, tensors: dict[str, np.ndarray], batch: int) -> None:
        names = [s.name for s in self.spec.states]
        missing = [n for n in names if n not in tensors]
        extra = [n for n in tensors if n not in names]
        if missing or extra:
            raise StreamError(f"state: expected tensors {names}; missing {missing}, unknown {extra}")
        for s in self.spec.states:
            value = tensors[s.name]
            shape = s.zeros(batch).shape
            if not isinstance(value, np.ndarray) or value.dtype != np.dtype(s.dtype):
                raise StreamError(f"state {s.name}: expected dtype {s.dtype}, got "
                                  f"{getattr(value, 'dtype', type(value).__name__)}")
            if tuple(value.shape) != shape:
                raise StreamError(f"state {s.name}: expected shape {shape} ({s.holds}), got {tuple(value.shape)}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise StreamError(f"state {s.name}: holds NaN or infinity")

    # -- one call ---------------------------------------------------------------------------------------
    def step(self, chunk: np.ndarray, lengths: np.ndarray, end: np.ndarray,
             tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One graph call for a batch of streams (one state row each): (probs, probs_lengths, next state)."""
        self.check_chunk(chunk)
        batch = chunk.shape[0]
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        end = np.asarray(end, dtype=bool).reshape(-1)
        if lengths.shape != (batch,) or end.shape != (batch,):
            raise StreamError(f"chunk_lengths and end: expected one value per stream ({batch})")
        if ((lengths < 0) | (lengths > self.spec.chunk_frames)).any():
            raise StreamError(f"chunk_lengths: expected 0..{self.spec.chunk_frames} real frames, got {lengths.tolist()}")
        if ((lengths < self.spec.chunk_frames) & ~end).any():
            raise StreamError("chunk_lengths: only a stream's last chunk (end=True) may be shorter than "
                              f"{self.spec.chunk_frames} frames; pad it and mark it as the end")
        self.check_state(tensors, batch)
        out = self._step({"chunk": np.ascontiguousarray(chunk), "chunk_lengths": lengths, "end": end, **tensors})
        nxt = {s.name: out[s.name + NEXT_SUFFIX] for s in self.spec.states}
        return out["probs"], out["probs_lengths"], nxt

    def start(self) -> "Stream":
        return Stream(self)


class Stream:
    """One utterance: push feature frames as they come (any number), then finish()."""

    def __init__(self, runner: StreamRunner, stream_id: str | None = None) -> None:
        self.runner = runner
        self.stream_id = stream_id or f"stream-{next(_stream_ids)}"
        self.state = StreamState(self.stream_id, 0, {s.name: s.zeros(1) for s in runner.spec.states})
        self._pending = np.zeros((1, *runner.spec.feature_shape, 0), dtype=np.float32)

    def resume(self, state: StreamState) -> None:
        """Continue from a saved state; refused when it is another stream's or does not match its own count."""
        if state.stream_id != self.stream_id:
            raise StreamError(f"state belongs to {state.stream_id}, not to {self.stream_id}: resuming a stream with "
                              "another stream's state would decode garbage")
        self._check_owned(state)
        self.state = state

    def _check_owned(self, state: StreamState) -> None:
        self.runner.check_state(state.tensors, 1)
        seen = state.tensors.get("frames_seen")
        if seen is not None and int(seen.reshape(-1)[0]) != state.frames_seen:
            raise StreamError(f"state of {state.stream_id}: its frames_seen tensor says {int(seen.reshape(-1)[0])} "
                              f"frames, the stream consumed {state.frames_seen}: the tensors come from another stream")

    def _run(self, chunk: np.ndarray, length: int, end: bool) -> np.ndarray:
        if self.state.finished:
            raise StreamError(f"{self.stream_id} has already ended; start a new stream (its state is reset to zeros)")
        self._check_owned(self.state)
        probs, lengths, nxt = self.runner.step(chunk, np.array([length]), np.array([end]), self.state.tensors)
        self.state = StreamState(self.stream_id, self.state.frames_seen + length, nxt, finished=end)
        return probs[0, :int(lengths[0])]

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Feed (1, *feature_shape, n) frames; returns the output frames that became final (k, classes)."""
        spec = self.runner.spec
        frames = np.asarray(frames)
        if frames.dtype != np.float32 or frames.ndim != len(spec.feature_shape) + 2 or \
                tuple(frames.shape[:-1]) != (1, *spec.feature_shape):
            raise StreamError(f"features: expected float32 (1, {', '.join(map(str, spec.feature_shape))}, frames), "
                              f"got {frames.dtype} {tuple(frames.shape)}")
        self._pending = np.concatenate([self._pending, frames], axis=-1)
        outs = []
        c = spec.chunk_frames
        while self._pending.shape[-1] >= c:
            chunk, self._pending = self._pending[..., :c], self._pending[..., c:]
            outs.append(self._run(np.ascontiguousarray(chunk), c, False))
        return self._concat(outs)

    def finish(self) -> np.ndarray:
        """End the stream: the frames left (fewer than a chunk, maybe none) go in zero-padded as the last chunk,
        and every output still pending is flushed."""
        c = self.runner.spec.chunk_frames
        n = self._pending.shape[-1]
        chunk = np.zeros((1, *self.runner.spec.feature_shape, c), dtype=np.float32)
        chunk[..., :n] = self._pending
        self._pending = self._pending[..., :0]
        return self._run(chunk, n, True)

    def _concat(self, outs: list[np.ndarray]) -> np.ndarray:
        if not outs:
            return np.zeros((0, self.runner.spec.classes), dtype=np.float32)
        return np.concatenate(outs, axis=0)


def rollout(runner: StreamRunner, features: np.ndarray, push_frames: int | None = None) -> np.ndarray:
    """One utterance's features (1, *feature_shape, T) through a fresh stream: probabilities (1, frames, classes).

    `push_frames` feeds the frames in pieces of that size (default: all at once); the result must not
    depend on it.
    """
    stream = runner.start()
    total = features.shape[-1]
    step = push_frames or max(total, 1)
    outs = [stream.push(features[..., i:i + step]) for i in range(0, total, step)]
    outs.append(stream.finish())
    return np.concatenate(outs, axis=0)[None]
