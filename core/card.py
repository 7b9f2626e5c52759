"""The model card on disk: the one file that says what an ONNX model is (<stem>.card.json beside it).

Later stages read the card, never the family's model code: inputs and outputs with symbolic shapes,
labels and blank, the feature configuration, the output-length rule, precision, the parity report, and
the hashes that tie the card to its ONNX file and source checkpoint. This module reads and writes the
file and checks it against the graph; the card itself is the typed :class:`core.model_card.ModelCard`.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import onnx

from core.card_records import CardError
from core.fsio import sha256_file
from core.model_card import CARD_VERSION, METADATA_KEYS, ModelCard

__all__ = ["CARD_SUFFIX", "CARD_VERSION", "METADATA_KEYS", "CardError", "ModelCard", "card_path_for", "graph_io",
           "check_card_matches", "load_model_and_card", "read_card", "versions", "write_card"]

CARD_SUFFIX = ".card.json"

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.BOOL: "bool",
}


def card_path_for(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.stem + CARD_SUFFIX)


def versions() -> dict[str, str]:
    import numpy
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }


def write_card(card: ModelCard, path: Path) -> None:
    """Write the card's JSON atomically (a temporary file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_card(path: Path) -> ModelCard:
    """The card at `path`; a version-1 card is migrated in memory, a newer one refused (core/model_card.py)."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"model card not found: {path} (export writes it beside the .onnx file)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CardError(f"model card {path} is not valid JSON: {exc}") from None
    return ModelCard.from_dict(data, f"model card {path}")


def graph_io(proto: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Names, dtypes and shapes (ints or symbolic names) of the graph's real inputs and outputs."""
    init_names = {i.name for i in proto.graph.initializer}

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        t = value.type.tensor_type
        dims: list[int | str] = []
        for d in t.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
        return {"name": value.name, "dtype": ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims}

    inputs = [describe(v) for v in proto.graph.input if v.name not in init_names]
    outputs = [describe(v) for v in proto.graph.output]
    return inputs, outputs


def check_card_matches(card: ModelCard, proto: onnx.ModelProto, onnx_path: Path) -> None:
    """Refuse a card whose inputs/outputs disagree with the graph (names, order, dtypes, ranks, fixed dims)."""
    g_in, g_out = graph_io(proto)
    problems: list[str] = []
    for kind, declared, actual in (("input", card.inputs, g_in), ("output", card.outputs, g_out)):
        if [d.name for d in declared] != [a["name"] for a in actual]:
            problems.append(f"{kind} names {[d.name for d in declared]} in the card, "
                            f"{[a['name'] for a in actual]} in the graph")
            continue
        for d, a in zip(declared, actual):
            if d.dtype != a["dtype"]:
                problems.append(f"{kind} {d.name}: dtype {d.dtype} in the card, {a['dtype']} in the graph")
            if len(d.shape) != len(a["shape"]):
                problems.append(f"{kind} {d.name}: rank {len(d.shape)} in the card, {len(a['shape'])} in the graph")
                continue
            for axis, (dd, ad) in enumerate(zip(d.shape, a["shape"])):
                if isinstance(dd, int) and isinstance(ad, int) and dd != ad:
                    problems.append(f"{kind} {d.name} axis {axis}: {dd} in the card, {ad} in the graph")
    if problems:
        raise CardError(f"model card does not match {onnx_path}:\n  " + "\n  ".join(problems))


def load_model_and_card(onnx_path: Path, card_path: Path | None = None) -> tuple[onnx.ModelProto, ModelCard]:
    """Read an ONNX file and its card, and check that they describe the same graph."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CardError(f"ONNX model not found: {onnx_path}")
    if onnx_path.stat().st_size == 0:
        raise CardError(f"{onnx_path} is empty (0 bytes); expected an ONNX model (an interrupted copy or export?)")
    card = read_card(card_path or card_path_for(onnx_path))
    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for corrupt files
        raise CardError(f"{onnx_path} is not a readable ONNX model: {exc}") from None
    check_card_matches(card, proto, onnx_path)
    expected = card.onnx_sha256
    if expected:
        actual = sha256_file(onnx_path)
        if actual != expected:
            raise CardError(f"{onnx_path}: sha256 {actual[:12]}... is not the card's onnx_sha256 {expected[:12]}... "
                            f"({card_path or card_path_for(onnx_path)}); expected the model file that card was written "
                            "for (export it again, or pass its own --card)")
    return proto, card
