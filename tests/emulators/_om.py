"""TEST EMULATOR helper for the emulated Ascend OM format - not the real tool; used only by tests.

The emulated ``atc`` writes an "OM" that is really an ONNX model: the static dims of ``--input_shape``
are written into the graph inputs and ``metadata_props`` record what a real OM knows about itself
(soc_version, the compiled input shapes, the dynamic batch / dims gears). The emulated ``msame`` and
``ais_bench`` read that metadata back through onnxruntime so they can refuse inputs of the wrong size,
as the real runtimes do (a real OM only takes its compiled size, or one gear chosen with
--dymBatch / --dymDims), and size buffers for the largest gear as ACL does (aclmdlGetInputSizeByIndex /
aclmdlGetOutputSizeByIndex, used by Ascend/tools msame/src/model_process.cpp CreateOutput and by
ais-bench_workload/tool/ais_bench/backend/base/module/ModelInfer/ModelInferenceProcessor.cpp).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

EMULATOR_TAG = "atc"

# onnxruntime's type strings -> numpy; the OM keeps the ONNX input/output dtypes.
ORT_TO_NUMPY: dict[str, type] = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16, "tensor(int32)": np.int32, "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


class OmError(Exception):
    """A model or a dynamic-gear choice the emulated runtime refuses."""


def parse_shape_list(text: str) -> list[tuple[str, list[int]]]:
    """'a:1,3,224;b:1' -> [('a', [1, 3, 224]), ('b', [1])]; names may hold ':' so split on the last one."""
    result: list[tuple[str, list[int]]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        if ":" not in part:
            raise ValueError(f"'{part}' is not name:dims")
        name, dims = part.rsplit(":", 1)
        result.append((name, [int(d) for d in dims.split(",") if d.strip() != ""]))
    return result


def parse_gears(text: str) -> list[list[int]]:
    """'1,621,1;8,621,8' -> [[1, 621, 1], [8, 621, 8]] (atc's --dynamic_dims / msame's list syntax)."""
    return [[int(v) for v in g.split(",") if v.strip() != ""] for g in text.split(";") if g.strip()]


@dataclass
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: list[int]  # -1 where the OM has a dynamic (gear) dim


class OmModel:
    """An emulated OM opened for inference (the onnxruntime session plus the atc metadata)."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise OmError(f"model file {path} does not exist")
        opts = ort.SessionOptions()
        # One thread: the emulators stand in for a device, not for a CPU benchmark.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not an OM"
            raise OmError(f"{path} is not an OM written by the emulated atc ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("emulator") != EMULATOR_TAG:
            raise OmError(f"{path} is not an OM written by the emulated atc (no emulator=atc metadata)")
        self.meta = meta
        self.soc_version = meta.get("soc_version", "")
        compiled = {name: dims for name, dims in json.loads(meta["input_shapes"])}
        # The order in which atc's --input_shape named the inputs decides which -1 a gear value fills.
        self.shape_order: list[str] = [name for name, _ in json.loads(meta["input_shapes"])]
        self.inputs = [TensorSpec(i.name, np.dtype(ORT_TO_NUMPY[i.type]),
                                  list(compiled.get(i.name, i.shape))) for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, np.dtype(ORT_TO_NUMPY[o.type]),
                                   [d if isinstance(d, int) else -1 for d in o.shape])
                        for o in self.session.get_outputs()]
        self.batch_gears = [int(b) for b in meta.get("dynamic_batch_size", "").split(",") if b.strip()]
        self.dims_gears = parse_gears(meta.get("dynamic_dims", ""))
        self.output_type = meta.get("output_type", "")
        self._max_out: list[int] | None = None

    @property
    def is_dynamic(self) -> bool:
        return bool(self.batch_gears or self.dims_gears)

    def gear_shapes(self, gear: list[int]) -> dict[str, list[int]]:
        """Fill the -1 dims with a --dynamic_dims gear, walking inputs in --input_shape order."""
        values = iter(gear)
        by_name = {t.name: t for t in self.inputs}
        return {name: [next(values) if d == -1 else d for d in by_name[name].shape] for name in self.shape_order}

    def max_batch(self) -> int:
        """The largest --dynamic_batch_size gear (0 for other OMs), as aclmdlGetDynamicBatch reports it."""
        return max(self.batch_gears, default=0)

    def batch_shapes(self, dym_batch: int) -> list[list[int]]:
        """The input shapes at a --dymBatch gear; the real tools' messages for a gear the OM lacks."""
        if not self.batch_gears:
            raise OmError("the dynamic_batch_size parameter is not specified for model conversion")
        if dym_batch not in self.batch_gears:
            raise OmError("the dymBatch parameter is not correct; model has dynamic batch size:{"
                          + "".join(f"[{b}]" for b in self.batch_gears) + "}, please set correct dynamic batch size")
        return [[dym_batch if d == -1 else d for d in t.shape] for t in self.inputs]

    def dims_shapes(self, dym_dims: str) -> list[list[int]]:
        """The input shapes at a --dymDims gear: like msame's CheckDynamicDims, the flattened values given
        (names ignored) must equal one gear's full flattened dims."""
        if not self.dims_gears:
            raise OmError("the dynamic_dims parameter is not specified for model conversion")
        wanted = [d for _, dims in parse_shape_list(dym_dims) for d in dims]
        for gear in self.dims_gears:
            shapes = self.gear_shapes(gear)
            if [d for name in self.shape_order for d in shapes[name]] == wanted:
                return [shapes.get(t.name, t.shape) for t in self.inputs]
        raise OmError("the dynamic_dims parameter is not correct; model gears: "
                      + "; ".join(str(self.gear_shapes(g)) for g in self.dims_gears))

    def all_gear_shapes(self) -> list[list[list[int]]]:
        """Input shapes of every gear (one entry, the compiled shapes, for a static OM)."""
        if self.batch_gears:
            return [self.batch_shapes(b) for b in self.batch_gears]
        if self.dims_gears:
            return [[self.gear_shapes(g).get(t.name, t.shape) for t in self.inputs] for g in self.dims_gears]
        return [[list(t.shape) for t in self.inputs]]

    def max_input_nbytes(self) -> list[int]:
        """aclmdlGetInputSizeByIndex: a dynamic OM's input buffers are sized for its largest gear."""
        return [max(nbytes(shapes[i], t.dtype) for shapes in self.all_gear_shapes())
                for i, t in enumerate(self.inputs)]

    def max_output_nbytes(self) -> list[int]:
        """aclmdlGetOutputSizeByIndex: each output's size at the gear where it is largest.

        The real atc knows the output shapes at compile time; here every gear is run once on dummy
        inputs (integers 1, so length inputs stay valid) to learn them.
        """
        if self._max_out is None:
            sizes = [0] * len(self.outputs)
            for shapes in self.all_gear_shapes():
                arrays = [np.ones(s, dtype=t.dtype) if np.issubdtype(t.dtype, np.integer)
                          else np.zeros(s, dtype=t.dtype) for s, t in zip(shapes, self.inputs)]
                for k, out in enumerate(self.run(arrays)):
                    sizes[k] = max(sizes[k], out.nbytes)
            self._max_out = sizes
        return self._max_out

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {t.name: a for t, a in zip(self.inputs, arrays)}
        outs = self.session.run(None, feeds)
        if self.output_type in ("FP16", "FP32"):
            # atc --output_type sets the dtype of float outputs; the computation itself stays fp32 here.
            target = np.float16 if self.output_type == "FP16" else np.float32
            outs = [o.astype(target) if np.issubdtype(o.dtype, np.floating) else o for o in outs]
        return [np.ascontiguousarray(o) for o in outs]


def nbytes(shape: list[int], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
