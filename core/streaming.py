"""The streaming contract every chunk-by-chunk model follows, and the one wrapper that exports it.

The ESP-DL pattern: besides its offline ``forward``, a streaming model has
``streaming_forward(x, *caches) -> (y, *new_caches)`` where every cache is an ordinary tensor that goes in
and comes back out, so the deployed graph holds no hidden state and a runner can carry, reset, batch or
inspect it. Here ``x`` and ``y`` are fixed groups of tensors every streaming model shares, so that one
runner (runners/streaming.py) drives any family from its model card alone:

* inputs  ``chunk`` (B, *feature_shape, C) float32 - C = chunk_frames feature frames, time last;
  ``chunk_lengths`` (B,) int64 - how many of the C frames are real (fewer only in a stream's last chunk);
  ``end`` (B,) bool - this is the stream's last chunk: flush everything still pending;
  then one tensor per state, in ``states`` order.
* outputs ``probs`` (B, M, classes) float32 - M = max_output_frames, of which the first
  ``probs_lengths`` (B,) int64 are new, valid frames (the rest are zero); then the next value of every
  state, named ``<state>_next``.

A state's initial value is zeros; a stream is reset by giving it zeros again. Chunks of fewer real frames
and the end flag let a model reproduce exactly what its offline forward does past the last frame (zero
padding) instead of feeding made-up frames.

A family plugs in by giving a ``torch.nn.Module`` with ``streaming_spec`` (a :class:`StreamingSpec`) and
``streaming_forward``; :func:`export_streaming` and the runner need nothing else.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import onnx
import torch

from core.card import card_path_for, write_card
from core.model_card import ModelCard
from core.onnx_export import quiet_known_stderr, save_atomic, set_metadata
from core.recipe import sha256_file

CHUNK_INPUTS = ("chunk", "chunk_lengths", "end")
CHUNK_OUTPUTS = ("probs", "probs_lengths")
NEXT_SUFFIX = "_next"


@dataclass(frozen=True)
class StateSpec:
    """One cache tensor: its shape with the stream axis written as "batch", its dtype and what it holds."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    holds: str

    @property
    def batch_axis(self) -> int:
        return self.shape.index("batch")

    def zeros(self, batch: int) -> np.ndarray:
        return np.zeros([batch if d == "batch" else d for d in self.shape], dtype=self.dtype)


@dataclass(frozen=True)
class StreamingSpec:
    """What a runner needs to know to drive a streaming graph (stored in the card's ``streaming`` entry)."""

    chunk_frames: int
    feature_shape: tuple[int, ...]
    classes: int
    max_output_frames: int
    states: tuple[StateSpec, ...]
    # Latency facts in feature frames and ms, stated by the family (see docs/streaming.md).
    latency: dict[str, Any] = field(default_factory=dict)

    def input_names(self) -> list[str]:
        return [*CHUNK_INPUTS, *(s.name for s in self.states)]

    def output_names(self) -> list[str]:
        return [*CHUNK_OUTPUTS, *(s.name + NEXT_SUFFIX for s in self.states)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = self.input_names()
        d["outputs"] = self.output_names()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamingSpec":
        states = tuple(StateSpec(s["name"], s["dtype"], tuple(s["shape"]), s["holds"]) for s in d["states"])
        return cls(chunk_frames=int(d["chunk_frames"]), feature_shape=tuple(d["feature_shape"]),
                   classes=int(d["classes"]), max_output_frames=int(d["max_output_frames"]), states=states,
                   latency=dict(d.get("latency", {})))


class StreamingModel(Protocol):
    streaming_spec: StreamingSpec

    def streaming_forward(self, chunk: torch.Tensor, chunk_lengths: torch.Tensor, end: torch.Tensor,
                          *caches: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


class StreamingExportWrapper(torch.nn.Module):
    """Makes ``streaming_forward`` the module's forward, which is what torch.onnx.export traces."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.model.streaming_forward(*args)
        # The exporter drops graph inputs that the model never reads (a causal model ignores `end`); the
        # contract keeps all three, so tie them to probs_lengths with a zero that changes no value.
        anchor = sum(a.reshape(-1)[:1].to(torch.int64).sum() * 0 for a in args[:len(CHUNK_INPUTS)])
        return (outs[0], outs[1] + anchor, *outs[2:])


def example_inputs(spec: StreamingSpec, batch: int) -> tuple[torch.Tensor, ...]:
    chunk = torch.zeros(batch, *spec.feature_shape, spec.chunk_frames)
    lengths = torch.full((batch,), spec.chunk_frames, dtype=torch.int64)
    end = torch.zeros(batch, dtype=torch.bool)
    return (chunk, lengths, end, *(torch.from_numpy(s.zeros(batch)) for s in spec.states))


def torch_step(model: torch.nn.Module) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A runner step (name -> array in, name -> array out) over a streaming module in PyTorch."""
    spec: StreamingSpec = model.streaming_spec

    def step(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outs = model.streaming_forward(*(torch.from_numpy(np.ascontiguousarray(feeds[n]))
                                             for n in spec.input_names()))
        return {n: t.numpy() for n, t in zip(spec.output_names(), outs)}

    return step


def export_streaming_onnx(model: torch.nn.Module, out_path: Path, opset: int = 17) -> onnx.ModelProto:
    """Trace ``streaming_forward`` (TorchScript exporter, as every export here) with a dynamic stream axis.

    The chunk's time axis and the output's frame axis stay static: the graph is built for one chunk size.
    """
    spec: StreamingSpec = model.streaming_spec
    axes: dict[str, dict[int, str]] = {"chunk": {0: "batch"}, "chunk_lengths": {0: "batch"}, "end": {0: "batch"},
                                       "probs": {0: "batch"}, "probs_lengths": {0: "batch"}}
    for s in spec.states:
        axes[s.name] = {s.batch_axis: "batch"}
        axes[s.name + NEXT_SUFFIX] = {s.batch_axis: "batch"}

    tmp = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings(), quiet_known_stderr():
        warnings.simplefilter("ignore")  # the legacy exporter's notes about itself and PackPadded shapes
        torch.onnx.export(StreamingExportWrapper(model).eval(), example_inputs(spec, 2), str(tmp), dynamo=False,
                          input_names=spec.input_names(), output_names=spec.output_names(), dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    onnx.checker.check_model(proto)
    return proto


def state_card(spec: StreamingSpec) -> dict[str, Any]:
    """The card's ``streaming`` entry: the spec plus each state's input and output name."""
    d = spec.to_dict()
    for s in d["states"]:
        s["input"] = s["name"]
        s["output"] = s["name"] + NEXT_SUFFIX
    return d


def write_streaming_export(proto: onnx.ModelProto, card: ModelCard, out_dir: Path,
                           name: str = "model") -> tuple[Path, ModelCard]:
    """Write ``<name>.onnx`` and its card atomically: the card first, then the model renamed into place.
    Returns the model's path and its card as written (with the model's sha256)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp_name:
        candidate = Path(tmp_name) / onnx_path.name
        entries = card.to_dict()
        set_metadata(proto, {k: entries[k] for k in ("streaming", "family", "labels", "blank_index", "feature",
                                                     "precision")})
        save_atomic(proto, candidate)
        card = card.replace(onnx_sha256=sha256_file(candidate))
        write_card(card, card_path_for(onnx_path))
        shutil.move(str(candidate), str(onnx_path))
    return onnx_path, card


def describe_io(spec: StreamingSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Card ``inputs``/``outputs`` entries in the shape core/card.py checks against the graph."""
    c = spec.chunk_frames
    inputs: list[dict[str, Any]] = [
        {"name": "chunk", "dtype": "float32", "shape": ["batch", *spec.feature_shape, c], "role": "features",
         "time_axis": 1 + len(spec.feature_shape)},
        {"name": "chunk_lengths", "dtype": "int64", "shape": ["batch"], "role": "lengths"},
        {"name": "end", "dtype": "bool", "shape": ["batch"], "role": "end_of_stream"},
    ]
    outputs: list[dict[str, Any]] = [
        {"name": "probs", "dtype": "float32", "shape": ["batch", spec.max_output_frames, spec.classes],
         "role": "probabilities", "time_axis": 1, "lengths_from": "probs_lengths"},
        {"name": "probs_lengths", "dtype": "int64", "shape": ["batch"], "role": "lengths"},
    ]
    for s in spec.states:
        inputs.append({"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "role": "state"})
        outputs.append({"name": s.name + NEXT_SUFFIX, "dtype": s.dtype, "shape": list(s.shape), "role": "state"})
    return inputs, outputs


def json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} != {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def sweep_lengths(spec: StreamingSpec, extra: Sequence[int] = ()) -> list[int]:
    """Utterance lengths a streaming parity check covers: shorter than one chunk, exact multiples, odd rests."""
    c = spec.chunk_frames
    return sorted({1, 2, 7, c, 2 * c + 1, 3 * c + c // 2 + 3, 41, *extra})
