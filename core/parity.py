"""The parity gate: an exported graph is used only after it matches PyTorch over a sweep of shapes.

Cases: every sweep length alone at batch 1, all of them in one padded batch, and the same batch in
another order with a duplicate (so that sorting inside the graph cannot hide behind sorted input).
For outputs with a time axis only each row's valid frames are compared (the frames past a row's
length are padding, whose values no consumer reads). Beside the ONNX-vs-PyTorch numbers, every padded
batch row is also compared with the ONNX graph run on that row alone at batch 1: a padded batch must
give each utterance the same result as batch size 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.recipe import LoadedModel
from core.ort_session import create_session

# Relative differences are only meaningful where the reference is not ~0 (probabilities of 1e-9 vs
# 2e-9 are equal for every purpose); below this magnitude only the absolute difference counts.
REL_FLOOR = 1e-3


class ParityError(RuntimeError):
    """Raised when an exported graph does not match its PyTorch reference; carries the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Diff:
    """Differences of one output. NaN compares false with everything (max() keeps the old maximum,
    `err > tol` is False), so non-finite values are counted first and always mismatch; the max abs/rel
    numbers cover the elements that are finite on both sides."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatched: int = 0
    compared: int = 0
    nonfinite_reference: int = 0
    nonfinite_output: int = 0

    def add(self, got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> None:
        got = got.astype(np.float64)
        ref = ref.astype(np.float64)
        if got.shape != ref.shape:
            raise ValueError(f"shape {got.shape} != reference {ref.shape}")
        if ref.size == 0:
            return
        finite_ref, finite_got = np.isfinite(ref), np.isfinite(got)
        self.nonfinite_reference += int((~finite_ref).sum())
        self.nonfinite_output += int((~finite_got).sum())
        both = finite_ref & finite_got
        self.mismatched += int((~both).sum())
        self.compared += int(ref.size)
        if not both.any():
            return
        got, ref = got[both], ref[both]
        err = np.abs(got - ref)
        self.max_abs = max(self.max_abs, float(err.max()))
        big = np.abs(ref) >= REL_FLOOR
        if big.any():
            self.max_rel = max(self.max_rel, float((err[big] / np.abs(ref[big])).max()))
        self.mismatched += int((err > atol + rtol * np.abs(ref)).sum())

    def nonfinite_text(self) -> str:
        """'' when every value was finite, else how many were not, on which side."""
        parts = []
        if self.nonfinite_reference:
            parts.append(f"{self.nonfinite_reference} non-finite values in the PyTorch reference")
        if self.nonfinite_output:
            parts.append(f"{self.nonfinite_output} non-finite values in the ONNX output")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "mismatched": self.mismatched,
                "compared": self.compared, "nonfinite_reference": self.nonfinite_reference,
                "nonfinite_output": self.nonfinite_output}


def _valid_rows(model: LoadedModel, outputs: dict[str, np.ndarray],
                input_lengths: list[int]) -> dict[str, list[np.ndarray]]:
    """Split each output into per-row arrays cut to the row's valid length along its time axis."""
    rows: dict[str, list[np.ndarray]] = {}
    for spec in model.outputs:
        value = outputs[spec.name]
        lengths: list[int] | None = None
        if spec.time_axis is not None and spec.lengths_from:
            lengths = [int(n) for n in outputs[spec.lengths_from]]
        elif spec.time_axis is not None and model.frames_for is not None:
            lengths = [model.frames_for(n) for n in input_lengths]
        if lengths is not None:
            rows[spec.name] = [np.take(value[b], np.arange(lengths[b]), axis=spec.time_axis - 1)
                               for b in range(value.shape[0])]
        else:
            rows[spec.name] = [value[b] for b in range(value.shape[0])]
    return rows


def _torch_outputs(model: LoadedModel, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        result = model.module(*[inputs[s.name] for s in model.inputs])
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {spec.name: t.detach().cpu().numpy() for spec, t in zip(model.outputs, result)}


def _cases(model: LoadedModel) -> list[list[int]]:
    lengths = list(model.parity_lengths)
    static_batch = model.inputs[0].shape[0]
    if isinstance(static_batch, int):
        return [[n] * static_batch for n in lengths]
    shuffled = lengths[1:] + lengths[:1] + [lengths[len(lengths) // 2]]
    return [[n] for n in lengths] + [lengths, shuffled]


def run_parity(model: LoadedModel, onnx_path: Path, *, atol: float | None = None,
               rtol: float | None = None, threads: int = 0) -> dict[str, Any]:
    """Compare ONNX Runtime against the PyTorch reference; raise ParityError on any mismatch."""
    atol = model.atol if atol is None else atol
    rtol = model.rtol if rtol is None else rtol
    session = create_session(onnx_path, threads=threads)
    static_frames = None
    time_spec = next((s for s in model.inputs if s.time_axis is not None), None)
    if time_spec is not None and isinstance(time_spec.shape[time_spec.time_axis], int):
        static_frames = int(time_spec.shape[time_spec.time_axis])

    totals = {spec.name: Diff() for spec in model.outputs}
    cases: list[dict[str, Any]] = []
    single_rows: dict[int, dict[str, np.ndarray]] = {}
    batch_vs_single = {spec.name: Diff() for spec in model.outputs}
    failures: list[str] = []
    for index, lengths in enumerate(_cases(model)):
        inputs = model.make_inputs(lengths, static_frames)
        ref = _torch_outputs(model, inputs)
        got_list = session.run([s.name for s in model.outputs],
                               {s.name: inputs[s.name].numpy() for s in model.inputs})
        got = dict(zip([s.name for s in model.outputs], got_list))
        ref_rows, got_rows = _valid_rows(model, ref, lengths), _valid_rows(model, got, lengths)
        case_diff: dict[str, Any] = {}
        for spec in model.outputs:
            d = Diff()
            for g, r in zip(got_rows[spec.name], ref_rows[spec.name]):
                if g.shape != r.shape:
                    failures.append(f"case {index} output {spec.name}: shape {g.shape} != reference {r.shape}")
                    continue
                d.add(g, r, atol, rtol)
                totals[spec.name].add(g, r, atol, rtol)
            case_diff[spec.name] = d.to_dict()
            if d.nonfinite_text():
                failures.append(f"case {index} (lengths {lengths}) output {spec.name}: {d.nonfinite_text()} "
                                "(NaN/inf never passes the gate)")
            elif d.mismatched:
                failures.append(f"case {index} (lengths {lengths}) output {spec.name}: max abs {d.max_abs:.3g}, "
                                f"max rel {d.max_rel:.3g}, {d.mismatched}/{d.compared} beyond atol {atol} rtol {rtol}")
        cases.append({"lengths": lengths, "batch": len(lengths), "outputs": case_diff})
        if len(lengths) == 1:
            single_rows[lengths[0]] = {name: rows[0] for name, rows in got_rows.items()}
        else:
            for row, n in enumerate(lengths):
                if n not in single_rows:
                    continue
                for spec in model.outputs:
                    g, s = got_rows[spec.name][row], single_rows[n][spec.name]
                    if g.shape != s.shape:
                        failures.append(f"padded batch row {row} (length {n}) output {spec.name}: "
                                        f"shape {g.shape} != batch-1 shape {s.shape}")
                        continue
                    batch_vs_single[spec.name].add(g, s, atol, rtol)
    for name, d in batch_vs_single.items():
        if d.mismatched and model.padding_invariant:
            failures.append(f"padded batch vs batch 1, output {name}: max abs {d.max_abs:.3g}, "
                            f"{d.mismatched}/{d.compared} beyond tolerance")
    report = {
        "passed": not failures,
        "reference": "pytorch eager (fp32, eval mode)",
        "candidate": "onnxruntime CPUExecutionProvider",
        "atol": atol,
        "rtol": rtol,
        "rel_floor": REL_FLOOR,
        "comparison": "valid frames of each row (per output lengths); integer outputs exactly",
        "outputs": {name: d.to_dict() for name, d in totals.items()},
        "padded_batch_vs_batch1": {name: d.to_dict() for name, d in batch_vs_single.items()},
        "padding_invariant": model.padding_invariant,
        "cases": cases,
        "failures": failures,
    }
    if failures:
        raise ParityError("parity gate FAILED for " + str(onnx_path) + ":\n  " + "\n  ".join(failures), report)
    return report
