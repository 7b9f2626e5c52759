"""torch_aie backend: the TorchScript trace compiled for an Ascend NPU, as the wav2vec2 ModelZoo guide does.

The guide compiles with `torch_aie.compile(ts, inputs=[torch_aie.Input((bs, 100000))],
precision_policy=FP16, allow_tensor_replace_int=True, optimization_level=0, soc_version=...)`, runs
on `npu:0` inside a `torch_aie.npu.Stream`, and reports fps from 10 warm-up and 100 timed runs of one
batch kept on the device (compute only). This backend does the same at start-up (`guide_fps` in
run.json) and then serves the generic run loop, whose timing includes host<->device copies (end to end).

The compiled model has a static shape, so the card it runs with has its batch and time fixed
(see `static_card`); the run loop pads every batch to it, as the guide's preprocessing does. Each
`torch_aie.Input` carries the card's dtype (`torch_aie.dtype.FLOAT` / `INT32` ..., as the DeepSpeech2
TorchAIE guide compiles its int32 lengths input), and the inputs are built with it.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.model_card import ModelCard
from core.run_dir import RunError

# card dtype -> the torch_aie.dtype member and the torch dtype of the tensors fed to the compiled model
DTYPES = {"float32": ("FLOAT", torch.float32), "float16": ("FLOAT16", torch.float16),
          "int32": ("INT32", torch.int32), "int64": ("INT64", torch.int64), "bool": ("BOOL", torch.bool)}

INSTALL_HINT = ("torch_aie (Ascend Inference Engine for PyTorch) is installed from the Ascend torch-aie wheel that "
                "matches your CANN and torch versions; `source /usr/local/Ascend/ascend-toolkit/set_env.sh` too.")


def import_torch_aie() -> Any:
    try:
        import torch_aie
    except ImportError as exc:
        raise RunError(f"cannot import torch_aie ({exc}). {INSTALL_HINT}") from None
    return torch_aie


def static_card(card: ModelCard, batch: int, length: int) -> ModelCard:
    """The card with batch and time fixed, as the compiled model takes them."""
    inputs = []
    for spec in card.inputs:
        shape = list(spec.shape)
        shape[0] = batch
        if spec.time_axis is not None:
            shape[spec.time_axis] = length
        inputs.append(dataclasses.replace(spec, shape=tuple(shape)))
    return card.replace(inputs=tuple(inputs))


def torchscript_path(model: Path, card: ModelCard) -> Path:
    """The TorchScript trace the export wrote beside the ONNX file (or `model` itself if it is one)."""
    if model.suffix == ".pt":
        return model
    ts = card.torchscript
    if ts is None:
        raise RunError(f"the card of {model} records no TorchScript trace; export with --torchscript")
    path = model.parent / ts.file
    if not path.is_file():
        raise RunError(f"TorchScript trace not found: {path}")
    return path


class TorchAieBackend:
    name = "torch_aie"

    def __init__(self, model: Path, card: ModelCard, *, batch_size: int, length: int,
                 soc_version: str = "Ascend310P3", device: str = "npu:0", guide_loops: int = 100,
                 guide_warmup: int = 10) -> None:
        self.aie = import_torch_aie()
        self.device = device
        self.input_names = [i.name for i in card.inputs]
        self.output_names = [o.name for o in card.outputs]
        self.output_dtypes = [o.dtype for o in card.outputs]
        ts_path = torchscript_path(Path(model), card)
        index = int(device.split(":")[1]) if ":" in device else 0
        self.aie.set_device(index)
        # The card the run loop must use: every batch padded to the compiled shape.
        self.card = static_card(card, batch_size, length)
        shapes = [tuple(spec.shape) for spec in self.card.inputs]
        unknown = sorted({spec.dtype for spec in self.card.inputs} - set(DTYPES))
        if unknown:
            raise RunError(f"torch_aie: no torch_aie.dtype for input dtype(s) {unknown} (known: {sorted(DTYPES)})")
        self.input_dtypes = [DTYPES[spec.dtype][1] for spec in self.card.inputs]
        inputs = [self.aie.Input(s, dtype=getattr(self.aie.dtype, DTYPES[spec.dtype][0]))
                  for s, spec in zip(shapes, self.card.inputs)]
        scripted = torch.jit.load(str(ts_path)).eval()
        t0 = time.perf_counter()
        self.compiled = self.aie.compile(
            scripted, inputs=inputs, precision_policy=self.aie.PrecisionPolicy.FP16,
            allow_tensor_replace_int=True, optimization_level=0, soc_version=soc_version)
        compile_s = time.perf_counter() - t0
        self.stream = self.aie.npu.Stream(device) if device.startswith("npu") else None
        self._info = {"torch_aie": getattr(self.aie, "__version__", "unknown"), "torch": torch.__version__,
                      "device": device, "soc_version": soc_version, "precision_policy": "FP16",
                      "optimization_level": 0, "compiled_input_shapes": [list(s) for s in shapes],
                      "torchscript": str(ts_path), "compile_s": round(compile_s, 3)}
        self._info["guide_fps"] = self._guide_fps(shapes, length, batch_size, guide_warmup, guide_loops)

    def _sync_context(self) -> Any:
        return self.aie.npu.stream(self.stream) if self.stream is not None else nullcontext()

    def _forward(self, tensors: list[torch.Tensor]) -> Any:
        with self._sync_context():
            out = self.compiled(*tensors)
            if self.stream is not None:
                self.stream.synchronize()
        return out

    def _guide_fps(self, shapes: list[tuple[int, ...]], length: int, batch: int, warmup: int,
                   loops: int) -> dict[str, Any]:
        """The guide's figure: one batch kept on the device, compute only (zeros; lengths = the full length)."""
        tensors = [(torch.full(s, length, dtype=dtype) if spec.role == "lengths"
                    else torch.zeros(s, dtype=dtype)).to(self.device)
                   for s, dtype, spec in zip(shapes, self.input_dtypes, self.card.inputs)]
        for _ in range(warmup):
            self._forward(tensors)
        t0 = time.perf_counter()
        for _ in range(loops):
            self._forward(tensors)
        seconds = time.perf_counter() - t0
        return {"fps": loops * batch / seconds if seconds > 0 else None, "warmup": warmup, "loops": loops,
                "what": "loops * batch / time of `loops` forward passes of one on-device batch (compute only)"}

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(inputs[n]).to(self.device, dtype)
                   for n, dtype in zip(self.input_names, self.input_dtypes)]
        result = self._forward(tensors)
        if isinstance(result, dict):  # the guide's strict=False trace returns the HF output dict
            result = (result["logits"],)
        elif isinstance(result, torch.Tensor):
            result = (result,)
        # FP16 policy: outputs may come back as half; the run dir holds the card's dtypes.
        return {n: t.to("cpu").numpy().astype(d, copy=False)
                for n, d, t in zip(self.output_names, self.output_dtypes, result)}

    def info(self) -> dict[str, Any]:
        return dict(self._info)
