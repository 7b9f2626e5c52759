"""The embedded default backend: ONNX Runtime on the CPU (other providers when installed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from runners.ort import create_session


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model_path: Path, card: dict[str, Any], *, threads: int = 0, inter_threads: int = 1,
                 providers: Sequence[str] | None = None, graph_level: str = "all") -> None:
        self.session = create_session(model_path, threads=threads, inter_threads=inter_threads,
                                      providers=providers, graph_level=graph_level)
        self.output_names = [o["name"] for o in card["outputs"]]
        self._info = {
            "onnxruntime": ort.__version__,
            "providers": self.session.get_providers(),
            "intra_op_threads": threads,
            "inter_op_threads": inter_threads,
            "graph_optimization_level": graph_level,
        }

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))

    def info(self) -> dict[str, Any]:
        return dict(self._info)
