"""Per-node fp32 fallback of int8 variants: the search (doubling, bisection, errors) on a fake judge, and the
plumbing on the tiny export (candidates, exclusions reaching the quantiser, the card's record)."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from core.card import card_path_for, load_model_and_card, read_card
from export.fallback import FallbackError, Measure, choose_fallback

NODES = [f"n{i}" for i in range(10)]


def _search(delta_for_excluded, budget: float, tmp_path: Path, sensitivity=None):
    """choose_fallback with a quantiser that records the excluded set and a judge that reads it back."""
    written: dict[Path, list[str]] = {}
    calls: list[list[str]] = []

    def quantise(excluded: list[str], out: Path) -> None:
        out.write_bytes(b"x")
        written[out] = list(excluded)
        calls.append(list(excluded))

    def judge(path: Path) -> Measure:
        excluded = written[path]
        quantised = [n for n in NODES if n not in excluded]
        kl = sum((sensitivity or {}).get(n, 0.0) for n in quantised)
        return Measure(delta_wer=delta_for_excluded(excluded), kl=kl)

    return choose_fallback(list(NODES), quantise, judge, budget, tmp_path, progress=False), calls


def test_within_budget_measures_once_and_keeps_everything_quantised(tmp_path: Path) -> None:
    report, calls = _search(lambda ex: 0.2, 0.5, tmp_path)
    assert report["excluded"] == [] and calls == [[]]
    assert report["all_quantised"]["delta_wer"] == 0.2
    assert not list(tmp_path.iterdir())  # scratch variants are removed


def test_keeps_the_fewest_most_sensitive_nodes_that_meet_the_budget(tmp_path: Path) -> None:
    # n7 > n3 > n5 > ... in sensitivity; the budget holds once the three most sensitive are fp32.
    sens = {n: 0.01 for n in NODES} | {"n7": 5.0, "n3": 4.0, "n5": 3.0, "n1": 2.0}
    worst = ["n7", "n3", "n5"]
    report, calls = _search(lambda ex: 2.0 - sum(n in ex for n in worst) * 0.6, 0.5, tmp_path, sens)
    assert report["excluded"] == ["n7", "n3", "n5"]
    assert list(report["sensitivity"])[:4] == ["n7", "n3", "n5", "n1"]
    tried = {t["fp32_nodes"]: t["delta_wer"] for t in report["tried"]}
    assert tried[1] > 0.5 and tried[2] > 0.5 and tried[3] <= 0.5 and tried[4] <= 0.5  # doubled to 4, bisected to 3
    assert 8 not in tried
    # Sweep: the whole variant, then each node quantised alone (all the others excluded).
    assert calls[0] == [] and all(len(c) == len(NODES) - 1 for c in calls[1:len(NODES) + 1])


def test_a_budget_no_fallback_meets_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FallbackError, match=r"stays above 0.5 with up to 9 of the 10"):
        _search(lambda ex: 1.0, 0.5, tmp_path)
    with pytest.raises(ValueError, match="budget"):
        _search(lambda ex: 1.0, -1, tmp_path)


def _fp32_nodes(path: Path, names: list[str], op_types: dict[str, str]) -> set[str]:
    """Names of `names` still present as their original (fp32) op in the graph at `path`."""
    return {n.name for n in onnx.load(str(path)).graph.node if n.name in names and n.op_type == op_types[n.name]}


def test_cli_plumbs_the_chosen_nodes_into_the_variant(tmp_path: Path, tiny_export: Path, tiny_an4_test: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge that charges one WER point while a chosen node is quantised: the sweep must find that node,
    keep exactly it in fp32 in the written variant, and record the sweep in the card."""
    import export.variants as variants
    from export.__main__ import main

    graph = onnx.load(str(tiny_export)).graph
    op_types = {n.name: n.op_type for n in graph.node if n.op_type in ("LSTM", "MatMul", "Gemm") and n.name}
    names = sorted(op_types)
    bad = names[len(names) // 2]

    class FakeJudge:
        def __init__(self, *args, **kwargs) -> None:
            self.wer = 0.25

        def __call__(self, model: Path) -> Measure:
            fp32 = _fp32_nodes(model, names, op_types)
            return Measure(delta_wer=0.0 if bad in fp32 else 1.0, kl=float(bad not in fp32) + 0.01 * (len(names) - len(fp32)))

    monkeypatch.setattr(variants, "SweepJudge", FakeJudge)
    out = tmp_path / "v"
    assert main(["variant", "--model", str(tiny_export), "--kind", "int8-dynamic", "--dataset", str(tiny_an4_test),
                 "--out", str(out), "--max-delta-wer", "0.5", "--min-argmax-agreement", "0", "--max-text-cer", "1",
                 "--threads", "1"]) == 0
    path = out / "model.int8-dynamic.onnx"
    assert _fp32_nodes(path, names, op_types) == {bad}
    card = read_card(card_path_for(path)).to_dict()
    fb = card["variant"]["fallback"]
    assert fb["excluded"] == [bad] and card["variant"]["exclude_nodes"] == [bad]
    assert fb["candidates"] == len(names) and fb["all_quantised"]["delta_wer"] == 1.0
    assert card["variant_options"]["max_delta_wer"] == 0.5


def test_cli_refuses_the_budget_for_other_kinds(tmp_path: Path, tiny_export: Path, tiny_an4_test: Path) -> None:
    from export.__main__ import main

    assert main(["variant", "--model", str(tiny_export), "--kind", "fp16", "--dataset", str(tiny_an4_test),
                 "--out", str(tmp_path), "--max-delta-wer", "0.5"]) == 2
    assert not list(tmp_path.glob("*.onnx"))


def test_sweep_judge_measures_against_the_fp32_graph(tiny_export: Path, tiny_an4_test: Path) -> None:
    from core.dataset_dir import DatasetDir
    from export.variants import SweepJudge

    ds = DatasetDir.open(tiny_an4_test)
    _, card = load_model_and_card(tiny_export)
    judge = SweepJudge(tiny_export, card, ds, ds.samples[:4], threads=1)
    same = judge(tiny_export)
    assert same.delta_wer == 0.0 and abs(same.kl) < 1e-9
    assert 0.0 <= judge.wer
