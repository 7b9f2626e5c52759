"""Precision variants: fp16 / int8-dynamic / int8-static, their lossy gate and cards, and the variants table."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.card import card_path_for, load_model_and_card, read_card
from tests.card_checks import assert_card_round_trips


@pytest.fixture(scope="module")
def dataset(tiny_an4_test: Path) -> Path:
    return tiny_an4_test


def _export(argv: list[str]) -> int:
    from export.__main__ import main

    return main(argv)


# The tiny test model has random weights, so its "transcripts" are noise that quantisation reshuffles;
# how much int8 reshuffles them depends on the CPU's int8 kernels (VNNI or not). The gate's thresholds are
# opened fully here, so this test checks the plumbing; a separate test checks that the gate does refuse.
LOOSE = ["--min-argmax-agreement", "0.0", "--max-text-cer", "1.0", "--threads", "1"]


@pytest.mark.parametrize("kind", ["fp16", "int8-dynamic", "int8-static"])
def test_variant_card_and_gate(tmp_path: Path, tiny_export: Path, dataset: Path, kind: str) -> None:
    out = tmp_path / "v"
    assert _export(["variant", "--model", str(tiny_export), "--kind", kind, "--dataset", str(dataset), "--out",
                    str(out), "--calibration-samples", "4", *LOOSE]) == 0
    path = out / f"model.{kind}.onnx"
    _, model_card = load_model_and_card(path)  # the card describes the variant's graph
    assert_card_round_trips(card_path_for(path), tmp_path)
    card = model_card.to_dict()
    assert card["precision"] == kind and card["onnx"] == path.name
    var = card["variant"]
    assert var["from_sha256"] == read_card(card_path_for(tiny_export)).onnx_sha256
    assert var["size_bytes"] == path.stat().st_size
    par = card["parity"]
    assert par["passed"] and par["samples"] == 6 and 0.0 <= par["argmax_agreement"] <= 1.0
    assert par["thresholds"] == {"min_argmax_agreement": 0.0, "max_text_cer": 1.0}
    graph = card["graph"]
    assert graph["nodes"] > 0 and graph["nodes_after_ort"] > 0
    if kind == "int8-dynamic":
        assert "DynamicQuantizeLSTM" in graph["op_types"]  # the family default quantises the LSTMs
        assert var["op_types"] == ["LSTM", "MatMul", "Gemm"]
    if kind == "int8-static":
        assert "QuantizeLinear" in graph["op_types"] and var["calibration"]["samples"] == 4
        assert "Conv" in graph["op_types"]  # the conv front-end stays fp32
    if kind == "fp16":
        assert par["argmax_agreement"] > 0.99 and var["keep_io_types"] is True


@pytest.mark.parametrize("method", ["Entropy", "Percentile"])
def test_histogram_calibration_on_clips_of_different_lengths(tmp_path: Path, tiny_export: Path, dataset: Path,
                                                               method: str) -> None:
    """onnxruntime's histogram calibrators stack every sample's activations, which numpy refuses for clips of
    different lengths ("inhomogeneous shape"); collected one sample at a time they calibrate."""
    from core.dataset_dir import DatasetDir

    assert len({s.length for s in DatasetDir.open(dataset).samples}) > 1  # the case that used to fail
    out = tmp_path / "v"
    assert _export(["variant", "--model", str(tiny_export), "--kind", "int8-static", "--dataset", str(dataset),
                    "--out", str(out), "--calibration", method, "--calibration-samples", "4", *LOOSE]) == 0
    _, card = load_model_and_card(out / "model.int8-static.onnx")
    assert card.to_dict()["variant"]["calibration"]["method"] == method


def test_gate_refuses_and_leaves_nothing(tmp_path: Path, tiny_export: Path, dataset: Path) -> None:
    out = tmp_path / "v"
    out.mkdir()
    assert _export(["variant", "--model", str(tiny_export), "--kind", "int8-dynamic", "--dataset", str(dataset),
                    "--out", str(out), "--min-argmax-agreement", "1.01", "--threads", "1"]) == 3
    assert list(out.iterdir()) == []


def test_rerun_is_skipped_and_variant_of_variant_refused(tmp_path: Path, tiny_export: Path, dataset: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    args = ["variant", "--model", str(tiny_export), "--kind", "fp16", "--dataset", str(dataset), "--out",
            str(tmp_path), *LOOSE]
    assert _export(args) == 0
    caplog.clear()
    assert _export(args) == 0
    assert "up to date" in caplog.text
    assert _export(["variant", "--model", str(tmp_path / "model.fp16.onnx"), "--kind", "int8-dynamic", "--dataset",
                    str(dataset), *LOOSE]) == 2
    assert "already a fp16 variant" in caplog.text


def test_variants_table(tmp_path: Path, tiny_export: Path, dataset: Path) -> None:
    from postprocess.__main__ import main as post_main
    from runners.__main__ import main as run_main

    assert _export(["variant", "--model", str(tiny_export), "--kind", "int8-dynamic", "--dataset", str(dataset),
                    "--out", str(tmp_path), *LOOSE]) == 0
    runs = {}
    for label, model in (("fp32", tiny_export), ("int8", tmp_path / "model.int8-dynamic.onnx")):
        for bs in (1, 8):
            runs[label, bs] = tmp_path / f"{label}_bs{bs}"
            assert run_main(["--backend", "onnxruntime", "--model", str(model), "--dataset", str(dataset), "--out",
                             str(runs[label, bs]), "--batch-size", str(bs), "--threads", "1", "--no-progress"]) == 0
    assert post_main(["variants", "--dataset", str(dataset), "--card", str(card_path_for(tiny_export)),
                      "--row", f"ORT fp32={runs['fp32', 1]},{runs['fp32', 8]}",
                      # Given batch 8 first: the columns and the scored run come from run.json, not the order.
                      "--row", f"ORT int8={runs['int8', 8]},{runs['int8', 1]}",
                      "--out", str(tmp_path / "results"), "--name", "tiny"]) == 0
    table = json.loads((tmp_path / "results" / "tiny_variants.json").read_text())
    fp32, int8 = table["rows"]
    assert [k for k in fp32 if k.startswith("seq/s")] == ["seq/s bs1", "seq/s bs8"]
    assert fp32["ΔWER (points)"] == 0 and fp32["precision"] == "fp32" and int8["precision"] == "int8-dynamic"
    assert int8["size MB"] < fp32["size MB"]
    assert all(r["seq/s bs1"] > 0 and r["seq/s bs8"] > 0 for r in (fp32, int8))
    assert (tmp_path / "results" / "tiny_variants.png").stat().st_size > 0
    assert "at batch 1, 8." in (tmp_path / "results" / "tiny_variants.md").read_text()
    # Two runs at one batch size leave the row's speed ambiguous: refused, naming both.
    assert post_main(["variants", "--dataset", str(dataset), "--card", str(card_path_for(tiny_export)),
                      "--row", f"ORT fp32={runs['fp32', 1]},{runs['int8', 1]}",
                      "--out", str(tmp_path / "results2"), "--name", "tiny"]) == 2


def test_spread_takes_utterances_across_the_dataset(tmp_path: Path, tiny_corpus: Path, tiny_export: Path) -> None:
    from preprocess.__main__ import main as pre_main
    from core.dataset_dir import DatasetDir
    from core.corpora import read_an4_raw

    assert pre_main(["--an4-root", str(tiny_corpus / "an4"), "--split", "train", "--card",
                     str(card_path_for(tiny_export)), "--out", str(tmp_path / "calib"), "--spread", "4",
                     "--no-progress"]) == 0
    uids = {s.uid for s in DatasetDir.open(tmp_path / "calib").samples}
    everything = [u.uid for u in read_an4_raw(tiny_corpus / "an4", "train")]
    assert len(uids) == 4 and everything[0] in uids and everything[-1] not in uids
    assert uids != set(everything[:4])


def test_fused_variant_runs_the_transformer_fusions(tmp_path: Path, tiny_corpus: Path, tiny_export: Path,
                                                     tiny_an4_test: Path) -> None:
    """wav2vec2 declares onnxruntime's transformer fusions; DeepSpeech2 does not, and says so."""
    from preprocess.__main__ import main as pre_main
    from tests.test_wav2vec2 import make_tiny_model_dir

    assert _export(["variant", "--model", str(tiny_export), "--kind", "fused", "--dataset", str(tiny_an4_test),
                    "--out", str(tmp_path / "ds")]) == 2
    model_dir = make_tiny_model_dir(tmp_path / "w2v")
    assert _export(["wav2vec2", "--model-dir", str(model_dir), "--out", str(tmp_path / "export"), "--threads", "1"]) == 0
    onnx_path = tmp_path / "export" / "model.onnx"
    split = next((tiny_corpus / "LibriSpeech").glob("test*"))
    assert pre_main(["--librispeech", str(split), "--card", str(card_path_for(onnx_path)), "--out",
                     str(tmp_path / "data"), "--no-progress"]) == 0
    assert _export(["variant", "--model", str(onnx_path), "--kind", "fused", "--dataset", str(tmp_path / "data"),
                    "--threads", "1"]) == 0
    card = load_model_and_card(tmp_path / "export" / "model.fused.onnx")[1].to_dict()
    assert card["precision"] == "fp32-fused" and card["variant"]["runs_on"] == "onnxruntime only"
    assert card["variant"]["fused"].get("SkipLayerNormalization", 0) > 0
    # Both self-attention blocks of the tiny model, by export/attention_fusion.py (onnxruntime's own pass
    # leaves the exporter's SDPA form unfused).
    assert card["variant"]["attention_blocks_fused"] == 2 and card["variant"]["fused"].get("Attention") == 2
    assert card["parity"]["argmax_agreement"] == 1.0


def test_attention_fusion_leaves_other_graphs_alone(tiny_export: Path) -> None:
    import onnx

    from export.attention_fusion import fuse_attention

    model = onnx.load(str(tiny_export))
    before = [n.op_type for n in model.graph.node]
    assert fuse_attention(model) == 0
    assert [n.op_type for n in model.graph.node] == before
