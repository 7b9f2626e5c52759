"""The per-variant table: what each conversion and precision costs in accuracy and buys in speed.

One row per system (PyTorch fp32 reference, onnxruntime fp32 / fp16 / int8, OpenVINO, ...), each
from a batch-1 run (accuracy, seq/s at batch 1) and optionally a batch-8 run (seq/s at batch 8) over
the same dataset, with the model file's size.
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
from families.registry import variant_defaults


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


def parse_row(text: str) -> tuple[str, Path, Path | None]:
    """'LABEL=RUN_BS1[,RUN_BS8]'."""
    if "=" not in text:
        raise ValueError(f"--row {text!r}: expected LABEL=RUN_BS1[,RUN_BS8]")
    label, runs = text.split("=", 1)
    parts = [Path(p) for p in runs.split(",") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"--row {text!r}: give one or two run dirs")
    return label, parts[0], parts[1] if len(parts) == 2 else None


def variant_rows(dataset: DatasetDir, card: ModelCard, rows: list[tuple[str, Path, Path | None]]) -> list[dict[str, Any]]:
    """The first row is the reference; ΔWER and same transcripts are against it."""
    out: list[dict[str, Any]] = []
    ref: dict[str, Any] | None = None
    for label, run1, run8 in rows:
        sc = score_run(run1, dataset, card, write=False)
        r1 = open_run(run1)
        r8 = open_run(run8) if run8 else None
        if ref is None:
            ref = sc
        same = sum(1 for k, h in sc["hypotheses"].items() if ref["hypotheses"].get(k) == h)
        out.append({
            "system": label,
            "backend": r1["backend"],
            "precision": r1["model"].get("precision") or "fp32",
            "WER %": round(100 * sc["wer"], 3),
            "CER %": round(100 * sc["cer"], 3),
            "S": sc["word"]["s"], "D": sc["word"]["d"], "I": sc["word"]["i"],
            "ΔWER (points)": round(100 * (sc["wer"] - ref["wer"]), 3),
            "same transcripts": f"{same}/{len(ref['hypotheses'])}",
            "size MB": model_size_mb(r1),
            "seq/s bs1": round(r1["seq_per_s"], 2) if r1.get("seq_per_s") else None,
            "seq/s bs8": round(r8["seq_per_s"], 2) if r8 and r8.get("seq_per_s") else None,
        })
    return out


def graph_notes(rows: list[tuple[str, Path, Path | None]], card: ModelCard) -> list[str]:
    """Per ONNX row: node counts, what onnxruntime fused, and the family's expected fusions it did not apply."""
    notes, seen = [], set()
    for label, run1, _ in rows:
        path = open_run(run1)["model"].get("path")
        if not path or not str(path).endswith(".onnx") or path in seen or not Path(path).is_file():
            continue
        seen.add(path)
        own = read_card(card_path_for(Path(path)))
        expected = variant_defaults(card.family).get("expected_fusions", {})
        g = own.graph or graph_report(Path(path), expected)
        missing = "; ".join(f"{op} ({why})" for op, why in g["expected_fusions_missing"].items()) or "none"
        notes.append(f"Graph of {Path(path).name}: {g['nodes']} nodes, {g['nodes_after_ort']} after onnxruntime's "
                     f"optimiser; fused: {', '.join(g['fused_by_ort']) or 'nothing'}; expected fusions not applied: "
                     f"{missing}.")
    return notes
