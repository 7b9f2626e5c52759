"""Runner for msame, the Ascend offline-model inference tool (Ascend/tools, msame/).

What is driven, as msame's README documents it::

    msame --model M.om --input DIR1,DIR2 --output OUT --outfmt TXT|BIN [--device N]
          [--dymBatch B | --dymDims "name:d,d;name:d"]

msame reads the file names from the first input dir (sorted lexicographically) and the same names
from the others, runs each through the OM, and writes `OUT/<stamp>/<stem>_output_<k>.txt|.bin`,
stamp = year month day _ hour _ minute _ second _ microseconds without zero padding. TXT holds
values with 6 significant digits, a space after each, one line per row of the last dimension. For
each file it logs "Inference time: X ms", which is the per-batch latency recorded here.

A dynamic OM needs its gear (msame/src/sample_process.cpp): without --dymDims a dims OM is refused
("model has dynamic_dims, please add dymDims parameter"), and without --dymBatch a batch OM runs with
no gear set and fails to execute. The gear comes from the OM's card, matched to the files' shapes.
msame sizes output buffers for the largest gear and writes them whole, trimming only for --dymBatch
(model_process.cpp OutputModelResult), so outputs are read as the gear's shapes from the card and the
rest of each file is dropped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.dataset_dir import DatasetDir
from core.model_card import ModelCard
from core.run_dir import RunError, cached_run
from runners.tool_outputs import (check_files, file_groups, input_folders, new_folder, plan_tool_run, run_tool,
                                  tool_config, which_tool, write_run_from_files)

INSTALL_HINT = ("msame is built from Ascend/tools (msame/build.sh) on a machine with the CANN toolkit; put the "
                "binary on PATH or set $MSAME_BIN, and `source /usr/local/Ascend/ascend-toolkit/set_env.sh` "
                "(env.sh does this when the toolkit is installed).")
TAIL = 10
_START = re.compile(r"start to process file:\s*(\S+)")
_TIME = re.compile(r"^Inference time:\s*([0-9.]+)\s*ms", re.M)


def parse_msame_log(text: str) -> list[tuple[str, float]]:
    """(input file stem, ms) per processed file, pairing each "Inference time" with the file before it."""
    pairs: list[tuple[str, float]] = []
    current: str | None = None
    for line in text.splitlines():
        start = _START.search(line)
        if start:
            name = Path(start.group(1)).name
            current = name[:-4] if name.endswith(".bin") else name
            continue
        t = _TIME.match(line.strip())
        if t and current is not None:
            pairs.append((current, float(t.group(1))))
            current = None
    return pairs


def run_msame(model: Path, card: ModelCard, dataset: DatasetDir, out: Path, *, outfmt: str = "TXT",
              device: int = 0, force: bool = False) -> dict[str, Any]:
    """Run the dataset through msame and convert its output folder into the run dir `out`."""
    exe = which_tool("msame", "MSAME_BIN", INSTALL_HINT)
    config = tool_config("msame", model, dataset, outfmt=outfmt, device=device)
    cached = cached_run(out, config, force)
    if cached:
        return cached
    groups = file_groups(dataset, card)
    plan = plan_tool_run("msame", model, card, groups)
    raw = out / "msame_output"
    raw.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in raw.iterdir()}
    cmd = [exe, "--model", str(model), "--input", ",".join(str(p) for p in input_folders(dataset, card)),
           "--output", str(raw), "--outfmt", outfmt, "--device", str(device), *plan.gear_flags]
    text, wall_s = run_tool(cmd, out / "msame.log", "msame")
    # msame exits 0 after many failures (a bad flag, a missing folder, a failed execution); its
    # "[ERROR]" lines are the only sign.
    errors = [line for line in text.splitlines() if "[ERROR]" in line]
    if errors:
        raise RunError(f"msame reported errors (full log: {out / 'msame.log'}):\n" + "\n".join(errors[-TAIL:]))
    folder = new_folder(raw, before, "msame")
    ext = outfmt.lower()
    n_out = len(card.outputs)
    files = {(g.stem, k): folder / f"{g.stem}_output_{k}.{ext}" for g in groups for k in range(n_out)}
    check_files(folder, [p.name for p in files.values()], "msame")
    timed = parse_msame_log(text)
    # msame's first inference pays for loading; it prints an average "without first time" for that reason.
    times = [ms for _, ms in (timed[1:] if len(timed) > 1 else timed)]
    info = {"tool": "msame", "executable": exe, "device": device, "command": cmd}
    extra = {"timing": "msame's per-file 'Inference time' (first file excluded, as msame's own average does)",
             "raw_output": str(folder), "files_timed": len(timed)}
    return write_run_from_files(out, tool="msame", tool_info=info, config=config, card=card, dataset=dataset,
                                groups=groups, output_file=files, fmt=outfmt, plan=plan,
                                latencies_ms=times, wall_s=wall_s, model_path=model, extra=extra)

