"""Partition planning (after Neurosurgeon): predict end-to-end latency per split point and pick the best.

A profile (JSON, written by `python -m split profile`) holds, per split point, the measured Head latency
(edge_ms), Tail latency (cloud_ms) and, per codec, the bytes sent per utterance with encode/decode times
and (when the Tail has labels) the WER. The prediction per point k and codec c at bandwidth B, RTT r:

    e2e(k, c) = edge(k) * edge_scale + encode(c) + 8 * wire(k, c) / B + r + rpc + decode(c) + cloud(k) * cloud_scale

where wire is the request plus the reply with their framing (FRAMING_*), and rpc is the transport's
measured fixed cost per call (profile `rpc_overhead_ms`). A "local" point (the whole model on the edge)
sends nothing and pays no network. `edge_scale` and `cloud_scale` let one profile, measured on one
machine, stand for a slower edge or a faster cloud.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

PROFILE_VERSION = 1
# Bytes a request / reply costs on the wire beyond its protobuf message: TCP/IP headers, HTTP/2 frame
# headers and HPACK-compressed HEADERS/trailers, gRPC's 5-byte prefix. Calibrated with tc's byte
# counters on the shaped veth link (docs/split.md); plan_check reports the measured values next to them.
FRAMING_UP_BYTES = 150
FRAMING_DOWN_BYTES = 120
DEFAULT_REPLY_BYTES = 80

_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(|k|m|g)(bit|bps|b)?(/s)?\s*$", re.IGNORECASE)
_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*$", re.IGNORECASE)


def parse_bandwidth(text: str) -> float:
    """'1mbit', '10Mbit/s', '500kbit', '1e6' style -> bits per second (decimal prefixes, as tc uses)."""
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"bandwidth {text!r}: expected a number with kbit/mbit/gbit, e.g. 10mbit")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if value <= 0:
        raise ValueError(f"bandwidth {text!r} must be positive")
    return value


def parse_duration_ms(text: str) -> float:
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"duration {text!r}: expected e.g. 20ms, 0.5s or 300us")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, None: 1.0}[(m.group(2) or "ms").lower()]


def format_bandwidth(bps: float) -> str:
    for unit, div in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= div:
            return f"{bps / div:g}{unit}"
    return f"{bps:g}bit"


@dataclass
class Candidate:
    point: str
    index: int
    codec: str
    edge_ms: float
    encode_ms: float
    transfer_ms: float
    rtt_ms: float
    rpc_ms: float
    decode_ms: float
    cloud_ms: float
    bytes: float
    wer: float | None
    wire_bytes: float = 0.0  # request + reply with framing, as the transfer time counts them

    @property
    def predicted_ms(self) -> float:
        return (self.edge_ms + self.encode_ms + self.transfer_ms + self.rtt_ms + self.rpc_ms + self.decode_ms
                + self.cloud_ms)


def load_profile(path: Path) -> dict[str, Any]:
    try:
        profile = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"profile not found: {path} (make one with `python -m split profile`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"profile {path} is not valid JSON: {exc}") from None
    check_profile(profile, str(path))
    return profile


def check_profile(profile: dict[str, Any], where: str = "profile") -> None:
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"{where}: version {profile.get('version')!r}, expected {PROFILE_VERSION}")
    points = profile.get("points")
    if not isinstance(points, list) or not points:
        raise ValueError(f"{where}: no split points")
    for i, p in enumerate(points):
        for key in ("name", "edge_ms", "cloud_ms", "codecs"):
            if key not in p:
                raise ValueError(f"{where}: point {i} has no {key!r}")
        if not p.get("local") and not p["codecs"]:
            raise ValueError(f"{where}: point {p['name']!r} has no codec measurements")


def candidates(profile: dict[str, Any], bandwidth_bps: float, rtt_ms: float, *, codecs: Iterable[str] | None = None,
               edge_scale: float = 1.0, cloud_scale: float = 1.0) -> list[Candidate]:
    """Every (point, codec) of the profile with its predicted latency at this bandwidth and RTT."""
    wanted = set(codecs) if codecs else None
    rpc = float(profile.get("rpc_overhead_ms", 0.0))
    out = []
    for index, p in enumerate(profile["points"]):
        edge, cloud = float(p["edge_ms"]) * edge_scale, float(p["cloud_ms"]) * cloud_scale
        if p.get("local"):
            out.append(Candidate(p["name"], index, "-", edge, 0.0, 0.0, 0.0, 0.0, 0.0, cloud, 0.0, p.get("wer")))
            continue
        reply = float(p.get("reply_bytes", DEFAULT_REPLY_BYTES)) + FRAMING_DOWN_BYTES
        for codec, m in p["codecs"].items():
            if wanted is not None and codec not in wanted:
                continue
            wire = float(m["bytes"]) + FRAMING_UP_BYTES + reply
            out.append(Candidate(p["name"], index, codec, edge, float(m["encode_ms"]),
                                 8e3 * wire / bandwidth_bps, rtt_ms, rpc, float(m["decode_ms"]), cloud,
                                 float(m["bytes"]), m.get("wer"), wire))
    return out


def reference_wer(profile: dict[str, Any]) -> float | None:
    """The unsplit model's WER on the profiled utterances: the edge-only point's, else the lowest unencoded
    boundary's (every point's Tail(Head(x)) is the whole model up to float rounding)."""
    local = [p.get("wer") for p in profile["points"] if p.get("local") and p.get("wer") is not None]
    if local:
        return float(local[0])
    unencoded = [p["wer_unencoded"] for p in profile["points"] if p.get("wer_unencoded") is not None]
    return float(min(unencoded)) if unencoded else None


def wer_limit(profile: dict[str, Any], max_wer: float | None = None,
              max_delta_wer: float | None = None) -> float | None:
    """The WER (percent) a candidate may not exceed: `max_wer`, and/or the unsplit model's WER plus
    `max_delta_wer` points, whichever is lower; None for no limit."""
    limits = [] if max_wer is None else [float(max_wer)]
    if max_delta_wer is not None:
        ref = reference_wer(profile)
        if ref is None:
            raise ValueError("a WER budget needs WERs in the profile (profile with a Tail whose card has labels)")
        limits.append(ref + float(max_delta_wer))
    return min(limits) if limits else None


def within(c: Candidate, limit: float | None) -> bool:
    """A candidate without a WER (no labels) is never excluded: there is nothing to hold it to."""
    return limit is None or c.wer is None or c.wer <= limit + 1e-9


def plan(profile: dict[str, Any], bandwidths_bps: list[float], rtt_ms: float, *, codecs: Iterable[str] | None = None,
         edge_scale: float = 1.0, cloud_scale: float = 1.0, max_wer: float | None = None,
         max_delta_wer: float | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(sweep rows, chosen row per bandwidth): the fastest predicted candidate within the WER limit
    (`max_wer` percent, `max_delta_wer` points above the unsplit model; see `wer_limit`)."""
    sweep, chosen = [], []
    codecs = list(codecs) if codecs else None
    limit = wer_limit(profile, max_wer, max_delta_wer)
    for bw in bandwidths_bps:
        cands = candidates(profile, bw, rtt_ms, codecs=codecs, edge_scale=edge_scale, cloud_scale=cloud_scale)
        allowed = [c for c in cands if within(c, limit)]
        if not allowed:
            raise ValueError(f"no split point / codec meets the WER limit {limit:.2f}% at {format_bandwidth(bw)}")
        best = min(allowed, key=lambda c: c.predicted_ms)
        for c in cands:
            row = _row(bw, c)
            row["chosen"] = c is best
            row["excluded"] = c not in allowed
            sweep.append(row)
        chosen.append({**_row(bw, best), "chosen": True})
    return sweep, chosen


def _row(bw: float, c: Candidate) -> dict[str, Any]:
    return {"bandwidth": format_bandwidth(bw), "point": c.point, "index": c.index, "codec": c.codec,
            "edge_ms": c.edge_ms, "encode_ms": c.encode_ms, "transfer_ms": c.transfer_ms, "rtt_ms": c.rtt_ms,
            "rpc_ms": c.rpc_ms,
            "decode_ms": c.decode_ms, "cloud_ms": c.cloud_ms, "bytes": c.bytes, "predicted_ms": c.predicted_ms,
            "wer": c.wer}
