"""A TorchScript trace beside the ONNX file, for runtimes that compile TorchScript (torch_aie on Ascend).

The trace is checked against eager PyTorch on the same sweep the ONNX parity gate uses, so a trace
that baked in a shape or a branch is caught here rather than on the device.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.recipe import LoadedModel


def export_torchscript(model: LoadedModel, out_path: Path) -> dict[str, Any]:
    """Trace at the first sweep length, save, reload, and compare with eager over every sweep length."""
    lengths = model.parity_lengths
    example = model.make_inputs([lengths[-1]], None)
    args = tuple(example[s.name] for s in model.inputs)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.module, args, check_trace=False, strict=False)
    tmp = out_path.with_name(out_path.name + ".tmp")
    traced.save(str(tmp))
    tmp.replace(out_path)
    loaded = torch.jit.load(str(out_path))
    worst = 0.0
    cases = []
    for n in lengths:
        inputs = model.make_inputs([n], None)
        call = tuple(inputs[s.name] for s in model.inputs)
        with torch.no_grad():
            ref, got = model.module(*call), loaded(*call)
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = got if isinstance(got, (tuple, list)) else (got,)
        diff = max(float(np.abs(r.numpy().astype(np.float64) - g.numpy().astype(np.float64)).max())
                   for r, g in zip(ref, got) if r.is_floating_point())
        worst = max(worst, diff)
        cases.append({"length": n, "max_abs": diff})
    passed = worst <= model.atol
    if not passed:
        raise RuntimeError(f"TorchScript trace {out_path} differs from eager PyTorch: max abs {worst:.3g} > "
                           f"atol {model.atol}")
    return {"file": out_path.name, "traced_at_length": lengths[-1], "max_abs": worst, "atol": model.atol,
            "cases": cases, "passed": passed}
