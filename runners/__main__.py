"""python -m runners: run a dataset dir through a backend and write a run dir (outputs + run.json)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.cli_types import non_negative_int, out_dir, positive_int, thread_count
from core.dataset_dir import DatasetDirError
from core.fsio import DirLock, OutDirError, describe_os_error
from core.guide import model_batch
from core.ray_cluster import add_ray_arguments
from core.run_dir import RunError
from runners.backend_cli import BACKENDS, add_backend_choice, add_backend_options, ray_backends
from runners.base import RunOptions, open_dataset_for, run_dataset
from runners.ray_runner import run_from_args

log = logging.getLogger("runners")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runners",
        epilog="`python -m runners stream --help`: run one utterance through a streaming export chunk by chunk.",
        description="Run every sample of a dataset dir through one backend and write a run dir: one folder per "
                    "model output with <key>.bin per sample, and run.json with backend, versions, threads, machine, "
                    "per-batch latency, total time and seq/s (warm-up excluded).")
    add_backend_choice(p)
    p.add_argument("--model", type=Path, help="the .onnx file, or the .om for msame/ais_bench (card read from beside it)")
    p.add_argument("--card", type=Path, help="model card, if not beside --model")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir written by `python -m preprocess`")
    p.add_argument("--out", type=out_dir, required=True,
                   help="run dir to write (refused if it is a file, read-only, on a full disk, or being written by "
                        "another process)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="most samples per batch (default 1)")
    p.add_argument("--max-batch-frames", type=positive_int, default=None,
                   help="most input time steps per batch, counted as batch size x the longest padded clip "
                        "(frames, or samples for waveform models); a longer clip runs alone and is named in the log "
                        "(default: 240 s of the dataset's audio)")
    p.add_argument("--threads", type=thread_count, default=0,
                   help="intra-op threads; OpenVINO's INFERENCE_NUM_THREADS (0 = the runtime's default; at most "
                        "4 per core)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed warm-up batches (default 2; ais_bench --warmup_count)")
    p.add_argument("--keep-order", action="store_true", help="batch in manifest order instead of by length")
    p.add_argument("--force", action="store_true", help="run again even if an identical finished run exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--streaming", action="store_true",
                   help="run a streaming export (onnxruntime, or torch from its checkpoint) chunk by chunk; "
                        "--batch-size streams run side by side, one state row each (runners/streaming_dataset.py)")
    p.add_argument("--show-partials", action="store_true", help="--streaming: print transcripts as chunks arrive")
    # Issue 13: the same run spread over a Ray cluster (runners/ray_runner.py, docs/ray.md).
    add_ray_arguments(p, "spread the batches over Ray workers (onnxruntime, openvino, torch); the run dir and dataset "
                         "dir must be on storage every node sees; same outputs as without --ray")
    p.add_argument("--workers", type=positive_int, help="--ray: number of model sessions (actors); default: the cluster's "
                                               "CPUs divided by --threads")
    add_backend_options(p)
    return p


def check_batch_owner(card: dict, dataset, model: Path) -> None:
    """A guide dataset of batch files must hold the OM's batch: the OM owns it (core/guide.py)."""
    files = dataset.header.get("batch_size")
    fixed = model_batch(card)
    if files is not None and fixed is not None and int(files) != fixed:
        raise RunError(f"{dataset.path} holds batch files of {files} clips but {model} was compiled for batch "
                       f"{fixed}; preprocess again with --om {model} (the OM's batch is then used), or compile the "
                       f"OM with --batch-size {files}")


def _run_tool(args: argparse.Namespace) -> int:
    """msame / ais_bench: the tool reads the dataset dir itself; its output folder becomes the run dir."""
    from core.card import card_path_for, read_card

    if not args.model:
        log.error("--backend %s needs --model M.om (from `python -m export atc`)", args.backend)
        return 2
    card = read_card(args.card or card_path_for(args.model))
    if card.om is None:
        log.warning("the card of %s records no atc conversion (no 'om' entry); using it as it is", args.model)
    dataset = open_dataset_for(args.dataset, card)
    check_batch_owner(card, dataset, args.model)
    summary = BACKENDS[args.backend].run_tool(args, card, dataset)
    _report(summary, args.out)
    return 0


def _report(summary: dict, out: Path) -> None:
    log.info("%s bs%d: %d samples, %s seq/s (compute), batch latency p50 %s ms -> %s", summary["backend"],
             summary["batch_size"], summary["dataset"]["samples"],
             f"{summary['seq_per_s']:.1f}" if summary.get("seq_per_s") else "-",
             f"{summary['latency_ms']['p50']:.2f}" if summary["latency_ms"].get("p50") is not None else "-", out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "stream":  # one utterance through a streaming export: runners/streaming.py
        from runners.streaming import main as stream_main

        return stream_main(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from core.card import CardError, load_model_and_card, read_card

    # One writer per run dir, whichever runner writes it (single process, Ray, streaming, Ascend tools).
    lock = DirLock(args.out, "run dir")
    try:
        lock.__enter__()
    except OutDirError as exc:
        log.error("%s", exc)
        return 2
    try:
        if args.profile and args.backend != "onnxruntime":
            raise RunError("--profile is for the onnxruntime backend only")
        entry = BACKENDS[args.backend]
        if args.ray and not entry.ray:
            *others, last = ray_backends()
            raise RunError(f"--ray runs {', '.join(others)} or {last}, not {args.backend}")
        if entry.is_tool:
            return _run_tool(args)
        if args.model:
            _, card = load_model_and_card(args.model, args.card)
        elif args.card:
            card = read_card(args.card)
        else:
            raise CardError("give --model (ONNX + card beside it) or --card")
        dataset = open_dataset_for(args.dataset, card)
        if args.streaming or card.streaming is not None:
            from runners.streaming_dataset import run_streaming_dataset, streaming_backend

            if not args.streaming:
                raise RunError(f"{args.model} is a streaming export: run it with --streaming")
            runner, name, info = streaming_backend(args, card)
            summary = run_streaming_dataset(runner, name, info, dataset, card, args.out, streams=args.batch_size,
                                            warmup=min(args.warmup, 1), progress=not args.no_progress,
                                            force=args.force, show_partials=args.show_partials,
                                            model_path=args.model)
            _report(summary, args.out)
            return 0
        if args.ray:  # issue 13: dispatch to the Ray runner
            _report(run_from_args(args, card, dataset), args.out)
            return 0
        backend = entry.build(args, card)
        card = getattr(backend, "card", card)  # a backend may refine the card (torch_aie: the compiled shape)
        opts = RunOptions(batch_size=args.batch_size, warmup=args.warmup, sort_by_length=not args.keep_order,
                          progress=not args.no_progress, force=args.force, max_batch_frames=args.max_batch_frames)
        summary = run_dataset(backend, dataset, card, args.out, opts, model_path=args.model)
    except (CardError, DatasetDirError, RunError, FileNotFoundError, ValueError, OutDirError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:  # a full disk or a read-only folder found mid-write
        log.error("%s", describe_os_error(exc))
        return 2
    finally:
        lock.__exit__(None, None, None)
    _report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
