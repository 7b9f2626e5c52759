"""`python -m export deepspeech2`'s own flags: a static shape as the Ascend guide fixes it."""
from __future__ import annotations

import argparse
from typing import Any


def static_shape(text: str) -> tuple[int, int]:
    """'1,621' or the Ascend guide's full '1,1,161,621' -> (batch, frames)."""
    parts = [int(x) for x in text.split(",")]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 4:
        return parts[0], parts[3]
    raise argparse.ArgumentTypeError("expected BATCH,FRAMES or B,1,161,FRAMES, e.g. 1,1,161,621")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--static-shape", type=static_shape, metavar="B,1,161,T",
                   help="fix batch and frames, e.g. 1,1,161,621 as the Ascend guide does (default: dynamic)")


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    batch, frames = args.static_shape or (None, None)
    return {"static_frames": frames, "static_batch": batch}
