"""The reference backend: the family's PyTorch model, loaded from the original checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from families.registry import family_module
from core.model_card import ModelCard
from core.run_dir import RunError


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint: Path, card: ModelCard, *, threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.loaded = family_module(card.family).load(checkpoint)
        loaded_sha = self.loaded.source.get("sha256")
        expected = card.source.sha256 if card.source else None
        if expected and loaded_sha != expected:
            raise RunError(f"--checkpoint {checkpoint}: sha256 {loaded_sha[:12]}... is not the card's source checkpoint "
                           f"({card.source.path}, sha256 {expected[:12]}...); expected the checkpoint the "
                           "ONNX model was exported from")
        self.module = self.loaded.module.eval()
        self.input_names = [i.name for i in card.inputs]
        self.output_names = [o.name for o in card.outputs]
        self._info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mode": "eager, inference_mode",
                      "checkpoint": str(checkpoint), "checkpoint_sha256": loaded_sha}

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = self.module(*[torch.from_numpy(inputs[n]) for n in self.input_names])
        if isinstance(result, torch.Tensor):
            result = (result,)
        return {n: t.numpy() for n, t in zip(self.output_names, result)}

    def info(self) -> dict[str, Any]:
        return dict(self._info)
