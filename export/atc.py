"""atc, the Ascend Tensor Compiler: the ONNX -> offline model (.om) command, built from the model card.

The command follows the Ascend ModelZoo guides (framework 5 = ONNX, input_format, input_shape of
every input, soc_version, log level) plus atc's documented dynamic-shape options:

* static: every dim fixed, e.g. ``spect:1,1,161,621;lengths:1``;
* ``--dynamic_batch_size 1,4,8``: the batch dims become -1 and one of the listed sizes is chosen at
  run time (msame/ais_bench ``--dymBatch``);
* ``--dynamic_dims``: batch and time dims become -1 and each profile gives a value for every -1, in
  input order (atc requires ``--input_format=ND`` for it).

The OM's card lists every gear of a dynamic OM with its input and output shapes, so the msame /
ais_bench runners can pass the gear the data needs (``--dymBatch`` / ``--dymDims``) and know how much
of a tool's output buffer is the result (msame sizes them for the largest gear).

``--soc_version`` is "Ascend" + the chip name `npu-smi info` shows (CANN's atc parameter page). The
chips known here are listed in KNOWN_SOC; any other name is passed on to atc with a warning, because
new chips appear with every toolkit and atc itself knows which ones it can build for.

`atc` runs when it is on PATH; otherwise the command is written as `<name>.atc.sh` beside the model
for a machine with the CANN toolkit, and the card of the future OM is written all the same, so the
runners find it beside the .om once it exists.
"""
from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.card import CardError, ModelCard, card_path_for, write_card
from core.tensor_spec import TensorSpec

log = logging.getLogger("export")

# Chip names atc's documentation and Ascend's SoC tables use: Ascend310, Ascend310P1/P3/P5/P7 (and their
# vir01..08 slices), Ascend310B1-B4, Ascend910, Ascend910A/B/ProA/ProB/PremiumA, Ascend910B1-B4 (B2C,
# B4-1), Ascend910_93xx.
KNOWN_SOC = re.compile(r"Ascend(310|310P[1357](vir0[1248])?|310B[1-4]|910(A|B|ProA|ProB|PremiumA)?"
                       r"|910B[1-4](C|-1)?|910_93\d\d)")
SOC_PATTERN = re.compile(r"Ascend\w+")
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
SET_ENV = "/usr/local/Ascend/ascend-toolkit/set_env.sh"
INSTALL_HINT = (f"atc comes with the CANN toolkit (Ascend-cann-toolkit); install it and `source {SET_ENV}` "
                "(env.sh does this when the toolkit is installed)")


class AtcError(RuntimeError):
    """A conversion that cannot be set up, or an atc run that failed (with atc's own message)."""


@dataclass
class AtcOptions:
    soc_version: str = "Ascend310P3"
    batch: int | None = None  # static batch (default: the card's, else 1)
    length: int | None = None  # static time length (default: the card's static one)
    dynamic_batch: list[int] = field(default_factory=list)
    dynamic_dims: list[tuple[int, int]] = field(default_factory=list)  # (batch, length) profiles
    input_format: str | None = None  # default: NCHW for a 4-D first input, else ND
    log_level: str = "error"
    precision_mode: str | None = None
    op_precision_mode: Path | None = None
    extra: list[str] = field(default_factory=list)


def _dim(spec: TensorSpec, axis: int, value: Any, batch: int | str, length: int | str) -> int | str:
    if isinstance(value, int):
        wanted = batch if axis == 0 else length if axis == spec.time_axis else value
        if wanted not in (value, -1):
            what = "batch" if axis == 0 else "time"
            raise AtcError(f"input {spec.name}: the model's {what} axis is fixed to {value} (a static export); "
                           f"it cannot be compiled as {wanted}. Export with dynamic axes, or use {value}")
        return value
    if axis == 0:
        return batch
    if axis == spec.time_axis:
        return length
    raise AtcError(f"input {spec.name} axis {axis} is symbolic ({value!r}) and is neither batch nor time; "
                   "export the model with a static shape for it")


def _static_length(card: ModelCard, opts: AtcOptions) -> int | None:
    if opts.length is not None:
        return opts.length
    for spec in card.inputs:
        axis = spec.time_axis
        if axis is not None and isinstance(spec.shape[axis], int):
            return spec.shape[axis]
    return None


def input_shapes(card: ModelCard, opts: AtcOptions) -> dict[str, list[int | str]]:
    """The shape atc compiles for each input: fixed dims, or -1 where a dynamic option varies them."""
    static_length = _static_length(card, opts)
    batch: int | str = opts.batch or card.static_batch or 1
    length: int | str | None = static_length
    if opts.dynamic_batch:
        batch = -1
    if opts.dynamic_dims:
        batch, length = -1, -1
    has_time = card.time_input is not None
    if length is None and has_time:
        raise AtcError("the model's time axis is dynamic: give --length (e.g. 621 frames for DeepSpeech2, 100000 "
                       "samples for wav2vec2) or --dynamic-dims profiles")
    shapes: dict[str, list[int | str]] = {}
    for spec in card.inputs:
        shapes[spec.name] = [_dim(spec, axis, d, batch, length if length is not None else -1)
                             for axis, d in enumerate(spec.shape)]
    return shapes


def dynamic_dims_arg(card: ModelCard, shapes: dict[str, list[int | str]],
                     profiles: list[tuple[int, int]]) -> str:
    """atc's --dynamic_dims: per profile, one value for every -1 of --input_shape, in input order."""
    out = []
    for batch, length in profiles:
        values = []
        for spec in card.inputs:
            for axis, d in enumerate(shapes[spec.name]):
                if d == -1:
                    values.append(batch if axis == 0 else length)
        out.append(",".join(str(v) for v in values))
    return ";".join(out)


def check_soc_version(soc: str) -> None:
    """Warn about a chip name this pipeline does not know; atc is the judge of what it can build for."""
    if KNOWN_SOC.fullmatch(soc):
        return
    if SOC_PATTERN.fullmatch(soc):
        log.warning("--soc-version %s is not a chip name known here (e.g. Ascend310, Ascend310P3, Ascend910B3); "
                    "passing it to atc as given", soc)
    else:
        log.warning("--soc-version %s does not look like atc's \"Ascend\" + chip name (what `npu-smi info` shows, "
                    "e.g. Ascend310P3); passing it to atc as given", soc)


def atc_command(onnx_path: Path, card: ModelCard, output_stem: Path, opts: AtcOptions) -> list[str]:
    check_soc_version(opts.soc_version)
    if opts.log_level not in LOG_LEVELS:
        raise AtcError(f"--log {opts.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if opts.dynamic_batch and opts.dynamic_dims:
        raise AtcError("give --dynamic-batch or --dynamic-dims, not both (atc takes one kind of dynamic profile)")
    shapes = input_shapes(card, opts)
    input_shape = ";".join(f"{name}:{','.join(str(d) for d in dims)}" for name, dims in shapes.items())
    fmt = opts.input_format or ("NCHW" if len(card.inputs[0].shape) == 4 else "ND")
    if opts.dynamic_dims:
        if opts.input_format and opts.input_format != "ND":
            raise AtcError("atc's --dynamic_dims requires --input_format=ND")
        fmt = "ND"
    cmd = ["atc", "--framework=5", f"--model={onnx_path}", f"--output={output_stem}", f"--input_format={fmt}",
           f"--input_shape={input_shape}", f"--soc_version={opts.soc_version}", f"--log={opts.log_level}"]
    if opts.dynamic_batch:
        cmd.append(f"--dynamic_batch_size={','.join(str(b) for b in opts.dynamic_batch)}")
    if opts.dynamic_dims:
        cmd.append(f"--dynamic_dims={dynamic_dims_arg(card, shapes, opts.dynamic_dims)}")
    if opts.precision_mode:
        cmd.append(f"--precision_mode={opts.precision_mode}")
    if opts.op_precision_mode:
        cmd.append(f"--op_precision_mode={opts.op_precision_mode}")
    return cmd + list(opts.extra)


def output_shapes(card: ModelCard, batch: int, length: int | None) -> dict[str, list[int | str]]:
    """Each output's shape for an input batch and time length (by the card's output-length rule)."""
    shapes: dict[str, list[int | str]] = {}
    for spec in card.outputs:
        shape = list(spec.shape)
        shape[0] = batch
        axis = spec.time_axis
        if axis is not None and not isinstance(shape[axis], int) and length is not None:
            try:
                shape[axis] = card.output_frames(length)
            except CardError:
                pass  # no usable rule: the runners infer this dim from the value count
        shapes[spec.name] = shape
    return shapes


def gears(card: ModelCard, shapes: dict[str, list[int | str]], opts: AtcOptions) -> list[dict[str, Any]]:
    """Every gear of a dynamic OM: its batch and length, and the input and output shapes at it."""
    profiles: list[tuple[int, int | None]] = [(b, _static_length(card, opts)) for b in opts.dynamic_batch]
    profiles += [(b, t) for b, t in opts.dynamic_dims]
    out = []
    for batch, length in profiles:
        inputs = {name: [(batch if axis == 0 else length) if d == -1 else d for axis, d in enumerate(dims)]
                  for name, dims in shapes.items()}
        out.append({"batch": batch, "length": length, "input_shapes": inputs,
                    "output_shapes": output_shapes(card, batch, length)})
    return out


def om_card(card: ModelCard, om_path: Path, cmd: list[str], opts: AtcOptions,
            shapes: dict[str, list[int | str]]) -> ModelCard:
    """The card of the OM: the ONNX card with the compiled input shapes and how it was compiled."""
    out = card.to_dict()
    for spec in out["inputs"]:
        spec["shape"] = [d if d != -1 else old for d, old in zip(shapes[spec["name"]], spec["shape"])]
    batch = shapes[card.inputs[0].name][0]
    if batch != -1:
        for spec in out["outputs"]:
            spec["shape"][0] = batch
    out["precision"] = f"om, atc precision_mode {opts.precision_mode or 'force_fp16 (default)'}"
    out["om"] = {
        "file": om_path.name,
        "source_onnx": card.onnx,
        "source_onnx_sha256": card.onnx_sha256,
        "soc_version": opts.soc_version,
        "input_shape": {k: list(v) for k, v in shapes.items()},
        "dynamic_batch_size": list(opts.dynamic_batch),
        "dynamic_dims": [list(p) for p in opts.dynamic_dims],
        "gears": gears(card, shapes, opts),
        # atc's default precision_mode on inference SoCs is force_fp16 for ops without fp32 support.
        "precision_mode": opts.precision_mode or "atc default (force_fp16)",
        "atc_command": cmd,
    }
    return ModelCard.from_dict(out, f"the OM card of {om_path}")


def convert(onnx_path: Path, card: ModelCard, out_dir: Path, name: str, opts: AtcOptions) -> tuple[Path, bool]:
    """Build the atc command; run it if atc is installed, else write it as a script. -> (om path, ran)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / name
    om_path = stem.with_suffix(".om")
    cmd = atc_command(onnx_path.resolve(), card, stem.resolve(), opts)
    shapes = input_shapes(card, opts)
    script = stem.with_name(f"{name}.atc.sh")
    script.write_text("#!/usr/bin/env bash\n# Written by `python -m export atc`: run on a machine with the CANN toolkit.\n"
                      f"set -euo pipefail\n[ -f {SET_ENV} ] && source {SET_ENV}\n" + shlex.join(cmd) + "\n")
    script.chmod(0o755)
    write_card(om_card(card, om_path, cmd, opts, shapes), card_path_for(om_path))
    exe = shutil.which("atc")
    if exe is None:
        log.warning("atc not found on PATH, so nothing was compiled. %s. The command is in %s; run it there, then "
                    "point the msame/ais_bench runners at %s (its card is already beside it).",
                    INSTALL_HINT, script, om_path)
        return om_path, False
    log.info("running: %s", shlex.join(cmd))
    proc = subprocess.run([exe, *cmd[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    (out_dir / f"{name}.atc.log").write_text(proc.stdout)
    if proc.returncode != 0 or not om_path.is_file():
        tail = "\n".join(proc.stdout.rstrip().splitlines()[-20:])
        raise AtcError(f"atc failed (status {proc.returncode}; log {out_dir / f'{name}.atc.log'}):\n{tail}")
    return om_path, True


def simplify(onnx_path: Path, card: ModelCard, shapes: dict[str, list[int | str]], out: Path) -> Path:
    """Fold the graph for the static shapes atc will compile (onnxslim), as the guides do with onnxsim."""
    try:
        import onnxslim
    except ImportError:
        raise AtcError("--simplify needs onnxslim (pip install onnxslim; it is in requirements.txt)") from None
    import onnx

    static = {k: v for k, v in shapes.items() if all(isinstance(d, int) and d > 0 for d in v)}
    model = onnx.load(str(onnx_path))
    if static:
        for value in model.graph.input:
            if value.name in static:
                for dim, size in zip(value.type.tensor_type.shape.dim, static[value.name]):
                    dim.Clear()
                    dim.dim_value = size
    slim = onnxslim.slim(model)
    if slim is None:
        raise AtcError(f"onnxslim could not simplify {onnx_path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(slim, str(out))
    return out

