"""The roofline model of a benchmark row: how many bytes a forward pass moves, its arithmetic intensity,
and how close a measured time comes to the roof that binds at that intensity.

Roofs are the machine's measured fp32 GEMM peak (compute) and STREAM triad bandwidth (memory); the
attainable rate at intensity I (FLOP/byte) is min(peak, bandwidth * I). A point left of the ridge
(peak / bandwidth) is memory-bound: only moving fewer bytes makes it faster. A point right of it is
compute-bound: only fewer or faster FLOPs do.

A third roof, the triad bandwidth of the last-level cache, is given when measured: bytes are counted as
if every re-read came from memory, so a point that attains more GB/s than the memory roof has been fed
partly from cache (an RNN's recurrent matrices re-read every frame, when they fit), and it is judged against
that cache roof instead, its bound "cache".

Bytes moved are counted on the ONNX graph (see `graph_traffic`), FLOPs come from the caller (the
benchmark uses torch's FlopCounterMode on the reference module), so every backend of one model and batch
sits at the same intensity and differs only in attained rate. int8 graphs move fewer weight bytes but
are still compared with the fp32 compute roof (no int8 GEMM peak is measured), so their fraction can
exceed 1.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

# Ops that read their recurrent weight matrix R (input 2) once per time step: at a realistic hidden size
# it does not stay in cache from one step to the next, so it is streamed from memory every step.
RECURRENT_OPS = {"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"}
# Initializers at least this large are replaced by typed graph inputs before shape inference, so that
# inferring shapes of a large model does not copy its weights (small ones may be shape constants).
_STRIP_ELEMENTS = 1024


@dataclass
class Traffic:
    """Bytes one forward pass moves, by the approximation in `graph_traffic`."""

    weight_bytes: int  # every initializer read once (recurrent R matrices counted in recurrent_bytes)
    recurrent_bytes: int  # recurrent weight matrices, once per time step
    activation_bytes: int  # every node reads its non-constant inputs and writes its outputs once
    unknown_tensors: int  # activations whose shape could not be inferred (not counted)

    @property
    def total(self) -> int:
        return self.weight_bytes + self.recurrent_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total}


def _elem_size(elem_type: int) -> int:
    return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)


def _nbytes(dims: Sequence[int], elem_type: int) -> int:
    return int(np.prod(dims, dtype=np.int64)) * _elem_size(elem_type)


def _with_fixed_inputs(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> tuple[onnx.ModelProto, dict[str, tuple[list[int], int]]]:
    """A copy whose inputs have the given concrete shapes and whose large weights are bare typed inputs."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    known = {i.name for i in graph.input}
    missing = set(input_shapes) - known
    if missing:
        raise ValueError(f"input_shapes names {sorted(missing)}, but the graph's inputs are {sorted(known)}")
    for inp in graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            shape = list(input_shapes[inp.name])
            if len(dims) != len(shape):
                raise ValueError(f"input {inp.name!r} has rank {len(dims)}, shape given: {shape}")
            for d, n in zip(dims, shape):
                d.Clear()
                d.dim_value = int(n)
    weights: dict[str, tuple[list[int], int]] = {}
    kept = []
    for init in graph.initializer:
        weights[init.name] = (list(init.dims), init.data_type)
        if int(np.prod(init.dims, dtype=np.int64)) >= _STRIP_ELEMENTS:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # Shapes recorded by the exporter (some without a shape at all) are inferred afresh.
    del graph.value_info[:]
    return copy, weights


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's symbolic shape inference (it follows Shape/Reshape chains of exported transformers
    that onnx's own inference leaves symbolic); ops it does not know get outputs of unknown size."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            # Its outputs are shaped as LSTM's (the leading 8 inputs are LSTM's; the rest are scales and
            # zero points); the inference has no rule for the contrib op itself.
            node.op_type, node.domain = "LSTM", ""
            del node.input[8:]
    # On failure it saves the half-inferred model into the working directory: keep that out of the user's.
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        try:
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=True)
        except Exception:  # e.g. opset-18 reductions whose axes are an input (Optimum's exports): onnx's own
            # inference with data propagation follows those; what neither can size is counted as unknown.
            return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def graph_traffic(model_path: Path | str, input_shapes: Mapping[str, Sequence[int]]) -> Traffic:
    """Bytes moved by one forward pass of an ONNX graph with inputs of the given shapes.

    The approximation, stated: weights are every initializer's bytes in its stored dtype, read once
    (an int8 graph therefore moves a quarter of the fp32 weight bytes), except recurrent weight
    matrices (input R of LSTM/GRU/RNN), read once per time step. Activations: every node of the
    unfused graph reads each non-constant input and writes each output once, sizes from shape
    inference at these input shapes. Runtimes fuse elementwise chains and keep small tensors in cache,
    so activation bytes are an upper bound of what reaches memory; weights of a model larger than the
    last-level cache really are streamed from memory.
    """
    model = onnx.load(str(model_path))
    fixed, weights = _with_fixed_inputs(model, input_shapes)
    inferred = _infer_shapes(fixed)
    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if all(d is not None for d in dims):
            shapes[vi.name] = ([int(d) for d in dims], tt.elem_type)
    weight_bytes = sum(_nbytes(dims, t) for dims, t in weights.values())
    recurrent = 0
    activation = 0
    unknown: set[str] = set()
    for node in inferred.graph.node:
        if node.op_type in RECURRENT_OPS and len(node.input) > 2 and node.input[2] in weights:
            x = shapes.get(node.input[0])
            layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
            if x is None:
                unknown.add(node.input[0])
            else:
                steps = x[0][1] if layout else x[0][0]
                r_bytes = _nbytes(*weights[node.input[2]])
                # The initializer pass already read R once; the other steps re-read it.
                recurrent += r_bytes * max(steps - 1, 0)
        if node.op_type == "Constant":
            continue
        for name in [*node.input, *node.output]:
            if not name or name in weights:
                continue
            if name in shapes:
                activation += _nbytes(*shapes[name])
            else:
                unknown.add(name)
    return Traffic(weight_bytes, recurrent, activation, len(unknown))


def ridge_intensity(peak_gflops: float, bandwidth_gbs: float) -> float:
    """FLOP/byte where the bandwidth roof meets the compute roof."""
    return peak_gflops / bandwidth_gbs


def attainable_gflops(intensity: float, peak_gflops: float, bandwidth_gbs: float) -> float:
    return min(peak_gflops, bandwidth_gbs * intensity)


def roofline_point(flops: float, nbytes: float, seconds: float, peak_gflops: float,
                   bandwidth_gbs: float, cache_bandwidth_gbs: float | None = None) -> dict[str, Any]:
    """Where one measurement sits: intensity, attained rates, the binding roof and the share of it reached.

    A memory-bound point faster than the memory roof allows is judged against the cache roof
    (`cache_bandwidth_gbs`, the last-level cache's triad) when one is given."""
    if flops <= 0 or nbytes <= 0 or seconds <= 0 or peak_gflops <= 0 or bandwidth_gbs <= 0 or \
            (cache_bandwidth_gbs is not None and cache_bandwidth_gbs <= 0):
        raise ValueError(f"roofline needs positive numbers: flops={flops}, bytes={nbytes}, seconds={seconds}, "
                         f"peak={peak_gflops}, bandwidth={bandwidth_gbs}, cache bandwidth={cache_bandwidth_gbs}")
    intensity = flops / nbytes
    gflops, gbs = flops / seconds / 1e9, nbytes / seconds / 1e9
    bound = "compute" if intensity >= ridge_intensity(peak_gflops, bandwidth_gbs) else "memory"
    roof = attainable_gflops(intensity, peak_gflops, bandwidth_gbs)
    if bound == "memory" and cache_bandwidth_gbs and gbs > bandwidth_gbs:
        roof = attainable_gflops(intensity, peak_gflops, cache_bandwidth_gbs)
        bound = "cache" if roof < peak_gflops else "compute"
    point = {
        "flops": flops,
        "bytes": nbytes,
        "intensity_flop_per_byte": intensity,
        "attained_gflops": gflops,
        "attained_gbs": gbs,
        "bound": bound,
        "roof_gflops": roof,
        "fraction_of_roof": gflops / roof,
    }
    if cache_bandwidth_gbs:
        point["cache_bandwidth_gbs"] = cache_bandwidth_gbs
    return point

