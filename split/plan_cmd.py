"""`python -m split plan`: choose the split point per bandwidth from a profile, and check it on a shaped link."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from split.errors import run_cli
from split.planner import load_profile, parse_bandwidth, parse_duration_ms, plan, reference_wer, wer_limit

log = logging.getLogger("split.plan")

HELP = "choose the split point and codec per bandwidth and RTT from a profile (--measure: check it)"

DESCRIPTION = """Predict end-to-end latency per split point and codec for each bandwidth, and choose the best:
  e2e = edge * edge_scale + encode + 8 * wire / bandwidth + RTT + rpc + decode + cloud * cloud_scale
(wire: request + reply with their framing; rpc: the transport's measured fixed cost per call)

  python -m split plan --profile profile.json --bandwidth 1mbit,10mbit,100mbit --rtt 20ms [--codec q4-ans]

Writes the sweep (every point x codec x bandwidth) and the choice per bandwidth as NAME.{md,csv,json}
(and NAME_chosen.*) under --out, and prints the choices. Without a WER limit the fastest candidate wins
however much accuracy its codec costs; --max-delta-wer 1 keeps to candidates within one WER point of the
unsplit model (edge-only in the profile), --max-wer to an absolute WER (percent). Excluded candidates stay
in the sweep, marked."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", type=Path, required=True, help="profile JSON from `python -m split profile`")
    p.add_argument("--bandwidth", default="1mbit,10mbit,100mbit",
                   help="comma-separated rates (default %(default)s)")
    p.add_argument("--rtt", default="20ms", help="round-trip time (default %(default)s)")
    p.add_argument("--codec", help="comma-separated codecs to consider (default: every codec in the profile)")
    p.add_argument("--edge-scale", type=float, default=1.0,
                   help="multiply edge latencies (a slower edge device); with --measure the edge runs are slowed "
                        "as much (a sleep after each Head inference), so the check covers that device too")
    p.add_argument("--cloud-scale", type=float, default=1.0, help="multiply cloud latencies")
    p.add_argument("--max-wer", type=float, help="ignore candidates whose WER (percent) is above this")
    p.add_argument("--max-delta-wer", type=float, metavar="POINTS",
                   help="ignore candidates more than POINTS WER points above the unsplit model's WER on the "
                        "profiled utterances (with --max-wer, the lower limit applies)")
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


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
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
    if args.edge_scale <= 0 or args.cloud_scale <= 0:
        raise ValueError(f"--edge-scale {args.edge_scale:g} / --cloud-scale {args.cloud_scale:g}: expected positive "
                         "factors")
    if args.measure and (args.cloud_scale != 1.0 or args.edge_scale < 1):
        raise ValueError("--measure runs Head and Tail on this machine: leave --cloud-scale at 1, and --edge-scale at 1 "
                         "or more (a slower edge is emulated by sleeping; a faster one cannot be)")
    if args.max_delta_wer is not None and args.max_delta_wer < 0:
        raise ValueError(f"--max-delta-wer {args.max_delta_wer:g}: expected points >= 0")
    limit = wer_limit(profile, args.max_wer, args.max_delta_wer)
    sweep, chosen = plan(profile, bandwidths, rtt, codecs=codecs, edge_scale=args.edge_scale,
                         cloud_scale=args.cloud_scale, max_wer=limit)
    if limit is not None:
        print(f"WER limit {limit:.2f}% (unsplit model {reference_wer(profile) or float('nan'):.2f}%)")
    for row in chosen:
        wer = f", WER {row['wer']:.2f}%" if row.get("wer") is not None else ""
        print(f"{row['bandwidth']:>9}: split at {row['point']} with {row['codec']}: predicted "
              f"{row['predicted_ms']:.2f} ms (edge {row['edge_ms']:.2f}, transfer {row['transfer_ms']:.2f}, "
              f"cloud {row['cloud_ms']:.2f}){wer}")
    if args.out is not None:
        meta = {"profile": str(args.profile), "rtt_ms": rtt, "edge_scale": args.edge_scale,
                "cloud_scale": args.cloud_scale, "max_wer": args.max_wer, "max_delta_wer": args.max_delta_wer,
                "wer_limit": limit, "unsplit_wer": reference_wer(profile), "machine": profile.get("machine")}
        notes = [f"RTT {rtt:g} ms; edge x{args.edge_scale:g}, cloud x{args.cloud_scale:g}",
                 _limit_note(limit, args.max_delta_wer, reference_wer(profile)),
                 "predicted = edge + encode + 8*wire_bytes/bandwidth + RTT + rpc + decode + cloud "
                 "(wire: request + reply with framing)"]
        write_tables(args.out, args.name, sweep, meta, title="Split planner sweep", notes=notes)
        write_tables(args.out, f"{args.name}_chosen", chosen, meta, title="Split point chosen per bandwidth",
                     notes=notes)
    if args.measure:
        _measure(args, profile, bandwidths, rtt, codecs, limit)
    return 0


def _limit_note(limit: float | None, delta: float | None, ref: float | None) -> str:
    if limit is None:
        return "no WER limit: the fastest predicted candidate is chosen whatever its WER"
    if delta is not None and ref is not None and abs(limit - (ref + delta)) < 1e-9:
        return (f"WER limit {limit:.2f}%: the unsplit model's {ref:.2f}% + {delta:g} points; candidates above it "
                "are marked excluded")
    return f"WER limit {limit:.2f}%; candidates above it are marked excluded"


def _measure(args: argparse.Namespace, profile: dict, bandwidths: list[float], rtt: float,
             codecs: list[str] | None, limit: float | None) -> None:
    from split.edge import utterances_from_dataset
    from split.plan_check import PointFiles, measure_plan
    from split.profiler import parse_point
    from split.timing import write_tables

    if args.dataset is None or not (args.point or args.full):
        raise ValueError("--measure needs --dataset and the files of the points (--point NAME=DIR, --full)")
    aes = dict(spec.split("=", 1) for spec in args.autoencoder)
    files: dict[str, PointFiles] = {}
    for spec in args.point:
        name, head, tail = parse_point(spec)
        files[name] = PointFiles(head, tail, Path(aes[name]) if name in aes else None)
    if args.full is not None:
        if not args.full.is_file():
            raise FileNotFoundError(f"--full: file not found: {args.full}")
        files["cloud-only"] = PointFiles(None, args.full)
        files["edge-only"] = PointFiles(args.full, None)
    from split.edge import HeadModel

    first = next(f.head for f in files.values() if f.head is not None)
    utts = list(utterances_from_dataset(args.dataset, HeadModel(first).input.name, args.limit))
    result = measure_plan(profile, files, utts, bandwidths, rtt, mode=args.link, codecs=codecs,
                          edge_scale=args.edge_scale, wer_limit=limit)
    for row in result["summary"]:
        print(f"{row['bandwidth']:>9}: planner chose {row['chosen']} ({row['chosen_measured_ms']:.2f} ms measured), "
              f"best measured {row['best_measured']} ({row['best_measured_ms']:.2f} ms): "
              f"x{row['chosen_over_best']:.3f}{'' if row['within_tolerance'] else '  OUTSIDE 10%'}")
    how = "veth + tc tbf between namespaces" if result["link"] == "netns" else "loopback, edge-side pacing"
    print(f"link: {result['link']} ({how}); "
          f"RTT {rtt:g} ms slept by the server")
    if args.out is not None:
        meta = {**{k: v for k, v in result.items() if k not in ("rows", "summary")},
                "max_delta_wer": args.max_delta_wer}
        note = [f"link: {result['link']}; RTT added as a server-side sleep (tc netem is unavailable here)",
                _limit_note(limit, args.max_delta_wer, reference_wer(profile))]
        if args.edge_scale != 1.0:
            note.append(f"edge emulated {args.edge_scale:g}x slower than this machine: each Head inference is "
                        "followed by a sleep of (scale - 1) x its measured compute")
        write_tables(args.out, f"{args.name}_measured", result["rows"], meta, title="Planner: predicted vs measured",
                     notes=note)
        write_tables(args.out, f"{args.name}_check", result["summary"], meta,
                     title="Planner's choice vs best measured point", notes=note)
