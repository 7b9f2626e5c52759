"""From an offline tool's output folder (msame, ais_bench) to the standard run dir.

The Ascend tools read a dataset dir as it is (one folder per model input, files paired by name) and
write one file per input file and model output. What is shared between them lives here: which
dataset files the tool will read, how to launch it and report its failures, how to read its TXT/BIN
files back into arrays of the card's output shapes, and how to split batch files into the per-sample
`<output>/<key>.bin` files every other stage reads.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.dataset_dir import DatasetDir, Sample, natural_key, write_bin
from core.model_card import ModelCard
from core.tensor_spec import TensorSpec
from core.run_dir import RUN_JSON, RunError, finish_run

log = logging.getLogger("runners")

TAIL_LINES = 20


class ToolNotFound(RunError):
    """The tool is not installed or not on PATH; the message says what to install or source."""


@dataclass
class FileGroup:
    """One file the tool reads per input (a sample, or a batch of samples as rows)."""

    stem: str
    files: dict[str, Path]  # card input name -> file
    samples: list[Sample]  # in row order


def input_folders(dataset: DatasetDir, card: ModelCard) -> list[Path]:
    """The dataset's folder of each model input, in the card's input order (the tool's --input order)."""
    return [dataset.path / dataset.folder_of(spec.name) for spec in card.inputs]


def file_groups(dataset: DatasetDir, card: ModelCard) -> list[FileGroup]:
    """The files the tool will read, grouped by the first input's file, in natural order.

    Every input of a group must be in the same file for all its samples (rows of one batch file, or
    one file per sample); a dataset laid out otherwise cannot be fed to a file-based tool.
    """
    names = [spec.name for spec in card.inputs]
    groups: dict[str, FileGroup] = {}
    for sample in dataset.samples:
        first = sample.inputs[names[0]].file
        stem = first[:-4] if first.endswith(".bin") else first
        files = {n: dataset.input_path(sample, n) for n in names}
        group = groups.get(stem)
        if group is None:
            groups[stem] = FileGroup(stem, files, [sample])
        else:
            if group.files != files:
                raise RunError(f"{dataset.path}: samples {group.samples[0].key} and {sample.key} share {first} but "
                               "not their other input files; a file-based tool cannot pair them")
            group.samples.append(sample)
    for group in groups.values():
        group.samples.sort(key=lambda s: s.inputs[names[0]].row or 0)
    return sorted(groups.values(), key=lambda g: natural_key(g.stem))


def file_batch(groups: list[FileGroup], card: ModelCard) -> int:
    """Rows per input file."""
    return int(groups[0].samples[0].inputs[card.inputs[0].name].shape[0]) if groups else 1


@dataclass
class ToolPlan:
    """How the tool will run the dataset's files on the OM."""

    gear_flags: list[str]  # ["--dymBatch", "B"] or ["--dymDims", "name:d,..;.."] for a dynamic OM, else []
    batch: int  # rows per inference
    files_per_inference: int  # ais_bench joins files up to the OM's batch; msame takes one
    output_shapes: dict[str, list[int | str]] | None  # each output file's exact shape, when the card says it
    padded: bool  # output files may hold more than output_shapes (msame: buffers of the largest gear)


def _shape_text(shapes: dict[str, Any]) -> str:
    return ", ".join(f"{name} {'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())


def plan_tool_run(tool: str, model: Path, card: ModelCard, groups: list[FileGroup]) -> ToolPlan:
    """The gear of a dynamic OM that the files need, or how many files make one batch of a static OM.

    msame feeds each file as one inference; ais_bench joins `tensor size // file size` files into one
    inference (Ascend/tools ais_bench infer/io_oprations.py get_files_count_per_batch) and pads the last.
    A dynamic OM runs at one gear per run: every file must have the shapes of one of the OM's gears.
    """
    names = [spec.name for spec in card.inputs]
    rows = file_batch(groups, card)
    om = card.om
    if not groups or om is None:
        return ToolPlan([], rows, 1, None, False)
    shapes = {n: [int(d) for d in groups[0].samples[0].inputs[n].shape] for n in names}
    if om.dynamic_batch_size or om.dynamic_dims:
        if not om.gears:
            raise RunError(f"the card of {model} lists no gears (written by an older `python -m export atc`); "
                           "run the atc step again so the runner can pass --dymBatch / --dymDims")
        for group in groups:
            other = {n: [int(d) for d in group.samples[0].inputs[n].shape] for n in names}
            if other != shapes:
                raise RunError(f"a dynamic OM runs one gear per run, but the dataset's files differ in shape "
                               f"({groups[0].stem}: {_shape_text(shapes)}; {group.stem}: {_shape_text(other)}); "
                               "pad them to one length (preprocess --pad-to)")
        gear = next((g for g in om.gears if g["input_shapes"] == shapes), None)
        if gear is None:
            raise RunError(f"the dataset's files ({_shape_text(shapes)}) match no gear of {model} (gears: "
                           + "; ".join(_shape_text(g["input_shapes"]) for g in om.gears) + ")")
        if om.dynamic_batch_size:
            flags = ["--dymBatch", str(gear["batch"])]
        else:
            flags = ["--dymDims", ";".join(f"{n}:{','.join(str(d) for d in gear['input_shapes'][n])}"
                                           for n in om.input_shape or {})]
        # msame trims --dymBatch buffers by an integer ratio and never trims --dymDims ones.
        return ToolPlan(flags, gear["batch"], 1, gear["output_shapes"], True)
    om_batch = (om.input_shape or {}).get(names[0], [rows])[0]
    if not isinstance(om_batch, int) or om_batch == rows:
        return ToolPlan([], rows, 1, None, False)
    if tool == "msame":
        raise RunError(f"msame runs one file per inference: the dataset's files hold {rows} row(s) but {model} "
                       f"takes batch {om_batch}; preprocess with --batch-size {om_batch} or compile the OM for "
                       f"batch {rows}")
    joinable = om_batch % rows == 0 and all(om.input_shape[n][1:] == shapes[n][1:] for n in names)
    if not joinable:
        raise RunError(f"{tool} joins whole files into the OM's batch, but {model} takes "
                       f"{_shape_text(om.input_shape)} and the files hold {_shape_text(shapes)}")
    return ToolPlan([], om_batch, om_batch // rows, None, False)


def which_tool(name: str, env_var: str, hint: str) -> str:
    """The tool's executable: $env_var if set, else PATH; a clear message when it is neither."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise ToolNotFound(f"${env_var} points to {explicit}, which is not an executable file")
        return explicit
    found = shutil.which(name)
    if not found:
        raise ToolNotFound(f"{name} not found on PATH (or ${env_var}). {hint}")
    return found


def tool_config(tool: str, model: Path, dataset: DatasetDir, **settings: Any) -> dict[str, Any]:
    """What a finished tool run was made from (compared by cached_run); refuses a missing offline model."""
    if not model.is_file():
        raise RunError(f"offline model not found: {model} (build it with `python -m export atc`)")
    return {"backend": tool, "model": str(model.resolve()), "model_mtime": model.stat().st_mtime,
            "dataset": str(dataset.path.resolve()), "dataset_hash": dataset.header.get("config_hash"), **settings}


def run_tool(cmd: Sequence[str], log_path: Path, what: str) -> tuple[str, float]:
    """Run a tool, keep its combined output in `log_path`, return (output, seconds).

    A non-zero exit raises with the tail of the output, which is where these tools print their errors.
    """
    log.info("running: %s", " ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    except OSError as exc:
        raise ToolNotFound(f"{what} could not be started ({cmd[0]}): {exc}") from None
    seconds = time.perf_counter() - t0
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.rstrip().splitlines()[-TAIL_LINES:])
        raise RunError(f"{what} exited with status {proc.returncode} (full log: {log_path}); last lines:\n{tail}")
    return proc.stdout, seconds


def new_folder(parent: Path, before: set[str], what: str) -> Path:
    """The one folder a tool created under `parent` (msame and ais_bench name it by time stamp)."""
    created = sorted(p for p in parent.iterdir() if p.is_dir() and p.name not in before) if parent.is_dir() else []
    if len(created) != 1:
        raise RunError(f"{what} should have created one output folder under {parent}; found "
                       f"{[p.name for p in created] or 'none'}")
    return created[0]


def check_files(folder: Path, expected: Sequence[str], what: str, ignore: Sequence[str] = ()) -> None:
    """Refuse an output folder with missing or unexpected files, naming them."""
    have = {p.name for p in folder.iterdir() if p.is_file()} - set(ignore)
    want = set(expected)
    missing = sorted(want - have, key=natural_key)
    extra = sorted(have - want, key=natural_key)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    if extra:
        problems.append(f"{len(extra)} unexpected ({', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''})")
    if problems:
        raise RunError(f"{what} output folder {folder}: " + "; ".join(problems))


def read_txt(path: Path, dtype: str) -> np.ndarray:
    """A tool's TXT output: one line per row of the last dimension, values separated by spaces."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise RunError(f"{path}: rows of different lengths {sorted(widths)}; not a tool's TXT output")
    try:
        return np.array(rows, dtype=np.float64).astype(dtype)
    except ValueError as exc:
        raise RunError(f"{path}: not numeric ({exc})") from None


def read_output(path: Path, fmt: str, spec: TensorSpec, rows: int, shape: list[int | str] | None = None,
                padded: bool = False) -> np.ndarray:
    """One output file as an array (rows, ...) of the card's output shape (or `shape`, when known).

    Fixed dims come from the card; at most one symbolic dim besides the batch is inferred from the
    value count, and a count that fits no such shape is refused, naming the file and the shape. A
    `padded` file (msame's buffers are sized for an OM's largest gear) may hold more values than a
    fully known `shape`: the result is its first values, the rest is whatever the device held.
    """
    if fmt == "TXT":
        values = read_txt(path, spec.dtype).reshape(-1)
    elif fmt == "NPY":
        values = np.load(path).astype(spec.dtype).reshape(-1)
    else:
        values = np.fromfile(path, dtype=np.dtype(spec.dtype).newbyteorder("<")).astype(spec.dtype)
    shape = list(shape or spec.shape)
    shape[0] = rows
    free = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    fixed = int(np.prod([d for d in shape if isinstance(d, int)]))
    described = "x".join(str(d) for d in shape)
    if padded and not free and values.size > fixed:
        values = values[:fixed]
    if len(free) > 1:
        raise RunError(f"card output {spec.name} has several unknown dims ({described}); cannot read {path}")
    if free:
        if fixed == 0 or values.size % fixed:
            raise RunError(f"{path}: {values.size} values do not fit output {spec.name} of shape {described}")
        shape[free[0]] = values.size // fixed
    elif values.size != fixed:
        raise RunError(f"{path}: {values.size} values, expected {fixed} for output {spec.name} of shape {described}")
    return values.reshape(shape)


def write_run_from_files(out: Path, *, tool: str, tool_info: dict[str, Any], config: dict[str, Any],
                         card: ModelCard, dataset: DatasetDir, groups: list[FileGroup],
                         output_file: dict[tuple[str, int], Path], fmt: str, plan: ToolPlan,
                         latencies_ms: list[float], wall_s: float, model_path: Path,
                         extra: dict[str, Any]) -> dict[str, Any]:
    """Split each output file into per-sample rows under `out` and write run.json.

    `output_file[(stem, k)]` is the tool's file for output k of the group `stem`; `latencies_ms` are the
    tool's own per-inference times, which become the run's batch latencies and seq/s, each inference
    being `plan.files_per_inference` files of the dataset (`plan.batch` rows).
    """
    (out / RUN_JSON).unlink(missing_ok=True)
    for spec in card.outputs:
        (out / spec.name).mkdir(parents=True, exist_ok=True)
    samples_meta: list[dict[str, Any]] = []
    for index, group in enumerate(groups):
        # A file holds as many rows as its batch axis, whether or not every row is a scored sample.
        rows = int(group.samples[0].inputs[card.inputs[0].name].shape[0])
        arrays = {spec.name: read_output(output_file[(group.stem, k)], fmt, spec, rows,
                                            (plan.output_shapes or {}).get(spec.name), plan.padded)
                  for k, spec in enumerate(card.outputs)}
        for row, sample in enumerate(group.samples):
            shapes = {}
            for spec in card.outputs:
                ref = write_bin(out / spec.name / f"{sample.key}.bin", arrays[spec.name][row], spec.dtype)
                shapes[spec.name] = list(ref.shape)
            samples_meta.append({"key": sample.key, "batch": index // plan.files_per_inference, "shapes": shapes})
    batches = -(-len(groups) // plan.files_per_inference)
    return finish_run(out, config=config, backend=tool, backend_info=tool_info, card=card, dataset=dataset,
                      batch_size=plan.batch, batches=batches, latencies_ms=latencies_ms, wall_s=wall_s,
                      samples_meta=samples_meta, model_path=model_path,
                      batching=f"the dataset's files as the tool reads them, {plan.files_per_inference} per inference",
                      warmup=0,
                      extra={"timing": extra.pop("timing"), "output_format": fmt, "tool": extra})
