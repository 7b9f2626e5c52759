"""Per-node fallback to fp32 for an int8 variant, chosen from a sensitivity sweep to meet a ΔWER budget.

The whole variant is measured first (ΔWER on the sweep utterances against the fp32 graph's WER on them); when
it is within the budget nothing falls back. Otherwise each quantisable node is quantised alone and ranked by
how far that moves the output distribution (mean KL divergence from fp32 per valid frame: smooth where one
node rarely flips a word). The most sensitive nodes stay fp32, as few as meet the budget: the count doubles
until the budget holds, then bisects. ΔWER need not fall monotonically with the count, so every measured
count is reported, and the chosen one is a measured one.

The sweep belongs on calibration (training) utterances: choosing nodes on the test set would tune to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

Quantise = Callable[[list[str], Path], None]  # (nodes kept fp32, output path) -> the variant written there


@dataclass(frozen=True)
class Measure:
    """One variant on the sweep utterances."""

    delta_wer: float   # WER points above the fp32 graph's on the same utterances
    kl: float          # mean KL(fp32 || variant) per valid frame, nats

    def to_dict(self) -> dict[str, float]:
        return {"delta_wer": round(self.delta_wer, 4), "kl": self.kl}


Judge = Callable[[Path], Measure]


class FallbackError(RuntimeError):
    """No set of fp32 nodes short of all of them meets the budget."""


def choose_fallback(candidates: list[str], quantise: Quantise, judge: Judge, budget: float, scratch: Path,
                    progress: bool = True) -> dict[str, Any]:
    """The nodes to keep fp32 (`excluded`) and the sweep behind the choice, for the variant's card."""
    if budget < 0:
        raise ValueError(f"ΔWER budget {budget}: expected a number of WER points >= 0")

    def measure(excluded: list[str], name: str) -> Measure:
        path = scratch / f"{name}.onnx"
        quantise(excluded, path)
        try:
            return judge(path)
        finally:
            path.unlink(missing_ok=True)

    full = measure([], "all")
    report: dict[str, Any] = {"budget_delta_wer": budget, "candidates": len(candidates), "all_quantised": full.to_dict()}
    if full.delta_wer <= budget:
        return report | {"excluded": [], "tried": [], "sensitivity": {}}
    if not candidates:
        raise FallbackError(f"ΔWER {full.delta_wer:.3f} > budget {budget} and no node to keep in fp32")
    sensitivity: dict[str, float] = {}
    for node in tqdm(candidates, desc="sensitivity", unit="node", disable=not progress):
        sensitivity[node] = measure([n for n in candidates if n != node], "one").kl
    order = sorted(candidates, key=lambda n: -sensitivity[n])  # stable: ties keep the graph's order
    tried: dict[int, Measure] = {}

    def ok(k: int) -> bool:
        if k not in tried:
            tried[k] = measure(order[:k], f"top{k}")
        return tried[k].delta_wer <= budget

    # Doubling, then bisection between the last failing and first passing count; keeping every node in
    # fp32 is no variant, so the count stops one short of all.
    limit = len(order) - 1
    failing, k = 0, 1
    while True:
        if k > limit:
            raise FallbackError(f"ΔWER stays above {budget} with up to {limit} of the {len(order)} quantisable "
                                f"nodes kept in fp32 (measured: all quantised {full.delta_wer:.3f}"
                                f"{', ' if tried else ''}{_tried_text(tried)})")
        if ok(k):
            break
        failing = k
        k = limit + 1 if k == limit else min(2 * k, limit)
    passing = k
    while passing - failing > 1:
        mid = (failing + passing) // 2
        if ok(mid):
            passing = mid
        else:
            failing = mid
    return report | {
        "excluded": order[:passing],
        "tried": [{"fp32_nodes": n, **m.to_dict()} for n, m in sorted(tried.items())],
        "sensitivity": {n: sensitivity[n] for n in order},
    }


def _tried_text(tried: dict[int, Measure]) -> str:
    return ", ".join(f"{k} fp32: ΔWER {m.delta_wer:.3f}" for k, m in sorted(tried.items()))
