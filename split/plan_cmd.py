"""`python -m split profile` and `python -m split plan`: measure split points, then choose one per link."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("split.plan")

PROFILE_DESCRIPTION = """Measure split points for the planner: per point the Head's latency (edge), the Tail's
latency (cloud) and, per codec, bytes per utterance, encode / decode time and WER (when the Tail's card
has labels and the dataset has transcripts). Medians over the utterances, one warm-up excluded.

  python -m split profile --point cnn=work/split/after_cnn --point rnn1=work/split/after_rnn1 \\
      --full work/export/split_asr/model.onnx --dataset DS --codecs fp32,int8-zstd,q4-ans --out profile.json

--point NAME=DIR takes DIR/head.onnx and DIR/tail.onnx (or NAME=HEAD.onnx,TAIL.onnx). --full adds the
cloud-only (features sent) and edge-only (nothing sent) points. --autoencoder NAME=DIR adds the ae*
codecs at that point (the autoencoder is trained for one boundary)."""

PLAN_DESCRIPTION = """Predict end-to-end latency per split point and codec for each bandwidth, and choose the best:
  e2e = edge * edge_scale + encode + 8 * bytes / bandwidth + RTT + rpc + decode + cloud * cloud_scale
(bytes: the whole serialised request; rpc: the transport's measured fixed cost per call)

  python -m split plan --profile profile.json --bandwidth 1mbit,10mbit,100mbit --rtt 20ms [--codec q4-ans]

Writes the sweep (every point x codec x bandwidth) and the choice per bandwidth as NAME.{md,csv,json}
(and NAME_chosen.*) under --out, and prints the choices. --max-wer drops candidates above a WER (percent)."""


def describe(name: str) -> str:
    return PROFILE_DESCRIPTION if name == "profile" else PLAN_DESCRIPTION


def add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "profile":
        p.add_argument("--point", action="append", required=True, metavar="NAME=DIR|NAME=HEAD,TAIL",
                       help="a split point (repeat, in model order)")
        p.add_argument("--full", type=Path, help="the unsplit model.onnx (adds cloud-only and edge-only points)")
        p.add_argument("--dataset", type=Path, required=True, help="dataset dir for the Head's input")
        p.add_argument("--codecs", default="fp32,fp16,int8,int8-zstd,int8-huffman,q4-ans,q2-ans",
                       help="comma-separated codecs to measure (default: %(default)s)")
        p.add_argument("--autoencoder", action="append", default=[], metavar="NAME=DIR",
                       help="autoencoder pair for point NAME (adds ae, ae-int8-zstd, ae-q4-ans there)")
        p.add_argument("--limit", type=int, help="only the first N utterances")
        p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
        p.add_argument("--out", type=Path, required=True, help="the profile JSON to write")
    else:
        p.add_argument("--profile", type=Path, required=True, help="profile JSON from `python -m split profile`")
        p.add_argument("--bandwidth", default="1mbit,10mbit,100mbit",
                       help="comma-separated rates (default %(default)s)")
        p.add_argument("--rtt", default="20ms", help="round-trip time (default %(default)s)")
        p.add_argument("--codec", help="comma-separated codecs to consider (default: every codec in the profile)")
        p.add_argument("--edge-scale", type=float, default=1.0, help="multiply edge latencies (a slower edge device)")
        p.add_argument("--cloud-scale", type=float, default=1.0, help="multiply cloud latencies")
        p.add_argument("--max-wer", type=float, help="ignore candidates whose WER (percent) is above this")
        p.add_argument("--out", type=Path, help="folder for the sweep and choice tables")
        p.add_argument("--name", default="split_plan", help="file stem (default %(default)s)")
        m = p.add_argument_group("measured check (--measure)")
        m.add_argument("--measure", action="store_true",
                       help="also run every point for real over a shaped link and compare with the prediction")
        m.add_argument("--point", action="append", default=[], metavar="NAME=DIR|NAME=HEAD,TAIL",
                       help="files of a profiled split point (as for `profile`)")
        m.add_argument("--full", type=Path, help="the unsplit model.onnx (measures cloud-only and edge-only)")
        m.add_argument("--autoencoder", action="append", default=[], metavar="NAME=DIR",
                       help="autoencoder pair of point NAME (for its ae* codecs)")
        m.add_argument("--dataset", type=Path, help="dataset dir of the utterances to send")
        m.add_argument("--limit", type=int, default=20, help="utterances per point and bandwidth (default 20)")
        m.add_argument("--link", choices=["auto", "netns", "pacing"], default="auto",
                       help="netns: veth + tc tbf between namespaces (root); pacing: loopback, the edge "
                            "sleeps bytes/rate; auto: netns, else pacing (default)")


def _pair(spec: str) -> tuple[str, Path, Path]:
    if "=" not in spec:
        raise ValueError(f"--point {spec!r}: expected NAME=DIR or NAME=HEAD.onnx,TAIL.onnx")
    name, rest = spec.split("=", 1)
    if "," in rest:
        head, tail = (Path(x) for x in rest.split(",", 1))
    else:
        head, tail = Path(rest) / "head.onnx", Path(rest) / "tail.onnx"
    for path in (head, tail):
        if not path.is_file():
            raise FileNotFoundError(f"--point {name}: file not found: {path}")
    return name, head, tail


def _profile(args: argparse.Namespace) -> int:
    from preprocess.dataset_dir import atomic_write_json
    from split.codecs import get_codec
    from split.codecs.autoencoder import Autoencoder
    from split.edge import HeadModel, utterances_from_dataset
    from split.profiler import SplitPoint, make_profile
    from split.tail import TailModel

    points = []
    for spec in args.point:
        name, head, tail = _pair(spec)
        points.append(SplitPoint(name, HeadModel(head, threads=args.threads), TailModel(tail, threads=args.threads)))
    aes = {}
    for spec in args.autoencoder:
        name, _, folder = spec.partition("=")
        if name not in {p.name for p in points}:
            raise ValueError(f"--autoencoder {spec!r}: no --point named {name!r}")
        aes[name] = Autoencoder.from_dir(Path(folder))
    plain = [get_codec(c) for c in args.codecs.split(",")]

    def codecs_for(point: SplitPoint) -> list:
        ae = aes.get(point.name)
        return plain + ([get_codec(n, ae) for n in ("ae", "ae-int8-zstd", "ae-q4-ans")] if ae else [])

    first_head = points[0].head
    utts = list(utterances_from_dataset(args.dataset, first_head.input.name, args.limit))
    convention = (first_head.card or {}).get("metrics_convention", "deepspeech")
    profile = make_profile(points, utts, codecs_for, args.full, convention)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, profile)
    for p in profile["points"]:
        log.info("%-12s edge %8.3f ms  cloud %8.3f ms  %s", p["name"], p["edge_ms"], p["cloud_ms"],
                 ", ".join(f"{c} {m['bytes']:.0f} B" for c, m in p["codecs"].items()))
    log.info("wrote %s", args.out)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from split.planner import load_profile, parse_bandwidth, parse_duration_ms, plan
    from split.timing import write_tables

    profile = load_profile(args.profile)
    bandwidths = [parse_bandwidth(b) for b in args.bandwidth.split(",")]
    rtt = parse_duration_ms(args.rtt)
    codecs = args.codec.split(",") if args.codec else None
    if codecs:
        known = {c for p in profile["points"] for c in p["codecs"]}
        unknown = [c for c in codecs if c not in known]
        if unknown:
            raise ValueError(f"--codec {','.join(unknown)}: not in the profile (it has {', '.join(sorted(known))})")
    if args.measure and (args.edge_scale != 1.0 or args.cloud_scale != 1.0):
        raise ValueError("--measure compares with this machine's own latencies: leave --edge-scale/--cloud-scale at 1")
    sweep, chosen = plan(profile, bandwidths, rtt, codecs=codecs, edge_scale=args.edge_scale,
                         cloud_scale=args.cloud_scale, max_wer=args.max_wer)
    for row in chosen:
        wer = f", WER {row['wer']:.2f}%" if row.get("wer") is not None else ""
        print(f"{row['bandwidth']:>9}: split at {row['point']} with {row['codec']}: predicted "
              f"{row['predicted_ms']:.2f} ms (edge {row['edge_ms']:.2f}, transfer {row['transfer_ms']:.2f}, "
              f"cloud {row['cloud_ms']:.2f}){wer}")
    if args.out is not None:
        meta = {"profile": str(args.profile), "rtt_ms": rtt, "edge_scale": args.edge_scale,
                "cloud_scale": args.cloud_scale, "max_wer": args.max_wer, "machine": profile.get("machine")}
        notes = [f"RTT {rtt:g} ms; edge x{args.edge_scale:g}, cloud x{args.cloud_scale:g}",
                 "predicted = edge + encode + 8*wire_bytes/bandwidth + RTT + rpc + decode + cloud "
                 "(wire: request + reply with framing)"]
        write_tables(args.out, args.name, sweep, meta, title="Split planner sweep", notes=notes)
        write_tables(args.out, f"{args.name}_chosen", chosen, meta, title="Split point chosen per bandwidth",
                     notes=notes)
    if args.measure:
        _measure(args, profile, bandwidths, rtt, codecs)
    return 0


def _measure(args: argparse.Namespace, profile: dict, bandwidths: list[float], rtt: float,
             codecs: list[str] | None) -> None:
    from split.edge import utterances_from_dataset
    from split.plan_check import PointFiles, measure_plan
    from split.timing import write_tables

    if args.dataset is None or not (args.point or args.full):
        raise ValueError("--measure needs --dataset and the files of the points (--point NAME=DIR, --full)")
    aes = dict(spec.split("=", 1) for spec in args.autoencoder)
    files: dict[str, PointFiles] = {}
    for spec in args.point:
        name, head, tail = _pair(spec)
        files[name] = PointFiles(head, tail, Path(aes[name]) if name in aes else None)
    if args.full is not None:
        if not args.full.is_file():
            raise FileNotFoundError(f"--full: file not found: {args.full}")
        files["cloud-only"] = PointFiles(None, args.full)
        files["edge-only"] = PointFiles(args.full, None)
    from split.edge import HeadModel

    first = next(f.head for f in files.values() if f.head is not None)
    utts = list(utterances_from_dataset(args.dataset, HeadModel(first).input.name, args.limit))
    result = measure_plan(profile, files, utts, bandwidths, rtt, mode=args.link, codecs=codecs)
    for row in result["summary"]:
        print(f"{row['bandwidth']:>9}: planner chose {row['chosen']} ({row['chosen_measured_ms']:.2f} ms measured), "
              f"best measured {row['best_measured']} ({row['best_measured_ms']:.2f} ms): "
              f"x{row['chosen_over_best']:.3f}{'' if row['within_tolerance'] else '  OUTSIDE 10%'}")
    how = "veth + tc tbf between namespaces" if result["link"] == "netns" else "loopback, edge-side pacing"
    print(f"link: {result['link']} ({how}); "
          f"RTT {rtt:g} ms slept by the server")
    if args.out is not None:
        meta = {k: v for k, v in result.items() if k not in ("rows", "summary")}
        note = [f"link: {result['link']}; RTT added as a server-side sleep (tc netem is unavailable here)"]
        write_tables(args.out, f"{args.name}_measured", result["rows"], meta, title="Planner: predicted vs measured",
                     notes=note)
        write_tables(args.out, f"{args.name}_check", result["summary"], meta,
                     title="Planner's choice vs best measured point", notes=note)


def run(name: str, args: argparse.Namespace) -> int:
    return _profile(args) if name == "profile" else _plan(args)
