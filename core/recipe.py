"""What a model family declares so that export, parity and the later stages stay generic.

A recipe is the only per-family code the pipeline has: how to load the real artifact into a PyTorch
reference, what its inputs and outputs are (names, dtypes, symbolic shapes, which axis is time, which
output carries lengths), how to make example inputs for export and parity, and the facts that go into
the model card. Export, optimisation, the parity gate, the runners and postprocess read only these.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.tensor_spec import TensorSpec


@dataclass
class LoadedModel:
    """A family's PyTorch reference, ready for export, with what the card needs to know about it."""

    family: str
    module: torch.nn.Module
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Builds one batch of example inputs (name -> tensor) for the given per-row input lengths.
    make_inputs: Callable[[list[int], int | None], dict[str, torch.Tensor]]
    card_facts: dict[str, Any]
    source: dict[str, Any]
    opset: int = 17
    # Lengths (in input frames/samples) the parity gate sweeps; batches mix them.
    parity_lengths: list[int] = field(default_factory=list)
    # Tolerance for fp32 parity of float outputs.
    atol: float = 1e-4
    rtol: float = 1e-3
    # Valid output frames for an input length, for families without a lengths output.
    frames_for: Callable[[int], int] | None = None
    # False where padding changes a row's result by design (wav2vec2-base takes no attention mask): the
    # parity gate then records padded-batch-vs-batch-1 differences without failing on them.
    padding_invariant: bool = True


@dataclass
class SplitRecipe:
    """A family's own cut of its model into parts exported one by one (e.g. Head and Tail), and the chains
    of parts that must reproduce a PyTorch reference (the whole model) over the family's sweep."""

    parts: dict[str, LoadedModel]  # in export order; each becomes <name>.onnx with its card
    # chain name -> (part names in running order, the PyTorch reference the chain must match)
    chains: dict[str, tuple[list[str], Callable[..., torch.Tensor]]]
    make_inputs: Callable[[list[int]], dict[str, torch.Tensor]]
    parity_lengths: list[int]
    frames_for: Callable[[int], int]  # valid output frames of a row for its input length
    atol: float = 1e-4
    rtol: float = 1e-3


class NonFiniteWeightsError(ValueError):
    """A model whose parameters or buffers hold NaN or inf; the message names the tensors."""


def check_finite_weights(module: torch.nn.Module, source: str) -> None:
    """Refuse NaN/inf in any parameter or buffer, naming each tensor: such a reference is NaN wherever the
    tensor reaches, and a runtime that clamps NaN away (Clip, Hardtanh) can then seem to match nothing."""
    bad = []
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            if nan or inf:
                bad.append(f"{name} ({nan} NaN, {inf} inf of {tensor.numel()})")
    if bad:
        shown = ", ".join(bad[:10]) + (f", and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise NonFiniteWeightsError(f"{source}: non-finite weights in {len(bad)} tensor(s): {shown}; "
                                    "expected finite values everywhere (a diverged or corrupted checkpoint?)")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("float32"),
    "float16": np.dtype("float16"),
    "int32": np.dtype("int32"),
    "int64": np.dtype("int64"),
}
