"""python -m runners: run a dataset dir through a backend and write a run dir (outputs + run.json)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("runners")

BACKENDS = ["onnxruntime", "torch"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runners",
        description="Run every sample of a dataset dir through one backend and write a run dir: one folder per "
                    "model output with <key>.bin per sample, and run.json with backend, versions, threads, machine, "
                    "per-batch latency, total time and seq/s (warm-up excluded).")
    p.add_argument("--backend", choices=BACKENDS, required=True,
                   help="onnxruntime (the embedded default) or torch (the reference, from the checkpoint)")
    p.add_argument("--model", type=Path, help="the .onnx file (its card is read from beside it)")
    p.add_argument("--card", type=Path, help="model card, if not beside --model")
    p.add_argument("--checkpoint", type=Path, help="torch backend: the original checkpoint (default: the card's source)")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir written by `python -m preprocess`")
    p.add_argument("--out", type=Path, required=True, help="run dir to write")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = the runtime's default)")
    p.add_argument("--inter-threads", type=int, default=1, help="onnxruntime inter-op threads")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="onnxruntime execution providers, comma-separated, in priority order")
    p.add_argument("--graph-level", default="all", choices=["disable", "basic", "extended", "all"],
                   help="onnxruntime graph optimisation level")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up batches (default 2)")
    p.add_argument("--keep-order", action="store_true", help="batch in manifest order instead of by length")
    p.add_argument("--force", action="store_true", help="run again even if an identical finished run exists")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from export.card import CardError, load_model_and_card, read_card
    from preprocess.dataset_dir import DatasetDir, DatasetDirError
    from runners.base import RunError, RunOptions, run_dataset

    try:
        if args.model:
            _, card = load_model_and_card(args.model, args.card)
        elif args.card:
            card = read_card(args.card)
        else:
            raise CardError("give --model (ONNX + card beside it) or --card")
        dataset = DatasetDir.open(args.dataset)
        expected = card["feature"]
        if dataset.header.get("layout") == "modelzoo":
            expected = {**expected, **card.get("modelzoo", {}).get("feature_overrides", {})}
        if dataset.header.get("feature") != expected:
            raise RunError(f"{args.dataset} was made with another feature config than {card.get('onnx')}'s card; "
                           "preprocess it again with this card")
        if args.backend == "onnxruntime":
            if not args.model:
                raise RunError("the onnxruntime backend needs --model")
            from runners.onnxruntime_backend import OnnxRuntimeBackend

            backend = OnnxRuntimeBackend(args.model, card, threads=args.threads, inter_threads=args.inter_threads,
                                         providers=[p for p in args.providers.split(",") if p],
                                         graph_level=args.graph_level)
        else:
            from runners.torch_backend import TorchBackend

            checkpoint = args.checkpoint or Path(card["source"]["path"])
            backend = TorchBackend(checkpoint, card, threads=args.threads)
        opts = RunOptions(batch_size=args.batch_size, warmup=args.warmup, sort_by_length=not args.keep_order,
                          progress=not args.no_progress, force=args.force)
        summary = run_dataset(backend, dataset, card, args.out, opts, model_path=args.model)
    except (CardError, DatasetDirError, RunError, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("%s bs%d: %d samples, %.1f seq/s (compute), batch latency p50 %.2f ms -> %s", summary["backend"],
             summary["batch_size"], summary["dataset"]["samples"], summary["seq_per_s"],
             summary["latency_ms"]["p50"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
