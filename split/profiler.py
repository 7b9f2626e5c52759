"""Profile split points for the planner: per point, Head and Tail latency and per-codec bytes and WER.

A split point is a Head/Tail ONNX pair (as `python -m split export` writes them). With the unsplit model
two more points are added: `cloud-only` (nothing on the edge; the features themselves are encoded and
sent) and `edge-only` (the whole model on the edge; nothing is sent). Times are medians over the
utterances (each the median of `repeats` runs) after one warm-up utterance; bytes are means of the whole
serialised InferRequest (payload, codec parameters, shape, lengths). `rpc_overhead_ms` is the median
round trip of an empty gRPC call (Health) on loopback: the transport's fixed cost per request, which the
planner adds to remote points.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from core.machine import machine_info
from core.metrics import corpus_scores
from split.codecs import Codec
from split.edge import EdgeClient, HeadModel, Utterance
from split.planner import PROFILE_VERSION
from split.proto import split_pb2 as pb
from split.server import ServerConfig, build_server
from split.tail import TailModel
from split.wire import build_request


@dataclass
class SplitPoint:
    name: str
    head: HeadModel | None  # None: the features are the boundary (cloud-only)
    tail: TailModel | None  # None: nothing runs in the cloud (edge-only)


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """fn()'s result and its median wall time in ms over `repeats` calls (a shared CPU is noisy)."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return out, float(np.median(times))


def _wer(refs: list[str], hyps: list[str], convention: str) -> float | None:
    if not hyps or not all(refs):
        return None

    return 100 * corpus_scores(refs, hyps, convention=convention)["wer"]


def reply_size(transcript: str) -> int:
    """Serialised size of an InferReply carrying `transcript` and a full set of stage times."""
    times = pb.ServerTimes(parse_ms=1.1, decode_ms=1.1, cloud_ms=1.1, postprocess_ms=1.1, added_delay_ms=1.1,
                           handler_ms=1.1)
    return pb.InferReply(version=1, request_id="x" * 24, transcripts=[transcript], times=times).ByteSize()


def profile_point(point: SplitPoint, utts: list[Utterance], codecs: Iterable[Codec],
                  convention: str = "deepspeech", repeats: int = 3) -> dict[str, Any]:
    codecs = list(codecs)
    edge_ms, cloud_ms, refs, hyps_plain = [], [], [], []
    per_codec: dict[str, dict[str, list]] = {c.name: {"bytes": [], "encode_ms": [], "decode_ms": [], "hyps": []}
                                             for c in codecs}
    time_axis = 1 if point.head is not None else -1
    for i, utt in enumerate([utts[0]] + utts):  # the first run warms up and is dropped
        warm = i == 0
        if point.head is not None:
            (boundary, lengths), t_edge = timed(lambda: point.head.run(utt.features, utt.length), repeats)
        else:
            boundary, lengths, t_edge = utt.features, None, 0.0
        if point.tail is None:  # edge-only: the "head" is the whole model
            if not warm:
                edge_ms.append(t_edge)
            continue
        in_lengths = [utt.length] if utt.length else None
        outputs, t_cloud = timed(lambda: point.tail.run(boundary, lengths, time_axis, in_lengths), repeats)
        if warm:
            continue
        edge_ms.append(t_edge)
        cloud_ms.append(t_cloud)
        refs.append(utt.reference)
        frames = boundary.shape[1] if point.head is not None else None
        hyps_plain += point.tail.transcripts(outputs, lengths, frames)
        for codec in codecs:
            encoded, t_enc = timed(lambda: codec.encode(boundary), repeats)
            decoded, t_dec = timed(lambda: codec.decode(encoded.payload, encoded.params, boundary.shape), repeats)
            rec = per_codec[codec.name]
            request = build_request(encoded, codec=codec.name, shape=boundary.shape, lengths=lengths,
                                    input_lengths=in_lengths)
            rec["bytes"].append(request.ByteSize())
            rec["encode_ms"].append(t_enc)
            rec["decode_ms"].append(t_dec)
            if point.tail.can_transcribe:
                decoded_out = point.tail.run(decoded, lengths, time_axis, in_lengths)
                rec["hyps"] += point.tail.transcripts(decoded_out, lengths, frames)
    result: dict[str, Any] = {"name": point.name, "edge_ms": float(np.median(edge_ms)),
                              "cloud_ms": float(np.median(cloud_ms)) if cloud_ms else 0.0, "codecs": {}}
    if point.tail is None:
        result["local"] = True
        return result
    result["wer_unencoded"] = _wer(refs, hyps_plain, convention)
    result["reply_bytes"] = float(np.mean([reply_size(h) for h in hyps_plain] or [reply_size("")]))
    for name, rec in per_codec.items():
        result["codecs"][name] = {"bytes": float(np.mean(rec["bytes"])),
                                  "encode_ms": float(np.median(rec["encode_ms"])),
                                  "decode_ms": float(np.median(rec["decode_ms"])),
                                  "wer": _wer(refs, rec["hyps"], convention)}
    return result


def make_profile(points: list[SplitPoint], utts: list[Utterance], codecs_for: Callable[[SplitPoint], list[Codec]],
                 full_model: Path | None = None, convention: str = "deepspeech", repeats: int = 3) -> dict[str, Any]:
    """The profile of every point (plus cloud-only / edge-only when `full_model` is given)."""
    if not utts:
        raise ValueError("profiling needs at least one utterance")
    all_points = list(points)
    if full_model is not None:
        full_tail = TailModel(full_model)
        all_points = [SplitPoint("cloud-only", None, full_tail)] + all_points + \
                     [SplitPoint("edge-only", HeadModel(full_model), None)]
    profiled = []
    for p in all_points:
        entry = profile_point(p, utts, codecs_for(p), convention, repeats)
        if p.tail is None and full_model is not None:
            entry["wer"] = profiled[0].get("wer_unencoded") if profiled else None
        profiled.append(entry)
    remote_tail = next((p.tail for p in points if p.tail is not None), None)
    overhead = rpc_overhead_ms(remote_tail.path) if remote_tail is not None else 0.0
    return {"version": PROFILE_VERSION, "utterances": len(utts), "machine": machine_info(),
            "rpc_overhead_ms": overhead, "points": profiled}


def rpc_overhead_ms(tail: Path, calls: int = 30) -> float:
    """Median wall time of a Health call to an in-process server on loopback (after 3 warm-up calls)."""
    server, port, _ = build_server(ServerConfig(tail=tail, port=0, workers=1))
    server.start()
    try:
        client = EdgeClient(f"127.0.0.1:{port}")
        times = []
        for i in range(calls + 3):
            _, t = timed(client.health)
            if i >= 3:
                times.append(t)
        client.close()
        return float(np.median(times))
    finally:
        server.stop(grace=None)


def parse_point(spec: str) -> tuple[str, Path, Path]:
    """NAME=DIR (DIR/head.onnx + DIR/tail.onnx) or NAME=HEAD.onnx,TAIL.onnx, files checked."""
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
