"""Which in-process backend a `python -m runners` command asks for, as data that can be built later.

The single-process runner builds it at once; the Ray runner ships it to each worker, which builds its own
session. One description keeps the two from drifting apart (same options, same defaults).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.model_card import ModelCard
from core.run_dir import RunError

from runners.base import Backend
from runners.openvino_backend import OpenVinoBackend


def _onnxruntime(path: Path, card: ModelCard, **options: Any) -> Backend:
    from runners.onnxruntime_backend import OnnxRuntimeBackend  # deferred: pulls onnxruntime's session stack

    return OnnxRuntimeBackend(path, card, **options)


def _torch(path: Path, card: ModelCard, **options: Any) -> Backend:
    from runners.torch_backend import TorchBackend  # deferred: torch and the family modules load in seconds

    return TorchBackend(path, card, **options)


def _onnxruntime_options(args: Any) -> dict[str, Any]:
    return {"threads": args.threads, "inter_threads": args.inter_threads,
            "providers": [p for p in args.providers.split(",") if p], "graph_level": args.graph_level,
            "execution_mode": args.execution_mode, "profile": args.profile}


@dataclass(frozen=True)
class LocalBackend:
    """An in-process backend: what builds it, whether it loads the .onnx (--model) or the original checkpoint,
    and which of the command's arguments become its constructor's keyword arguments."""

    factory: Callable[..., Backend]
    loads_checkpoint: bool
    options: Callable[[Any], dict[str, Any]]


LOCAL: dict[str, LocalBackend] = {
    "onnxruntime": LocalBackend(_onnxruntime, False, _onnxruntime_options),
    "openvino": LocalBackend(OpenVinoBackend, False, lambda a: {"threads": a.threads, "precision": a.ov_precision,
                                                                "hint": a.ov_hint}),
    "torch": LocalBackend(_torch, True, lambda a: {"threads": a.threads}),
}
LOCAL_BACKENDS = tuple(LOCAL)


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
        entry = LOCAL.get(self.name)
        if entry is None:
            raise RunError(f"no in-process backend named {self.name} (have {', '.join(LOCAL_BACKENDS)})")
        return entry.factory(Path(str(self.checkpoint if entry.loads_checkpoint else self.model)), card,
                             **self.options)


def card_checkpoint(card: ModelCard) -> Path:
    """The source checkpoint the card records (what the torch backend loads without --checkpoint)."""
    if card.source is None or not card.source.path:
        raise RunError(f"the card of {card.onnx} records no source checkpoint path; give --checkpoint")
    return Path(card.source.path)


def backend_spec(args: Any, card: ModelCard) -> BackendSpec:
    """The in-process backend of `python -m runners` arguments (paths made absolute)."""
    entry = LOCAL.get(args.backend)
    if entry is None:
        raise RunError(f"no in-process backend named {args.backend} (have {', '.join(LOCAL_BACKENDS)})")
    if entry.loads_checkpoint:
        checkpoint = args.checkpoint or card_checkpoint(card)
        return BackendSpec(args.backend, checkpoint=str(Path(checkpoint).resolve()), options=entry.options(args))
    if not args.model:
        raise RunError(f"the {args.backend} backend needs --model")
    return BackendSpec(args.backend, model=str(Path(args.model).resolve()), options=entry.options(args))
