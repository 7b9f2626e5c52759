"""python -m runners: run a dataset dir through a backend and write a run dir (outputs + run.json)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.cli_types import non_negative_int, out_dir, positive_int, thread_count

log = logging.getLogger("runners")

BACKENDS = ["onnxruntime", "openvino", "torch", "msame", "ais_bench", "torch_aie"]
TOOL_BACKENDS = ("msame", "ais_bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runners",
        epilog="`python -m runners stream --help`: run one utterance through a streaming export chunk by chunk.",
        description="Run every sample of a dataset dir through one backend and write a run dir: one folder per "
                    "model output with <key>.bin per sample, and run.json with backend, versions, threads, machine, "
                    "per-batch latency, total time and seq/s (warm-up excluded).")
    p.add_argument("--backend", choices=BACKENDS, required=True,
                   help="onnxruntime (the embedded default), openvino (OpenVINO CPU plugin on the same ONNX), "
                        "torch (the reference, from the checkpoint), msame or "
                        "ais_bench (Ascend tools, on an .om from `python -m export atc`), torch_aie (Ascend, on the "
                        "TorchScript from `python -m export wav2vec2 --torchscript`)")
    p.add_argument("--model", type=Path, help="the .onnx file, or the .om for msame/ais_bench (card read from beside it)")
    p.add_argument("--card", type=Path, help="model card, if not beside --model")
    p.add_argument("--checkpoint", type=Path, help="torch backend: the original checkpoint (default: the card's source)")
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
    p.add_argument("--inter-threads", type=thread_count, default=1, help="onnxruntime inter-op threads")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="onnxruntime execution providers, comma-separated, in priority order")
    p.add_argument("--graph-level", default="all", choices=["disable", "basic", "extended", "all"],
                   help="onnxruntime graph optimisation level")
    p.add_argument("--execution-mode", default="sequential", choices=["sequential", "parallel"],
                   help="onnxruntime execution mode (parallel: independent branches on the inter-op threads)")
    p.add_argument("--profile", action="store_true",
                   help="onnxruntime: profile the session; writes ort_profile.json (Chrome trace) and "
                        "ort_profile_top_ops.md into the run dir and the per-op summary into run.json")
    p.add_argument("--ov-precision", default="f32", choices=["f32", "bf16", "f16"],
                   help="openvino INFERENCE_PRECISION_HINT (default f32: the CPU plugin would otherwise pick bf16 "
                        "on CPUs with AMX/avx512_bf16)")
    p.add_argument("--ov-hint", default="LATENCY", choices=["LATENCY", "THROUGHPUT"],
                   help="openvino PERFORMANCE_HINT")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed warm-up batches (default 2; ais_bench --warmup_count)")
    p.add_argument("--outfmt", choices=["TXT", "BIN"], help="msame/ais_bench output format (default: TXT for msame "
                                                           "as the DeepSpeech guide uses, BIN for ais_bench)")
    p.add_argument("--device", type=non_negative_int, default=0, help="Ascend device id for msame/ais_bench/torch_aie")
    p.add_argument("--ais-bench-python", help="python that has ais_bench installed (default: this one)")
    p.add_argument("--soc-version", default="Ascend310P3", help="torch_aie: target SoC")
    p.add_argument("--aie-device", default="npu", help="torch_aie: torch device type the compiled model runs on")
    p.add_argument("--length", type=positive_int, help="torch_aie: the static time length compiled (default: the "
                                                       "pad_to of the card's guide profile)")
    p.add_argument("--aie-loops", type=positive_int, default=100, help="torch_aie: timed loops of the guide's fps figure")
    p.add_argument("--keep-order", action="store_true", help="batch in manifest order instead of by length")
    p.add_argument("--force", action="store_true", help="run again even if an identical finished run exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--streaming", action="store_true",
                   help="run a streaming export (onnxruntime, or torch from its checkpoint) chunk by chunk; "
                        "--batch-size streams run side by side, one state row each (runners/streaming_dataset.py)")
    p.add_argument("--show-partials", action="store_true", help="--streaming: print transcripts as chunks arrive")
    # Issue 13: the same run spread over a Ray cluster (runners/ray_runner.py, docs/ray.md).
    p.add_argument("--ray", action="store_true",
                   help="spread the batches over Ray workers (onnxruntime, openvino, torch); the run dir and dataset "
                        "dir must be on storage every node sees; same outputs as without --ray")
    p.add_argument("--ray-address", help="join this Ray cluster (HOST:PORT of `ray start --head`, or auto); "
                                         "default: start a local Ray instance on this machine's cores")
    p.add_argument("--workers", type=positive_int, help="--ray: number of model sessions (actors); default: the cluster's "
                                               "CPUs divided by --threads")
    return p


def open_dataset_for(path: Path, card: dict):
    """The dataset dir, refused if it was preprocessed with another feature config than the card's (or its
    guide profile's, for a --modelzoo dataset)."""
    from core.dataset_dir import DatasetDir
    from core.guide import guide_feature
    from core.run_dir import RunError

    dataset = DatasetDir.open(path)
    expected = guide_feature(card) if dataset.header.get("layout") == "modelzoo" else card["feature"]
    if dataset.header.get("feature") != expected:
        raise RunError(f"{path} was made with another feature config than {card.get('onnx')}'s card; "
                       "preprocess it again with this card")
    return dataset


def check_batch_owner(card: dict, dataset, model: Path) -> None:
    """A guide dataset of batch files must hold the OM's batch: the OM owns it (core/guide.py)."""
    from core.guide import model_batch
    from core.run_dir import RunError

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
    if "om" not in card:
        log.warning("the card of %s records no atc conversion (no 'om' entry); using it as it is", args.model)
    dataset = open_dataset_for(args.dataset, card)
    check_batch_owner(card, dataset, args.model)
    if args.backend == "msame":
        from runners.msame import run_msame

        summary = run_msame(args.model, card, dataset, args.out, outfmt=args.outfmt or "TXT", device=args.device,
                            force=args.force)
    else:
        from runners.ais_bench import run_ais_bench

        summary = run_ais_bench(args.model, card, dataset, args.out, outfmt=args.outfmt or "BIN", device=args.device,
                                warmup=args.warmup, python=args.ais_bench_python, force=args.force)
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
    from core.fsio import DirLock, OutDirError, describe_os_error
    from core.card import CardError, load_model_and_card, read_card
    from core.dataset_dir import DatasetDir, DatasetDirError
    from core.run_dir import RunError
    from runners.base import RunOptions, run_dataset

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
        if args.ray and args.backend in TOOL_BACKENDS:
            raise RunError(f"--ray runs onnxruntime, openvino or torch, not {args.backend}")
        if args.backend in TOOL_BACKENDS:
            return _run_tool(args)
        if args.model:
            _, card = load_model_and_card(args.model, args.card)
        elif args.card:
            card = read_card(args.card)
        else:
            raise CardError("give --model (ONNX + card beside it) or --card")
        dataset = open_dataset_for(args.dataset, card)
        if args.streaming or "streaming" in card:
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
            from runners.ray_runner import run_from_args

            _report(run_from_args(args, card, dataset), args.out)
            return 0
        if args.backend == "torch_aie":
            from core.guide import guide_profile, has_guide
            from runners.torch_aie_backend import TorchAieBackend

            length = args.length or (guide_profile(card).get("pad_to") if has_guide(card) else None)
            if not length:
                raise RunError("torch_aie compiles a static shape: give --length (time steps every batch is padded to)")
            backend = TorchAieBackend(args.model, card, batch_size=args.batch_size, length=int(length),
                                      soc_version=args.soc_version, device=f"{args.aie_device}:{args.device}",
                                      guide_loops=args.aie_loops)
            card = backend.card
        else:
            from runners.backend_spec import backend_spec

            backend = backend_spec(args, card).build(card)
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
