"""Decode a run dir with the card's labels and score it against the dataset's transcripts."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.card import ModelCard
from core.dataset_dir import DatasetDir, atomic_write_bytes, read_bin
from core.guide import describe_decode_rule, guide_profile
from core.metrics import corpus_scores, jsonable, per_utterance
from core.run_dir import RunError, decoding_fingerprint, open_run

log = logging.getLogger("postprocess")

SCORES_JSON = "scores.json"
TRANSCRIPTS_CSV = "transcripts.csv"


def output_arrays(run_dir: Path, run: dict[str, Any], name: str) -> dict[str, np.ndarray]:
    """key -> that sample's output `name`, read with the shape run.json records."""
    spec = next((o for o in run["outputs"] if o["name"] == name), None)
    if spec is None:
        raise RunError(f"{run_dir}: the run has no output {name!r}")
    return {s["key"]: read_bin(run_dir / name / f"{s['key']}.bin", spec["dtype"], tuple(s["shapes"][name]))
            for s in run["samples"]}


def lengths_by_uid(card: ModelCard, run_dir: Path, dataset: DatasetDir) -> dict[str, int]:
    """Utterance id -> valid output frames, from the model's own lengths."""
    by_key = decode_lengths(card, run_dir, open_run(run_dir), dataset, False)
    return {s.uid: by_key[s.key] for s in dataset.samples}


def decode_lengths(card: ModelCard, run_dir: Path, run: dict[str, Any], dataset: DatasetDir,
                   modelzoo: bool) -> dict[str, int]:
    """Sample key -> how many output frames to decode.

    Default: the model's own length output (or the card's length rule). `modelzoo` reproduces the
    guide's postprocess by the decode rule of the card's guide profile (core/guide.py): the stored
    lengths input divided down (the DeepSpeech guide decodes input_length // 2), or every output frame.
    """
    scores = card.scores_output
    if modelzoo:
        rule = guide_profile(card)["decode_frames"]
        if rule["from"] == "lengths_input":
            if card.lengths_input is None:
                raise RunError(f"the guide profile decodes from the lengths input, but {card.onnx} has none")
            lengths_input = card.lengths_input.name
            return {s.key: int(dataset.load(s, lengths_input).reshape(-1)[0]) // rule["divide"]
                    for s in dataset.samples}
        return {s["key"]: int(s["shapes"][scores.name][scores.time_axis - 1]) // rule["divide"]
                for s in run["samples"]}
    if scores.lengths_from:
        arrays = output_arrays(run_dir, run, scores.lengths_from)
        return {k: int(np.asarray(v).reshape(-1)[0]) for k, v in arrays.items()}
    return {s.key: card.output_frames(s.length) for s in dataset.samples}


def check_run_matches(run_dir: Path, run: dict[str, Any], dataset: DatasetDir, card: ModelCard) -> None:
    """Refuse a run made from another dataset (content hash) or by a model the card does not describe."""
    made_from = run.get("config", {}).get("dataset_hash")
    have = dataset.header.get("config_hash")
    if made_from and have and made_from != have:
        raise RunError(f"{run_dir} was made from the dataset {run['dataset'].get('path')} (content hash {made_from}), "
                       f"not from {dataset.path} (content hash {have}); score it against the dataset it read, or "
                       "run it again on this one")
    decoding = run["model"].get("decoding")
    if decoding and decoding != decoding_fingerprint(card):
        raise RunError(f"{run_dir} was made by a {run['model'].get('family')} model whose labels or blank "
                       f"differ from those of the card given ({card.onnx}, family {card.family}); "
                       "expected the card of the model that made the run")


def check_output_frames(run_dir: Path, run: dict[str, Any], dataset: DatasetDir, card: ModelCard,
                        model_lengths: dict[str, int] | None) -> None:
    """Each sample's output frames against the card's output-length rule for its dataset length.

    The model's own length output must equal the rule; the score output's time axis must hold at least
    that many frames, and exactly the rule applied to the length the batch was padded to where run.json
    records it (the runners here do; the Ascend tools' runs do not). An output made from other audio (a
    stale run) fails one of these.
    """
    spec = card.scores_output
    lengths_input = card.lengths_input.name if card.lengths_input is not None else None
    samples = {s.key: s for s in dataset.samples}
    for meta in run["samples"]:
        s = samples.get(meta["key"])
        if s is None:
            continue
        # The stored lengths input where the dataset has one (--modelzoo stores rounded sizes), else the length.
        stored = lengths_input is not None and lengths_input in s.inputs
        length = int(dataset.load(s, lengths_input).reshape(-1)[0]) if stored else s.length
        try:
            expected = card.output_frames(length)
            padded = card.output_frames(meta["input_length"]) if meta.get("input_length") else None
        except ValueError:  # CardError: no usable rule on this card, nothing to check against
            return
        frames = int(meta["shapes"][spec.name][spec.time_axis - 1])
        problem = None
        if model_lengths is not None and model_lengths[s.key] != expected:
            problem = f"the model's length output says {model_lengths[s.key]} frames"
        elif frames < expected or (padded is not None and frames != padded):
            problem = f"its {spec.name} output has {frames} frames"
        if problem:
            raise RunError(f"{run_dir}: sample {s.key} ({s.audio}): {problem}, but the dataset's length {length} "
                           f"gives {expected} by the card's output-length rule; the outputs come from other audio "
                           "(a stale or mixed run dir?): run it again")


def score_run(run_dir: Path, dataset: DatasetDir, card: ModelCard, *, modelzoo: bool = False,
              write: bool = True) -> dict[str, Any]:
    run = open_run(run_dir)
    check_run_matches(run_dir, run, dataset, card)
    keys = [s.key for s in dataset.samples]
    have = {s["key"] for s in run["samples"]}
    missing = [k for k in keys if k not in have]
    if missing:
        raise RunError(f"{run_dir}: no outputs for {len(missing)} samples of {dataset.path} (e.g. {missing[:3]})")
    arrays = output_arrays(run_dir, run, card.scores_output.name)
    lengths = decode_lengths(card, run_dir, run, dataset, modelzoo)
    own = decode_lengths(card, run_dir, run, dataset, False) if modelzoo else lengths
    check_output_frames(run_dir, run, dataset, card, own if card.scores_output.lengths_from else None)
    hyps, refs = [], []
    for s in dataset.samples:
        out = arrays[s.key]
        hyps.append(card.decode(out, min(lengths[s.key], out.shape[0])))
        refs.append(s.transcript)
    convention = card.metrics
    result = corpus_scores(refs, hyps, convention=convention)
    result.update({
        "run": str(run_dir), "backend": run["backend"], "batch_size": run["batch_size"],
        "precision": run["model"].get("precision"), "decode": "greedy CTC",
        "decode_lengths": (f"ModelZoo postprocess: {describe_decode_rule(guide_profile(card)['decode_frames'])}"
                           if modelzoo else "model output lengths"),
    })
    # Keyed by utterance id, so runs over differently laid out dataset dirs can be compared.
    result["hypotheses"] = {s.uid: h for s, h in zip(dataset.samples, hyps)}
    empty = [s.uid for s, r in zip(dataset.samples, refs) if not r.strip()]
    if empty:
        result["empty_reference_uids"] = empty
        log.warning("%s: %d of %d references are empty (%s%s): their hypothesis words count as insertions "
                    "against no reference words; an utterance's rate is then undefined (null in %s)", dataset.path,
                    len(empty), len(refs), ", ".join(empty[:5]), ", ..." if len(empty) > 5 else "", SCORES_JSON)
    if write:
        atomic_write_bytes(run_dir / SCORES_JSON,
                           (json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n").encode())
        rows = per_utterance(refs, hyps, convention)
        for row, s in zip(rows, dataset.samples):
            row["key"], row["uid"] = s.key, s.uid
        buf = _csv_text(rows)
        atomic_write_bytes(run_dir / TRANSCRIPTS_CSV, buf.encode())
    return result


def _csv_text(rows: list[dict[str, Any]]) -> str:
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    fields = ["key", "uid"] + [k for k in rows[0] if k not in ("key", "uid")]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def output_diff(run_a: Path, dataset_a: DatasetDir, run_b: Path, dataset_b: DatasetDir, card: ModelCard,
                lengths: dict[str, int]) -> dict[str, float]:
    """Max |a - b| of the score output over the valid frames of every utterance (tensor-level precision).

    Utterances are matched by their id, so runs over differently laid out dataset dirs (default vs
    modelzoo) compare too; `lengths` maps utterance id to valid frames.
    """
    ra, rb = open_run(run_a), open_run(run_b)
    spec = card.scores_output
    a, b = output_arrays(run_a, ra, spec.name), output_arrays(run_b, rb, spec.name)
    key_a = {s.uid: s.key for s in dataset_a.samples}
    key_b = {s.uid: s.key for s in dataset_b.samples}
    max_abs = 0.0
    agree = total = 0
    for uid, n in lengths.items():
        if uid not in key_a or uid not in key_b:
            continue
        x, y = a[key_a[uid]][:n].astype(np.float64), b[key_b[uid]][:n].astype(np.float64)
        m = min(len(x), len(y))
        x, y = x[:m], y[:m]
        if x.size:
            max_abs = max(max_abs, float(np.abs(x - y).max()))
            agree += int((x.argmax(-1) == y.argmax(-1)).sum())
            total += x.shape[0]
    return {"max_abs": max_abs, "argmax_agreement": agree / total if total else 1.0, "frames": total}


def final_frame_emissions(run_dir: Path, dataset: DatasetDir, card: ModelCard) -> int:
    """How many samples have a non-blank best label in their last valid output frame (what a decoder
    that reads one frame short, like the Ascend guide's floor(L/2), loses)."""
    run = open_run(run_dir)
    spec = card.scores_output
    arrays = output_arrays(run_dir, run, spec.name)
    lengths = decode_lengths(card, run_dir, run, dataset, False)
    blank = card.blank_index
    return sum(1 for k, n in lengths.items() if n > 0 and int(arrays[k][n - 1].argmax()) != blank)


def load_scores(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SCORES_JSON
    if not path.is_file():
        raise RunError(f"{run_dir} has not been scored yet (no {SCORES_JSON}); run `python -m postprocess score`")
    return json.loads(path.read_text())
