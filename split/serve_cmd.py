"""`python -m split serve`: the cloud side."""
from __future__ import annotations

import argparse
from pathlib import Path

from split.errors import run_cli

DESCRIPTION = """Serve tail.onnx over gRPC (split.v1.SplitInference: Infer, Health).

  python -m split serve --tail DIR/tail.onnx [--autoencoder DIR] --port 50051 [--workers 4]
  python -m split serve --tail DIR/tail.onnx --tls-cert server.crt --tls-key server.key

The card beside tail.onnx (tail.card.json) gives the labels for transcripts; without labels the server
can only return the output tensor. With --autoencoder DIR (ae_decoder.onnx, klt.json) the ae* and klt-* codecs are
served too. SIGTERM/SIGINT stop accepting calls and finish those in flight (up to --grace seconds).
--added-delay-ms adds a sleep per request that emulates a link's round-trip time where tc netem is
unavailable; it is reported separately in every reply's times."""


HELP = "cloud: serve tail.onnx over gRPC (Infer, Health), bounded and validated"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tail", type=Path, required=True, help="tail.onnx (its card beside it)")
    p.add_argument("--card", type=Path, help="the Tail's card, if not beside --tail")
    p.add_argument("--autoencoder", type=Path, help="folder of the learned codec parts: ae_decoder.onnx enables the "
                   "ae* codecs, klt.json the klt-* codecs")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=50051, help="port (0 = any free one; default 50051)")
    p.add_argument("--workers", type=int, default=4, help="worker threads running requests (default 4)")
    p.add_argument("--max-concurrent", type=int, default=64,
                   help="RPCs admitted at once; more get RESOURCE_EXHAUSTED (default 64)")
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest message either way (default 16)")
    p.add_argument("--max-elements", type=int, default=64 * 1024 * 1024,
                   help="largest boundary tensor accepted, in elements")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per request (default 1)")
    p.add_argument("--added-delay-ms", type=float, default=0.0,
                   help="emulated round-trip delay slept per request (default 0)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to finish in-flight calls on SIGTERM")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from split.server import ServerConfig, serve_forever
    from split.wire import Limits

    for label, path in (("--tail", args.tail), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{label}: file not found: {path}")
    if args.workers < 1 or args.max_concurrent < 1:
        raise ValueError("--workers and --max-concurrent must be at least 1")
    config = ServerConfig(
        tail=args.tail, card=args.card, autoencoder_dir=args.autoencoder, host=args.host, port=args.port,
        workers=args.workers, max_concurrent=args.max_concurrent,
        max_message_bytes=int(args.max_message_mb * 1024 * 1024), threads=args.threads,
        added_delay_ms=args.added_delay_ms, grace_s=args.grace, tls_cert=args.tls_cert, tls_key=args.tls_key,
        limits=Limits(max_elements=args.max_elements))
    return serve_forever(config, ready=lambda line: print(line, flush=True))
