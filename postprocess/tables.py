"""The precision-comparison and throughput tables, as Markdown, CSV and JSON with machine and versions."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from core.dataset_dir import DatasetDir, atomic_write_bytes
from core.machine import machine_label
from core.metrics import corpus_scores, jsonable
from core.model_card import ModelCard
from core.run_dir import open_run

CONVENTION_NOTES = {
    "deepspeech": "deepspeech.pytorch convention: corpus-level WER = word edits / reference words; "
                  "CER with spaces removed from both sides (as the Ascend DeepSpeech guide reports).",
    "hf": "HF/jiwer convention: corpus-level WER; CER counts spaces as characters. accuracy (1-CER) is the "
          "number the Ascend wav2vec2 guide calls accuracy.",
}


def precision_rows(reference: dict[str, Any], candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per scored run; the reference row first. Each entry: {label, scores, diff (vs reference)}."""
    ref_wer = reference["scores"]["wer"]
    ref_hyps = reference["scores"]["hypotheses"]
    rows = []
    for entry in [reference, *candidates]:
        s = entry["scores"]
        same = sum(1 for k, h in s["hypotheses"].items() if ref_hyps.get(k) == h)
        diff = entry.get("diff") or {}
        row = {
            "system": entry["label"],
            "backend": s["backend"],
            "precision": s.get("precision") or "fp32",
            "batch": s["batch_size"],
            "utterances": s["utterances"],
            "WER %": round(100 * s["wer"], 3),
            "CER %": round(100 * s["cer"], 3),
            "S": s["word"]["s"], "D": s["word"]["d"], "I": s["word"]["i"], "N words": s["word"]["n"],
            "ΔWER (points)": round(100 * (s["wer"] - ref_wer), 3),
            "max |Δ output|": None if entry is reference else diff.get("max_abs"),
            "argmax agreement": None if entry is reference else diff.get("argmax_agreement"),
            "same transcripts": f"{same}/{len(ref_hyps)}",
        }
        if s["convention"] == "hf":
            # The Ascend wav2vec2 guide reports 1 - CER (spaces counted) as "accuracy".
            row["accuracy (1-CER)"] = round(1 - s["cer"], 4)
        rows.append(row)
    return rows


def speaker_rows(run_dir: Path, dataset: DatasetDir, convention: str) -> list[dict[str, Any]]:
    """Per-speaker WER/CER of one scored run (as sclite's per-speaker report), worst first."""
    scores = json.loads((Path(run_dir) / "scores.json").read_text())
    hyps = scores["hypotheses"]
    by_speaker: dict[str, list[tuple[str, str]]] = {}
    for s in dataset.samples:
        by_speaker.setdefault(s.speaker or "(unknown)", []).append((s.transcript, hyps[s.uid]))
    rows = []
    for speaker, pairs in by_speaker.items():
        sc = corpus_scores([r for r, _ in pairs], [h for _, h in pairs], convention=convention)
        rows.append({"speaker": speaker, "utterances": len(pairs), "N words": sc["word"]["n"],
                     "WER %": round(100 * sc["wer"], 2), "CER %": round(100 * sc["cer"], 2),
                     "S": sc["word"]["s"], "D": sc["word"]["d"], "I": sc["word"]["i"]})
    return sorted(rows, key=lambda r: -r["WER %"])


def throughput_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for d in run_dirs:
        run = open_run(d)
        info = run["backend_info"]
        threads = info.get("intra_op_threads", info.get("threads"))
        rows.append({
            "backend": run["backend"],
            "precision": run["model"].get("precision") or "fp32",
            "batch": run["batch_size"],
            "utterances": run["dataset"]["samples"],
            "seq/s": round(run["seq_per_s"], 2),
            "batch latency p50 ms": round(run["latency_ms"]["p50"], 2),
            "batch latency p90 ms": round(run["latency_ms"]["p90"], 2),
            "RTF": round(run["rtf"], 5) if run.get("rtf") is not None else None,
            "threads": threads if threads else "default",
        })
    return sorted(rows, key=lambda r: (r["backend"], r["batch"]))


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.2e}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def markdown(title: str, rows: list[dict[str, Any]], notes: list[str]) -> str:
    if not rows:
        return f"## {title}\n\n(no rows)\n"
    cols = list(rows[0])
    out = [f"## {title}", ""]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        out.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    out.append("")
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_table(out_dir: Path, stem: str, title: str, rows: list[dict[str, Any]], notes: list[str],
                context: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, cs, js = out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.json"
    atomic_write_bytes(md, markdown(title, rows, notes).encode())
    atomic_write_bytes(cs, csv_text(rows).encode())
    # An all-empty-reference row has an infinite WER; JSON has no infinity, so it is written as null.
    atomic_write_bytes(js, (json.dumps(jsonable({"title": title, "rows": rows, "notes": notes, **context}), indent=2,
                                       ensure_ascii=False, allow_nan=False) + "\n").encode())
    return [md, cs, js]


def context_of(run_dir: Path, dataset: DatasetDir, card: ModelCard) -> dict[str, Any]:
    run = open_run(run_dir)
    return {
        "machine": run["machine"],
        "versions": dict(card.versions or {}),
        "dataset": {"path": str(dataset.path), "source": dataset.header.get("source"),
                    "samples": len(dataset.samples), "layout": dataset.header.get("layout")},
        "model": {"family": card.family, "onnx_sha256": card.onnx_sha256,
                  "source_sha256": card.source.sha256 if card.source else None},
    }


def machine_note(ctx: dict[str, Any]) -> str:
    m = ctx["machine"]
    v = ctx.get("versions", {})

    return (f"Machine: {machine_label(m)}, {m['memory_gb']} GB, {m['os']}; "
            f"torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, python {v.get('python')}.")
