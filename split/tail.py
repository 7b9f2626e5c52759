"""The cloud half: tail.onnx (+ its card) run on a decoded boundary tensor, with CTC transcripts.

Tensor names come from the graph (and the card when there is one): the boundary input is the first input
that is not a lengths input; a lengths input (card role "lengths", or an integer input) is fed the valid
frames per item when the Tail has one. Transcripts need the card's labels and blank; without a card the
Tail's output tensor is all the server can send back.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from core.card import card_path_for, read_card
from core.model_card import ModelCard
from split.session import load_session

INT_TYPES = ("tensor(int32)", "tensor(int64)")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_optional_card(onnx_path: Path, card_path: Path | None = None) -> ModelCard | None:
    """The card beside `onnx_path` (or at `card_path`), or None when there is none; a card that is there
    but malformed is refused (CardError, a ValueError) rather than half used."""
    path = card_path or card_path_for(Path(onnx_path))
    if not path.is_file():
        return None
    return read_card(path)


def lengths_input_name(session: Any, card: ModelCard | None) -> str | None:
    roles = {i.name: i.role for i in card.inputs} if card is not None else {}
    for inp in session.get_inputs():
        if roles.get(inp.name) == "lengths" or inp.type in INT_TYPES:
            return inp.name
    return None


class TailModel:
    def __init__(self, onnx_path: Path, card_path: Path | None = None, threads: int = 1) -> None:
        self.path = Path(onnx_path)
        self.card = read_optional_card(self.path, card_path)
        self.session = load_session(self.path, threads)
        self.lengths_input = lengths_input_name(self.session, self.card)
        boundary = [i for i in self.session.get_inputs() if i.name != self.lengths_input]
        if len(boundary) != 1:
            raise ValueError(f"{self.path}: expected one boundary input (+ optional lengths), found "
                             f"{[i.name for i in self.session.get_inputs()]}")
        self.boundary = boundary[0]
        last = self.boundary.shape[-1] if self.boundary.shape else None
        self.channels: int | None = last if isinstance(last, int) else None
        self.sha256 = sha256_of(self.path)
        self.can_transcribe = self.card is not None and bool(self.card.labels)

    def run(self, x: np.ndarray, lengths: list[int] | None, time_axis: int = 1,
            input_lengths: list[int] | None = None) -> dict[str, np.ndarray]:
        """Outputs by name. A lengths input (a Tail cut from a model that takes lengths) gets the model
        input's lengths when known, else `lengths`, else the full `time_axis` of every item (axis 1 for a
        (batch, frames, channels) boundary; -1 when a whole model takes spectrograms)."""
        feeds = {self.boundary.name: x.astype(np.float32)}
        if self.lengths_input is not None:
            n = input_lengths or lengths or [x.shape[time_axis]] * x.shape[0]
            dtype = np.int64 if self._input_type(self.lengths_input) == "tensor(int64)" else np.int32
            feeds[self.lengths_input] = np.asarray(n, dtype=dtype)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feeds)))

    def transcripts(self, outputs: dict[str, np.ndarray], lengths: list[int] | None,
                    boundary_frames: int | None = None) -> list[str]:
        """Greedy CTC text per item from the first output. `lengths` (valid boundary frames) limit the
        decoded frames only where the Tail keeps the boundary's frame count (`boundary_frames`); otherwise,
        and for unpadded batch-1 requests, every output frame is decoded."""
        if not self.can_transcribe:
            return []
        scores = next(iter(outputs.values()))
        same_frames = boundary_frames is None or boundary_frames == scores.shape[1]
        frames = lengths if lengths is not None and same_frames else [scores.shape[1]] * scores.shape[0]
        return [self.card.decode(scores[b], min(int(frames[b]), scores.shape[1])) for b in range(scores.shape[0])]

    def _input_type(self, name: str) -> str:
        return next(i.type for i in self.session.get_inputs() if i.name == name)
