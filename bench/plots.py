"""The benchmark plots: the roofline and where a pipeline run's time goes (postprocess/plots.py holds the
matplotlib set-up and the atomic PNG write they share with the result tables)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from postprocess.plots import plt, save_figure


def pipeline_breakdown_plot(stages: list[dict[str, Any]], path: Path) -> Path:
    """Where a whole run's wall time goes, per model: preprocessing, model execution, the rest of the
    run (session start-up, warm-up, batch assembly, output files) and scoring."""
    rows = [s for s in stages if s.get("stage") == "pipeline"]
    parts = [("preprocess", lambda s: s["preprocess_s"]), ("model execution", lambda s: s["model_execution_s"]),
             ("run overhead", lambda s: s["run_wall_s"] - s["model_execution_s"]), ("scoring", lambda s: s["score_s"])]
    fig, ax = plt.subplots(figsize=(7, 1.8 + 0.7 * max(len(rows), 1)))
    labels = [f"{s['model']} ({s['utterances']} utt.)" for s in rows]
    left = [0.0] * len(rows)
    for name, value in parts:
        widths = [value(s) for s in rows]
        ax.barh(labels, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("seconds (wall)")
    ax.set_title("Pipeline time per stage")
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return save_figure(fig, path)


def roofline_plot(rows: list[dict[str, Any]], peaks: dict[str, Any], bandwidth_gbs: float, path: Path,
                  machine: str, cache_bandwidth_gbs: float | None = None) -> Path:
    """Log-log roofline: the bandwidth roof (triad), the last-level cache's when measured, and compute roofs
    (GEMM peaks), one point per model, backend and batch size (benchmark rows with a "roofline" entry)."""
    points = [(r["model"], r["batch"], name, pt) for r in rows for name, pt in r.get("roofline", {}).items()]
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [pt["intensity_flop_per_byte"] for *_, pt in points]
    lo, hi = min(xs + [1.0]) / 4, max(xs + [4 * peaks["peak"] / bandwidth_gbs]) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peaks["peak"], bandwidth_gbs * x) for x in grid], color="black", lw=2,
            label=f"roof: min({peaks['peak']:.0f} GFLOP/s, {bandwidth_gbs:.1f} GB/s x intensity)")
    if cache_bandwidth_gbs:
        ax.plot(grid, [min(peaks["peak"], cache_bandwidth_gbs * x) for x in grid], color="black", lw=1, ls="-.",
                label=f"last-level cache roof: {cache_bandwidth_gbs:.1f} GB/s x intensity")
    for runtime, style in (("torch", ":"), ("onnxruntime", "--")):
        if runtime in peaks:
            ax.axhline(peaks[runtime], color="grey", ls=style, lw=1, label=f"{runtime} GEMM peak {peaks[runtime]:.0f}")
    backends = sorted({name for _, _, name, _ in points})
    models = sorted({m for m, *_ in points})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    markers = {m: "osD^vP*X"[i % 8] for i, m in enumerate(models)}
    for model, batch, name, pt in points:
        ax.scatter(pt["intensity_flop_per_byte"], pt["attained_gflops"], color=colors[name], marker=markers[model], s=36)
        ax.annotate(f"bs{batch}", (pt["intensity_flop_per_byte"], pt["attained_gflops"]), fontsize=6,
                    xytext=(3, 2), textcoords="offset points")
    for b in backends:
        ax.scatter([], [], color=colors[b], marker="o", label=b)
    for m in models:
        ax.scatter([], [], color="grey", marker=markers[m], label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("attained GFLOP/s")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"Roofline ({machine})", fontsize=9)
    return save_figure(fig, path)
