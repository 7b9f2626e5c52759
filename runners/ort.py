"""ONNX Runtime session construction, shared by the parity gate and the onnxruntime runner."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnxruntime as ort

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def create_session(model_path: Path, *, threads: int = 0, inter_threads: int = 1,
                   providers: Sequence[str] | None = None, graph_level: str = "all") -> ort.InferenceSession:
    """An InferenceSession with explicit threads; `threads=0` lets ORT pick (one per physical core)."""
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {model_path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = inter_threads
    opts.graph_optimization_level = GRAPH_LEVELS[graph_level]
    opts.log_severity_level = 3
    available = ort.get_available_providers()
    chosen = list(providers) if providers else ["CPUExecutionProvider"]
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ValueError(f"onnxruntime providers {missing} are not available here; available: {available}")
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
