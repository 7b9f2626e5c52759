"""TEST EMULATOR of torch_aie (Ascend Inference Engine for TorchScript) - not the real tool; used only by tests.

torch_aie is closed source; this follows how Ascend's own scripts call it (Ascend/ModelZoo-PyTorch,
AscendIE/TorchAIE/contrib/audio/wav2vec2/compile.py and the other AscendIE/TorchAIE/ scripts):
``torch_aie.set_device(0)``, ``torch_aie.compile(ts, inputs=[torch_aie.Input(shape, dtype=torch_aie.dtype.X)],
precision_policy=..., soc_version=...)``, tensors moved with ``.to("npu:0")``, and
``stream = torch_aie.npu.Stream("npu:0")`` / ``with torch_aie.npu.stream(stream): ...; stream.synchronize()``.

compile() checks its arguments like the real one, records them, and returns a module that runs the
TorchScript module on the CPU and refuses inputs whose shapes or dtypes were not compiled (a real
compiled graph is static, or bounded by Input(min_shape=, max_shape=), and has fixed input dtypes).

A minimal ``npu`` device: importing this module makes ``Tensor.to("npu"|"npu:N"|torch.device)``
return a CPU copy that is remembered as living on npu:N (the real package registers the device with
torch); only calls that name an npu device are affected, and those would fail in plain torch. The
device must be selected with set_device(N) first, as on a real NPU, and the compiled module records
where each call's inputs were (``last_input_devices``), so a test can check the NPU path was taken.
"""
from __future__ import annotations

import contextlib
import enum
import re
import weakref
from typing import Any, Iterator, Sequence

import torch

__version__ = "emulator"

_device_id: int | None = None


def set_device(device_id: int) -> None:
    """Select the NPU; recorded only (compiled modules report it)."""
    global _device_id
    if not isinstance(device_id, int) or device_id < 0:
        raise RuntimeError(f"torch_aie.set_device: invalid device id {device_id!r}")
    _device_id = device_id


# --- the npu device -------------------------------------------------------------------------------------

_NPU = re.compile(r"npu(?::(\d+))?")
_on_npu: dict[int, int] = {}  # id(tensor) -> npu index, for tensors moved with .to("npu:N")
# The unpatched Tensor.to, also when this module is imported again (tests drop it from sys.modules).
_plain_to = getattr(torch.Tensor.to, "_plain_to", torch.Tensor.to)


def _npu_index(device: Any) -> int | None:
    """The npu index a .to() device argument names, or None for any other device."""
    if isinstance(device, torch.device):
        device = str(device)
    if isinstance(device, str):
        m = _NPU.fullmatch(device)
        if m:
            return int(m.group(1) or 0)
    return None


def _check_device(index: int) -> None:
    if _device_id is None:
        raise RuntimeError("npu device used before torch_aie.set_device(): no NPU context is set")
    if index != _device_id:
        raise RuntimeError(f"npu:{index} is not the device set with torch_aie.set_device({_device_id})")


def device_of(tensor: torch.Tensor) -> str:
    """"npu:N" for a tensor moved there through this module, else its torch device."""
    index = _on_npu.get(id(tensor))
    return f"npu:{index}" if index is not None else str(tensor.device)


def _mark(tensor: torch.Tensor, index: int) -> torch.Tensor:
    _on_npu[id(tensor)] = index
    weakref.finalize(tensor, _on_npu.pop, id(tensor), None)
    return tensor


def _to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    device = kwargs.get("device", args[0] if args else None)
    index = _npu_index(device)
    if index is None:
        return _plain_to(self, *args, **kwargs)
    _check_device(index)
    rest = {k: v for k, v in kwargs.items() if k != "device"}
    moved = _plain_to(self, "cpu", *args[1:], copy=True, **{k: v for k, v in rest.items() if k != "copy"})
    return _mark(moved, index)


_to._plain_to = _plain_to  # type: ignore[attr-defined]
torch.Tensor.to = _to  # type: ignore[method-assign]


class _NpuNamespace:
    """torch_aie.npu: Stream, stream(), default_stream(), current_stream()."""

    class Stream:
        def __init__(self, device: str | torch.device = "npu:0") -> None:
            index = _npu_index(device)
            if index is None:
                raise RuntimeError(f"torch_aie.npu.Stream: {device!r} is not an npu device")
            _check_device(index)
            self.device = f"npu:{index}"
            self.synchronized = 0

        def synchronize(self) -> None:
            """Work runs eagerly on the CPU here, so there is nothing to wait for; counted for tests."""
            self.synchronized += 1

    def __init__(self) -> None:
        self._current: list[_NpuNamespace.Stream] = []

    @contextlib.contextmanager
    def stream(self, s: "_NpuNamespace.Stream") -> Iterator["_NpuNamespace.Stream"]:
        if not isinstance(s, _NpuNamespace.Stream):
            raise TypeError(f"torch_aie.npu.stream needs a torch_aie.npu.Stream, got {type(s).__name__}")
        self._current.append(s)
        try:
            yield s
        finally:
            self._current.pop()

    def default_stream(self) -> "_NpuNamespace.Stream":
        return self.Stream(f"npu:{_device_id if _device_id is not None else 0}")

    def current_stream(self) -> "_NpuNamespace.Stream":
        return self._current[-1] if self._current else self.default_stream()


npu = _NpuNamespace()


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
        self.last_input_devices: list[str] = []

    def forward(self, *args: Any) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) != len(self.compiled_inputs):
            raise RuntimeError(f"torch_aie compiled module expects {len(self.compiled_inputs)} tensor inputs, "
                               f"got {len(tensors)}")
        for i, (t, spec) in enumerate(zip(tensors, self.compiled_inputs)):
            if not spec.accepts(tuple(t.shape)):
                raise RuntimeError(f"torch_aie compiled module: input {i} has shape {tuple(t.shape)}, "
                                   f"but it was compiled for {spec}")
            if t.dtype != spec.dtype:
                raise RuntimeError(f"torch_aie compiled module: input {i} has dtype {t.dtype}, "
                                   f"but it was compiled for {spec}")
        self.last_input_devices = [device_of(t) for t in tensors]
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
