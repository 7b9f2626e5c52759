"""``python -m runners stream --model DIR/model.onnx --features X.npy --out Y.npy``: one utterance's features
through a streaming export chunk by chunk (core/stream_runner.py), written as .npy probabilities."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from core.card import CardError, load_model_and_card
from core.stream_runner import StreamError, StreamRunner, rollout

log = logging.getLogger("runners.stream")


def _save_npy_atomic(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runners stream",
        description="Run one utterance's features through a streaming export chunk by chunk (the chunk size the "
                    "card records), carrying the state between chunks and flushing at the end; write the "
                    "concatenated output probabilities (1, frames, classes) as .npy. The result equals the "
                    "offline model's output for the same features.")
    p.add_argument("--model", type=Path, required=True, help="the streaming .onnx (its card beside it)")
    p.add_argument("--card", type=Path, help="model card, if not beside --model")
    p.add_argument("--features", type=Path, required=True,
                   help=".npy float32 features (1, 1, 161, T) for DeepSpeech2, as preprocess computes them")
    p.add_argument("--out", type=Path, required=True, help=".npy file to write the probabilities to")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = auto)")
    p.add_argument("--push-frames", type=int, help="feed the features in pieces of this many frames (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)

    try:
        _, card = load_model_and_card(args.model, args.card)
        runner = StreamRunner.from_onnx(args.model, card, threads=args.threads)
        if not args.features.is_file():
            raise StreamError(f"features file not found: {args.features}")
        try:
            features = np.load(args.features, allow_pickle=False)
        except ValueError as exc:
            raise StreamError(f"{args.features} is not a readable .npy array: {exc}") from None
        if features.ndim >= 1 and features.shape[-1] == 0:
            raise StreamError(f"{args.features}: no frames (time axis is empty)")
        try:
            probs = rollout(runner, features, args.push_frames)
        except StreamError as exc:
            raise StreamError(f"{args.features}: {exc}") from None
    except (CardError, StreamError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    _save_npy_atomic(probs.astype(np.float32), args.out)
    log.info("%d frames in, %d output frames (chunk %d frames) -> %s", features.shape[-1], probs.shape[1],
             runner.spec.chunk_frames, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
