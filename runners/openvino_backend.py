"""OpenVINO on the CPU, from the same ONNX file and card as the onnxruntime backend.

The CPU plugin is compiled with explicit properties, and run.json records them as read back from the
compiled model. The precision hint matters: left alone, OpenVINO runs bf16 on CPUs with AMX or
avx512_bf16, so an "fp32" row would silently not be fp32. The default here is
f32; the value the compiled model reports is the one recorded.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.model_card import ModelCard
from core.run_dir import RunError

PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("LATENCY", "THROUGHPUT")
REQUIREMENT = "openvino==2026.4.1"
SEQUENCE_OPS = ("LSTMSequence", "GRUSequence", "RNNSequence")
log = logging.getLogger("runners")


def import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise RunError(f"the openvino backend needs the 'openvino' package ({REQUIREMENT} in requirements.txt): "
                       f"pip install {REQUIREMENT} ({exc})") from exc
    return openvino


def _plain(value: Any) -> Any:
    """A property value as JSON: OpenVINO types and enums by their names."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if hasattr(value, "name") and not isinstance(value, (str, int, float, bool)):
        return value.name
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def reverse_sequence_ops(model: Any) -> list[str]:
    """Names of the RNN sequence ops with a reverse direction (where the CPU plugin ignores sequence lengths)."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in SEQUENCE_OPS and op.get_attributes().get("direction") in ("reverse", "bidirectional"):
            found.append(op.get_friendly_name())
    return found


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model_path: Path, card: ModelCard, *, threads: int = 0, precision: str = "f32",
                 hint: str = "LATENCY", device: str = "CPU") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision must be one of {PRECISIONS}, not {precision!r}")
        if hint not in HINTS:
            raise ValueError(f"OpenVINO performance hint must be one of {HINTS}, not {hint!r}")
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"ONNX model not found: {model_path}")
        ov = import_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.core = ov.Core()
        model = self.core.read_model(str(model_path))  # symbolic batch/time dims stay dynamic
        reverse_rnns = reverse_sequence_ops(model)
        if reverse_rnns:
            log.warning("%s has %d reverse/bidirectional RNN ops: OpenVINO %s's CPU plugin ignores their sequence "
                        "lengths in the reverse direction, so at batch > 1 a sample shorter than its batch gets "
                        "the padding through its backward RNN and differs from onnxruntime/torch (batch 1 is "
                        "exact)", model_path, len(reverse_rnns), ov.__version__.split("-")[0])
        config = {
            props.inference_num_threads: int(threads),  # 0: the plugin's default
            hints.performance_mode: getattr(hints.PerformanceMode, hint),
            hints.inference_precision: getattr(ov.Type, precision),
        }
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise RunError(f"OpenVINO could not compile {model_path} for {device}: {exc}") from exc
        self.request = self.compiled.create_infer_request()

        self.inputs = {}
        for spec in card.inputs:
            port = self._port(self.compiled.inputs, spec.name, "input", model_path)
            self.inputs[spec.name] = port
        self.outputs = [(spec.name, np.dtype(spec.dtype),
                         self._port(self.compiled.outputs, spec.name, "output", model_path))
                        for spec in card.outputs]

        def read(prop: Any) -> Any:
            try:
                return _plain(self.compiled.get_property(prop))
            except RuntimeError:
                return None

        self._info = {
            "openvino": ov.get_version(),
            "device": device,
            "device_full_name": _plain(self.core.get_property(device, props.device.full_name)),
            "execution_devices": read(props.execution_devices),
            "requested": {"inference_num_threads": int(threads), "performance_hint": hint,
                          "inference_precision_hint": precision},
            # as the compiled model reports them: what actually runs
            "inference_num_threads": read(props.inference_num_threads),
            "performance_hint": read(hints.performance_mode),
            "inference_precision_hint": read(hints.inference_precision),
            "num_streams": read(props.num_streams),
            "reverse_rnn_ops": len(reverse_rnns),
            "optimal_number_of_infer_requests": read(props.optimal_number_of_infer_requests),
        }

    @staticmethod
    def _port(ports: Any, name: str, kind: str, model_path: Path) -> Any:
        for port in ports:
            if name in port.get_names():
                return port
        names = [sorted(p.get_names()) for p in ports]
        raise RunError(f"{model_path}: the card's {kind} {name!r} is not among the model's {kind}s {names}")

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {self.inputs[name]: np.ascontiguousarray(array) for name, array in inputs.items()}
        results = self.request.infer(feed)
        return {name: np.asarray(results[port]).astype(dtype, copy=False) for name, dtype, port in self.outputs}

    def info(self) -> dict[str, Any]:
        return dict(self._info)
