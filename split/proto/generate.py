"""Regenerate split_pb2.py from split.proto with grpcio-tools' bundled protoc.

    python -m split.proto.generate            # rewrite split/proto/split_pb2.py
    python -m split.proto.generate --check    # exit 1 if the committed file is stale

Only the message module is generated: the server and edge bind the two methods themselves (so they can
parse requests and time serialisation; see split/server.py), so no *_pb2_grpc.py is needed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "split.proto"
GENERATED = HERE / "split_pb2.py"


def generate() -> str:
    """The text protoc generates for split.proto (import path as the package sees it)."""
    from grpc_tools import protoc

    repo = HERE.parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["protoc", f"-I{repo}", f"--python_out={tmp}", str(PROTO.relative_to(repo))])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} (exit {rc})")
        return (Path(tmp) / "split" / "proto" / "split_pb2.py").read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        if GENERATED.read_text() != text:
            print(f"{GENERATED} is stale: run python -m split.proto.generate", file=sys.stderr)
            return 1
        return 0
    GENERATED.write_text(text)
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
