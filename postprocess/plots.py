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
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
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
    return save_figure(fig, path)


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
    return save_figure(fig, path)
