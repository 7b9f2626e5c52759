"""`python -m split codecs`: list the codecs, or measure them on a Head's real boundary tensors."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.metrics import corpus_scores
from core.model_card import metrics_convention_of
from split.errors import run_cli
from split.timing import write_tables

log = logging.getLogger("split.codecs")

DESCRIPTION = """Without --head: list the registered codecs. With --head and --dataset: run the Head on each
utterance and measure every codec on its boundary tensor: payload and parameter bytes per utterance,
bits per element (payload only, and with the parameters as serialised on the wire), ratio vs fp32,
encode / decode time (median), reconstruction RMSE; with --tail also the transcripts after decoding:
WER, and dWER against the unencoded boundary (the unsplit model's transcripts).

  python -m split codecs
  python -m split codecs --head DIR/head.onnx --tail DIR/tail.onnx --autoencoder DIR --dataset DS \\
      --out results --name split_codecs

Writes NAME.{md,csv,json} and NAME.png (dWER against bits per element) under --out."""


HELP = "list the boundary codecs, or measure them (size, time, error, WER) on real boundary tensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", type=Path, help="head.onnx (its card beside it)")
    p.add_argument("--tail", type=Path, help="tail.onnx with a card holding labels (adds WER columns)")
    p.add_argument("--dataset", type=Path, help="dataset dir for the Head's input")
    p.add_argument("--autoencoder", type=Path, help="folder of the learned codec parts: ae_encoder.onnx + "
                   "ae_decoder.onnx (ae* codecs), klt.json (klt-* codecs)")
    p.add_argument("--codecs", help="comma-separated codec names (default: all that can run)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--out", type=Path, help="folder for the tables and plot")
    p.add_argument("--name", default="split_codecs", help="file stem of the outputs (default split_codecs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _list() -> int:
    from split.codecs import CODECS

    for codec_name, spec in CODECS.items():
        need = f"  [needs the {spec.needs} in --autoencoder DIR]" if spec.needs else ""
        print(f"{codec_name:14s} {spec.description}{need}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    if args.head is None:
        return _list()
    if args.dataset is None:
        raise ValueError("--head needs --dataset (the utterances to measure on)")
    from tqdm import tqdm

    from split.codecs import Learned, codec_names, get_codec, measure
    from split.edge import HeadModel, utterances_from_dataset
    from split.tail import TailModel
    from split.wire import params_to_proto

    learned = Learned.from_dir(args.autoencoder)
    names = args.codecs.split(",") if args.codecs else codec_names(learned)
    codecs = [get_codec(n, learned) for n in names]
    head = HeadModel(args.head)
    tail = TailModel(args.tail) if args.tail else None
    if tail is not None and not tail.can_transcribe:
        raise ValueError(f"--tail {args.tail}: its card has no labels/blank_index, so no WER can be computed")
    per_codec: dict[str, list[dict[str, Any]]] = {c.name: [] for c in codecs}
    refs: list[str] = []
    hyps: dict[str, list[str]] = {c.name: [] for c in codecs}
    unsplit: list[str] = []
    for utt in tqdm(list(utterances_from_dataset(args.dataset, head.input.name, args.limit)),
                    desc="codecs", unit="utt", disable=args.no_progress):
        boundary, lengths = head.run(utt.features, utt.length)
        refs.append(utt.reference)
        in_lengths = [utt.length] if utt.length else None
        frames = boundary.shape[1] if boundary.ndim > 1 else None
        if tail is not None:
            unsplit += tail.transcripts(tail.run(boundary, lengths, input_lengths=in_lengths), lengths, frames)
        for codec in codecs:
            m, decoded = measure(codec, boundary)
            m["params_bytes"] = params_to_proto(m.pop("params")).ByteSize()
            per_codec[codec.name].append(m)
            if tail is not None:
                hyps[codec.name] += tail.transcripts(tail.run(decoded, lengths, input_lengths=in_lengths), lengths,
                                                     frames)
    table = [_row(c.name, per_codec[c.name], refs, unsplit, hyps[c.name], head) for c in codecs]
    for row in table:
        log.info("%-14s %6.3f bits/elem  x%-7.1f %s", row["codec"], row["bits_per_element"], row["ratio_vs_fp32"],
                 f"dWER {row['delta_wer_points']:+.2f}" if "delta_wer_points" in row else "")
    if args.out is not None:
        meta = {"head": str(args.head), "tail": str(args.tail) if args.tail else None, "dataset": str(args.dataset),
                "utterances": len(refs)}
        write_tables(args.out, args.name, table, meta, title="Split boundary codecs",
                     notes=["bits_per_element: payload only; wire_bits_per_element adds the codec parameters "
                            "as serialised in the request",
                            "delta_wer_points: WER after the codec minus WER of the unencoded boundary "
                            "(Tail(Head(x)))"])
        if tail is not None:
            _plot(args.out / f"{args.name}.png", table)
        log.info("wrote %s/%s.*", args.out, args.name)
    return 0


def _row(codec: str, ms: list[dict[str, Any]], refs: list[str], unsplit: list[str], hyps: list[str],
         head: Any) -> dict[str, Any]:
    elements = sum(m["elements"] for m in ms) or 1
    payload = sum(m["payload_bytes"] for m in ms)
    params = sum(m["params_bytes"] for m in ms)
    row: dict[str, Any] = {
        "codec": codec,
        "bits_per_element": 8 * payload / elements,
        "wire_bits_per_element": 8 * (payload + params) / elements,
        "bytes_per_utterance": (payload + params) / max(len(ms), 1),
        "ratio_vs_fp32": 4 * elements / max(payload + params, 1),
        "encode_ms": float(np.median([m["encode_ms"] for m in ms])),
        "decode_ms": float(np.median([m["decode_ms"] for m in ms])),
        "rmse": float(np.sqrt(np.mean([m["rmse"] ** 2 for m in ms]))),
    }
    if unsplit:
        convention = metrics_convention_of(head.card)
        wer_ref = corpus_scores(refs, unsplit, convention=convention)["wer"]
        wer = corpus_scores(refs, hyps, convention=convention)["wer"]
        row.update({"wer": 100 * wer, "delta_wer_points": 100 * (wer - wer_ref),
                    "same_transcripts": sum(a == b for a, b in zip(unsplit, hyps)) / len(hyps)})
    return row


def _plot(path: Path, table: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in table:
        ax.scatter(row["wire_bits_per_element"], row["delta_wer_points"])
        ax.annotate(row["codec"], (row["wire_bits_per_element"], row["delta_wer_points"]), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per element on the wire (log2)")
    ax.set_ylabel("ΔWER vs unsplit (points)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Split boundary codecs: size vs accuracy")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
