"""python -m bench: the benchmarks (timings never enter the test suite; scripts/bench.sh runs them).

    python -m bench [models] [--threads 2] [--repeats 15] [--wav2vec2-base] [--deepspeech2-real] [...]
    python -m bench scale --model M.onnx --dataset DS --out DIR [--workers W] [--threads T]
    python -m bench markdown results/bench.json      # its tables as Markdown (results/bench.md), no timing
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench import runtimes, scale
from bench.markdown import write_bench_markdown

COMMANDS = ("models", "scale", "markdown")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Benchmarks measured side by side in one run on one machine. "
                                            "`models` (the default when no command is given): torch eager vs "
                                            "onnxruntime (and OpenVINO, the HF Optimum peer), with GFLOP/s against "
                                            "the matmul peak and the roofline. `scale`: the Ray runner against the "
                                            "single-process runner at equal threads, with N-worker projections. "
                                            "`markdown`: a bench.json's tables as Markdown, nothing timed.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="torch eager vs onnxruntime, side by side, with GFLOP/s vs matmul peak",
                       description=(runtimes.__doc__ or "").strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    runtimes.add_arguments(m)
    sc = sub.add_parser("scale", help="Ray runner vs single-process runner at equal threads; N-worker projection",
                        description=(scale.__doc__ or "").strip(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    scale.add_arguments(sc)
    md = sub.add_parser("markdown", help="a bench.json's tables as Markdown (written beside it as .md)",
                        description="Render a bench.json (from `python -m bench models --out`) as Markdown tables: "
                                    "runtimes side by side, the roofline, the stages around the model. Nothing is "
                                    "timed; the numbers are the JSON's.")
    md.add_argument("bench_json", type=Path)
    md.add_argument("--out", type=Path, default=None, help="default: BENCH_JSON with .md")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["models", *argv]  # `python -m bench --threads 2 ...` is the model benchmark
    args = build_parser().parse_args(argv)
    if args.command == "scale":
        return scale.main(args)
    if args.command == "markdown":
        try:
            print(write_bench_markdown(args.bench_json, args.out))
        except ValueError as exc:
            print(f"bench markdown: {exc}", file=sys.stderr)
            return 2
        return 0
    return runtimes.main(args)


if __name__ == "__main__":
    sys.exit(main())
