"""Cutting an ONNX graph into Head and Tail at named tensors (onnx.utils.Extractor), for any model.

The Head is the subgraph from the graph's inputs to the boundary tensors; the Tail is the subgraph
from the boundary tensors to the graph's outputs. When the Tail also needs a graph input (a lengths
input, say) it takes it as an input of its own, and integer bookkeeping it shares with the Head
(length formulas, shapes) is recomputed there; a cut across which a heavy operator (convolution, matrix
product, recurrent layer) would have to run on both sides is refused, because it is not a cut: the
boundary misses a tensor (a skip connection, typically).

A cut can be named by tensors (`--at`) or by a module (`--after LAYER`): the TorchScript exporter
names every node by its module scope (`/fully_connected/MatMul`, `/rescnn_layers/rescnn_layers.0/...`),
and the boundary is then every tensor the module's nodes produce for nodes outside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.utils import Extractor

HEAVY_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "GRU", "LSTM", "RNN", "Attention", "MatMulInteger",
             "QLinearConv", "QLinearMatMul", "ConvInteger"}
ONNX_TO_NUMPY = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
                 onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT64: np.int64,
                 onnx.TensorProto.DOUBLE: np.float64}


class CutError(ValueError):
    """A boundary that does not cut the graph cleanly, or names that are not in it."""


@dataclass
class Cut:
    head: onnx.ModelProto
    tail: onnx.ModelProto
    boundary: list[str]
    tail_graph_inputs: list[str] = field(default_factory=list)
    shared_nodes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"boundary": self.boundary, "tail_graph_inputs": self.tail_graph_inputs,
                "shared_nodes": len(self.shared_nodes), "head_nodes": len(self.head.graph.node),
                "tail_nodes": len(self.tail.graph.node)}


def _real_inputs(graph: onnx.GraphProto) -> list[str]:
    init = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in init]


def _producers(graph: onnx.GraphProto) -> dict[str, int]:
    return {out: i for i, node in enumerate(graph.node) for out in node.output if out}


def _ancestors(graph: onnx.GraphProto, targets: list[str], stop: set[str]) -> tuple[set[int], set[str]]:
    """Node indexes needed to compute `targets` from `stop`, and the graph inputs reached on the way."""
    producers = _producers(graph)
    inputs = set(_real_inputs(graph))
    nodes: set[int] = set()
    reached: set[str] = set()
    stack = list(targets)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if not name or name in seen or name in stop:
            continue
        seen.add(name)
        if name in inputs:
            reached.add(name)
            continue
        idx = producers.get(name)
        if idx is None:
            continue  # an initializer
        nodes.add(idx)
        stack.extend(graph.node[idx].input)
    return nodes, reached


def tensor_names(proto: onnx.ModelProto) -> list[str]:
    """Every node output in graph order: the names a cut can be made at."""
    return [out for node in proto.graph.node for out in node.output if out]


def module_path(node_name: str) -> str:
    """The dotted module path of a node from its scope name: '/encoder/layers.0/attention/MatMul' and the
    exporter's other form for list items, '/rescnn_layers/rescnn_layers.0/cnn1/Conv', both read as
    'encoder.layers.0.attention' and 'rescnn_layers.0.cnn1'; '' for a node outside every module."""
    parts: list[str] = []
    for part in node_name.split("/")[1:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part  # 'rescnn_layers' then 'rescnn_layers.0': one list item, not two levels
        else:
            parts.append(part)
    return ".".join(parts)


def _in_module(path: str, layer: str) -> bool:
    return path == layer or path.startswith(layer + ".")


def module_boundary(proto: onnx.ModelProto, layer: str) -> list[str]:
    """The tensors that module `layer` (e.g. 'fully_connected', 'rescnn_layers.0', 'wav2vec2.encoder.layers.0')
    hands to the rest.

    A family whose export wraps the model in one module (wav2vec2's wrapper holds the HF model as `model`)
    gives every node the same first scope; `layer` may then be named as in the wrapped model, without it.
    """
    paths = [module_path(n.name) for n in proto.graph.node]
    tops = sorted({p.split(".")[0] for p in paths if p})
    inside = [i for i, p in enumerate(paths) if _in_module(p, layer)]
    wrapped = len(tops) == 1
    if not inside and wrapped:
        inside = [i for i, p in enumerate(paths) if _in_module(p, f"{tops[0]}.{layer}")]
    if not inside:
        if wrapped:
            tops = sorted({p.split(".")[1] for p in paths if p.count(".") >= 1})
        raise CutError(f"no node of module {layer!r} in the graph; top-level modules: {tops}")
    in_set = set(inside)
    used_outside = {name for j, n in enumerate(proto.graph.node) if j not in in_set for name in n.input}
    used_outside |= {o.name for o in proto.graph.output}
    boundary = [name for i in inside for name in proto.graph.node[i].output if name in used_outside]
    if not boundary:
        raise CutError(f"module {layer!r} produces nothing the rest of the graph uses")
    return boundary


def cut(proto: onnx.ModelProto, boundary: list[str]) -> Cut:
    """Head (graph inputs -> boundary) and Tail (boundary [+ graph inputs it needs] -> graph outputs)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    names = set(tensor_names(inferred))
    unknown = [b for b in boundary if b not in names]
    if unknown:
        raise CutError(f"tensor(s) {unknown} are not node outputs of the graph (list them with --list)")
    outputs = [o.name for o in graph.output]
    head_nodes, head_inputs = _ancestors(graph, boundary, set())
    tail_nodes, tail_inputs = _ancestors(graph, outputs, set(boundary))
    unused = [b for b in boundary if b not in {i for n in tail_nodes for i in graph.node[n].input} | set(outputs)]
    if unused:
        raise CutError(f"boundary tensor(s) {unused} are not used after the cut")
    shared = sorted(head_nodes & tail_nodes)
    heavy = [graph.node[i].name or graph.node[i].op_type for i in shared if graph.node[i].op_type in HEAVY_OPS]
    if heavy:
        raise CutError(f"not a clean cut: the tail would also have to run {heavy[:5]} from the graph inputs; a tensor "
                       "crossing the boundary is missing from it (a skip connection?)")
    value_names = {v.name for v in [*graph.value_info, *graph.input, *graph.output]}
    missing_types = [b for b in boundary if b not in value_names]
    if missing_types:
        raise CutError(f"ONNX shape inference gives no type for {missing_types}; cut elsewhere")
    graph_inputs = _real_inputs(graph)
    extractor = Extractor(inferred)
    head = extractor.extract_model([i for i in graph_inputs if i in head_inputs], list(boundary))
    tail_extra = [i for i in graph_inputs if i in tail_inputs]
    tail = extractor.extract_model(list(boundary) + tail_extra, outputs)
    for part in (head, tail):
        onnx.checker.check_model(part)
    return Cut(head=head, tail=tail, boundary=list(boundary), tail_graph_inputs=tail_extra,
               shared_nodes=[graph.node[i].name for i in shared])


def run_chain(head_path: Path, tail_path: Path, feeds: dict[str, np.ndarray], threads: int = 0) -> list[np.ndarray]:
    """Head on the graph inputs, then Tail on the boundary (+ the graph inputs it takes)."""
    from core.ort_session import create_session

    head, tail = create_session(head_path, threads=threads), create_session(tail_path, threads=threads)
    mid = dict(zip([o.name for o in head.get_outputs()],
                   head.run(None, {i.name: feeds[i.name] for i in head.get_inputs()})))
    return tail.run(None, {i.name: mid[i.name] if i.name in mid else feeds[i.name] for i in tail.get_inputs()})


def compare_chain(whole_path: Path, head_path: Path, tail_path: Path, cases: list[dict[str, np.ndarray]], *,
                  atol: float = 1e-5, rtol: float = 1e-4, threads: int = 0) -> dict[str, Any]:
    """Every output of head -> tail against the whole graph, on each case (a dict of graph inputs)."""
    from core.ort_session import create_session

    whole = create_session(whole_path, threads=threads)
    names = [o.name for o in whole.get_outputs()]
    failures: list[str] = []
    worst: dict[str, float] = {n: 0.0 for n in names}
    for k, feeds in enumerate(cases):
        ref = whole.run(None, feeds)
        got = run_chain(head_path, tail_path, feeds, threads)
        for name, g, r in zip(names, got, ref):
            if g.shape != r.shape:
                failures.append(f"case {k} output {name}: shape {g.shape} != {r.shape}")
                continue
            if np.issubdtype(r.dtype, np.floating):
                if not np.isfinite(g).all():
                    failures.append(f"case {k} output {name}: non-finite values")
                    continue
                err = np.abs(g.astype(np.float64) - r)
                worst[name] = max(worst[name], float(err.max(initial=0.0)))
                bad = int((err > atol + rtol * np.abs(r)).sum())
            else:
                bad = int((g != r).sum())
            if bad:
                failures.append(f"case {k} output {name}: {bad} values differ beyond atol {atol} rtol {rtol}")
    return {"passed": not failures, "reference": whole_path.name, "cases": len(cases), "atol": atol, "rtol": rtol,
            "max_abs": worst, "failures": failures}


def random_feeds(proto: onnx.ModelProto, dims: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for a bare graph: symbolic dims from `dims` (default 1), floats standard normal, integer
    inputs filled with the largest symbolic dim (full lengths, for a lengths input)."""
    rng = np.random.default_rng(seed)
    init = {i.name for i in proto.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for value in proto.graph.input:
        if value.name in init:
            continue
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else int(dims.get(d.dim_param, 1)) for d in t.shape.dim]
        dtype = ONNX_TO_NUMPY.get(t.elem_type)
        if dtype is None:
            raise CutError(f"input {value.name}: element type {t.elem_type} is not supported for random inputs")
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = np.full(shape, max(dims.values(), default=1), dtype=dtype)
    return feeds


def save(proto: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
