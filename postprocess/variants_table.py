"""The per-variant table: what each conversion and precision costs in accuracy and buys in speed.

One row per system (PyTorch fp32 reference, onnxruntime fp32 / fp16 / int8, OpenVINO, ...), each from one or
more runs of the same model over the same dataset at different batch sizes, with the model file's size. The
batch sizes, backend and precision come from each run's run.json: the accuracy columns from the run with the
smallest batch, and one "seq/s bs<N>" column per batch size found among the runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from postprocess.score import score_run
from core.card import card_path_for, read_card
from core.model_card import ModelCard
from core.dataset_dir import DatasetDir
from core.onnx_graph import graph_report
from core.run_dir import open_run
from families.registry import get_family

Row = tuple[str, list[Path]]


def model_size_mb(run: dict[str, Any]) -> float | None:
    """Size of what the run loaded: the model file, or the checkpoint (file or Hugging Face dir)."""
    path = run["model"].get("path") or run["backend_info"].get("checkpoint")
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        weights = [f for f in p.iterdir() if f.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
        return round(sum(f.stat().st_size for f in weights) / 1e6, 2) if weights else None
    return round(p.stat().st_size / 1e6, 2) if p.is_file() else None


def parse_row(text: str) -> Row:
    """'LABEL=RUN[,RUN...]': one system's runs, at any batch sizes."""
    if "=" not in text:
        raise ValueError(f"--row {text!r}: expected LABEL=RUN[,RUN...]")
    label, runs = text.split("=", 1)
    parts = [Path(p) for p in runs.split(",") if p]
    if not parts:
        raise ValueError(f"--row {text!r}: give at least one run dir after '='")
    return label, parts


def seq_column(batch_size: int) -> str:
    return f"seq/s bs{batch_size}"


def _runs_by_batch(label: str, run_dirs: list[Path]) -> dict[int, tuple[Path, dict[str, Any]]]:
    """The row's runs keyed by their run.json batch size; two runs at one batch size are ambiguous."""
    out: dict[int, tuple[Path, dict[str, Any]]] = {}
    for run_dir in run_dirs:
        run = open_run(run_dir)
        bs = int(run["batch_size"])
        if bs in out:
            raise ValueError(f"--row {label!r}: {out[bs][0]} and {run_dir} are both batch size {bs}; give one run "
                             "per batch size")
        out[bs] = (run_dir, run)
    return out


def variant_rows(dataset: DatasetDir, card: ModelCard, rows: list[Row]) -> list[dict[str, Any]]:
    """The first row is the reference; ΔWER and same transcripts are against it."""
    by_row = [(label, _runs_by_batch(label, dirs)) for label, dirs in rows]
    columns = [seq_column(bs) for bs in sorted({bs for _, runs in by_row for bs in runs})]
    out: list[dict[str, Any]] = []
    ref: dict[str, Any] | None = None
    for label, runs in by_row:
        acc_dir, acc_run = runs[min(runs)]
        sc = score_run(acc_dir, dataset, card, write=False)
        if ref is None:
            ref = sc
        same = sum(1 for k, h in sc["hypotheses"].items() if ref["hypotheses"].get(k) == h)
        row = {
            "system": label,
            "backend": acc_run["backend"],
            "precision": acc_run["model"].get("precision") or "fp32",
            "WER %": round(100 * sc["wer"], 3),
            "CER %": round(100 * sc["cer"], 3),
            "S": sc["word"]["s"], "D": sc["word"]["d"], "I": sc["word"]["i"],
            "ΔWER (points)": round(100 * (sc["wer"] - ref["wer"]), 3),
            "same transcripts": f"{same}/{len(ref['hypotheses'])}",
            "size MB": model_size_mb(acc_run),
        }
        for column in columns:
            row[column] = None
        for bs, (_, run) in runs.items():
            row[seq_column(bs)] = round(run["seq_per_s"], 2) if run.get("seq_per_s") else None
        out.append(row)
    return out


def batch_sizes_of(rows: list[dict[str, Any]]) -> list[int]:
    """The batch sizes of a variants table's seq/s columns, in column order."""
    prefix = seq_column(0)[:-1]
    return [int(k[len(prefix):]) for k in (rows[0] if rows else {}) if k.startswith(prefix)]


def graph_notes(rows: list[Row], card: ModelCard) -> list[str]:
    """Per ONNX row: node counts, what onnxruntime fused, and the family's expected fusions it did not apply."""
    notes, seen = [], set()
    for label, runs in rows:
        path = open_run(runs[0])["model"].get("path")
        if not path or not str(path).endswith(".onnx") or path in seen or not Path(path).is_file():
            continue
        seen.add(path)
        own = read_card(card_path_for(Path(path)))
        expected = get_family(card.family).variant_defaults.get("expected_fusions", {})
        g = own.graph or graph_report(Path(path), expected)
        missing = "; ".join(f"{op} ({why})" for op, why in g["expected_fusions_missing"].items()) or "none"
        notes.append(f"Graph of {Path(path).name}: {g['nodes']} nodes, {g['nodes_after_ort']} after onnxruntime's "
                     f"optimiser; fused: {', '.join(g['fused_by_ort']) or 'nothing'}; expected fusions not applied: "
                     f"{missing}.")
    return notes
