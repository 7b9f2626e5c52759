"""Export a family's PyTorch reference to ONNX with named, dynamic axes.

We use the TorchScript-based exporter (``dynamo=False``): torch 2.13's default dynamo path fails on
pack_padded_sequence and on GRU cells with dynamic shapes, and takes minutes where this takes a second.
The parity gate (core/parity.py) is what proves the graph right, whichever exporter made it.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import onnx
import torch

from core.recipe import LoadedModel


def dynamic_axes(model: LoadedModel) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for spec in [*model.inputs, *model.outputs]:
        named = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
        if named:
            axes[spec.name] = named
    return axes


# Printed by the TorchScript exporter's C++ code for every pack/pad node; the parity gate is what
# proves the shapes right, so these lines only bury real messages.
BENIGN_STDERR = ("shape inference of prim::PackPadded", "shape inference of prim::PadPacked")


@contextlib.contextmanager
def quiet_known_stderr() -> Iterator[None]:
    """Capture C-level stderr during export; pass on every line that is not a known benign warning."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not any(b in line for b in BENIGN_STDERR):
                    print(line, file=sys.stderr)


def export_onnx(model: LoadedModel, out_path: Path) -> onnx.ModelProto:
    """Trace `model` on example inputs and write the ONNX graph to `out_path` (temp name, then rename)."""
    lengths = model.parity_lengths[:2] if len(model.parity_lengths) >= 2 else model.parity_lengths
    static_batch = model.inputs[0].shape[0]
    if isinstance(static_batch, int):
        lengths = (lengths * static_batch)[:static_batch]
    example = model.make_inputs(lengths, None)
    args = tuple(example[spec.name] for spec in model.inputs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings(), quiet_known_stderr():
        # The legacy exporter warns about itself and about PackPadded shape inference; both are expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.module,
            args,
            str(tmp),
            dynamo=False,
            input_names=[s.name for s in model.inputs],
            output_names=[s.name for s in model.outputs],
            dynamic_axes=dynamic_axes(model) or None,
            opset_version=model.opset,
            do_constant_folding=True,
        )
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    tmp.replace(out_path)
    return proto


def set_metadata(proto: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Write the essentials of the card into metadata_props so a bare ONNX file explains itself."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in facts.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if key in existing:
            existing[key].value = text
        else:
            entry = proto.metadata_props.add()
            entry.key = key
            entry.value = text


def get_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def save_atomic(proto: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
