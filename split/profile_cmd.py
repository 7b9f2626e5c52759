"""`python -m split profile`: measure split points for the planner."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core.dataset_dir import atomic_write_json
from core.model_card import metrics_convention_of
from split.errors import run_cli

log = logging.getLogger("split.profile")

HELP = "measure each split point: edge/cloud latency, bytes, encode/decode time and WER per codec"

DESCRIPTION = """Measure split points for the planner: per point the Head's latency (edge), the Tail's
latency (cloud) and, per codec, bytes per utterance, encode / decode time and WER (when the Tail's card
has labels and the dataset has transcripts). Medians over the utterances (each the median of --repeats
runs), one warm-up excluded.

  python -m split profile --point cnn=work/split/after_cnn --point rnn1=work/split/after_rnn1 \\
      --full work/export/split_asr/model.onnx --dataset DS --codecs fp32,int8-zstd,q4-ans --out profile.json

--point NAME=DIR takes DIR/head.onnx and DIR/tail.onnx (or NAME=HEAD.onnx,TAIL.onnx). --full adds the
cloud-only (features sent) and edge-only (nothing sent) points. --autoencoder NAME=DIR adds the learned
codecs DIR holds at that point (ae* with ae_*.onnx, klt-* with klt.json; each is fitted to one boundary)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--point", action="append", required=True, metavar="NAME=DIR|NAME=HEAD,TAIL",
                   help="a split point (repeat, in model order)")
    p.add_argument("--full", type=Path, help="the unsplit model.onnx (adds cloud-only and edge-only points)")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir for the Head's input")
    p.add_argument("--codecs", default="fp32,fp16,int8,int8-zstd,int8-huffman,q4-ans,q2-ans",
                   help="comma-separated codecs to measure (default: %(default)s)")
    p.add_argument("--autoencoder", action="append", default=[], metavar="NAME=DIR",
                   help="learned codec folder of point NAME (ae_*.onnx: adds the ae* codecs there; klt.json: "
                        "the klt-* codecs)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs per utterance and stage, median kept (default 3)")
    p.add_argument("--out", type=Path, required=True, help="the profile JSON to write")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from split.codecs import CODECS, Learned, codec_names, get_codec
    from split.edge import HeadModel, utterances_from_dataset
    from split.profiler import SplitPoint, make_profile, parse_point
    from split.tail import TailModel

    points = []
    for spec in args.point:
        name, head, tail = parse_point(spec)
        points.append(SplitPoint(name, HeadModel(head, threads=args.threads), TailModel(tail, threads=args.threads)))
    aes = {}
    for spec in args.autoencoder:
        name, _, folder = spec.partition("=")
        if name not in {p.name for p in points}:
            raise ValueError(f"--autoencoder {spec!r}: no --point named {name!r}")
        aes[name] = Learned.from_dir(Path(folder))
    plain = [get_codec(c) for c in args.codecs.split(",")]

    def codecs_for(point: SplitPoint) -> list:
        learned = aes.get(point.name)
        if learned is None:
            return plain
        return plain + [get_codec(n, learned) for n in codec_names(learned) if CODECS[n].needs]

    first_head = points[0].head
    utts = list(utterances_from_dataset(args.dataset, first_head.input.name, args.limit))
    convention = metrics_convention_of(first_head.card)
    profile = make_profile(points, utts, codecs_for, args.full, convention, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, profile)
    for p in profile["points"]:
        log.info("%-12s edge %8.3f ms  cloud %8.3f ms  %s", p["name"], p["edge_ms"], p["cloud_ms"],
                 ", ".join(f"{c} {m['bytes']:.0f} B" for c, m in p["codecs"].items()))
    log.info("wrote %s", args.out)
    return 0
