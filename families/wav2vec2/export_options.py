"""`python -m export wav2vec2`'s own flags (a static shape, a TorchScript trace), and the Hugging Face files
copied beside a passed export."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any


def static_pair(text: str) -> tuple[int, int]:
    """'1,100000' -> (batch, samples)."""
    try:
        batch, n = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected BATCH,SAMPLES, e.g. 1,100000") from None
    return batch, n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--torchscript", action="store_true",
                   help="also write <name>.ts.pt, a TorchScript trace checked against eager (for torch_aie)")
    p.add_argument("--static-shape", type=static_pair, metavar="B,SAMPLES",
                   help="fix batch and samples, e.g. 1,100000 as the Ascend guide does (default: dynamic)")


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    batch, samples = args.static_shape or (None, None)
    return {"static_samples": samples, "static_batch": batch}


def after_export(args: argparse.Namespace, log: logging.Logger) -> None:
    """Issue 14: HF config/processor/tokenizer files beside model.onnx (Optimum opens the folder)."""
    # Imported here, not at the top: building the export CLI's parser should not load torch.
    from families.wav2vec2.recipe import copy_companion_files

    log.info("copied %s beside the model", ", ".join(copy_companion_files(Path(args.model_dir), args.out)))
