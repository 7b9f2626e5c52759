"""Self-attention as one onnxruntime `Attention` kernel, for graphs onnxruntime's own fusion does not match.

PyTorch's exporter writes scaled-dot-product attention (transformers' wav2vec2 among others) as: three
projections (MatMul + Add) of one input, each reshaped to (batch, seq, heads, head_dim) and transposed, the
query and the transposed key each multiplied by the square root of the scale, MatMul, Softmax, MatMul with
the value, then transposed and reshaped back to (batch, seq, hidden). onnxruntime's transformer optimiser
looks for the older pattern (one scale Div or Mul after the QK MatMul, a mask Add before the Softmax) and
leaves this one unfused. This pass matches it and replaces the whole block, projections included, by one
`com.microsoft.Attention` node: the three weight matrices packed into one (hidden, 3 x hidden) GEMM, the
biases packed alike, `num_heads` and `scale` from the graph's own constants. Blocks that differ in any
respect (a mask, cross-attention, weights that are not constants) are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"


class _Graph:
    """Producer/consumer indexes and constant lookup over one graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {i.name: i for i in graph.initializer}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity":  # the exporter's alias of a deduplicated weight
            return self.const(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def made_by(self, name: str, op: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def users(self, name: str) -> list[onnx.NodeProto]:
        """Consumers that compute with the tensor (Shape nodes only read its size)."""
        return [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _scalar(value: np.ndarray | None) -> float | None:
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


@dataclass
class _Projection:
    """x @ W + b, reshaped to (batch, seq, heads, head_dim)."""

    x: str
    weight: np.ndarray
    bias: np.ndarray
    head_dim: int


def _projection(g: _Graph, reshape: onnx.NodeProto | None) -> _Projection | None:
    if reshape is None:
        return None
    add = g.made_by(reshape.input[0], "Add")
    shape = g.made_by(reshape.input[1], "Concat")
    if add is None or shape is None or len(shape.input) != 4:
        return None
    head_dim = _scalar(g.const(shape.input[3]))
    for mm_name, bias_name in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        matmul, bias = g.made_by(mm_name, "MatMul"), g.const(bias_name)
        if matmul is None or bias is None:
            continue
        weight = g.const(matmul.input[1])
        if weight is None or weight.ndim != 2 or bias.shape != (weight.shape[1],) or not head_dim:
            return None
        if weight.shape[1] % int(head_dim):
            return None
        return _Projection(matmul.input[0], weight, bias, int(head_dim))
    return None


def _match(g: _Graph, softmax: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.NodeProto,
                                                         list[onnx.TensorProto]] | None:
    """(the Attention node replacing the block, the node whose output it takes over, its packed weight and
    bias), or None."""
    qk = g.made_by(softmax.input[0], "MatMul")
    if qk is None:
        return None
    mul_q, mul_k = g.made_by(qk.input[0], "Mul"), g.made_by(qk.input[1], "Mul")
    if mul_q is None or mul_k is None:
        return None
    scale_q, scale_k = _scalar(g.const(mul_q.input[1])), _scalar(g.const(mul_k.input[1]))
    t_q, t_k = g.made_by(mul_q.input[0], "Transpose"), g.made_by(mul_k.input[0], "Transpose")
    if scale_q is None or scale_k is None or t_q is None or t_k is None:
        return None
    if _perm(t_q) != [0, 2, 1, 3] or _perm(t_k) != [0, 2, 3, 1]:
        return None
    users = g.users(softmax.output[0])
    if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != softmax.output[0]:
        return None
    av = users[0]
    t_v = g.made_by(av.input[1], "Transpose")
    if t_v is None or _perm(t_v) != [0, 2, 1, 3]:
        return None
    q = _projection(g, g.made_by(t_q.input[0], "Reshape"))
    k = _projection(g, g.made_by(t_k.input[0], "Reshape"))
    v = _projection(g, g.made_by(t_v.input[0], "Reshape"))
    if q is None or k is None or v is None or not (q.x == k.x == v.x):
        return None  # cross-attention or another layout: not this pattern
    if not (q.weight.shape == k.weight.shape == v.weight.shape and q.head_dim == k.head_dim == v.head_dim):
        return None
    # Back to (batch, seq, hidden): an optional Reshape, Transpose(0, 2, 1, 3), Reshape.
    after = g.users(av.output[0])
    if len(after) == 1 and after[0].op_type == "Reshape":
        after = g.users(after[0].output[0])
    if len(after) != 1 or after[0].op_type != "Transpose" or _perm(after[0]) != [0, 2, 1, 3]:
        return None
    final = g.users(after[0].output[0])
    if len(final) != 1 or final[0].op_type != "Reshape":
        return None
    heads = q.weight.shape[1] // q.head_dim
    name = softmax.name.rsplit("/", 1)[0] + "/Attention" if "/" in softmax.name else f"{softmax.name}_Attention"
    weight = np.concatenate([q.weight, k.weight, v.weight], axis=1).astype(np.float32)
    bias = np.concatenate([q.bias, k.bias, v.bias]).astype(np.float32)
    packed = [numpy_helper.from_array(weight, f"{name}.qkv_weight"), numpy_helper.from_array(bias, f"{name}.qkv_bias")]
    node = helper.make_node("Attention", [q.x, *(t.name for t in packed)], [final[0].output[0]],
                            name=name, domain=MS_DOMAIN, num_heads=int(heads), scale=float(scale_q * scale_k))
    return node, final[0], packed


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    live = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(o in live for o in node.output):
            keep.append(node)
            live.update(node.input)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    unused = [i for i in graph.initializer if i.name not in live]
    for init in unused:
        graph.initializer.remove(init)


def fuse_attention(model: onnx.ModelProto) -> int:
    """Replace every matching self-attention block of `model` (in place); returns how many were fused."""
    g = _Graph(model.graph)
    replacements = [m for m in (_match(g, n) for n in list(model.graph.node) if n.op_type == "Softmax") if m]
    for node, replaced, packed in replacements:
        model.graph.initializer.extend(packed)
        index = list(model.graph.node).index(replaced)
        model.graph.node.remove(replaced)
        model.graph.node.insert(index, node)
    if replacements:
        if not any(o.domain == MS_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        _drop_dead_nodes(model.graph)
    return len(replacements)
