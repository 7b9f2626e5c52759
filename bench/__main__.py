"""python -m bench: the benchmarks (timings never enter the test suite; scripts/bench.sh runs them).

    python -m bench [models] [--threads 2] [--repeats 15] [--wav2vec2-base] [--deepspeech2-real] [...]
    python -m bench scale --model M.onnx --dataset DS --out DIR [--workers W] [--threads T]
"""
from __future__ import annotations

import argparse
import logging
import sys

from bench import runtimes, scale

COMMANDS = ("models", "scale")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench",
                                description="Benchmarks measured side by side in one run on one machine. "
                                            "`models` (the default when no command is given): torch eager vs "
                                            "onnxruntime (and OpenVINO, the HF Optimum peer), with GFLOP/s against "
                                            "the matmul peak and the roofline. `scale`: the Ray runner against the "
                                            "single-process runner at equal threads, with N-worker projections.")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="torch eager vs onnxruntime, side by side, with GFLOP/s vs matmul peak",
                       description=(runtimes.__doc__ or "").strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    runtimes.add_arguments(m)
    sc = sub.add_parser("scale", help="Ray runner vs single-process runner at equal threads; N-worker projection",
                        description=(scale.__doc__ or "").strip(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    scale.add_arguments(sc)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["models", *argv]  # `python -m bench --threads 2 ...` is the model benchmark
    args = build_parser().parse_args(argv)
    if args.command == "scale":
        return scale.main(args)
    return runtimes.main(args)


if __name__ == "__main__":
    sys.exit(main())
