"""TEST EMULATOR of torch_aie (Ascend Inference Engine for TorchScript) - not the real tool; used only by tests.

The names used by the ModelZoo scripts: set_device, Input, dtype, PrecisionPolicy, compile. compile()
checks its arguments like the real one, records them, and returns a module that runs the TorchScript
module on the CPU and refuses inputs whose shapes were not compiled (a real compiled graph is static,
or bounded by Input(min_shape=, max_shape=)). There is no NPU here: inputs stay on the CPU.
"""
from __future__ import annotations

import enum
from typing import Any, Sequence

import torch

__version__ = "emulator"

_device_id: int | None = None


def set_device(device_id: int) -> None:
    """Select the NPU; recorded only (compiled modules report it)."""
    global _device_id
    if not isinstance(device_id, int) or device_id < 0:
        raise RuntimeError(f"torch_aie.set_device: invalid device id {device_id!r}")
    _device_id = device_id


class dtype:  # noqa: N801 - the real module spells it this way
    """torch_aie.dtype members, mapped to the torch dtypes they stand for."""
    FLOAT = torch.float32
    FLOAT16 = torch.float16
    INT32 = torch.int32
    INT64 = torch.int64
    BOOL = torch.bool


class PrecisionPolicy(enum.Enum):
    FP16 = "FP16"
    FP32 = "FP32"
    PREF_FP32 = "PREF_FP32"


class Input:
    """A compiled input: a fixed shape, or min_shape/max_shape bounds for a dynamic one."""

    def __init__(self, shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32, *,
                 min_shape: Sequence[int] | None = None, max_shape: Sequence[int] | None = None):
        if shape is None and (min_shape is None or max_shape is None):
            raise ValueError("torch_aie.Input needs shape, or both min_shape and max_shape")
        if shape is not None:
            min_shape = max_shape = shape
        if len(min_shape) != len(max_shape) or any(a > b for a, b in zip(min_shape, max_shape)):
            raise ValueError(f"torch_aie.Input: bad bounds {min_shape} .. {max_shape}")
        self.shape = tuple(int(d) for d in shape) if shape is not None else None
        self.min_shape = tuple(int(d) for d in min_shape)
        self.max_shape = tuple(int(d) for d in max_shape)
        self.dtype = dtype

    def accepts(self, tensor_shape: Sequence[int]) -> bool:
        return len(tensor_shape) == len(self.min_shape) and all(
            lo <= d <= hi for d, lo, hi in zip(tensor_shape, self.min_shape, self.max_shape))

    def __repr__(self) -> str:
        bounds = self.shape if self.shape is not None else f"{self.min_shape}..{self.max_shape}"
        return f"Input({bounds}, dtype={self.dtype})"


class CompiledModule(torch.nn.Module):
    """What compile() returns: callable like the ScriptModule, but only for the compiled shapes."""

    def __init__(self, module: torch.jit.ScriptModule, inputs: list[Input], settings: dict[str, Any]):
        super().__init__()
        self.module = module
        self.compiled_inputs = inputs
        self.settings = settings

    def forward(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) != len(self.compiled_inputs):
            raise RuntimeError(f"torch_aie compiled module expects {len(self.compiled_inputs)} tensor inputs, "
                               f"got {len(tensors)}")
        for i, (t, spec) in enumerate(zip(tensors, self.compiled_inputs)):
            if not spec.accepts(tuple(t.shape)):
                raise RuntimeError(f"torch_aie compiled module: input {i} has shape {tuple(t.shape)}, "
                                   f"but it was compiled for {spec}")
        # FP16 / PREF_FP32 are emulated by running in float32: results are closer to the TorchScript
        # module than a real fp16 NPU graph would be.
        with torch.no_grad():
            return self.module(*args)

    def save(self, path: str) -> None:
        self.module.save(path)


def compile(module: torch.jit.ScriptModule, inputs: list[Input] | None = None,  # noqa: A001 - real name
            precision_policy: PrecisionPolicy = PrecisionPolicy.FP16, allow_tensor_replace_int: bool = False,
            optimization_level: int = 0, soc_version: str = "Ascend310P3", **kwargs: Any) -> CompiledModule:
    if not isinstance(module, torch.jit.ScriptModule):
        raise TypeError(f"torch_aie.compile needs a torch.jit.ScriptModule (trace or script it), "
                        f"got {type(module).__name__}")
    if not inputs or not all(isinstance(i, Input) for i in inputs):
        raise TypeError("torch_aie.compile needs inputs=[torch_aie.Input(...), ...]")
    if not isinstance(precision_policy, PrecisionPolicy):
        raise TypeError(f"precision_policy must be a torch_aie.PrecisionPolicy, got {precision_policy!r}")
    settings = {"precision_policy": precision_policy, "allow_tensor_replace_int": allow_tensor_replace_int,
                "optimization_level": optimization_level, "soc_version": soc_version,
                "device_id": _device_id, **kwargs}
    return CompiledModule(module, list(inputs), settings)
