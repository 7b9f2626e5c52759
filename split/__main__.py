"""python -m split: split inference between an edge (Head) and a cloud (Tail).

Subcommands are registered by module in SUBCOMMANDS; each module provides HELP (one line),
`add_arguments(parser)` and `main(args) -> int` (0 ok, 2 bad input, 3 a failed gate), and optionally
DESCRIPTION (the long help, printed as written; otherwise the docstring's first paragraph). Modules
import their heavy dependencies inside `main`, so `--help` stays fast. Adding a subcommand is one line
here and one module.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS: dict[str, str] = {
    "export": "split.export_split",
    "cut": "split.cut_graph",
    "serve": "split.serve_cmd",
    "edge": "split.edge_cmd",
    "codecs": "split.codecs_cmd",
    "profile": "split.profile_cmd",
    "plan": "split.plan_cmd",
    "fit-klt": "split.fit_klt_cmd",
    "fit-postfilter": "split.fit_postfilter_cmd",
    "resnet-table": "split.resnet_table",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m split",
        description="Split a speech model into a Head that runs on the edge and a Tail that runs in the cloud: "
                    "export both parts to ONNX (each parity-gated, and their composition against the whole "
                    "model), compress the activations between them, serve the Tail over gRPC, time every stage, and "
                    "choose the split point per link.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        description = getattr(module, "DESCRIPTION", None) or (module.__doc__ or module.HELP).split("\n\n")[0]
        p = sub.add_parser(name, help=module.HELP, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
