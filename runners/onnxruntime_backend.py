"""The embedded default backend: ONNX Runtime on the CPU (other providers when installed)."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from core.model_card import ModelCard
from core.ort_session import create_session

PROFILE_JSON = "ort_profile.json"
PROFILE_TOP_OPS = "ort_profile_top_ops.md"
TOP_OPS = 15


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model_path: Path, card: ModelCard, *, threads: int = 0, inter_threads: int = 1,
                 providers: Sequence[str] | None = None, graph_level: str = "all",
                 execution_mode: str = "sequential", profile: bool = False) -> None:
        # The profiler writes its trace when profiling ends; until finish() moves it into the run dir it
        # lives in a private temporary folder (the run dir may not exist yet).
        self._profile_dir = Path(tempfile.mkdtemp(prefix="ort_profile_")) if profile else None
        try:
            self.session = create_session(model_path, threads=threads, inter_threads=inter_threads,
                                          providers=providers, graph_level=graph_level, execution_mode=execution_mode,
                                          profile_prefix=self._profile_dir / "ort" if self._profile_dir else None)
        except Exception:
            if self._profile_dir:
                shutil.rmtree(self._profile_dir, ignore_errors=True)
            raise
        self.output_names = [o.name for o in card.outputs]
        self._info = {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": threads,
            "inter_op_threads": inter_threads,
            "graph_optimization_level": graph_level,
            "execution_mode": execution_mode,
            "profiling": profile,
        }

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def finish(self, out: Path) -> dict[str, Any] | None:
        """After the last batch: with profiling, end it, move the trace to `out`, write the top-ops table.

        Returns {"profile": summary} for run.json, or None when the session was not profiled.
        """
        if self._profile_dir is None:
            for stale in (PROFILE_JSON, PROFILE_TOP_OPS):  # from an earlier, profiled run into the same dir
                (Path(out) / stale).unlink(missing_ok=True)
            return None
        try:
            trace = Path(self.session.end_profiling())
            if not trace.is_absolute():
                trace = Path.cwd() / trace
            target = Path(out) / PROFILE_JSON
            shutil.move(str(trace), target)
        finally:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None
        summary = summarize_profile(json.loads(target.read_text()))
        summary["trace"] = PROFILE_JSON
        summary["table"] = PROFILE_TOP_OPS
        (Path(out) / PROFILE_TOP_OPS).write_text(top_ops_markdown(summary))
        return {"profile": summary}


def summarize_profile(events: list[dict[str, Any]], top: int = TOP_OPS) -> dict[str, Any]:
    """Kernel time per op type from an ORT trace: node events ("cat" == "Node"), dur in microseconds,
    grouped by args["op_name"]; the `top` op types by total time, with count and share of all node time, and
    the remaining op types summed in "other" (so the shares add up to 100%)."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    runs = 0
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            runs += 1
        if ev.get("cat") != "Node" or str(ev.get("name", "")).endswith(("_fence_before", "_fence_after")):
            continue  # the fences mark the kernel's start/end; "<node>_kernel_time" carries its duration
        op = (ev.get("args") or {}).get("op_name")
        if not op:
            continue
        totals[op] += float(ev.get("dur", 0))
        counts[op] += 1
    node_us = sum(totals.values())
    ranked = sorted(totals, key=lambda op: (-totals[op], op))
    def row(label: str, ops: list[str]) -> dict[str, Any]:
        total = sum(totals[op] for op in ops)
        return {"op_type": label, "total_us": round(total, 1), "count": sum(counts[op] for op in ops),
                "share_pct": round(100.0 * total / node_us, 2) if node_us > 0 else 0.0}

    rest = ranked[top:]
    return {"node_time_us": round(node_us, 1), "op_types": len(totals), "model_runs": runs,
            "includes_warmup": True, "top_ops": [row(op, [op]) for op in ranked[:top]],
            "other": row(f"(other {len(rest)} op types)", rest) if rest else None}


def top_ops_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# ONNX Runtime profile: top {len(summary['top_ops'])} of {summary['op_types']} op types by kernel time",
             "",
             f"Node time {summary['node_time_us'] / 1000.0:.3f} ms over {summary['model_runs']} session runs "
             "(warm-up batches included).",
             "",
             "| op type | total ms | count | share of node time |",
             "|---|---:|---:|---:|"]
    for r in summary["top_ops"]:
        lines.append(f"| {r['op_type']} | {r['total_us'] / 1000.0:.3f} | {r['count']} | {r['share_pct']:.2f}% |")
    if summary.get("other"):
        r = summary["other"]
        lines.append(f"| {r['op_type']} | {r['total_us'] / 1000.0:.3f} | {r['count']} | {r['share_pct']:.2f}% |")
    return "\n".join(lines) + "\n"
