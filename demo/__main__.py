"""python -m demo: make the embedded demo corpus and models.

    python -m demo synth --out DIR [sizes]              the synthetic AN4 + LibriSpeech corpus (espeak-ng)
    python -m demo train FAMILY --out PATH [options]    a small model of FAMILY, in its real checkpoint format

`python -m demo train FAMILY --help` lists the family's options. A family is trainable when its folder
holds a train.py (families/<name>/train.py with add_arguments(parser) and main(args) -> exit code).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from types import ModuleType

import families
from core.fsio import describe_os_error
from core.numerics import pin_cpu_numerics
from demo import synth

log = logging.getLogger("demo")


def wants_bf16(options: list[str]) -> bool:
    """Whether the trainer's options ask for bfloat16 autocast, which needs the CPU's native bf16 kernels and so
    runs without the AVX2 caps (core/numerics.py), read before the trainer (and torch) is imported."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--bf16", default="off")
    return pre.parse_known_args(options)[0].bf16 != "off"


def trainable_families() -> list[str]:
    """Family folders that hold a train.py, found by that convention (no list to keep in step)."""
    return sorted(p.parent.name for p in Path(families.__file__).parent.glob("*/train.py"))


def train_module(family: str) -> ModuleType:
    return importlib.import_module(f"families.{family}.train")


def train_parser(family: str) -> argparse.ArgumentParser:
    """The family's own trainer options, under `python -m demo train FAMILY`."""
    module = train_module(family)
    p = argparse.ArgumentParser(prog=f"python -m demo train {family}",
                                description=(module.__doc__ or "").split("\n\n")[0])
    module.add_arguments(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The embedded demo: a synthetic speech corpus in the real AN4 and LibriSpeech layouts, and "
                    "small models of each family trained on it with a fixed seed and saved in the family's real "
                    "checkpoint format, so the pipeline runs end to end without downloads.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="synthesise the demo corpus with espeak-ng (AN4 and LibriSpeech layouts)")
    synth.add_arguments(s)
    names = trainable_families()
    t = sub.add_parser("train", help=f"train a small demo model ({', '.join(names)})",
                       usage=f"python -m demo train {{{','.join(names)}}} [options]",
                       description="Train a small demo model of FAMILY with a fixed seed, from the demo corpus, and "
                                   "save it in the family's real checkpoint format with a training record beside "
                                   "it. `python -m demo train FAMILY --help` describes the family's trainer and "
                                   "lists its options.")
    t.add_argument("family", choices=names, help="model family to train")
    t.add_argument("options", nargs=argparse.REMAINDER, help="the family's options (see FAMILY --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "synth":
        return synth.main(args)
    if not wants_bf16(args.options) and not pin_cpu_numerics():  # before the trainer's module imports torch
        log.warning("torch is already loaded in this process, so the CPU numerics cannot be capped; the model may "
                    "differ on another CPU (the training record says so)")
    try:
        return train_module(args.family).main(train_parser(args.family).parse_args(args.options))
    except OSError as exc:  # a full disk or a read-only folder found mid-write
        log.error("%s", describe_os_error(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
