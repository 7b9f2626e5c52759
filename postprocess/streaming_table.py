"""The streaming table: chunk size against latency, per-chunk compute, real-time factor and WER.

One row per run dir: the offline run of the same model (the reference) and each streaming run (fp32 at
several chunk sizes, int8). Latency figures come from the streaming card (algorithmic: the future
context one output frame needs; total: plus the wait for a chunk to fill), the measured ones from the
run's run.json (first-partial latency, per-chunk compute p50/p90, real-time factor = compute time over
audio time). WER/CER are scored from the run dir with the run's own card.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.card import ModelCard, card_path_for, read_card
from core.dataset_dir import DatasetDir
from core.run_dir import open_run
from postprocess.score import score_run
from postprocess.tables import CONVENTION_NOTES, context_of, machine_note, write_table


def _card_of(run: dict[str, Any], fallback: ModelCard) -> ModelCard:
    path = run.get("model", {}).get("path")
    if path and card_path_for(Path(path)).is_file():
        return read_card(card_path_for(Path(path)))
    return fallback


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(float(x), digits)


def streaming_rows(dataset: DatasetDir, card: ModelCard, runs: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    reference: dict[str, str] | None = None
    for label, run_dir in runs:
        run = open_run(run_dir)
        run_card = _card_of(run, card)
        scores = score_run(run_dir, dataset, run_card, write=False)
        hyps = scores["hypotheses"]
        if reference is None:
            reference = hyps
        stream = run.get("streaming") or {}
        lat = stream.get("latency", {})
        rows.append({
            "system": label or f"{run['backend']} {run['model'].get('precision')}",
            "precision": run["model"].get("precision"),
            "chunk frames": stream.get("chunk_frames"),
            "chunk ms": _r(stream["chunk_frames"] * lat.get("frame_ms", 10.0), 0) if stream else None,
            "algorithmic latency ms": _r(lat.get("algorithmic_latency_ms"), 0),
            "latency ms (+chunk wait)": _r(lat.get("latency_ms"), 0),
            "output delay frames": lat.get("output_delay_frames"),
            "first partial p50 ms": _r((stream.get("first_partial_ms") or {}).get("p50"), 1),
            "chunk compute p50 ms": _r((stream.get("chunk_compute_ms") or {}).get("p50"), 3),
            "chunk compute p90 ms": _r((stream.get("chunk_compute_ms") or {}).get("p90"), 3),
            "RTF": _r(run.get("rtf"), 4),
            "WER %": _r(100 * scores["wer"], 2),
            "CER %": _r(100 * scores["cer"], 2),
            "same transcripts as first row": sum(hyps[u] == reference.get(u) for u in hyps),
            "utterances": scores["utterances"],
        })
    return rows


NOTES = [
    "First row: the reference (the offline run of the same model). Streaming rows run the chunk graph chunk by "
    "chunk, state carried, zero-padded last chunk and flush (docs/streaming.md).",
    "algorithmic latency: the future feature frames one output frame needs, times 10 ms; latency (+chunk wait) "
    "adds the wait for a chunk to fill ((chunk - 1) frames). first partial: audio up to the chunk call that first "
    "emitted output, plus compute so far (median over utterances). chunk compute: one graph call (all streams of a "
    "group). RTF: model compute time / audio time.",
]


def write_streaming_table(out: Path, name: str, dataset: DatasetDir, card: ModelCard,
                          runs: list[tuple[str, Path]], title: str) -> list[Path]:
    from postprocess.plots import streaming_plot

    rows = streaming_rows(dataset, card, runs)
    ctx = context_of(runs[0][1], dataset, card)
    notes = [CONVENTION_NOTES.get(card.metrics, ""), *NOTES, machine_note(ctx)]
    written = write_table(out, f"{name}_streaming", f"Streaming: {title}", rows, notes, ctx)
    written.append(streaming_plot(rows, out / f"{name}_streaming.png", f"Streaming: {title}"))
    return written
