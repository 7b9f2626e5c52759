"""The benchmark's peer: Hugging Face Optimum's wav2vec2 (ORTModelForCTC), driven over a pipe.

Run by the peer venv's python (scripts/bench.sh --peer makes it from requirements-peer.txt), never
imported by the project: Optimum pins a transformers that cannot share our venv. So this file uses only
the standard library and the peer venv's packages, and imports nothing from the project.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout (anything else the
libraries print goes to stderr). Every reply has "ok"; a failed command replies {"ok": false, "error"}
and the peer keeps serving.
  {"cmd": "export", "model_dir": D, "work": W, "threads": N}
      Optimum's export of the HF directory D (its defaults), plus its dynamic int8 quantisation limited
      to MatMul (Optimum's default operator set fails on wav2vec2); opens both as sessions "fp32", "int8".
  {"cmd": "open", "dir": D, "name": S, "threads": N}   ORTModelForCTC.from_pretrained(D) as session S
  {"cmd": "feed", "path": X.npy}                       the input_values for the next runs
  {"cmd": "run", "session": S}                         one forward; replies {"seconds": t} (timed here)
  {"cmd": "logits", "session": S, "out": Y.npy}        one forward, logits saved
  {"cmd": "quit"}
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    # The same settings as the project's core.ort_session.create_session, so only the graphs differ.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return opts


class Peer:
    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}
        self.input: Any = None

    def open(self, directory: str, name: str, threads: int, file_name: str | None = None) -> dict[str, Any]:
        import torch
        from optimum.onnxruntime import ORTModelForCTC

        torch.set_num_threads(threads)
        kwargs = {"file_name": file_name} if file_name else {}
        self.sessions[name] = ORTModelForCTC.from_pretrained(directory, session_options=_session_options(threads),
                                                             provider="CPUExecutionProvider", **kwargs)
        return {"session": name}

    def export(self, model_dir: str, work: str, threads: int) -> dict[str, Any]:
        from optimum.exporters.onnx import main_export
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        fp32_dir = Path(work) / "optimum_fp32"
        t0 = time.perf_counter()
        main_export(model_dir, output=fp32_dir, task="automatic-speech-recognition", device="cpu",
                    local_files_only=True)
        export_s = time.perf_counter() - t0
        self.open(str(fp32_dir), "fp32", threads)
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False, operators_to_quantize=["MatMul"])
        int8_dir = Path(work) / "optimum_int8"
        ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx").quantize(qconfig, int8_dir)
        self.open(str(int8_dir), "int8", threads, file_name="model_quantized.onnx")  # Optimum's suffix
        return {"sessions": ["fp32", "int8"], "export_s": export_s, "fp32_dir": str(fp32_dir),
                "int8_dir": str(int8_dir), "versions": versions(),
                "int8_config": {"kind": "dynamic", "operators": ["MatMul"], "per_channel": False, "preset": "avx512_vnni"}}

    def forward(self, name: str) -> Any:
        if self.input is None:
            raise ValueError("no input: send a feed command first")
        return self.sessions[name](input_values=self.input).logits

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "export":
            return self.export(req["model_dir"], req["work"], int(req.get("threads", 0)))
        if cmd == "open":
            return self.open(req["dir"], req["name"], int(req.get("threads", 0)))
        if cmd == "feed":
            import numpy as np

            self.input = np.load(req["path"])
            return {"shape": list(self.input.shape)}
        if cmd == "run":
            t0 = time.perf_counter()
            self.forward(req["session"])
            return {"seconds": time.perf_counter() - t0}
        if cmd == "logits":
            import numpy as np

            np.save(req["out"], np.asarray(self.forward(req["session"])))
            return {"out": req["out"]}
        raise ValueError(f"unknown command {cmd!r}")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("optimum", "optimum-onnx", "transformers", "torch", "onnxruntime", "onnx")}


def main() -> int:
    # The replies own the real stdout; whatever the libraries print goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    peer = Peer()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                replies.write(json.dumps({"ok": True}) + "\n")
                return 0
            reply = {"ok": True, **peer.handle(req)}
        except Exception as exc:  # reported to the driver, which decides; the peer keeps serving
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
