"""The openvino backend against onnxruntime on the tiny model, and onnxruntime's --profile output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.card import card_path_for, read_card
from postprocess.score import score_run
from tests.conftest import run_quiet
from core.dataset_dir import DatasetDir, read_bin

pytest.importorskip("openvino", reason="openvino is not installed (requirements.txt pins it)")


@pytest.fixture(scope="module")
def dataset(tiny_an4_test: Path) -> Path:
    return tiny_an4_test


_run = run_quiet


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, dataset: Path, tiny_export: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {name: root / name for name in ("ort1", "ort_prof", "ov1", "ov2")}
    base = ["--model", str(tiny_export), "--dataset", str(dataset)]
    assert _run(["--backend", "onnxruntime", *base, "--out", str(out["ort1"])]) == 0
    assert _run(["--backend", "onnxruntime", *base, "--out", str(out["ort_prof"]), "--profile",
                 "--execution-mode", "parallel"]) == 0
    assert _run(["--backend", "openvino", *base, "--out", str(out["ov1"])]) == 0
    assert _run(["--backend", "openvino", *base, "--out", str(out["ov2"]), "--batch-size", "2"]) == 0
    return out


def _outputs(run_dir: Path, card: dict) -> dict[str, dict[str, np.ndarray]]:
    """{key: {output name: that sample's row}} from a run dir."""
    dtypes = {o.name: o.dtype for o in card.outputs}
    run = json.loads((run_dir / "run.json").read_text())
    return {m["key"]: {name: read_bin(run_dir / name / f"{m['key']}.bin", dtypes[name], tuple(shape))
                       for name, shape in m["shapes"].items()} for m in run["samples"]}


def test_openvino_matches_onnxruntime(runs: dict[str, Path], dataset: Path, tiny_export: Path) -> None:
    ds = DatasetDir.open(dataset)
    card = read_card(card_path_for(tiny_export))
    hyps = {name: score_run(runs[name], ds, card)["hypotheses"] for name in ("ort1", "ov1", "ov2")}
    assert hyps["ov1"] == hyps["ort1"] == hyps["ov2"]
    ref = _outputs(runs["ort1"], card)
    for name in ("ov1", "ov2"):
        got = _outputs(runs[name], card)
        assert got.keys() == ref.keys()
        worst = {"unpadded": 0.0, "padded": 0.0}
        for key, r in ref.items():
            n = int(np.asarray(r["output_lengths"]).reshape(-1)[0])
            assert int(np.asarray(got[key]["output_lengths"]).reshape(-1)[0]) == n
            # frames past the sample's own length differ with the batch's padding; compare the valid ones
            kind = "padded" if got[key]["probs"].shape[0] > n else "unpadded"
            worst[kind] = max(worst[kind], float(np.abs(got[key]["probs"][:n] - r["probs"][:n]).max()))
        assert worst["unpadded"] < 1e-4, (name, worst)
        # OpenVINO 2026.4.1's CPU plugin ignores the LSTM's sequence_lens in the reverse direction: a sample
        # shorter than its batch gets the padding run through its backward LSTM (onnxruntime and torch do not).
        # The error grows towards the sample's last frames (~2.5e-3 on this model); batch 1 is exact.
        assert worst["padded"] < 1e-2, (name, worst)


def test_openvino_run_json_records_the_compiled_properties(runs: dict[str, Path]) -> None:
    run = json.loads((runs["ov2"] / "run.json").read_text())
    info = run["backend_info"]
    assert run["backend"] == "openvino" and run["batch_size"] == 2
    assert info["inference_precision_hint"] == "f32" and info["requested"]["inference_precision_hint"] == "f32"
    assert info["performance_hint"] == "LATENCY" and info["inference_num_threads"] == 1
    assert info["openvino"].startswith("2026.4.1") and info["device"] == "CPU" and info["device_full_name"]


def test_profile_writes_trace_and_top_ops(runs: dict[str, Path]) -> None:
    prof = runs["ort_prof"]
    events = json.loads((prof / "ort_profile.json").read_text())
    assert any(e.get("cat") == "Node" for e in events)
    rows = [line.strip("|").split("|") for line in (prof / "ort_profile_top_ops.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| op type")]
    table = {cells[0].strip(): float(cells[3].strip().rstrip("%")) for cells in rows}
    assert "LSTM" in table
    assert sum(table.values()) == pytest.approx(100.0, abs=0.1)  # top 15 + the rest in one "other" row
    run = json.loads((prof / "run.json").read_text())
    assert run["backend_info"]["profiling"] is True and run["backend_info"]["execution_mode"] == "parallel"
    summary = run["profile"]
    assert len(summary["top_ops"]) == min(15, summary["op_types"]) and summary["trace"] == "ort_profile.json"
    assert "LSTM" in {r["op_type"] for r in summary["top_ops"]}
    shares = [r["share_pct"] for r in summary["top_ops"]] + ([summary["other"]["share_pct"]] if summary["other"] else [])
    assert sum(shares) == pytest.approx(100.0, abs=0.1)
    times = [r["total_us"] for r in summary["top_ops"]]
    assert times == sorted(times, reverse=True) and all(r["count"] > 0 for r in summary["top_ops"])


def test_no_profile_files_without_profile(runs: dict[str, Path]) -> None:
    run = json.loads((runs["ort1"] / "run.json").read_text())
    assert "profile" not in run and run["backend_info"]["profiling"] is False
    assert run["backend_info"]["execution_mode"] == "sequential"
    assert not list(runs["ort1"].glob("ort_profile*")) and not list(runs["ov1"].glob("ort_profile*"))


def test_profile_is_refused_for_other_backends(tmp_path: Path, dataset: Path, tiny_export: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert _run(["--backend", "openvino", "--model", str(tiny_export), "--dataset", str(dataset),
                 "--out", str(tmp_path / "r"), "--profile"]) == 2
    assert "onnxruntime backend only" in caplog.text


@pytest.mark.xfail(reason="OpenVINO 2026.4.1 CPU: reverse-direction LSTM ignores sequence_lens", strict=False)
def test_openvino_reverse_lstm_honours_sequence_lens(tmp_path: Path) -> None:
    """The cause of the padded-sample deviation above, on one ONNX LSTM op (XPASS once OpenVINO fixes it)."""
    import onnx
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    hidden, feat = 4, 3
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("W", (1, 4 * hidden, feat)), ("R", (1, 4 * hidden, hidden)), ("B", (1, 8 * hidden)))]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "L"], ["y"], direction="reverse", hidden_size=hidden)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["t", "b", feat]),
                                            helper.make_tensor_value_info("L", TensorProto.INT32, ["b"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    path = tmp_path / "lstm.onnx"
    onnx.save(model, path)
    x = rng.normal(size=(6, 2, feat)).astype(np.float32)
    x[4:, 1] = 0.0
    feed = {"x": x, "L": np.array([6, 4], np.int32)}
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(feed)[0]
    np.testing.assert_allclose(got[:4, :, 1], expected[:4, :, 1], atol=1e-5)
