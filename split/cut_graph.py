"""`python -m split cut`: cut any ONNX graph into head.onnx and tail.onnx at named tensors or after a module.

For models the repo has no PyTorch code for. The cut is checked by running head -> tail against the
whole graph in ONNX Runtime on random inputs (symbolic dims from --dims). When the model has a card
beside it (a repo export), head and tail get cards derived from it; a bare graph gets cut.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import onnx

from core.card import CardError, card_path_for, graph_io, read_card, write_card
from core.model_card import ModelCard
from split.onnx_cut import Cut, CutError, compare_chain, cut, module_boundary, random_feeds, save

log = logging.getLogger("split")

HELP = "cut any ONNX graph into head.onnx / tail.onnx at named tensors or after a module, checked against it"


def _dims(text: str) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in (p.split("=") for p in text.split(",") if p)}
    except ValueError:
        raise argparse.ArgumentTypeError("expected NAME=INT pairs, e.g. batch=2,time=120") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="the ONNX graph to cut")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--at", help="comma-separated tensor names: the boundary (see --list)")
    where.add_argument("--after", help="a module scope, e.g. fully_connected or rescnn_layers.0 (TorchScript exports)")
    p.add_argument("--list", action="store_true", help="print the graph's tensor names with their nodes and stop")
    p.add_argument("--out", type=Path, help="folder for head.onnx, tail.onnx and their cards (or cut.json)")
    p.add_argument("--dims", type=_dims, default={}, metavar="batch=2,time=120",
                   help="values of symbolic input dims for the check (default 1 each; use 2+ for batch)")
    p.add_argument("--cases", type=int, default=3, help="random input cases for the check (default 3)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for the check")


def boundary_specs(part: onnx.ModelProto, names: list[str], role: str) -> list[dict[str, Any]]:
    ins, outs = graph_io(part)
    found = {d["name"]: d for d in (*ins, *outs)}
    return [{**found[n], "role": role} for n in names]


def derive_cards(card: ModelCard, result: Cut, parity: dict[str, Any],
                 how: dict[str, Any]) -> tuple[ModelCard, ModelCard]:
    """Head and tail cards from the whole model's card: same facts, their own inputs/outputs and a split entry."""
    whole = card.to_dict()
    inputs = {d["name"]: d for d in whole["inputs"]}
    boundary = boundary_specs(result.head, result.boundary, "features")
    split = {"boundary": boundary, "tail_graph_inputs": result.tail_graph_inputs, "cut": how,
             "shared_nodes": len(result.shared_nodes), "whole_model": card.onnx}
    common = {k: v for k, v in whole.items() if k not in ("inputs", "outputs", "onnx", "onnx_sha256", "parity",
                                                             "optimization", "timings_s")}
    head = {**common, "onnx": "head.onnx", "inputs": [inputs[n] for n in _real_inputs(result.head)],
            "outputs": boundary, "split": {**split, "part": "head", "peer": "tail.onnx"},
            "split_parity": parity, "whole_model_parity": whole.get("parity")}
    tail = {**common, "onnx": "tail.onnx",
            "inputs": boundary_specs(result.tail, result.boundary, "features") + [inputs[n] for n in result.tail_graph_inputs],
            "outputs": whole["outputs"], "split": {**split, "part": "tail", "peer": "head.onnx"},
            "feature": {"kind": "split_activations", "producer": "head.onnx", "tensors": result.boundary},
            "split_parity": parity, "whole_model_parity": whole.get("parity")}
    return ModelCard.from_dict(head, "the head card"), ModelCard.from_dict(tail, "the tail card")


def _real_inputs(proto: onnx.ModelProto) -> list[str]:
    init = {i.name for i in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in init]


def write_parts(out: Path, result: Cut, cards: tuple[ModelCard, ModelCard] | None, report: dict[str, Any]) -> None:
    """Cards (or cut.json) first, then the graphs, each atomically."""
    from core.recipe import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    tmp_paths = {}
    for name, proto in (("head", result.head), ("tail", result.tail)):
        tmp_paths[name] = out / f".{name}.onnx.partial"
        onnx.save(proto, str(tmp_paths[name]))
    if cards is not None:
        for name, card in zip(("head", "tail"), cards):
            write_card(card.replace(onnx_sha256=sha256_file(tmp_paths[name])), card_path_for(out / f"{name}.onnx"))
    else:
        tmp = out / "cut.json.tmp"
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out / "cut.json")
    for name, path in tmp_paths.items():
        path.replace(out / f"{name}.onnx")


def main(args: argparse.Namespace) -> int:
    try:
        proto = onnx.load(str(args.model))
    except Exception as exc:  # DecodeError, FileNotFoundError: name the file
        log.error("%s is not a readable ONNX model: %s", args.model, exc)
        return 2
    if args.list:
        for node in proto.graph.node:
            for out in node.output:
                if out:
                    print(f"{out}\t{node.op_type}\t{node.name}")
        return 0
    if not (args.at or args.after) or args.out is None:
        log.error("give --at TENSORS or --after MODULE, and --out (or --list to see the names)")
        return 2
    try:
        boundary = [b for b in args.at.split(",") if b] if args.at else module_boundary(proto, args.after)
        result = cut(proto, boundary)
    except CutError as exc:
        log.error("%s: %s", args.model, exc)
        return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        save(result.head, tmp / "head.onnx")
        save(result.tail, tmp / "tail.onnx")
        cases = [random_feeds(proto, args.dims, seed=k) for k in range(args.cases)]
        parity = compare_chain(args.model, tmp / "head.onnx", tmp / "tail.onnx", cases, threads=args.threads)
    how = {"at": boundary} if args.at else {"after": args.after}
    report = {"model": str(args.model), **result.report(), "cut": how, "parity": parity}
    if not parity["passed"]:
        log.error("head -> tail does not reproduce %s:\n  %s", args.model, "\n  ".join(parity["failures"]))
        return 3

    cards = None
    if card_path_for(args.model).is_file():
        try:
            cards = derive_cards(read_card(card_path_for(args.model)), result, parity, how)
        except CardError as exc:
            log.error("%s", exc)
            return 2
    write_parts(args.out, result, cards, report)
    log.info("cut %s at %s: head %d nodes, tail %d nodes (tail also takes %s); head -> tail matches over %d cases",
             args.model.name, boundary, len(result.head.graph.node), len(result.tail.graph.node),
             result.tail_graph_inputs or "no graph input", parity["cases"])
    return 0

