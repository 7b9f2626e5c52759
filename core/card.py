"""The model card: the one file that says what an ONNX model is (written beside it as <stem>.card.json).

Later stages read the card, never the family's model code: inputs and outputs with symbolic shapes,
labels and blank, the feature configuration, the output-length rule, precision, the parity report, and
the hashes that tie the card to its ONNX file and source checkpoint.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import onnx

from core.recipe import TensorSpec

CARD_VERSION = 1
CARD_SUFFIX = ".card.json"
# The card keys copied into ONNX metadata_props, so a bare .onnx still explains itself.
METADATA_KEYS = ["family", "labels", "blank_index", "feature", "output_length_rule", "precision",
                 "metrics_convention", "card_version"]

ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.BOOL: "bool",
}


class CardError(ValueError):
    """A card that is missing, malformed, or does not describe the ONNX graph beside it."""


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


def write_card(card: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_card(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CardError(f"model card not found: {path} (export writes it beside the .onnx file)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CardError(f"model card {path} is not valid JSON: {exc}") from None
    for key in ("family", "onnx", "inputs", "outputs", "labels", "blank_index", "feature"):
        if key not in card:
            raise CardError(f"model card {path} has no {key!r} entry")
    return card


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


def check_card_matches(card: dict[str, Any], proto: onnx.ModelProto, onnx_path: Path) -> None:
    """Refuse a card whose inputs/outputs disagree with the graph (names, order, dtypes, ranks, fixed dims)."""
    g_in, g_out = graph_io(proto)
    problems: list[str] = []
    for kind, declared, actual in (("input", card["inputs"], g_in), ("output", card["outputs"], g_out)):
        if [d["name"] for d in declared] != [a["name"] for a in actual]:
            problems.append(f"{kind} names {[d['name'] for d in declared]} in the card, "
                            f"{[a['name'] for a in actual]} in the graph")
            continue
        for d, a in zip(declared, actual):
            if d["dtype"] != a["dtype"]:
                problems.append(f"{kind} {d['name']}: dtype {d['dtype']} in the card, {a['dtype']} in the graph")
            if len(d["shape"]) != len(a["shape"]):
                problems.append(f"{kind} {d['name']}: rank {len(d['shape'])} in the card, {len(a['shape'])} in the graph")
                continue
            for axis, (dd, ad) in enumerate(zip(d["shape"], a["shape"])):
                if isinstance(dd, int) and isinstance(ad, int) and dd != ad:
                    problems.append(f"{kind} {d['name']} axis {axis}: {dd} in the card, {ad} in the graph")
    if problems:
        raise CardError(f"model card does not match {onnx_path}:\n  " + "\n  ".join(problems))


def load_model_and_card(onnx_path: Path, card_path: Path | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
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
    expected = card.get("onnx_sha256")
    if expected:
        from core.fsio import sha256_file

        actual = sha256_file(onnx_path)
        if actual != expected:
            raise CardError(f"{onnx_path}: sha256 {actual[:12]}... is not the card's onnx_sha256 {expected[:12]}... "
                            f"({card_path or card_path_for(onnx_path)}); expected the model file that card was written "
                            "for (export it again, or pass its own --card)")
    return proto, card


def input_specs(card: dict[str, Any]) -> list[TensorSpec]:
    return [TensorSpec.from_dict(d) for d in card["inputs"]]


def output_specs(card: dict[str, Any]) -> list[TensorSpec]:
    return [TensorSpec.from_dict(d) for d in card["outputs"]]


def output_frames(card: dict[str, Any], input_length: int) -> int:
    """Valid output frames for an input of `input_length` steps, by the card's output-length rule."""
    rule = card.get("output_length_rule") or {}
    if rule.get("kind") != "conv":
        raise CardError(f"card of {card.get('family')} has no usable output_length_rule ({rule!r})")
    n = int(input_length)
    for layer in rule["layers"]:
        n = (n + 2 * layer.get("padding", 0) - layer.get("dilation", 1) * (layer["kernel"] - 1) - 1) // layer["stride"] + 1
    return max(n, 0)
