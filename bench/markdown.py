"""bench.json as Markdown tables to paste into a report (results/bench.md; results/README.md includes it).

Everything is rendered from the JSON the benchmark wrote, so `python -m bench markdown results/bench.json`
remakes the page from an older run without timing anything again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.fsio import atomic_write_bytes, read_json_file
from core.machine import NATIVE_BF16_FLAGS, machine_label


def span(ms: dict[str, float] | None) -> str:
    """A timing as "median (min-max)" in ms, "-" for a contender that did not run."""
    return f"{ms['median']:.1f} ({ms['min']:.1f}-{ms['max']:.1f})" if ms else "-"


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def runtime_table(rows: list[dict[str, Any]]) -> list[str]:
    """Median ms per batch (min-max) of every contender, and the throughput ratios of the medians."""
    peer = any("optimum_fp32_ms" in r for r in rows)
    bf16 = any("openvino_bf16_ms" in r for r in rows)
    head = ["model", "bs", "torch eager ms", "ORT fp32 ms", "ORT int8 ms", "ORT fused ms", "OpenVINO ms"]
    head += ["OpenVINO bf16 ms"] if bf16 else []
    head += ["Optimum fp32 ms", "Optimum int8 ms"] if peer else []
    head += ["ORT / torch", "int8 / fp32", "fused / torch", "OpenVINO / ORT"]
    head += ["OpenVINO bf16 / ORT fp32"] if bf16 else []
    head += ["ours / Optimum fp32", "our int8 / Optimum int8"] if peer else []
    body = []
    for r in rows:
        line = [r["model"], str(r["batch"]), span(r["torch_ms"]), span(r["onnxruntime_ms"]),
                span(r.get("int8_ms")), span(r.get("fused_ms")), span(r.get("openvino_ms"))]
        line += [span(r.get("openvino_bf16_ms"))] if bf16 else []
        line += [span(r.get("optimum_fp32_ms")), span(r.get("optimum_int8_ms"))] if peer else []
        line += [_x(r["ort_over_torch"]), _x(r.get("int8_over_fp32")), _x(r.get("fused_over_torch")),
                 _x(r.get("openvino_over_ort"))]
        line += [_x(r.get("openvino_bf16_over_ort"))] if bf16 else []
        line += [_x(r.get("ort_over_optimum")), _x(r.get("int8_over_optimum_int8"))] if peer else []
        body.append(line)
    return _table(head, body)


def roofline_table(rows: list[dict[str, Any]], triad_gbs: float) -> list[str]:
    """Each contender's place on the roofline (bench/roofline.py)."""
    body = []
    for r in rows:
        for name, pt in r.get("roofline", {}).items():
            body.append([r["model"], str(r["batch"]), name, f"{pt['bytes'] / 1e6:.1f}",
                         f"{pt['intensity_flop_per_byte']:.2f}", f"{pt['attained_gflops']:.1f}",
                         f"{pt['attained_gbs']:.1f}", f"{100 * pt['attained_gbs'] / triad_gbs:.1f}%",
                         percent_of_cache(pt), pt["bound"], f"{100 * pt['fraction_of_roof']:.1f}%"])
    head = ["model", "bs", "backend", "MB moved", "FLOP/byte", "GFLOP/s", "GB/s", "% of triad", "% of cache triad",
            "bound", "% of roof"]
    return _table(head, body) if body else []


def percent_of_cache(point: dict[str, Any]) -> str:
    """Attained GB/s against the last-level cache's triad, "-" for a point measured without it."""
    cache = point.get("cache_bandwidth_gbs")
    return f"{100 * point['attained_gbs'] / cache:.1f}%" if cache else "-"


def stages_table(stages: list[dict[str, Any]]) -> list[str]:
    """Preprocessing speed and the share of a whole pipeline run that is not model execution."""
    lines = []
    pre = [s for s in stages if s["stage"] == "preprocess"]
    if pre:
        lines += _table(["model", "utterances", "audio s", "seconds (1 core)", "x real time"],
                        [[s["model"], str(s["utterances"]), f"{s['audio_s']:.1f}", f"{s['seconds']:.2f}",
                          f"{s['x_real_time']:.0f}"] for s in pre]) + [""]
        if any(s.get("page_cache") == "warm" for s in pre):
            lines += ["Preprocessing: every audio file read once before the timed pass (a warm page cache), so the "
                      "seconds are decoding, features and writing the dataset dir, not the disk.", ""]
    pipe = [s for s in stages if s["stage"] == "pipeline"]
    if pipe:
        head = ["model", "utterances", "preprocess s", "run wall s", "model execution s", "scoring s", "total s",
                "not model execution", "per utterance", "model in the run / alone"]
        lines += _table(head, [[s["model"], str(s["utterances"]), f"{s['preprocess_s']:.2f}", f"{s['run_wall_s']:.2f}",
                                f"{s['model_execution_s']:.2f}", f"{s['score_s']:.2f}", f"{s['total_s']:.2f}",
                                f"{100 * s['not_model_share']:.1f}%", f"{not_model_ms_per_utterance(s):.2f} ms",
                                _x(s.get("in_run_over_alone"))] for s in pipe])
        lines += ["", "Pipeline: preprocess + onnxruntime run at batch 1 (session start-up and warm-up included) + "
                      "scoring, into a scratch dir" + (f"; medians of {pipe[0]['repeats']} runs" if "repeats" in pipe[0]
                                                       else "") + ". The share depends on the model's size: most of "
                      "the time around it (decoding, features, files, scoring) does not grow with the model, so it is "
                      "also given per utterance."]
        files = [f"- {s['model']}: {s['files_written']} files written by one preprocess + run; creating one (written "
                 f"and renamed into place) costs {s['file_create_ms']:.3f} ms on average on {s['scratch']['dir']} "
                 f"({s['scratch']['fs_type'] or 'file system unknown'})." for s in pipe if "file_create_ms" in s]
        lines += [""] + files if files else []
    return lines


def not_model_ms_per_utterance(stage: dict[str, Any]) -> float:
    """A pipeline row's time that is not model execution, per utterance (from its medians)."""
    return 1000 * (stage["total_s"] - stage["model_execution_s"]) / stage["utterances"]


def bench_markdown(result: dict[str, Any]) -> str:
    """The whole page for one bench.json."""
    peaks, triad = result["matmul_peak_gflops"], result["memory_bandwidth_gbs"]["triad"]
    rows, stages = result.get("rows", []), result.get("stages", [])
    lines = [f"Measured on {machine_label(result['machine'])}; torch {result.get('torch', '?')}. fp32 GEMM peak "
             f"({peaks['n']}x{peaks['n']}, {peaks['threads']} threads): torch {peaks['torch']:.1f}, onnxruntime "
             f"{peaks['onnxruntime']:.1f} GFLOP/s; STREAM triad {triad:.1f} GB/s{_cache_triad(result)}. Ratios hold "
             "for this machine (docs/benchmark.md).", ""]
    if rows:
        reps = sorted({r["repeats"] for r in rows})
        lines += ["### Runtimes side by side", "",
                  f"Median ms per batch (min-max) over {'/'.join(map(str, reps))} alternating repeats after warm-up, "
                  f"{rows[0]['threads']} threads each; ratios are throughput ratios of the medians.", ""]
        lines += runtime_table(rows) + [""]
        flags = result["machine"].get("flags") or {}
        if not any("openvino_bf16_ms" in r for r in rows) and not any(flags.get(f) for f in NATIVE_BF16_FLAGS):
            lines += ["No bf16 contender: this CPU has neither avx512_bf16 nor AMX, so bf16 would be emulated.", ""]
        roof = roofline_table(rows, triad)
        if roof:
            lines += ["### Roofline", "", "Bytes moved per forward (weights + activations), arithmetic intensity, and "
                      "the share of whichever roof binds (GEMM peak or triad bandwidth x intensity).", ""]
            lines += roof + [""]
            points = [pt for r in rows for pt in r.get("roofline", {}).values()]
            over = {pt["bound"] for pt in points if pt["fraction_of_roof"] > 1}
            if any(pt["bound"] == "cache" for pt in points):
                lines += ["Bound \"cache\": the bytes count every weight re-read (an RNN's recurrent matrices, once "
                          "per frame) as if it came from memory, and the point attained more GB/s than the memory "
                          "triad allows, so part of them came from the last-level cache; it is judged against the "
                          "cache's triad instead.", ""]
            if "memory" in over:
                lines += ["Above 100% of a memory roof: the byte count assumes every weight re-read (an RNN's "
                          "recurrent matrices, once per frame) comes from memory; where they fit in cache, part of "
                          "it did not (this run measured no cache triad to judge it against).", ""]
            if "compute" in over:
                lines += ["Above 100% of the compute roof: that roof is the fp32 GEMM peak, which int8 kernels can "
                          "pass.", ""]
    if stages:
        lines += ["### Around the model", ""] + stages_table(stages) + [""]
    return "\n".join(lines)


def _cache_triad(result: dict[str, Any]) -> str:
    bandwidth = result["memory_bandwidth_gbs"]
    if not bandwidth.get("llc_triad"):
        return ""
    return f" (last-level cache: {bandwidth['llc_triad']:.1f} GB/s, {bandwidth['llc_array_mib']:g} MiB arrays)"


def write_bench_markdown(bench_json: Path, out: Path | None = None) -> Path:
    """Render `bench_json` to `out` (default: the same name with .md); a file that is not a bench result raises
    ValueError naming it."""
    result = read_json_file(bench_json, "bench result", required=("matmul_peak_gflops", "memory_bandwidth_gbs",
                                                                  "machine"))
    out = out or bench_json.with_suffix(".md")
    atomic_write_bytes(out, bench_markdown(result).encode())
    return out
