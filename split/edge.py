"""The edge half: head.onnx, a codec, and a gRPC client that times every stage of every utterance.

Stages per utterance (milliseconds; the server's are returned in its reply):
  edge      Head inference                         encode   codec encode
  send      building + serialising the request     network  the RPC's wall time minus the server handler
  decode    server: request parse + validation + codec decode
  cloud     server: Tail inference                 reply    server CTC/reply building + edge reply parse
  e2e       Head start to parsed reply
`network` (RPC wall time minus the server's handler time) holds the transfer both ways plus gRPC's own
framing; a configured link-emulation delay (server `--added-delay-ms`) counts in `network`, as the
round trip of the link it emulates, never in `cloud`, and is also reported alone as `added_delay`.
The stages add up to `e2e`.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np

from core.card import CardError
from core.dataset_dir import DatasetDir
from split.codecs import Codec
from split.errors import SplitError
from split.proto import split_pb2 as pb
from split.session import load_session
from split.tail import lengths_input_name, read_optional_card
from split.wire import HEALTH_METHOD, INFER_METHOD, build_request, tensor_from_proto

STAGES = ["edge", "encode", "send", "network", "decode", "cloud", "reply", "e2e"]


class EdgeError(SplitError):
    """The server could not be reached or answered with an error status."""


class EdgeClient:
    def __init__(self, target: str, *, tls_ca: Path | None = None, timeout_s: float = 30.0,
                 max_message_bytes: int = 16 * 1024 * 1024, pace_bps: float | None = None) -> None:
        """`pace_bps` emulates a link of that rate where no shaped link can be set up (split.netshape):
        each request waits its own transmission time (bytes * 8 / rate) before it is sent."""
        self.target = target
        self.timeout_s = timeout_s
        self.pace_bps = pace_bps
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.keepalive_time_ms", 30_000)]
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        # Raw-bytes stubs: the edge serialises and parses itself so that those steps are timed.
        self._infer = self.channel.unary_unary(INFER_METHOD)
        self._health = self.channel.unary_unary(HEALTH_METHOD)

    def _call(self, stub: Any, payload: bytes, what: str) -> bytes:
        try:
            return stub(payload, timeout=self.timeout_s, wait_for_ready=False)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise EdgeError(f"split server at {self.target} is unreachable ({exc.details()})") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise EdgeError(f"split server at {self.target} did not answer {what} within "
                                f"{self.timeout_s:g} s") from None
            raise EdgeError(f"split server at {self.target} refused {what}: {code.name}: {exc.details()}") from None

    def health(self) -> pb.HealthReply:
        return pb.HealthReply.FromString(self._call(self._health, pb.HealthRequest().SerializeToString(), "Health"))

    def infer_raw(self, request: bytes) -> bytes:
        if self.pace_bps:
            time.sleep(8 * len(request) / self.pace_bps)
        return self._call(self._infer, request, "Infer")

    def close(self) -> None:
        self.channel.close()


class HeadModel:
    """head.onnx: features in, boundary tensor out, with the boundary's valid frames per item."""

    def __init__(self, onnx_path: Path, card_path: Path | None = None, threads: int = 1,
                 slowdown: float = 1.0) -> None:
        """`slowdown` > 1 emulates an edge device that many times slower than this machine: each inference is
        followed by a sleep of (slowdown - 1) times its measured compute, so the planner's `--edge-scale` can be
        checked against measured runs (the emulation stretches compute time only, not the codec's)."""
        if slowdown < 1:
            raise ValueError(f"edge slowdown {slowdown:g}: expected 1 or more (a device as fast as this one, or slower)")
        self.slowdown = slowdown
        self.path = Path(onnx_path)
        self.card = read_optional_card(self.path, card_path)
        self.session = load_session(self.path, threads)
        self.lengths_input = lengths_input_name(self.session, self.card)
        feats = [i for i in self.session.get_inputs() if i.name != self.lengths_input]
        if len(feats) != 1:
            raise ValueError(f"{self.path}: expected one feature input (+ optional lengths), found "
                             f"{[i.name for i in self.session.get_inputs()]}")
        self.input = feats[0]
        self.output = self.session.get_outputs()[0]

    def run(self, x: np.ndarray, length: int | None = None) -> tuple[np.ndarray, list[int] | None]:
        feeds = {self.input.name: x.astype(np.float32)}
        if self.lengths_input is not None:
            n = length if length is not None else x.shape[-1]
            feeds[self.lengths_input] = np.full((x.shape[0],), n, dtype=np.int32)
        t0 = time.perf_counter()
        boundary = self.session.run([self.output.name], feeds)[0]
        if self.slowdown > 1:
            time.sleep((self.slowdown - 1) * (time.perf_counter() - t0))
        return boundary, self.boundary_lengths(boundary, length)

    def boundary_lengths(self, boundary: np.ndarray, length: int | None) -> list[int] | None:
        """Valid frames along the boundary's axis 1 by the card's output-length rule, or None (all frames)
        when the card has no rule or the boundary's time axis is another one (e.g. a cut after a conv)."""
        if length is None or self.card is None or boundary.ndim < 2:
            return None
        declared = self.card.outputs[0].time_axis if self.card.outputs else None
        if (declared if declared is not None else (1 if boundary.ndim == 3 else None)) != 1:
            return None
        try:
            frames = self.card.output_frames(length)
        except CardError:
            return None
        return [min(frames, boundary.shape[1])] * boundary.shape[0]


@dataclass
class Utterance:
    key: str
    features: np.ndarray
    length: int | None = None
    reference: str = ""


def utterances_from_dataset(dataset_dir: Path, input_name: str, limit: int | None = None) -> Iterator[Utterance]:
    ds = DatasetDir.open(Path(dataset_dir))
    for sample in ds.samples[:limit]:
        name = input_name if input_name in sample.inputs else next(iter(sample.inputs))
        yield Utterance(sample.key, ds.load(sample, name), sample.length, sample.transcript)


def utterances_from_files(paths: list[Path]) -> Iterator[Utterance]:
    for path in paths:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a numpy .npy feature file ({exc})") from None
        yield Utterance(Path(path).stem, arr)


def run_one(head: HeadModel | None, codec: Codec, client: EdgeClient, utt: Utterance,
            return_output: bool = False) -> tuple[dict[str, Any], pb.InferReply]:
    """One utterance through Head -> codec -> server; the timing row and the server's reply.

    `head=None` sends the features themselves (the cloud-only split: the server runs the whole model)."""
    t0 = time.perf_counter()
    boundary, lengths = head.run(utt.features, utt.length) if head is not None else (utt.features, None)
    t1 = time.perf_counter()
    encoded = codec.encode(boundary)
    t2 = time.perf_counter()
    input_lengths = [utt.length] * boundary.shape[0] if utt.length and boundary.ndim > 0 else None
    request = build_request(encoded, codec=codec.name, shape=boundary.shape, lengths=lengths,
                            input_lengths=input_lengths, request_id=f"{utt.key}-{uuid.uuid4().hex[:8]}",
                            return_output=return_output, send_time=time.time()).SerializeToString()
    t3 = time.perf_counter()
    raw = client.infer_raw(request)
    t4 = time.perf_counter()
    reply = pb.InferReply.FromString(raw)
    t5 = time.perf_counter()
    s = reply.times
    row = {
        "key": utt.key,
        "edge": (t1 - t0) * 1e3, "encode": (t2 - t1) * 1e3, "send": (t3 - t2) * 1e3,
        "network": (t4 - t3) * 1e3 - s.handler_ms + s.added_delay_ms,
        "decode": s.parse_ms + s.decode_ms, "cloud": s.cloud_ms,
        "reply": s.postprocess_ms + (t5 - t4) * 1e3,
        "e2e": (t5 - t0) * 1e3,
        "added_delay": s.added_delay_ms,
        "request_bytes": len(request), "payload_bytes": len(encoded.payload),
        "elements": int(boundary.size),
        "transcript": reply.transcripts[0] if reply.transcripts else "",
        "reference": utt.reference,
    }
    return row, reply


def outputs_of(reply: pb.InferReply) -> dict[str, np.ndarray]:
    return {t.name: tensor_from_proto(t) for t in reply.outputs}
