"""Per-stage timing tables: median / p90 / mean / max per stage over every utterance, as Markdown, CSV, JSON."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.dataset_dir import atomic_write_bytes, atomic_write_json


def summarize(rows: Sequence[dict[str, Any]], stages: Sequence[str]) -> list[dict[str, Any]]:
    """One row per stage: count, median, p90, p99, mean, max (NaN-free: a stage missing from a row is skipped)."""
    table = []
    for stage in stages:
        values = np.asarray([r[stage] for r in rows if stage in r], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        table.append({"stage": stage, "count": int(values.size), "median_ms": float(np.median(values)),
                      "p90_ms": float(np.percentile(values, 90)), "p99_ms": float(np.percentile(values, 99)),
                      "mean_ms": float(values.mean()), "max_ms": float(values.max())})
    return table


def markdown(table: Sequence[dict[str, Any]], title: str = "", notes: Sequence[str] = ()) -> str:
    heading = f"## {title}" if title else ""  # a section, like postprocess's tables in results/README.md
    if not table:
        return f"{heading}\n\n(no rows)\n"
    cols = columns(table)
    lines = [heading, ""] if title else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def columns(table: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of every row, in first-seen order (rows may carry optional columns)."""
    return list(dict.fromkeys(k for row in table for k in row))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def write_tables(out: Path, name: str, table: Sequence[dict[str, Any]], meta: dict[str, Any],
                 title: str = "", notes: Sequence[str] = ()) -> list[Path]:
    """out/name.{md,csv,json}, each written atomically; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path, js = out / f"{name}.md", out / f"{name}.csv", out / f"{name}.json"
    atomic_write_bytes(md, markdown(table, title, notes).encode())
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=columns(table), restval="")
        writer.writeheader()
        writer.writerows(table)
    atomic_write_bytes(csv_path, buf.getvalue().encode())
    atomic_write_json(js, {**meta, "rows": list(table)})
    return [md, csv_path, js]
