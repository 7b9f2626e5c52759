"""PNG plots of the tables (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def throughput_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """seq/s and batch latency p50 against batch size, one line per backend/precision."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(f"{r['backend']} {r['precision']}", []).append(r)
    for label, rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["batch"])
        xs = [r["batch"] for r in rs]
        ax1.plot(xs, [r["seq/s"] for r in rs], marker="o", label=label)
        ax2.plot(xs, [r["batch latency p50 ms"] for r in rs], marker="o", label=label)
    batches = sorted({r["batch"] for r in rows})
    for ax, ylabel in ((ax1, "sequences / s"), (ax2, "batch latency p50 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def wer_vs_throughput_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """WER against seq/s at each batch size of the rows' "seq/s bs<N>" columns, one marker per batch size."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("seq/s bs")]
    markers = dict(zip(keys, "os^DvP*X"))
    for r in rows:
        for key in keys:
            if r.get(key):
                ax.scatter(r[key], r["WER %"], marker=markers.get(key, "o"), s=40)
                ax.annotate(f"{r['system']} ({key[len('seq/s '):]})", (r[key], r["WER %"]), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
    legend = ", ".join(f"{m}: batch {k[len('seq/s bs'):]}" for k, m in markers.items())
    ax.set_xlabel(f"sequences / s ({legend})")
    ax.set_ylabel("WER %")
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


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
    return _save(fig, path)


def streaming_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Against chunk size: latency (algorithmic, with chunk wait, first partial) and WER, per precision."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    streamed = [r for r in rows if r.get("chunk frames")]
    by_precision: dict[str, list[dict[str, Any]]] = {}
    for r in streamed:
        by_precision.setdefault(str(r["precision"]), []).append(r)
    for precision, rs in sorted(by_precision.items()):
        rs = sorted(rs, key=lambda r: r["chunk frames"])
        xs = [r["chunk frames"] for r in rs]
        if precision == "fp32":
            ax1.plot(xs, [r["algorithmic latency ms"] for r in rs], marker="o", label="algorithmic")
            ax1.plot(xs, [r["latency ms (+chunk wait)"] for r in rs], marker="o", label="+ chunk wait")
        ax1.plot(xs, [r["first partial p50 ms"] for r in rs], marker="s", linestyle="--",
                 label=f"first partial p50 ({precision})")
        ax2.plot(xs, [r["WER %"] for r in rs], marker="o", label=f"streaming {precision}")
    for r in rows:
        if not r.get("chunk frames"):
            ax2.axhline(r["WER %"], color="grey", linestyle=":", label=f"{r['system']}")
    for ax, ylabel in ((ax1, "ms"), (ax2, "WER %")):
        ax.set_xlabel("chunk (feature frames of 10 ms)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def roofline_plot(rows: list[dict[str, Any]], peaks: dict[str, Any], bandwidth_gbs: float, path: Path,
                  machine: str) -> Path:
    """Log-log roofline: the bandwidth roof (triad) and compute roofs (GEMM peaks), one point per
    model, backend and batch size (benchmark rows with a "roofline" entry)."""
    points = [(r["model"], r["batch"], name, pt) for r in rows for name, pt in r.get("roofline", {}).items()]
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [pt["intensity_flop_per_byte"] for *_, pt in points]
    lo, hi = min(xs + [1.0]) / 4, max(xs + [4 * peaks["peak"] / bandwidth_gbs]) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peaks["peak"], bandwidth_gbs * x) for x in grid], color="black", lw=2,
            label=f"roof: min({peaks['peak']:.0f} GFLOP/s, {bandwidth_gbs:.1f} GB/s x intensity)")
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
    return _save(fig, path)
