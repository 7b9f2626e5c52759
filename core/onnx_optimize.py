"""Graph optimisation with onnxoptimizer, and a report of what changed."""
from __future__ import annotations

from collections import Counter
from typing import Any

import onnx
import onnxoptimizer

# Passes that only remove or fuse what is provably redundant; none of them changes numerics beyond
# float reassociation inside a fused BatchNorm.
DEFAULT_PASSES: list[str] = [
    "eliminate_deadend",
    "eliminate_identity",
    "eliminate_nop_dropout",
    "eliminate_nop_monotone_argmax",
    "eliminate_nop_pad",
    "eliminate_nop_transpose",
    "eliminate_unused_initializer",
    "extract_constant_to_initializer",
    "fuse_add_bias_into_conv",
    "fuse_bn_into_conv",
    "fuse_consecutive_concats",
    "fuse_consecutive_squeezes",
    "fuse_consecutive_transposes",
    "fuse_matmul_add_bias_into_gemm",
    "fuse_transpose_into_gemm",
]


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in proto.graph.node).items()))


def optimize(proto: onnx.ModelProto, passes: list[str] | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Run onnxoptimizer's passes; return the new graph and a report of node counts before and after."""
    chosen = [p for p in (passes or DEFAULT_PASSES) if p in onnxoptimizer.get_available_passes()]
    before = op_counts(proto)
    optimized = onnxoptimizer.optimize(proto, chosen)
    onnx.checker.check_model(optimized)
    after = op_counts(optimized)
    changed = {op: {"before": before.get(op, 0), "after": after.get(op, 0)}
               for op in sorted(set(before) | set(after)) if before.get(op, 0) != after.get(op, 0)}
    report = {
        "tool": f"onnxoptimizer {onnxoptimizer.__version__}" if hasattr(onnxoptimizer, "__version__") else "onnxoptimizer",
        "passes": chosen,
        "nodes_before": sum(before.values()),
        "nodes_after": sum(after.values()),
        "ops_before": before,
        "ops_after": after,
        "ops_changed": changed,
    }
    return optimized, report
