"""python -m split SUBCOMMAND: split inference between an edge (Head) and a cloud server (Tail).

Each subcommand lives in its own module exposing `describe(name)`, `add_arguments(name, parser)` and
`run(name, args) -> int`;
adding one is one line in SUBCOMMANDS. Modules import their heavy dependencies inside `run`, so
`--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from split.errors import USER_ERRORS

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("split.serve_cmd", "cloud: serve tail.onnx over gRPC"),
    "edge": ("split.edge_cmd", "edge: run head.onnx, encode, send each utterance, time every stage"),
    "codecs": ("split.codecs_cmd", "list the codecs, or measure them on real boundary tensors"),
    "profile": ("split.plan_cmd", "measure each split point: edge/cloud latency and bytes per codec"),
    "plan": ("split.plan_cmd", "choose the split point per bandwidth and RTT from a profile"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m split", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.describe(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(name, p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args._module.run(args.command, args))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
