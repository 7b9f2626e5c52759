"""Check the planner against measured runs: every split point served for real over a shaped link.

For each bandwidth the link is shaped (split.netshape: veth + tc tbf between namespaces; or, where
namespaces are refused, loopback with the edge pacing its requests), the round-trip time is slept by the
server (netem does not work on these kernels), and each point's utterances go through Head -> codec ->
gRPC -> Tail. The codec at each point is the one the planner prefers there at that bandwidth. Reported
per point: predicted vs measured median end-to-end; per bandwidth: whether the planner's choice is
within `tolerance` of the best measured point.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from split.codecs import get_codec
from split.edge import EdgeClient, HeadModel, Utterance, run_one
from split.netshape import ShapedLink, ShapingUnavailable
from split.planner import candidates, format_bandwidth, within

log = logging.getLogger("split.plan_check")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class PointFiles:
    head: Path | None          # None: cloud-only (features are sent)
    tail: Path | None          # None: edge-only (the head is the whole model, nothing is sent)
    autoencoder: Path | None = None


@contextlib.contextmanager
def _server(tail: Path, autoencoder: Path | None, rtt_ms: float, link: ShapedLink | None) -> Iterator[str]:
    prefix = link.exec_prefix if link is not None else []
    host = link.server_ip if link is not None else "127.0.0.1"
    cmd = prefix + [sys.executable, "-m", "split", "serve", "--tail", str(tail), "--host", host, "--port", "0",
                    "--workers", "2", "--added-delay-ms", str(rtt_ms)]
    if autoencoder is not None:
        cmd += ["--autoencoder", str(autoencoder)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"split server for {tail} did not start (exit {proc.poll()})")
        yield line.split("listening on ")[1].split(" ")[0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _measure_remote(head: HeadModel | None, codec_name: str, autoencoder: Path | None, client: EdgeClient,
                    utts: list[Utterance], link: ShapedLink | None) -> dict[str, Any]:
    """Median e2e over `utts` (one warm-up first) and, on a shaped link, the wire bytes per request."""
    codec = get_codec(codec_name, autoencoder)
    run_one(head, codec, client, utts[0])
    before = link.sent_bytes() if link is not None else None
    rows = [run_one(head, codec, client, u)[0] for u in utts]
    out: dict[str, Any] = {"measured_ms": float(np.median([r["e2e"] for r in rows])),
                           "request_bytes": float(np.mean([r["request_bytes"] for r in rows]))}
    if link is not None and before is not None:
        after = link.sent_bytes()
        out["wire_up_bytes"] = (after[0] - before[0]) / len(rows)
        out["wire_down_bytes"] = (after[1] - before[1]) / len(rows)
    return out


def _local_median(model: HeadModel, utts: list[Utterance]) -> float:
    model.run(utts[0].features, utts[0].length)
    times = []
    for u in utts:
        t0 = time.perf_counter()
        model.run(u.features, u.length)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def open_link(mode: str, rate_bps: float) -> tuple[contextlib.AbstractContextManager, str]:
    """(context giving a ShapedLink or None, the mode actually used: 'netns' or 'pacing')."""
    if mode in ("auto", "netns"):
        link = ShapedLink(rate_bps)
        try:
            link.__enter__()
            return contextlib.closing(link), "netns"  # type: ignore[arg-type]
        except ShapingUnavailable as exc:
            if mode == "netns":
                raise
            log.warning("no shaped link (%s): falling back to loopback with sender-side pacing", exc)
    return contextlib.nullcontext(None), "pacing"


def measure_plan(profile: dict[str, Any], files: dict[str, PointFiles], utts: list[Utterance],
                 bandwidths: list[float], rtt_ms: float, *, mode: str = "auto", codecs: list[str] | None = None,
                 tolerance: float = 0.10, edge_scale: float = 1.0, wer_limit: float | None = None) -> dict[str, Any]:
    """Predicted vs measured per point and bandwidth, and the planner's choice vs the best measured point.

    `edge_scale` > 1: the planner predicts with edge latencies that many times the profile's, and the measured
    runs emulate such an edge (HeadModel's slowdown), so the check covers a slower edge device too.
    `wer_limit` (percent): each point runs its fastest predicted codec within it, as the planner chooses; a
    point with none is left out at that bandwidth."""
    names = [p["name"] for p in profile["points"] if p["name"] in files]
    if not names:
        raise ValueError("none of the profile's points has files to measure with")
    ctx, used = open_link(mode, bandwidths[0])
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    with ctx as link, contextlib.ExitStack() as stack:
        targets = {n: stack.enter_context(_server(files[n].tail, files[n].autoencoder, rtt_ms, link))
                   for n in names if files[n].tail is not None}
        heads = {n: HeadModel(files[n].head, slowdown=edge_scale) for n in names if files[n].head is not None}
        for bw in bandwidths:
            if link is not None:
                link.set_rate(bw)
            best_by_point: dict[str, Any] = {}
            for c in candidates(profile, bw, rtt_ms, codecs=codecs, edge_scale=edge_scale):
                known = best_by_point.get(c.point)
                if c.point in names and within(c, wer_limit) and (known is None or c.predicted_ms < known.predicted_ms):
                    best_by_point[c.point] = c
            if not best_by_point:
                raise ValueError(f"no measured point has a codec within the WER limit {wer_limit}% at "
                                 f"{format_bandwidth(bw)}")
            bw_rows = []
            for n in (n for n in names if n in best_by_point):
                cand = best_by_point[n]
                if files[n].tail is None:
                    got: dict[str, Any] = {"measured_ms": _local_median(heads[n], utts)}
                else:
                    client = EdgeClient(targets[n], pace_bps=bw if link is None else None, timeout_s=120)
                    got = _measure_remote(heads.get(n), cand.codec, files[n].autoencoder, client, utts, link)
                    client.close()
                measured = got["measured_ms"]
                bw_rows.append({"bandwidth": format_bandwidth(bw), "point": n, "codec": cand.codec,
                                "wer": cand.wer, "predicted_ms": cand.predicted_ms, "measured_ms": measured,
                                "error_pct": 100 * (cand.predicted_ms - measured) / measured,
                                "predicted_wire_bytes": cand.wire_bytes,
                                **{k: v for k, v in got.items() if k != "measured_ms"}})
                log.info("%s %-12s %-12s predicted %8.2f ms measured %8.2f ms", format_bandwidth(bw), n, cand.codec,
                         cand.predicted_ms, measured)
            chosen = min(bw_rows, key=lambda r: r["predicted_ms"])
            best = min(bw_rows, key=lambda r: r["measured_ms"])
            for r in bw_rows:
                r["planner_choice"] = r is chosen
                r["best_measured"] = r is best
            rows += bw_rows
            ratio = chosen["measured_ms"] / best["measured_ms"]
            summary.append({"bandwidth": format_bandwidth(bw), "chosen": chosen["point"],
                            "chosen_codec": chosen["codec"],
                            "chosen_measured_ms": chosen["measured_ms"], "best_measured": best["point"],
                            "best_measured_ms": best["measured_ms"], "chosen_over_best": ratio,
                            "within_tolerance": bool(ratio <= 1 + tolerance)})
    return {"link": used, "rtt_ms": rtt_ms, "tolerance": tolerance, "utterances": len(utts),
            "edge_scale": edge_scale, "wer_limit": wer_limit, "rows": rows, "summary": summary}
