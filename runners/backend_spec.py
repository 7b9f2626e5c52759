"""Which in-process backend a `python -m runners` command asks for, as data that can be built later.

The single-process runner builds it at once; the Ray runner ships it to each worker, which builds its own
session. One description keeps the two from drifting apart (same options, same defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.model_card import ModelCard
from core.run_dir import RunError

from runners.base import Backend
from runners.openvino_backend import OpenVinoBackend

LOCAL_BACKENDS = ("onnxruntime", "openvino", "torch")


@dataclass(frozen=True)
class BackendSpec:
    """What a process needs to build a backend: its name, the model file or checkpoint, its options."""

    name: str
    model: str | None = None  # the .onnx (onnxruntime, openvino)
    checkpoint: str | None = None  # the original checkpoint (torch)
    options: dict[str, Any] = field(default_factory=dict)  # the backend constructor's keyword arguments

    @property
    def threads(self) -> int:
        return int(self.options.get("threads", 0) or 0)

    @property
    def source(self) -> str:
        return str(self.model or self.checkpoint)

    def build(self, card: ModelCard) -> Backend:
        if self.name == "onnxruntime":
            from runners.onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend(Path(str(self.model)), card, **self.options)
        if self.name == "openvino":
            return OpenVinoBackend(Path(str(self.model)), card, **self.options)
        if self.name == "torch":
            from runners.torch_backend import TorchBackend

            return TorchBackend(Path(str(self.checkpoint)), card, **self.options)
        raise RunError(f"no in-process backend named {self.name} (have {', '.join(LOCAL_BACKENDS)})")


def card_checkpoint(card: ModelCard) -> Path:
    """The source checkpoint the card records (what the torch backend loads without --checkpoint)."""
    if card.source is None or not card.source.path:
        raise RunError(f"the card of {card.onnx} records no source checkpoint path; give --checkpoint")
    return Path(card.source.path)


def backend_spec(args: Any, card: ModelCard) -> BackendSpec:
    """The onnxruntime / openvino / torch backend of `python -m runners` arguments (paths made absolute)."""
    if args.backend == "torch":
        checkpoint = args.checkpoint or card_checkpoint(card)
        return BackendSpec("torch", checkpoint=str(Path(checkpoint).resolve()), options={"threads": args.threads})
    if args.backend not in LOCAL_BACKENDS:
        raise RunError(f"no in-process backend named {args.backend} (have {', '.join(LOCAL_BACKENDS)})")
    if not args.model:
        raise RunError(f"the {args.backend} backend needs --model")
    model = str(Path(args.model).resolve())
    if args.backend == "onnxruntime":
        return BackendSpec("onnxruntime", model=model, options={
            "threads": args.threads, "inter_threads": args.inter_threads,
            "providers": [p for p in args.providers.split(",") if p], "graph_level": args.graph_level,
            "execution_mode": args.execution_mode, "profile": args.profile})
    return BackendSpec("openvino", model=model, options={"threads": args.threads, "precision": args.ov_precision,
                                                         "hint": args.ov_hint})
