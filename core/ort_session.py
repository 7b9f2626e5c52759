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

EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


def create_session(model_path: Path, *, threads: int = 0, inter_threads: int = 1,
                   providers: Sequence[str] | None = None, graph_level: str = "all",
                   execution_mode: str = "sequential", profile_prefix: Path | None = None) -> ort.InferenceSession:
    """An InferenceSession with explicit threads; `threads=0` lets ORT pick (one per physical core).

    `execution_mode="parallel"` runs independent graph branches concurrently on the inter-op pool.
    `profile_prefix` turns on ORT's profiler: `session.end_profiling()` then writes
    `<prefix>_<timestamp>.json` (Chrome trace format) and returns its path. Without it nothing is traced.
    """
    if execution_mode not in EXECUTION_MODES:
        raise ValueError(f"execution_mode must be one of {sorted(EXECUTION_MODES)}, not {execution_mode!r}")
    if not Path(model_path).is_file():
        raise FileNotFoundError(f"ONNX model not found: {model_path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = inter_threads
    opts.graph_optimization_level = GRAPH_LEVELS[graph_level]
    opts.execution_mode = EXECUTION_MODES[execution_mode]
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    available = ort.get_available_providers()
    chosen = list(providers) if providers else ["CPUExecutionProvider"]
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ValueError(f"onnxruntime providers {missing} are not available here; available: {available}")
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=chosen)
