"""The cloud server: gRPC `split.v1.SplitInference` over the Tail.

Requests arrive as raw bytes (no grpc deserializer), so that a message that is not an InferRequest gets
INVALID_ARGUMENT naming the problem instead of grpc's generic INTERNAL "Exception deserializing request",
and so that parse + validation time is measured like every other stage. Every field is checked
(split.wire.parse_request) before use; a bad request is logged and answered with a status, and the
server carries on with the others.

Bounds: a fixed worker pool (`workers`), at most `max_concurrent` RPCs admitted at once (grpc answers
RESOURCE_EXHAUSTED past that), a maximum message size each way, per-request deadlines (checked between
stages), keepalive pings, and an idle-connection limit, so memory stays about max_concurrent x max
message size whatever the clients do. SIGTERM / SIGINT stop accepting new calls and finish the ones in
flight (up to `grace_s`).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from split.codecs import CodecError, Learned, codec_names, get_codec
from split.proto import split_pb2 as pb
from split.tail import TailModel
from split.wire import PROTOCOL_VERSION, SERVICE, Limits, RequestError, parse_request, tensor_to_proto

log = logging.getLogger("split.server")

MiB = 1024 * 1024


@dataclass
class ServerConfig:
    tail: Path
    card: Path | None = None
    autoencoder_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = 4
    max_concurrent: int = 64
    max_message_bytes: int = 16 * MiB
    threads: int = 1
    added_delay_ms: float = 0.0
    keepalive_ms: int = 30_000
    max_idle_ms: int = 300_000
    grace_s: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    limits: Limits = field(default_factory=Limits)


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1e3


class SplitService:
    """The two methods, over a loaded Tail and the codecs this server can decode."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.tail = TailModel(config.tail, config.card, threads=config.threads)
        learned = Learned.from_dir(config.autoencoder_dir)
        self.codecs = {name: get_codec(name, learned) for name in codec_names(learned)}
        self.served = 0
        self.refused = 0
        self._lock = threading.Lock()

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
        with self._lock:
            self.refused += 1
        log.warning("refused request from %s: %s: %s", context.peer(), code.name, message)
        context.abort(code, message)

    def _check_deadline(self, context: grpc.ServicerContext, stage: str) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            self._refuse(context, grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline passed before {stage}")
        if not context.is_active():
            # The client went away (disconnect or cancel): stop spending the worker on it.
            self._refuse(context, grpc.StatusCode.CANCELLED, f"client disconnected before {stage}")

    def infer(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        t0 = time.perf_counter()
        try:
            req = parse_request(raw, self.codecs, self.config.limits, self.tail.channels)
        except RequestError as exc:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        t1 = time.perf_counter()
        self._check_deadline(context, "decoding")
        try:
            x = self.codecs[req.codec].decode(req.payload, req.params, req.shape)
        except CodecError as exc:
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"payload ({req.codec}): {exc}")
        t2 = time.perf_counter()
        self._check_deadline(context, "the Tail")
        try:
            outputs = self.tail.run(x, req.lengths, input_lengths=req.input_lengths)
        except Exception as exc:  # onnxruntime's errors (e.g. a frames axis the Tail cannot take)
            self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"the Tail cannot run on shape "
                         f"{list(req.shape)}: {str(exc).splitlines()[0][:300]}")
        t3 = time.perf_counter()
        transcripts = self.tail.transcripts(outputs, req.lengths, x.shape[1] if x.ndim > 1 else None)
        slept_ms = 0.0
        if self.config.added_delay_ms > 0:
            # Link emulation: netem is unavailable on these kernels, so the round-trip time is added here
            # as a sleep, measured (sleep overshoots a little) and reported on its own (docs/split.md).
            t_sleep = time.perf_counter()
            time.sleep(self.config.added_delay_ms / 1e3)
            slept_ms = _ms(t_sleep, time.perf_counter())
        reply = pb.InferReply(version=PROTOCOL_VERSION, request_id=req.request_id, transcripts=transcripts)
        if req.return_output:
            reply.outputs.extend(tensor_to_proto(name, arr) for name, arr in outputs.items())
        t4 = time.perf_counter()
        reply.times.CopyFrom(pb.ServerTimes(
            parse_ms=_ms(t0, t1), decode_ms=_ms(t1, t2), cloud_ms=_ms(t2, t3),
            postprocess_ms=_ms(t3, t4) - slept_ms, added_delay_ms=slept_ms,
            handler_ms=_ms(t0, time.perf_counter())))
        with self._lock:
            self.served += 1
        return reply.SerializeToString()

    def health(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        shape = [d if isinstance(d, int) else -1 for d in self.tail.boundary.shape]
        return pb.HealthReply(version=PROTOCOL_VERSION, status="SERVING", codecs=list(self.codecs),
                              tail_input=self.tail.boundary.name, tail_input_shape=shape,
                              model_sha256=self.tail.sha256).SerializeToString()


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    return grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())])


def build_server(config: ServerConfig) -> tuple[grpc.Server, int, SplitService]:
    """A started-ready (not started) server bound to host:port; returns the bound port (port 0 = any)."""
    service = SplitService(config)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", config.keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.max_connection_idle_ms", config.max_idle_ms),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="split-worker"),
                         options=options, maximum_concurrent_rpcs=config.max_concurrent)
    handlers = {
        "Infer": grpc.unary_unary_rpc_method_handler(service.infer),
        "Health": grpc.unary_unary_rpc_method_handler(service.health),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"{config.host}:{config.port}"
    creds = _server_credentials(config)
    try:
        port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address} (in use or not a local address)")
    return server, port, service


def serve_forever(config: ServerConfig, ready: Any = print) -> int:
    """Run until SIGTERM/SIGINT, then finish the requests in flight; `ready` gets the listening line."""
    server, port, service = build_server(config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: no new calls, finishing those in flight (up to %.0f s)",
                 signal.Signals(signum).name, config.grace_s)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server.start()
    ready(f"listening on {config.host}:{port} ({'TLS' if config.tls_cert else 'plaintext'}); tail "
          f"{config.tail}; codecs {', '.join(service.codecs)}")
    stop.wait()
    server.stop(grace=config.grace_s).wait()
    log.info("stopped after serving %d requests (%d refused)", service.served, service.refused)
    return 0

