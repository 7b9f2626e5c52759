"""The benchmark: contenders timed side by side in one run, alternating, after warm-up, fixed threads.

    python -m bench [--threads 2] [--repeats 15] [--wav2vec2-base] [--deepspeech2-ckpt CKPT] [--deepspeech2-real]
                      [--wav2vec2-dir DIR] [--out results/bench.json]

Prints, per model and batch size, the median latency of torch eager and onnxruntime with their spread
(min/max over the repeats), the ratio of throughputs, and the achieved GFLOP/s against the machine's
measured matrix-multiply peak; then every contender's place on the roofline (bytes moved, intensity,
attained GFLOP/s and GB/s, the binding roof and the share of it reached; bench_roofline.png beside --out).
Timings never enter the test suite; tests only check that this runs.
"""
from __future__ import annotations

import argparse
import contextlib
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

from bench.markdown import not_model_ms_per_utterance, percent_of_cache, span, write_bench_markdown
from bench.peer import OptimumPeer
from core.cli_types import non_negative_int, out_dir, positive_int, thread_count
from core.family import BenchModel, Family, resolve
from core.machine import cpu_has_native_bf16, last_level_cache_bytes, machine_info, machine_label
from core.model_card import ModelCard
from families.registry import family_module, family_names, get_family
from runners.openvino_backend import OpenVinoBackend

log = logging.getLogger("bench")


@dataclass
class Contender:
    name: str
    run: Callable[[], Any]
    # True when run() returns its own time in seconds (the peer, timed in its process, not over the pipe).
    self_timed: bool = False


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
            result = c.run()
            times[c.name].append(float(result) if c.self_timed else time.perf_counter() - t0)
    return times


def matmul_peak_gflops(threads: int, n: int = 2048, repeats: int = 8) -> dict[str, float]:
    """Best GFLOP/s of an fp32 n x n matmul with the given threads, in torch and in onnxruntime (MLAS).

    Both are measured because they use different GEMM kernels; the higher one is the practical peak
    the models' GFLOP/s are compared with.
    """
    import onnx
    from onnx import TensorProto, helper

    from core.ort_session import create_session

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    flops = 2 * n**3
    torch_best = min(_timed(lambda: a @ b) for _ in range(repeats))
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "matmul.onnx"
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8  # onnx writes a newer IR than this onnxruntime reads by default
        onnx.save(model, str(path))
        session = create_session(path, threads=threads)
        feeds = {"a": a.numpy(), "b": b.numpy()}
        for _ in range(2):
            session.run(None, feeds)
        ort_best = min(_timed(lambda: session.run(None, feeds)) for _ in range(repeats))
    result = {"torch": flops / torch_best / 1e9, "onnxruntime": flops / ort_best / 1e9, "n": n, "threads": threads}
    result["peak"] = max(result["torch"], result["onnxruntime"])
    return result


def memory_bandwidth_gbs(threads: int, mib: int = 256, repeats: int = 8) -> dict[str, Any]:
    """Best GB/s of a STREAM-style triad `a = b + s * c` on fp32 arrays far larger than the caches, and
    the same with arrays that fit in the last-level cache (`llc_triad`, None where sysfs names no cache).

    The real-size DeepSpeech2 re-reads its recurrent weights every frame, so memory bandwidth, not the
    GEMM peak, is the roof it runs into; where those weights fit in the cache, the cache's is. Bytes
    counted as STREAM does (two reads and one write).
    """
    torch.set_num_threads(threads)
    llc = last_level_cache_bytes()
    # Three arrays in three eighths of the cache: resident, with room for what else runs.
    llc_mib = llc / 8 / (1 << 20) if llc else None
    return {"triad": _triad_gbs(mib, repeats), "array_mib": mib, "threads": threads,
            "llc_triad": _triad_gbs(llc_mib, 4 * repeats) if llc_mib else None,
            "llc_array_mib": round(llc_mib, 3) if llc_mib else None}


def _triad_gbs(mib: float, repeats: int) -> float:
    n = max(1024, int(mib * (1 << 20)) // 4)
    a, b, c = torch.empty(n), torch.rand(n), torch.rand(n)
    # Small arrays take microseconds: time enough passes of them together that the clock resolves them.
    passes = max(1, (64 << 20) // (12 * n))

    def triad() -> None:
        for _ in range(passes):
            torch.add(b, c, alpha=3.0, out=a)

    for _ in range(2):
        triad()
    best = min(_timed(triad) for _ in range(repeats))
    return 3 * n * 4 * passes / best / 1e9


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


def _bare_card(loaded: Any, onnx_path: Path) -> ModelCard:
    """The card of a bench graph exported without one (what the variant and OpenVINO code read)."""
    return ModelCard.from_dict({"family": loaded.family, "onnx": onnx_path.name, **loaded.card_facts,
                                "inputs": [s.to_dict() for s in loaded.inputs],
                                "outputs": [s.to_dict() for s in loaded.outputs]})


def _int8_variant(family: str, onnx_path: Path, card: ModelCard) -> Path | None:
    """The family's default int8-dynamic variant (speed only here; accuracy is in the variants table)."""
    from export.variants import VariantOptions, convert

    out = onnx_path.with_name(onnx_path.stem + ".int8-dynamic.onnx")
    try:
        convert(onnx_path, out, card, VariantOptions(kind="int8-dynamic"), None)
    except Exception as exc:  # a model the quantiser cannot handle: its row says so instead of stopping
        log.warning("no int8 contender for %s: %s", onnx_path.name, exc)
        return None
    return out


def _fused_variant(family: str, onnx_path: Path, card: ModelCard) -> Path | None:
    """onnxruntime's offline transformer fusions, for families that declare them."""
    from export.variants import VariantOptions, convert

    if not get_family(family).variant_defaults.get("fused"):
        return None
    out = onnx_path.with_name(onnx_path.stem + ".fused.onnx")
    convert(onnx_path, out, card, VariantOptions(kind="fused"), None)
    return out


def _openvino_runner(loaded: Any, onnx_path: Path, threads: int,
                     precision: str = "f32") -> Callable[[dict[str, np.ndarray]], Any] | None:
    try:
        backend = OpenVinoBackend(onnx_path, _bare_card(loaded, onnx_path), threads=threads, precision=precision)
    except Exception as exc:  # not installed, or cannot compile this graph: reported, not fatal
        log.warning("no OpenVINO %s contender for %s: %s", precision, onnx_path.name, exc)
        return None
    return backend.infer


def _ms(times: list[float]) -> dict[str, float]:
    return {"median": 1e3 * statistics.median(times), "min": 1e3 * min(times), "max": 1e3 * max(times)}


# Which graph's bytes each contender moves (torch and OpenVINO run the fp32 computation).
GRAPH_OF_CONTENDER = {"torch eager": "fp32", "onnxruntime": "fp32", "openvino": "fp32", "openvino bf16": "fp32",
                      "onnxruntime int8": "int8", "onnxruntime fused": "fused",
                      "optimum fp32": "optimum fp32", "optimum int8": "optimum int8"}


def roofline_of(times: dict[str, list[float]], flops: int, graphs: dict[str, Path],
                shapes: dict[str, list[int]], peak_gflops: float, bandwidth_gbs: float,
                cache_bandwidth_gbs: float | None = None) -> tuple[dict, dict]:
    """Per graph the bytes one forward moves, and per contender its point on the roofline (median time)."""
    from bench.roofline import graph_traffic, roofline_point

    traffic: dict[str, dict[str, int]] = {}
    for kind, path in graphs.items():
        try:
            traffic[kind] = graph_traffic(path, shapes).to_dict()
        except Exception as exc:  # a graph shape inference cannot follow: that row has no point, not a crash
            log.warning("no roofline for the %s graph %s: %s", kind, path.name, exc)
    points = {}
    for name, ts in times.items():
        kind = GRAPH_OF_CONTENDER.get(name)
        if kind in traffic:
            points[name] = roofline_point(flops, traffic[kind]["total_bytes"], statistics.median(ts),
                                          peak_gflops, bandwidth_gbs, cache_bandwidth_gbs)
    return traffic, points


def bench_model(label: str, family: str, loaded: Any, onnx_path: Path, batch_sizes: list[int], length: int,
                threads: int, repeats: int, warmup: int, roofs: tuple[float, float, float | None] | None = None,
                peer: Any = None, peer_graphs: dict[str, Path] | None = None) -> list[dict[str, Any]]:
    """torch eager, onnxruntime fp32, onnxruntime int8-dynamic and OpenVINO fp32, alternating.

    `roofs` = (GEMM peak GFLOP/s, triad GB/s, cache triad GB/s or None): each row then also gets the bytes
    its graphs move and every contender's point on the roofline (bench/roofline.py). `peer` (an OptimumPeer
    that has exported this model; `peer_graphs` its ONNX files) adds Optimum's fp32 and int8 to the
    alternation.
    """
    from core.ort_session import create_session

    torch.set_num_threads(threads)
    session = create_session(onnx_path, threads=threads)
    card = _bare_card(loaded, onnx_path)
    int8_path = _int8_variant(family, onnx_path, card)
    int8 = create_session(int8_path, threads=threads) if int8_path else None
    openvino = _openvino_runner(loaded, onnx_path, threads)
    # bf16 only where the CPU computes it: elsewhere OpenVINO emulates it or runs fp32 under that name.
    openvino_bf16 = _openvino_runner(loaded, onnx_path, threads, "bf16") if cpu_has_native_bf16() else None
    fused_path = _fused_variant(family, onnx_path, card)
    fused = create_session(fused_path, threads=threads) if fused_path else None
    rows = []
    for bs in batch_sizes:
        inputs = loaded.make_inputs([length] * bs, None)
        args = tuple(inputs[s.name] for s in loaded.inputs)
        feeds = {s.name: inputs[s.name].numpy() for s in loaded.inputs}
        names = [s.name for s in loaded.outputs]

        def run_torch() -> Any:
            with torch.inference_mode():
                return loaded.module(*args)

        contenders = [Contender("torch eager", run_torch), Contender("onnxruntime", lambda: session.run(names, feeds))]
        if int8 is not None:
            contenders.append(Contender("onnxruntime int8", lambda: int8.run(names, feeds)))
        if openvino is not None:
            contenders.append(Contender("openvino", lambda: openvino(feeds)))
        if openvino_bf16 is not None:
            contenders.append(Contender("openvino bf16", lambda: openvino_bf16(feeds)))
        if fused is not None:
            contenders.append(Contender("onnxruntime fused", lambda: fused.run(names, feeds)))
        peer_diff = None
        if peer is not None:
            scratch = onnx_path.parent  # the caller's temporary dir
            peer.feed(feeds[loaded.inputs[0].name], scratch / f"peer_input_bs{bs}.npy")
            ours = session.run(names, feeds)[0]
            peer_diff = float(np.abs(peer.logits("fp32", scratch / f"peer_logits_bs{bs}.npy") - ours).max())
            for kind in ("fp32", "int8"):
                contenders.append(Contender(f"optimum {kind}", lambda kind=kind: peer.run_seconds(kind), self_timed=True))
        times = measure_side_by_side(contenders, repeats, warmup)
        flops = forward_flops(loaded.module, args)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "model": label, "batch": bs, "input_length": length, "threads": threads, "repeats": repeats,
            "torch_ms": _ms(times["torch eager"]),
            "onnxruntime_ms": _ms(times["onnxruntime"]),
            "ort_over_torch": med["torch eager"] / med["onnxruntime"],
            "gflop_per_forward": flops / 1e9,
            "ort_gflops": flops / med["onnxruntime"] / 1e9,
            "torch_gflops": flops / med["torch eager"] / 1e9,
        }
        if "onnxruntime int8" in med:
            row["int8_ms"] = _ms(times["onnxruntime int8"])
            row["int8_over_fp32"] = med["onnxruntime"] / med["onnxruntime int8"]
        if "onnxruntime fused" in med:
            row["fused_ms"] = _ms(times["onnxruntime fused"])
            row["fused_over_torch"] = med["torch eager"] / med["onnxruntime fused"]
        if "openvino" in med:
            row["openvino_ms"] = _ms(times["openvino"])
            row["openvino_over_ort"] = med["onnxruntime"] / med["openvino"]
        if "openvino bf16" in med:
            row["openvino_bf16_ms"] = _ms(times["openvino bf16"])
            row["openvino_bf16_over_ort"] = med["onnxruntime"] / med["openvino bf16"]
        if "optimum fp32" in med:
            row["optimum_fp32_ms"] = _ms(times["optimum fp32"])
            row["optimum_int8_ms"] = _ms(times["optimum int8"])
            row["ort_over_optimum"] = med["optimum fp32"] / med["onnxruntime"]
            if "onnxruntime int8" in med:
                row["int8_over_optimum_int8"] = med["optimum int8"] / med["onnxruntime int8"]
            row["optimum_logits_max_abs_diff"] = peer_diff
        if roofs is not None:
            graphs = {k: p for k, p in (("fp32", onnx_path), ("int8", int8_path), ("fused", fused_path),
                                        *(peer_graphs or {}).items()) if p}
            row["traffic"], row["roofline"] = roofline_of(times, flops, graphs,
                                                          {k: list(v.shape) for k, v in feeds.items()}, *roofs)
        rows.append(row)
    return rows


def _print(rows: list[dict[str, Any]], peaks: dict[str, float], stages: list[dict[str, Any]], triad: float) -> None:
    peak = peaks["peak"]
    print(f"matmul peak (fp32 {peaks['n']}x{peaks['n']}, {peaks['threads']} threads): torch {peaks['torch']:.1f}, "
          f"onnxruntime {peaks['onnxruntime']:.1f} GFLOP/s; % peak is against {peak:.1f}")
    print("median ms per batch (min-max); ratios are throughput ratios of the medians")
    head = (f"{'model':<28} {'bs':>3} {'torch':>22} {'ORT fp32':>22} {'ORT int8':>22} {'OpenVINO':>22} "
            f"{'ORT/torch':>9} {'int8/fp32':>9} {'OV/ORT':>7} {'ORT GFLOP/s':>11} {'% peak':>7} {'fused/torch':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        int8, ov = span(r.get("int8_ms")), span(r.get("openvino_ms"))
        ratio8 = f"{r['int8_over_fp32']:.2f}x" if "int8_over_fp32" in r else "-"
        ratio_ov = f"{r['openvino_over_ort']:.2f}x" if "openvino_over_ort" in r else "-"
        print(f"{r['model']:<28} {r['batch']:>3} {span(r['torch_ms']):>22} {span(r['onnxruntime_ms']):>22} "
              f"{int8:>22} {ov:>22} {r['ort_over_torch']:>8.2f}x {ratio8:>9} {ratio_ov:>7} "
              f"{r['ort_gflops']:>11.1f} {100 * r['ort_gflops'] / peak:>6.1f}% "
              f"{(format(r['fused_over_torch'], '.2f') + 'x') if 'fused_over_torch' in r else '-':>11}")
    peer_rows = [r for r in rows if "optimum_fp32_ms" in r]
    if peer_rows:
        print("the peer (HF Optimum's export and ORTModelForCTC, its own venv), alternating with ours, same threads")
        head = (f"{'model':<28} {'bs':>3} {'Optimum fp32':>22} {'Optimum int8':>22} {'ours/Opt fp32':>13} "
                f"{'ours/Opt int8':>13} {'max |d logits|':>14}")
        print(head)
        print("-" * len(head))
        for r in peer_rows:
            ratio8 = f"{r['int8_over_optimum_int8']:.2f}x" if "int8_over_optimum_int8" in r else "-"
            print(f"{r['model']:<28} {r['batch']:>3} {span(r['optimum_fp32_ms']):>22} {span(r['optimum_int8_ms']):>22} "
                  f"{r['ort_over_optimum']:>12.2f}x {ratio8:>13} {r['optimum_logits_max_abs_diff']:>14.2e}")
    roofline = [(r, name, pt) for r in rows for name, pt in r.get("roofline", {}).items()]
    if roofline:
        print("roofline: intensity = FLOPs / bytes moved (weights + activations, bench/roofline.py); "
              "% roof = attained / min(GEMM peak, triad x intensity), the cache's triad for a point past the memory "
              "roof; % triad / % cache = attained GB/s / that triad's GB/s")
        head = (f"{'model':<28} {'bs':>3} {'backend':<18} {'MB moved':>9} {'FLOP/byte':>9} {'GFLOP/s':>8} "
                f"{'GB/s':>7} {'% triad':>7} {'% cache':>7} {'bound':>7} {'% roof':>7}")
        print(head)
        print("-" * len(head))
        for r, name, pt in roofline:
            print(f"{r['model']:<28} {r['batch']:>3} {name:<18} {pt['bytes'] / 1e6:>9.1f} {pt['intensity_flop_per_byte']:>9.2f} "
                  f"{pt['attained_gflops']:>8.1f} {pt['attained_gbs']:>7.1f} {100 * pt['attained_gbs'] / triad:>6.1f}% "
                  f"{percent_of_cache(pt):>7} {pt['bound']:>7} "
                  f"{100 * pt['fraction_of_roof']:>6.1f}%")
    for st in stages:
        if st["stage"] == "preprocess":
            print(f"preprocess {st['model']}: {st['utterances']} utterances, {st['audio_s']:.1f} s of audio in "
                  f"{st['seconds']:.2f} s on 1 core = {st['x_real_time']:.0f}x real time")
        else:
            print(f"pipeline {st['model']} (preprocess + onnxruntime bs1 run + scoring, {st['utterances']} utterances): "
                  f"{st['total_s']:.2f} s, model execution {st['model_execution_s']:.2f} s, not model execution "
                  f"{100 * st['not_model_share']:.1f}% (preprocess {st['preprocess_s']:.2f} s, run wall "
                  f"{st['run_wall_s']:.2f} s, scoring {st['score_s']:.2f} s; the model alone "
                  f"{st['model_alone_s']:.2f} s, in the run {st['in_run_over_alone']:.2f}x that; medians of "
                  f"{st['repeats']}); not model execution per utterance {not_model_ms_per_utterance(st):.2f} ms; "
                  f"{st['files_written']} files written, one costs {st['file_create_ms']:.3f} ms on "
                  f"{st['scratch']['dir']} ({st['scratch']['fs_type']})")


def main(args: argparse.Namespace) -> int:
    from core.onnx_export import export_onnx

    rows: list[dict[str, Any]] = []
    peer_info: dict[str, Any] | None = None
    peaks = matmul_peak_gflops(args.threads)
    bandwidth = memory_bandwidth_gbs(args.threads, mib=args.triad_mib)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = roster(args, tmp)
        if not models and not args.pipeline:
            flags = [f"--{model.option}" for _, model in bench_models()]
            raise SystemExit(f"nothing to benchmark: give {', '.join(flags[:-1])}, {flags[-1]} and/or --pipeline")
        with contextlib.ExitStack() as stack:
            peer = None
            if args.peer_python:
                peer = stack.enter_context(OptimumPeer(args.peer_python))
            for index, (label, family, source, length) in enumerate(models):
                loaded = family_module(family).load(source)
                onnx_path = tmp / f"{family}_{index}.onnx"
                export_onnx(loaded, onnx_path)
                peer_graphs = None
                if peer is not None and get_family(family).bench.optimum_peer:
                    log.info("the peer exports %s with Optimum", label)
                    info = peer.request("export", model_dir=str(source), work=str(tmp / f"peer_{index}"),
                                        threads=args.threads)
                    peer_info = {k: info[k] for k in ("versions", "int8_config")}
                    peer_graphs = {"optimum fp32": Path(info["fp32_dir"]) / "model.onnx",
                                   "optimum int8": Path(info["int8_dir"]) / "model_quantized.onnx"}
                log.info("benchmarking %s", label)
                rows += bench_model(label, family, loaded, onnx_path, args.batch_sizes, length, args.threads,
                                    args.repeats, args.warmup,
                                    roofs=(peaks["peak"], bandwidth["triad"], bandwidth["llc_triad"]),
                                    peer=peer if peer_graphs else None, peer_graphs=peer_graphs)
    stages: list[dict[str, Any]] = []
    for spec in args.pipeline:
        from bench.pipeline import pipeline_share, preprocessing_rtf

        model, data = spec.split("=", 1)
        log.info("benchmarking the stages around %s", model)
        for st in (preprocessing_rtf(Path(model), Path(data), args.pipeline_utterances, args.pipeline_scratch),
                   pipeline_share(Path(model), Path(data), args.threads, args.pipeline_utterances,
                                  scratch=args.pipeline_scratch)):
            stages.append({"model": Path(model).parent.name, **st})
    _print(rows, peaks, stages, bandwidth["triad"])

    machine = machine_info()
    print(f"memory bandwidth (STREAM triad, {bandwidth['array_mib']} MiB arrays, {bandwidth['threads']} threads): "
          f"{bandwidth['triad']:.1f} GB/s" + (f"; last-level cache ({bandwidth['llc_array_mib']:g} MiB arrays): "
                                               f"{bandwidth['llc_triad']:.1f} GB/s" if bandwidth["llc_triad"] else ""))
    print(f"machine: {machine_label(machine)}")
    if args.out and any("roofline" in r for r in rows):
        from bench.plots import roofline_plot

        roofline_plot(rows, peaks, bandwidth["triad"], args.out.with_name(args.out.stem + "_roofline.png"),
                      machine_label(machine), bandwidth["llc_triad"])
    if args.out and stages:
        from bench.plots import pipeline_breakdown_plot

        pipeline_breakdown_plot(stages, args.out.with_name(args.out.stem + "_pipeline.png"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"matmul_peak_gflops": peaks, "memory_bandwidth_gbs": bandwidth, "rows": rows,
                                        "stages": stages, "machine": machine, "peer": peer_info,
                                        "torch": torch.__version__}, indent=2) + "\n")
        print(f"tables to paste: {write_bench_markdown(args.out)}")
    return 0


def bench_models() -> list[tuple[Family, BenchModel]]:
    """Every model the registered families offer the benchmark, in registry order."""
    return [(family, model) for family in map(get_family, family_names()) for model in family.bench.models]


def roster(args: argparse.Namespace, tmp: Path) -> list[tuple[str, str, Path, int]]:
    """(label, family, artifact, input length) of each model the command line asked for; random-weight
    models are built into `tmp`."""
    models = []
    for family, model in bench_models():
        wanted = getattr(args, _dest(model.option))
        if not wanted:
            continue
        source = resolve(model.make)(tmp) if model.make else Path(wanted)
        models.append((model.label, family.name, source, getattr(args, _dest(family.bench.length_option))))
    return models


def _dest(option: str) -> str:
    return option.replace("-", "_")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=thread_count, default=2)
    p.add_argument("--triad-mib", type=positive_int, default=256,
                   help="size of each STREAM triad array in MiB (keep it far above the L3 cache)")
    p.add_argument("--repeats", type=positive_int, default=15)
    p.add_argument("--warmup", type=non_negative_int, default=3)
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 8])
    # Each family's models and input length (its Family.bench): a path flag, or a random-weight model's switch.
    for family in map(get_family, family_names()):
        bench = family.bench
        if bench.length_option:
            p.add_argument(f"--{bench.length_option}", type=positive_int, default=bench.length,
                           help=bench.length_help)
        for model in bench.models:
            if model.make:
                p.add_argument(f"--{model.option}", action="store_true", help=model.help)
            else:
                p.add_argument(f"--{model.option}", help=model.help)
    p.add_argument("--peer-python", type=Path,
                   help="python of the peer venv (scripts/bench.sh --peer makes work/peer-venv): HF Optimum exports "
                        "each wav2vec2 and its fp32 and MatMul-only dynamic int8 run alternating with ours")
    p.add_argument("--pipeline", action="append", default=[], metavar="MODEL.onnx=DATA",
                   help="also time the stages around this exported model on DATA (AN4 root or LibriSpeech split): "
                        "preprocessing speed on one core, and the share of a whole run that is not model execution")
    p.add_argument("--pipeline-utterances", type=positive_int, default=200, help="utterances for --pipeline (default 200)")
    p.add_argument("--pipeline-scratch", type=out_dir,
                   help="folder --pipeline writes its dataset and run dirs in (default: the system's temporary "
                        "folder, TMPDIR): put it on the disk your runs will use, since file creation is part of "
                        "the time around the model")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
