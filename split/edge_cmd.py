"""`python -m split edge`: the edge side, over a dataset dir or .npy feature files."""
from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.card import CardError, read_card
from core.dataset_dir import DatasetDir, atomic_write_bytes, write_bin
from core.metrics import corpus_scores
from core.model_card import ModelCard, metrics_convention_of
from core.run_dir import finish_run
from split.errors import run_cli
from split.planner import parse_bandwidth
from split.timing import summarize, write_tables

log = logging.getLogger("split.edge")

DESCRIPTION = """Run head.onnx on each utterance, encode the boundary tensor, send it to the split server,
and collect transcripts and per-stage times (median / p90 over all utterances).

  python -m split edge --head DIR/head.onnx --server 127.0.0.1:50051 --dataset DS --codec q4-ans --out RUN
  python -m split edge --head DIR/head.onnx --server HOST:443 --tls-ca ca.pem --features a.npy b.npy

Writes RUN/timing.{md,csv,json} (per stage: count, median, p90, p99, mean, max in ms),
RUN/utterances.jsonl (every utterance's times, bytes, transcript and reference), and with
--return-output the Tail's outputs as RUN/<output>/<key>.bin (little-endian, shape in utterances.jsonl).
With --tail-card (and --return-output --dataset) RUN is also a run dir like a runner's: each sample's
output row without the batch axis, and run.json, so `python -m postprocess report` scores the split
model over the wire beside the whole model's runs.
Stages: edge (Head), encode, send (request build + serialise), network (RPC time minus server handler,
incl. any emulated delay), decode (server parse + codec decode), cloud (Tail), reply (server CTC +
reply parse), e2e."""


HELP = "edge: run head.onnx, encode, send each utterance to the server, time every stage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", type=Path, required=True, help="head.onnx (its card beside it)")
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT of `python -m split serve`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="a dataset dir made by `python -m preprocess` for the model")
    src.add_argument("--features", type=Path, nargs="+", help=".npy feature tensors (batch, ...) as the Head takes")
    p.add_argument("--codec", default="int8-zstd", help="codec name (see `python -m split codecs`)")
    p.add_argument("--autoencoder", type=Path, help="folder of the learned codec parts (ae_encoder.onnx for the ae* "
                   "codecs, klt.json for the klt-* codecs)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--warmup", type=int, default=1, help="utterances sent first and left out of the timings")
    p.add_argument("--return-output", action="store_true", help="also fetch the Tail's output tensors")
    p.add_argument("--out", type=Path, help="folder for timing tables and per-utterance results")
    p.add_argument("--tail-card", type=Path,
                   help="the Tail's card: with --return-output and --dataset, --out also becomes a run dir "
                        "(run.json) that postprocess scores")
    p.add_argument("--tls-ca", type=Path, help="PEM root certificate(s) to verify a TLS server")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request deadline in seconds (default 30)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the Head (default 1)")
    p.add_argument("--clients", type=int, default=1,
                   help="concurrent edge clients (own connection each) sharing the utterances: a load test; "
                        "adds requests/s to the tables (default 1)")
    p.add_argument("--pace", metavar="RATE",
                   help="emulate an uplink of RATE (e.g. 10mbit) on loopback: each request first waits "
                        "bytes * 8 / RATE (counted in network)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from split.codecs import get_codec
    from split.edge import STAGES, EdgeClient, HeadModel, outputs_of, run_one, utterances_from_dataset, \
        utterances_from_files

    if not args.head.is_file():
        raise FileNotFoundError(f"--head: file not found: {args.head}")
    run_card = _run_card(args)
    head = HeadModel(args.head, threads=args.threads)
    codec = get_codec(args.codec, args.autoencoder)
    pace = parse_bandwidth(args.pace) if args.pace else None
    client = EdgeClient(args.server, tls_ca=args.tls_ca, timeout_s=args.timeout, pace_bps=pace)
    health = client.health()
    if codec.name not in health.codecs:
        raise ValueError(f"--codec {codec.name}: the server does not decode it (it offers {list(health.codecs)})")
    utts = list(utterances_from_dataset(args.dataset, head.input.name, args.limit) if args.dataset
                else utterances_from_files(args.features))
    if not utts:
        raise ValueError("no utterances to send")
    for utt in utts[:max(0, args.warmup)]:
        run_one(head, codec, client, utt)
    if args.clients < 1:
        raise ValueError("--clients must be at least 1")
    bar = tqdm(total=len(utts), desc=f"edge {codec.name}", unit="utt", disable=args.no_progress)

    def send_all(share: list, own_client: EdgeClient) -> list[dict]:
        out = []
        for utt in share:
            row, reply = run_one(head, codec, own_client, utt, return_output=args.return_output)
            if args.return_output and args.out is not None:
                for out_name, arr in outputs_of(reply).items():
                    if run_card is not None:  # a run dir holds each sample's row, as the runners write it
                        arr = arr[0]
                    (args.out / out_name).mkdir(parents=True, exist_ok=True)
                    write_bin(args.out / out_name / f"{utt.key}.bin", arr, arr.dtype.name)
                    row.setdefault("output_shapes", {})[out_name] = list(arr.shape)
            out.append(row)
            bar.update(1)
        return out

    clients = [client] + [EdgeClient(args.server, tls_ca=args.tls_ca, timeout_s=args.timeout, pace_bps=pace)
                          for _ in range(args.clients - 1)]
    t_start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        shares = [pool.submit(send_all, utts[i::len(clients)], c) for i, c in enumerate(clients)]
        rows = sorted((r for f in shares for r in f.result()), key=lambda r: r["key"])
    wall = time.perf_counter() - t_start
    bar.close()
    for c in clients:
        c.close()
    table = summarize(rows, STAGES)
    bits = sum(8 * r["payload_bytes"] for r in rows) / max(sum(r["elements"] for r in rows), 1)
    meta = {"codec": codec.name, "server": args.server, "head": str(args.head), "utterances": len(rows),
            "warmup": args.warmup, "payload_bits_per_element": bits,
            "mean_request_bytes": sum(r["request_bytes"] for r in rows) / len(rows),
            "tail_sha256": health.model_sha256, "clients": len(clients), "wall_s": wall,
            "requests_per_s": len(rows) / wall, "paced_bps": pace}
    refs = [r["reference"] for r in rows]
    if all(refs) and any(r["transcript"] for r in rows):
        convention = metrics_convention_of(head.card)
        scores = corpus_scores(refs, [r["transcript"] for r in rows], convention=convention)
        meta["wer"], meta["cer"] = scores["wer"], scores["cer"]
    for row in table:
        log.info("%-8s median %8.3f ms  p90 %8.3f ms", row["stage"], row["median_ms"], row["p90_ms"])
    log.info("%d utterances, %d client(s), %.1f requests/s, %.3f payload bits per element%s", len(rows),
             len(clients), len(rows) / wall, bits,
             f", WER {100 * meta['wer']:.2f}%" if "wer" in meta else "")
    if args.out is not None:
        notes = [f"codec {codec.name}, {bits:.3f} payload bits per element, {len(rows)} utterances "
                 f"({args.warmup} warm-up excluded), {len(clients)} concurrent client(s): "
                 f"{len(rows) / wall:.1f} requests/s",
                 "network = RPC wall time minus the server's handler time (+ any emulated delay)"]
        write_tables(args.out, "timing", table, meta, title=f"Split inference stage times ({codec.name})",
                     notes=notes)
        atomic_write_bytes(args.out / "utterances.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        if run_card is not None:
            _finish_run_dir(args, run_card, rows, meta, wall)
        log.info("wrote %s", args.out)
    return 0


def _run_card(args: argparse.Namespace) -> ModelCard | None:
    """The Tail's card when --out is to be a run dir, checked before anything is sent."""
    if args.tail_card is None:
        return None
    if not (args.return_output and args.dataset and args.out):
        raise ValueError("--tail-card makes --out a run dir: it needs --return-output, --dataset and --out")
    try:
        card = read_card(args.tail_card)
    except CardError as exc:
        raise ValueError(f"--tail-card {args.tail_card}: not a usable model card: {exc}") from None
    (args.out / "run.json").unlink(missing_ok=True)  # a run dir without run.json is never taken as finished
    return card


def _finish_run_dir(args: argparse.Namespace, card: ModelCard, rows: list[dict], meta: dict, wall_s: float) -> None:
    """run.json (runners' format, written last) for the outputs the server returned; per-sample latency is e2e."""
    missing = [s.name for s in card.outputs if any(s.name not in r.get("output_shapes", {}) for r in rows)]
    if missing:
        raise ValueError(f"--tail-card {args.tail_card}: the server returned no output {missing} for some utterances")
    dataset = DatasetDir.open(args.dataset)
    config = {"backend": "split-edge", "codec": meta["codec"], "head": str(args.head),
              "tail_sha256": meta["tail_sha256"], "dataset": str(dataset.path.resolve())}
    samples = [{"key": r["key"], "batch": i, "shapes": r["output_shapes"]} for i, r in enumerate(rows)]
    finish_run(args.out, config=config, backend="split-edge", backend_info={"codec": meta["codec"],
               "server": args.server, "clients": meta["clients"], "paced_bps": meta["paced_bps"]},
               card=card, dataset=dataset, batch_size=1, batches=len(rows), latencies_ms=[r["e2e"] for r in rows],
               wall_s=wall_s, samples_meta=samples, model_path=args.head, batching="manifest order",
               warmup=args.warmup, extra={"split": {k: meta[k] for k in ("payload_bits_per_element",
                                                                          "mean_request_bytes")}})
