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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
