"""Runner for ais_bench, the Ascend inference benchmark tool (Ascend/tools, ais-bench_workload/tool/ais_bench).

What is driven, as its README documents it::

    python -m ais_bench --model M.om --input DIR1,DIR2 --output OUT --output_dirname NAME --outfmt BIN
                        --batchsize B --device N --loop 1 --warmup_count W [--dymBatch B | --dymDims "n:d,d;.."]

ais_bench pairs the files of the input dirs by position (each dir natural-sorted) and writes
`OUT/NAME/<stem>_<k>.bin|.npy|.txt` (stem = the first input file's name up to its first dot), plus
`OUT/NAME_summary.json` with `filesinfo` (input and output files per inference), NPU compute time,
H2D/D2H latency (min/max/mean/median/percentile) and throughput = 1000 * batchsize / mean compute
ms. The per-inference `npu_compute_time_list` becomes the run's batch latency here.

When the OM's batch is larger than the rows of one file, ais_bench joins `tensor size // file size`
files into one inference and pads the last with copies (infer/io_oprations.py
get_files_count_per_batch), so the run's batch size, batch count and `--batchsize` (which only
scales ais_bench's own throughput figure) are the OM's batch, not the file's. A dynamic OM gets the
gear of the files' shapes from the OM's card (`--dymBatch` / `--dymDims`, infer/__main__.py
set_session_options); ais_bench returns outputs at the gear's shapes, so nothing is trimmed.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from core.dataset_dir import DatasetDir
from core.model_card import ModelCard
from core.run_dir import RunError, cached_run
from runners.tool_outputs import (ToolNotFound, check_files, file_groups, input_folders, plan_tool_run, run_tool,
                                  tool_config, write_run_from_files)

INSTALL_HINT = ("ais_bench is a Python package from Ascend/tools (ais-bench_workload/tool/ais_bench): install its "
                "aclruntime and ais_bench wheels into this environment (or give --ais-bench-python), and "
                "`source /usr/local/Ascend/ascend-toolkit/set_env.sh` (env.sh does this when the toolkit is installed).")
OUT_EXT = {"BIN": "bin", "NPY": "npy", "TXT": "txt"}


def _summary_stats(block: dict[str, Any]) -> dict[str, Any]:
    """A summary block with the percentile key named either way (older "percentile(99%)", newer "P99")."""
    out = {k: block.get(k) for k in ("min", "max", "mean", "median")}
    out["p99"] = block.get("P99", block.get("percentile(99%)"))
    return out


def read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunError(f"ais_bench wrote no summary {path}")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON: {exc}") from None
    for key in ("NPU_compute_time", "throughput"):
        if key not in summary:
            raise RunError(f"{path} has no {key!r}: not an ais_bench summary")
    return summary


def run_ais_bench(model: Path, card: ModelCard, dataset: DatasetDir, out: Path, *, outfmt: str = "BIN",
                  device: int = 0, warmup: int = 1, python: str | None = None,
                  force: bool = False) -> dict[str, Any]:
    """Run the dataset through ais_bench and convert its output folder into the run dir `out`."""
    python = python or sys.executable
    if python == sys.executable and importlib.util.find_spec("ais_bench") is None:
        raise ToolNotFound(f"ais_bench is not importable by {python}. {INSTALL_HINT}")
    if outfmt not in OUT_EXT:
        raise RunError(f"ais_bench --outfmt must be one of {sorted(OUT_EXT)}, not {outfmt!r}")
    groups = file_groups(dataset, card)
    plan = plan_tool_run("ais_bench", model, card, groups)
    config = tool_config("ais_bench", model, dataset, outfmt=outfmt, device=device, warmup=warmup)
    cached = cached_run(out, config, force)
    if cached:
        return cached
    raw, dirname = out / "ais_bench_output", "result"
    # ais_bench writes into an existing output dir (only old versions refused one), so files of an
    # earlier run would be mixed with this one's; start clean.
    shutil.rmtree(raw / dirname, ignore_errors=True)
    (raw / f"{dirname}_summary.json").unlink(missing_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "ais_bench", "--model", str(model),
           "--input", ",".join(str(p) for p in input_folders(dataset, card)),
           "--output", str(raw), "--output_dirname", dirname, "--outfmt", outfmt, "--batchsize", str(plan.batch),
           "--device", str(device), "--loop", "1", "--warmup_count", str(warmup), *plan.gear_flags]
    _, wall_s = run_tool(cmd, out / "ais_bench.log", "ais_bench")
    folder = raw / dirname
    if not folder.is_dir():
        raise RunError(f"ais_bench wrote no output folder {folder}")
    summary = read_summary(raw / f"{dirname}_summary.json")
    ext = OUT_EXT[outfmt]
    n_out = len(card.outputs)
    files = {(g.stem, k): folder / f"{g.stem.split('.')[0]}_{k}.{ext}" for g in groups for k in range(n_out)}
    check_files(folder, [p.name for p in files.values()], "ais_bench")
    latencies = [float(x) for x in summary.get("npu_compute_time_list", [])]
    info = {"tool": "ais_bench", "python": python, "device": device, "command": cmd}
    extra = {"timing": "ais_bench's npu_compute_time_list (warm-up inferences excluded by ais_bench)",
             "raw_output": str(folder), "summary": {
                 "NPU_compute_time_ms": _summary_stats(summary["NPU_compute_time"]),
                 "H2D_latency_ms": _summary_stats(summary.get("H2D_latency", {})),
                 "D2H_latency_ms": _summary_stats(summary.get("D2H_latency", {})),
                 "throughput": summary["throughput"]}}
    return write_run_from_files(out, tool="ais_bench", tool_info=info, config=config, card=card, dataset=dataset,
                                groups=groups, output_file=files, fmt=outfmt, plan=plan,
                                latencies_ms=latencies, wall_s=wall_s, model_path=model, extra=extra)
