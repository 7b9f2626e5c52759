"""The benchmark: contenders timed side by side in one run, alternating, after warm-up, fixed threads.

    python -m postprocess bench [--threads 2] [--repeats 15] [--wav2vec2-base] [--deepspeech2-ckpt CKPT]
                                [--wav2vec2-dir DIR] [--out results/bench.json]

Prints, per model and batch size, the median latency of torch eager and onnxruntime with their spread
(min/max over the repeats), the ratio of throughputs, and the achieved GFLOP/s against the machine's
measured matrix-multiply peak. Timings never enter the test suite; tests only check that this runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger("bench")


@dataclass
class Contender:
    name: str
    run: Callable[[], Any]


def measure_side_by_side(contenders: list[Contender], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Times (s) per contender; the contenders alternate within every repeat so drift hits them alike."""
    for c in contenders:
        for _ in range(warmup):
            c.run()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for i in range(repeats):
        order = contenders if i % 2 == 0 else list(reversed(contenders))
        for c in order:
            t0 = time.perf_counter()
            c.run()
            times[c.name].append(time.perf_counter() - t0)
    return times


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """Best GFLOP/s of an fp32 n x n matmul in torch with the given threads (the practical peak)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def forward_flops(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass as torch's FlopCounterMode counts them (matmul/conv-type ops)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return int(counter.get_total_flops())


def bench_model(label: str, loaded: Any, onnx_path: Path, batch_sizes: list[int], length: int, threads: int,
                repeats: int, warmup: int) -> list[dict[str, Any]]:
    from runners.ort import create_session

    torch.set_num_threads(threads)
    session = create_session(onnx_path, threads=threads)
    rows = []
    for bs in batch_sizes:
        inputs = loaded.make_inputs([length] * bs, None)
        args = tuple(inputs[s.name] for s in loaded.inputs)
        feeds = {s.name: inputs[s.name].numpy() for s in loaded.inputs}
        names = [s.name for s in loaded.outputs]

        def run_torch() -> Any:
            with torch.inference_mode():
                return loaded.module(*args)

        times = measure_side_by_side([Contender("torch eager", run_torch),
                                      Contender("onnxruntime", lambda: session.run(names, feeds))], repeats, warmup)
        flops = forward_flops(loaded.module, args)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({
            "model": label, "batch": bs, "input_length": length, "threads": threads, "repeats": repeats,
            "torch_ms": {"median": 1e3 * med["torch eager"], "min": 1e3 * min(times["torch eager"]),
                         "max": 1e3 * max(times["torch eager"])},
            "onnxruntime_ms": {"median": 1e3 * med["onnxruntime"], "min": 1e3 * min(times["onnxruntime"]),
                               "max": 1e3 * max(times["onnxruntime"])},
            "ort_over_torch": med["torch eager"] / med["onnxruntime"],
            "gflop_per_forward": flops / 1e9,
            "ort_gflops": flops / med["onnxruntime"] / 1e9,
            "torch_gflops": flops / med["torch eager"] / 1e9,
        })
    return rows


def _print(rows: list[dict[str, Any]], peak: float) -> None:
    print(f"matmul peak (fp32, torch): {peak:.1f} GFLOP/s")
    head = f"{'model':<28} {'bs':>3} {'torch ms (min-max)':>24} {'ORT ms (min-max)':>24} {'ORT/torch':>9} {'ORT GFLOP/s':>12} {'% peak':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        t, o = r["torch_ms"], r["onnxruntime_ms"]
        print(f"{r['model']:<28} {r['batch']:>3} {t['median']:>9.1f} ({t['min']:.1f}-{t['max']:.1f}){'':>3} "
              f"{o['median']:>9.1f} ({o['min']:.1f}-{o['max']:.1f}){'':>3} {r['ort_over_torch']:>8.2f}x "
              f"{r['ort_gflops']:>12.1f} {100 * r['ort_gflops'] / peak:>6.1f}%")


def main(args: argparse.Namespace) -> int:
    from export.models import family_module
    from export.onnx_export import export_onnx

    rows: list[dict[str, Any]] = []
    peak = matmul_peak_gflops(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models: list[tuple[str, str, Path, int]] = []
        if args.deepspeech2_ckpt:
            models.append(("DeepSpeech2 (demo)", "deepspeech2", Path(args.deepspeech2_ckpt), args.frames))
        if args.wav2vec2_dir:
            models.append(("wav2vec2 (given dir)", "wav2vec2", Path(args.wav2vec2_dir), args.samples))
        if args.wav2vec2_base:
            models.append(("wav2vec2-base arch (random)", "wav2vec2", _random_wav2vec2_base(tmp / "w2v_base"),
                           args.samples))
        if not models:
            raise SystemExit("nothing to benchmark: give --deepspeech2-ckpt, --wav2vec2-dir and/or --wav2vec2-base")
        for label, family, source, length in models:
            loaded = family_module(family).load(source)
            onnx_path = tmp / f"{family}_{len(rows)}.onnx"
            export_onnx(loaded, onnx_path)
            log.info("benchmarking %s", label)
            rows += bench_model(label, loaded, onnx_path, args.batch_sizes, length, args.threads, args.repeats,
                                args.warmup)
    _print(rows, peak)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from runners.machine import machine_info

        args.out.write_text(json.dumps({"matmul_peak_gflops": peak, "rows": rows, "machine": machine_info(),
                                        "torch": torch.__version__}, indent=2) + "\n")
    return 0


def _random_wav2vec2_base(out: Path) -> Path:
    """wav2vec2-base's architecture with random weights (speed does not depend on the weights)."""
    import json as _json

    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    out.mkdir(parents=True)
    Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32)).save_pretrained(out)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5, **{chr(65 + i): 6 + i for i in range(26)}}
    (out / "vocab.json").write_text(_json.dumps(vocab))
    (out / "preprocessor_config.json").write_text(_json.dumps({"do_normalize": True, "sampling_rate": 16000,
                                                               "padding_value": 0.0, "return_attention_mask": False}))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--samples", type=int, default=100000, help="wav2vec2 input length (the Ascend guide's)")
    p.add_argument("--frames", type=int, default=621, help="DeepSpeech2 input frames (the Ascend guide's)")
    p.add_argument("--deepspeech2-ckpt", help="a deepspeech.pytorch V3.0 checkpoint")
    p.add_argument("--wav2vec2-dir", help="a Hugging Face wav2vec2 CTC directory")
    p.add_argument("--wav2vec2-base", action="store_true", help="wav2vec2-base architecture with random weights")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
