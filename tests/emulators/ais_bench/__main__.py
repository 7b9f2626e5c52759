"""TEST EMULATOR of ais_bench (`python -m ais_bench`) - not the real tool; used only by tests.

Runs an OM written by the emulated atc through onnxruntime (1 thread) with ais_bench's command line,
input pairing, output layout and summary (Ascend/tools ais-bench_workload/tool/ais_bench @9d6da90):
  * --input: files, or folders (one per model input, paired by position); a folder lists its
    .bin/.npy/.BIN/.NPY files natural-sorted (digit runs compare as numbers, case folded).
  * Like the real tool, files are combined into a batch when input 0's file size divides the tensor
    size: files_per_batch = tensor_bytes // file_bytes; the last partial batch is padded with copies of
    its first file, whose outputs are not written. Each combined input must total the tensor size.
  * Outputs: <output>/<output_dirname or %Y_%m_%d-%H_%M_%S>/<first input file's basename up to its
    first '.'>_<k>.<bin|npy|txt>, each output split along --output_batchsize_axis per sample.
    TXT: one line per last-dim row, "%f" (float) or "%d" values each followed by a space.
  * <output>/<dirname>_summary.json: filesinfo, args (sys.argv, as the real tool stores it),
    NPU_compute_time / H2D_latency / D2H_latency {min, max, mean, median, percentile(99%), count} in ms,
    throughput = 1000 * batchsize / mean compute ms, npu_compute_time_list, pid.
Times are measured on this machine: compute = each session.run (--loop runs per inference),
H2D = reading/assembling one input tensor, D2H = copying one output to a host array.
Dynamic OMs (infer/__main__.py set_session_options, backend ModelInferenceProcessor.cpp):
  * --dymBatch B must be a --dynamic_batch_size gear and --dymDims "name:d,..;..." one --dynamic_dims gear
    (full flattened dims, as model_process.cpp CheckDynamicDims compares them); each input's expected size
    ("realsize") becomes its size at that gear, and outputs come back at the gear's shapes
    (aclmdlGetCurOutputDims), so nothing is padded.
  * without a gear the session is set to static batch: input sizes stay the largest gear's
    (aclmdlGetInputSizeByIndex), files are combined against that size, and the model is executed with
    its dynamic-index input unset, which fails ("acl execute failed"; the ACL runtime is closed source,
    so its own error code and text are not reproduced).
Errors are logged "[ERROR] ..." and exit 1 (the real tool logs, then raises RuntimeError: also exit 1).
Not emulated (clear error): several devices, --dymHW, --dymShape, --dymShape_range, auto_set_dymshape_mode.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/emulators, for the shared OM reader
from _om import OmError, OmModel, nbytes  # noqa: E402

logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="[%(levelname)s] %(message)s")
logger = logging.getLogger("ais_bench")
PURE_INFER = "pure_infer_data"           # the real tool's names for generated / padding inputs
PADDING = "padding_infer_fake_file"


class BenchError(Exception):
    pass


def str2bool(v: str | bool) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected true, 1, false, 0 with case insensitive.")


def positive_int(v: str) -> int:
    if int(v) <= 0:
        raise argparse.ArgumentTypeError(f"{v} is an invalid positive int value")
    return int(v)


def nonnegative_int(v: str) -> int:
    if int(v) < 0:
        raise argparse.ArgumentTypeError(f"{v} is an invalid nonnegative int value")
    return int(v)


def device_arg(v: str) -> int | list[int]:
    ids = [int(x) for x in v.split(",")]
    if any(not 0 <= i <= 255 for i in ids):
        raise argparse.ArgumentTypeError(f"device:{v} is invalid. valid value range is [0, 255]")
    return ids if "," in v else ids[0]


def get_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ais_bench")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i", default=None)
    p.add_argument("--output", "-o", default=None)
    p.add_argument("--output_dirname", default=None)
    p.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    p.add_argument("--loop", "-l", type=positive_int, default=1)
    p.add_argument("--debug", type=str2bool, default=False)
    p.add_argument("--device", "-d", type=device_arg, default=0)
    p.add_argument("--dymBatch", type=int, default=0)
    p.add_argument("--dymHW", default=None)
    p.add_argument("--dymDims", default=None)
    p.add_argument("--dymShape", default=None)
    p.add_argument("--outputSize", default=None)
    p.add_argument("--auto_set_dymshape_mode", type=str2bool, default=False)
    p.add_argument("--auto_set_dymdims_mode", type=str2bool, default=False)
    p.add_argument("--batchsize", type=positive_int, default=None)
    p.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    p.add_argument("--profiler", type=str2bool, default=False)
    p.add_argument("--dump", type=str2bool, default=False)
    p.add_argument("--acl_json_path", default=None)
    p.add_argument("--output_batchsize_axis", type=nonnegative_int, default=0)
    p.add_argument("--run_mode", default="array", choices=["array", "files", "tensor", "full"])
    p.add_argument("--display_all_summary", type=str2bool, default=False)
    p.add_argument("--warmup_count", type=nonnegative_int, default=1)
    p.add_argument("--dymShape_range", default=None)
    args = p.parse_args(argv)
    if args.profiler and args.dump:
        raise BenchError("parameter --profiler cannot be true at the same time as parameter --dump, please check them!")
    if (args.profiler or args.dump) and args.output is None:
        raise BenchError("when dump or profiler, miss output path, please check them!")
    if args.output is None and args.output_dirname is not None:
        raise BenchError("parameter --output_dirname cann't be used alone. Please use it together with the parameter --output!")
    # auto_set_*_mode feeds each file as its own tensor instead of combining files into a batch.
    args.no_combine_tensor_mode = args.auto_set_dymshape_mode or args.auto_set_dymdims_mode
    if args.profiler and args.warmup_count != 0 and args.input is not None:
        logger.info("profiler mode with input change warmup_count to 0")
        args.warmup_count = 0
    return args


def natural_sort(items: list[str]) -> list[str]:
    key = lambda s: [int(t) if t.isdigit() else t.lower() for t in re.split("([0-9]+)", s)]  # noqa: E731
    return sorted(items, key=key)


def files_of_dir(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise BenchError(f"Invalid args. {folder} of input args is not a real dir path")
    files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".npy", ".NPY", ".bin", ".BIN"))]
    if not files:
        raise BenchError(f"{folder} of input args not find valid file,valid file format:[*.npy *.NPY *.bin *.BIN]")
    return natural_sort(files)


def chunks(items: list[str], n: int) -> list[list[str]]:
    """Split into chunks of n, padding the last one with the padding marker (as the real list_split)."""
    out = [items[x: x + n] for x in range(0, len(items), n)]
    if out and len(out[-1]) < n:
        out[-1] = out[-1] + [PADDING] * (n - len(out[-1]))
    return out


def file_bytes(path: str) -> bytes:
    if path.lower().endswith(".npy"):
        return np.load(path).tobytes()
    with open(path, "rb") as f:
        return f.read()


def build_batches(inputs: list[str], tensor_bytes: list[int], no_combine: bool) -> list[list[list[str]]]:
    """[batch][model input] -> the files that make that tensor."""
    n_in = len(tensor_bytes)
    if os.path.isfile(inputs[0]):
        for path in inputs:
            if not os.path.isfile(path):
                raise BenchError(f"Invalid input args.--input:{inputs} {path} not exist")
        per_input = chunks(inputs, len(inputs) // n_in) if len(inputs) >= n_in else []
    elif os.path.isdir(inputs[0]):
        if len(inputs) != n_in:
            raise BenchError(f"Invalid args. args input dir num:{len(inputs)} not equal to model inputs num:{n_in}")
        per_input = [files_of_dir(d) for d in inputs]
        counts = [len(f) for f in per_input]
        if len(set(counts)) != 1:  # the real tool would index past the shorter folder
            raise BenchError(f"input dirs hold different numbers of files: {dict(zip(inputs, counts))}")
    else:
        raise BenchError(f"Invalid args. {inputs[0]}  of --input is invalid")
    if len(per_input) != n_in:
        raise BenchError(f"fileslist:{len(per_input)} intensor:{n_in} not match")
    size0 = len(file_bytes(per_input[0][0]))
    if no_combine:
        per_batch = 1
    elif size0 == 0 or tensor_bytes[0] % size0 != 0:
        raise BenchError(f"arg0 tensorsize: {tensor_bytes[0]} filesize: {size0} not match "
                         f"(file {per_input[0][0]})")
    else:
        per_batch = tensor_bytes[0] // size0
    runcount = math.ceil(len(per_input[0]) / per_batch)
    logger.info(f"get filesperbatch files0 size:{size0} tensor0size:{tensor_bytes[0]} "
                f"filesperbatch:{per_batch} runcount:{runcount}")
    split = [chunks(files, per_batch) for files in per_input]
    return [[split[j][i] for j in range(n_in)] for i in range(runcount)]


def load_tensor(files: list[str], size: int, shape: list[int] | None, dtype: np.dtype, pure: str) -> np.ndarray:
    if files == [PURE_INFER]:
        raw = (np.random.randint(0, 256, size, dtype=np.uint8) if pure == "random"
               else np.zeros(size, dtype=np.uint8)).tobytes()
    else:
        raw = b"".join(file_bytes(files[0] if f == PADDING else f) for f in files)
    if len(raw) != size:
        # Stricter than the real tool, which only checks combined files: a model input has one size.
        raise BenchError(f"ndata size:{len(raw)} not match {size}: input file(s) {', '.join(files)} "
                         f"for shape {shape} {dtype}")
    array = np.frombuffer(raw, dtype=dtype)
    return array if shape is None else array.reshape(shape)


def save(path: str, data: np.ndarray) -> None:
    if path.endswith(".npy"):
        np.save(path, data)
    elif path.endswith(".txt"):
        rows = data.reshape(-1, data.shape[-1] if data.ndim else 1)
        fmt = "%f" if data.dtype in (np.float16, np.float32, np.float64) else "%d"
        with open(path, "w") as f:
            for row in rows:
                f.write("".join(fmt % v + " " for v in row) + "\n")
    else:
        data.tofile(path)


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
            "percentile(99%)": float(np.percentile(a, 99)), "count": len(values)}


def session_shapes(model: OmModel, args: argparse.Namespace) -> list[list[int]] | None:
    """set_session_options: the input shapes at the gear given, the compiled ones for a static OM, or
    None for a dynamic OM run without a gear (set_staticbatch)."""
    if args.dymBatch != 0:
        return model.batch_shapes(args.dymBatch)
    if args.dymDims is not None:
        return model.dims_shapes(args.dymDims)
    if model.is_dynamic:
        return None
    return [list(t.shape) for t in model.inputs]


def run(args: argparse.Namespace, argv0: list[str]) -> None:
    if isinstance(args.device, list):
        raise BenchError("the ais_bench test emulator runs one device; got a device list")
    if args.dymHW or args.dymShape or args.dymShape_range or args.auto_set_dymshape_mode:
        raise BenchError("--dymHW / --dymShape / --dymShape_range / auto_set_dymshape_mode need OMs the "
                         "emulated atc does not make")
    try:
        model = OmModel(args.model)
        logger.info(f"load model {args.model} success")
        shapes = session_shapes(model, args)
    except OmError as exc:
        raise BenchError(str(exc)) from None
    if args.outputSize is not None and len(args.outputSize.split(",")) != len(model.outputs):
        raise BenchError(f"outputSize gives {len(args.outputSize.split(','))} sizes for {len(model.outputs)} outputs")
    if args.batchsize is None:
        # The real get_batchsize: dim 0 of input 0, or the --dymBatch, or input 0's first --dymDims value.
        first = shapes[0] if shapes is not None else model.inputs[0].shape
        args.batchsize = first[0] if first else 1
        logger.info(f"try get model batchsize:{args.batchsize}")
    sizes = (model.max_input_nbytes() if shapes is None
             else [nbytes(s, t.dtype) for s, t in zip(shapes, model.inputs)])

    output_prefix = None
    if args.output is not None:
        dirname = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
        output_prefix = os.path.join(args.output, dirname)
        os.makedirs(output_prefix, 0o755, exist_ok=True)
        logger.info(f"output path:{output_prefix}")

    inputs = [] if args.input is None else args.input.split(",")
    batches = ([[[PURE_INFER] for _ in model.inputs]] if not inputs
               else build_batches(inputs, sizes, args.no_combine_tensor_mode))

    def tensors(batch: list[list[str]], h2d: list[float]) -> list[np.ndarray]:
        out = []
        for files, size, shape, spec in zip(batch, sizes, shapes or [None] * len(sizes), model.inputs):
            t0 = time.perf_counter()
            out.append(load_tensor(files, size, shape, spec.dtype, args.pure_data_type))
            h2d.append((time.perf_counter() - t0) * 1000.0)
        return out

    warm = tensors(batches[0], [])
    if shapes is None:
        raise BenchError("acl execute failed: the OM has dynamic gears and none was set (--dymBatch / --dymDims); "
                         "Execute Infer failed")
    for _ in range(args.warmup_count):
        model.run(warm)
    logger.info(f"warm up {args.warmup_count} done")

    compute, h2d, d2h = [], [], []
    filesinfo: dict[int, dict[str, list[str]]] = {}
    for index, batch in enumerate(batches):
        arrays = tensors(batch, h2d)
        for _ in range(args.loop):  # the session runs the model --loop times per inference
            t0 = time.perf_counter()
            outs = model.run(arrays)
            compute.append((time.perf_counter() - t0) * 1000.0)
        host = []
        for out in outs:
            t0 = time.perf_counter()
            host.append(np.array(out, copy=True))
            d2h.append((time.perf_counter() - t0) * 1000.0)
        if output_prefix is None:
            continue
        per_batch = len(batch[0])
        samples = list(zip(*batch))  # sample j -> its files across model inputs
        for k, out in enumerate(host):
            axis = args.output_batchsize_axis
            if axis >= out.ndim or out.shape[axis] % per_batch != 0:
                raise BenchError(f"save out files error array shape:{out.shape} files_count_perbatch:{per_batch} "
                                 f"output_batchsize_axis:{axis}")
            for j, part in enumerate(np.array_split(out, per_batch, axis)):
                if samples[j][0] == PADDING:
                    continue
                sample_id = index * per_batch + j
                path = os.path.join(output_prefix,
                                    f"{os.path.basename(samples[j][0]).split('.')[0]}_{k}.{args.outfmt.lower()}")
                info = filesinfo.setdefault(sample_id, {"infiles": list(samples[j]), "outfiles": []})
                info["outfiles"].append(path)
                save(path, part)

    npu, h2d_s, d2h_s = stats(compute), stats(h2d), stats(d2h)
    throughput = 0 if npu["mean"] == 0 else 1000 * args.batchsize / npu["mean"]
    summary = {"filesinfo": filesinfo, "args": argv0, "NPU_compute_time": npu, "H2D_latency": h2d_s,
               "D2H_latency": d2h_s, "throughput": throughput, "npu_compute_time_list": compute, "pid": os.getpid()}
    line = "{} (ms): min = {}, max = {}, mean = {}, median = {}, percentile(99%) = {}"
    logger.info("-----------------Performance Summary------------------")
    if args.display_all_summary:
        logger.info(line.format("H2D_latency", *[h2d_s[k] for k in ("min", "max", "mean", "median", "percentile(99%)")]))
    logger.info(line.format("NPU_compute_time", *[npu[k] for k in ("min", "max", "mean", "median", "percentile(99%)")]))
    if args.display_all_summary:
        logger.info(line.format("D2H_latency", *[d2h_s[k] for k in ("min", "max", "mean", "median", "percentile(99%)")]))
    logger.info(f"throughput 1000*batchsize.mean({args.batchsize})/NPU_compute_time.mean({npu['mean']}): {throughput}")
    logger.info("------------------------------------------------------")
    if output_prefix is not None:
        with open(output_prefix + "_summary.json", "w") as f:
            json.dump(summary, f)


def main(argv: list[str]) -> int:
    try:
        args = get_args(argv[1:])
        if args.debug:
            logger.setLevel(logging.DEBUG)
        run(args, argv)
    except BenchError as exc:
        logger.error(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
