"""What onnxruntime's optimiser does to an ONNX graph: node counts before and after, the op types it fused,
and which of the fusions a family expects did not happen (a slow variant usually shows up here first)."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import onnx


def graph_report(path: Path, expected_fusions: Mapping[str, str], threads: int = 1) -> dict[str, Any]:
    """Node counts of the file and of onnxruntime's optimised graph, the fused op types, and the
    `expected_fusions` (op type -> what it fuses) that did not apply."""
    import onnxruntime as ort

    base = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    with tempfile.TemporaryDirectory() as tmp:
        optimised = Path(tmp) / "ort_optimised.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(optimised)
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        after = Counter(n.op_type for n in onnx.load(str(optimised)).graph.node)
    fused = sorted(set(after) - set(base))
    missing = {op: why for op, why in expected_fusions.items() if op not in after}
    return {
        "nodes": sum(base.values()), "op_types": dict(base.most_common()),
        "nodes_after_ort": sum(after.values()), "op_types_after_ort": dict(after.most_common()),
        "fused_by_ort": fused,
        "expected_fusions_missing": missing,
    }
