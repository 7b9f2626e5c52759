"""Cutting graphs at named tensors or after a module (onnx.utils.Extractor), for the split ASR export,
another family (DeepSpeech2, with its lengths input), and a bare ONNX graph without a card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel
from split.onnx_cut import CutError, compare_chain, cut, module_boundary, random_feeds, run_chain, save
from tests.card_checks import assert_card_round_trips

CFG = SplitASRConfig(n_cnn_layers=1, n_rnn_layers=2, rnn_dim=8, n_feats=16, channels=4)


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SpeechRecognitionModel]:
    from export.__main__ import main

    root = tmp_path_factory.mktemp("cut_whole")
    torch.manual_seed(5)
    model = SpeechRecognitionModel(CFG).eval()
    torch.save(model.state_dict(), root / "model.pth")
    assert main(["split-asr", "--checkpoint", str(root / "model.pth"), "--out", str(root), "--threads", "1"]) == 0
    return root / "model.onnx", model


def test_cut_after_the_head_equals_the_recipe_head(whole: tuple[Path, SpeechRecognitionModel], tmp_path: Path) -> None:
    path, model = whole
    proto = onnx.load(str(path))
    boundary = module_boundary(proto, "fully_connected")
    assert boundary == ["/fully_connected/Add_output_0"]
    result = cut(proto, boundary)
    assert result.tail_graph_inputs == [] and not result.shared_nodes
    save(result.head, tmp_path / "head.onnx")
    save(result.tail, tmp_path / "tail.onnx")
    spec = np.abs(np.random.default_rng(0).standard_normal((2, 1, 16, 31))).astype(np.float32)
    from core.ort_session import create_session

    feats = create_session(tmp_path / "head.onnx", threads=1).run(None, {"spec": spec})[0]
    logits = run_chain(tmp_path / "head.onnx", tmp_path / "tail.onnx", {"spec": spec}, threads=1)[0]
    with torch.no_grad():
        np.testing.assert_allclose(feats, model.head(torch.from_numpy(spec)).numpy(), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(logits, model(torch.from_numpy(spec)).numpy(), atol=1e-4, rtol=1e-3)
    report = compare_chain(path, tmp_path / "head.onnx", tmp_path / "tail.onnx",
                           [random_feeds(proto, {"batch": 2, "time": 20}, seed=k) for k in range(2)], threads=1)
    assert report["passed"] and report["cases"] == 2


def test_a_cut_through_a_skip_connection_is_refused(whole: tuple[Path, SpeechRecognitionModel]) -> None:
    proto = onnx.load(str(whole[0]))
    inside = "/rescnn_layers/rescnn_layers.0/cnn2/Conv_output_0"  # the residual add still needs the stem output
    with pytest.raises(CutError, match=r"not a clean cut.*/cnn/Conv"):
        cut(proto, [inside])
    with pytest.raises(CutError, match="not node outputs"):
        cut(proto, ["no_such_tensor"])
    with pytest.raises(CutError, match=r"top-level modules: .*fully_connected"):
        module_boundary(proto, "decoder")


def test_cut_cli_on_a_carded_export(whole: tuple[Path, SpeechRecognitionModel], tmp_path: Path) -> None:
    from core.card import load_model_and_card
    from split.__main__ import main

    assert main(["cut", "--model", str(whole[0]), "--after", "rescnn_layers.0", "--out", str(tmp_path),
                 "--dims", "batch=2,time=24", "--threads", "1"]) == 0
    head = load_model_and_card(tmp_path / "head.onnx")[1].to_dict()
    tail = load_model_and_card(tmp_path / "tail.onnx")[1].to_dict()
    for part in ("head", "tail"):
        assert_card_round_trips(tmp_path / f"{part}.card.json", tmp_path)
    assert head["split"]["boundary"][0]["name"] == "/rescnn_layers/rescnn_layers.0/Add_2_output_0"
    assert head["split"]["boundary"][0]["shape"][1:3] == [4, 8]  # channels, n_feats // 2
    assert tail["inputs"][0]["name"] == head["outputs"][0]["name"] and tail["outputs"][0]["name"] == "logits"
    assert head["split_parity"]["passed"] and tail["feature"]["kind"] == "split_activations"


def test_cut_cli_on_a_bare_graph(tmp_path: Path) -> None:
    from split.__main__ import main

    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).eval()
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(net, (torch.randn(2, 6),), str(bare), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    relu_out = next(n.output[0] for n in onnx.load(str(bare)).graph.node if n.op_type == "Relu")
    assert main(["cut", "--model", str(bare), "--at", relu_out, "--out", str(tmp_path / "parts"),
                 "--dims", "n=4", "--threads", "1"]) == 0
    report = json.loads((tmp_path / "parts" / "cut.json").read_text())
    assert report["parity"]["passed"] and report["boundary"] == [relu_out]
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    y = run_chain(tmp_path / "parts" / "head.onnx", tmp_path / "parts" / "tail.onnx", {"x": x}, threads=1)[0]
    with torch.no_grad():
        np.testing.assert_allclose(y, net(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert main(["cut", "--model", str(tmp_path / "missing.onnx"), "--at", relu_out, "--out", str(tmp_path)]) == 2


def test_deepspeech2_cut_after_conv_takes_lengths(tiny_ckpt: Path, tmp_path: Path) -> None:
    from core.card import load_model_and_card
    from families.deepspeech2 import recipe as ds
    from split.__main__ import main

    assert main(["export", "--family", "deepspeech2", "--checkpoint", str(tiny_ckpt), "--after", "conv",
                 "--out", str(tmp_path), "--threads", "1"]) == 0
    head = load_model_and_card(tmp_path / "head.onnx")[1].to_dict()
    tail = load_model_and_card(tmp_path / "tail.onnx")[1].to_dict()
    assert [i["name"] for i in tail["inputs"]][1:] == ["lengths"] and head["split"]["tail_graph_inputs"] == ["lengths"]
    parity = head["split_parity"]
    assert parity["passed"] and any(len(case) > 1 for case in parity["sweep"])  # padded batches included
    model = ds.load(tiny_ckpt)
    inputs = model.make_inputs([50, 33, 12], None)
    probs, lengths = run_chain(tmp_path / "head.onnx", tmp_path / "tail.onnx",
                               {k: v.numpy() for k, v in inputs.items()}, threads=1)
    with torch.no_grad():
        ref_probs, ref_lengths = model.module(inputs["spect"], inputs["lengths"])
    np.testing.assert_array_equal(lengths, ref_lengths.numpy())
    for row, n in enumerate(lengths):
        np.testing.assert_allclose(probs[row, :n], ref_probs[row, :n].numpy(), atol=1e-5, rtol=1e-3)


def test_family_cut_needs_after(tiny_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from split.__main__ import main

    assert main(["export", "--family", "deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(tmp_path)]) == 2
    assert "--after" in caplog.text
    assert main(["export", "--family", "deepspeech2", "--checkpoint", str(tiny_ckpt), "--after", "nothing",
                 "--out", str(tmp_path), "--threads", "1"]) == 2
    assert "top-level modules" in caplog.text and not (tmp_path / "head.onnx").exists()


def test_module_path_reads_both_scope_forms_of_list_items() -> None:
    from split.onnx_cut import module_path

    assert module_path("/rescnn_layers/rescnn_layers.0/cnn1/Conv") == "rescnn_layers.0.cnn1"
    assert module_path("/model/wav2vec2/encoder/layers.0/attention/MatMul") == "model.wav2vec2.encoder.layers.0.attention"
    assert module_path("/Transpose") == "" and module_path("Conv_12") == ""


@pytest.mark.parametrize("after", ["wav2vec2.feature_extractor", "wav2vec2.encoder.layers.0"])
def test_wav2vec2_cut_after_a_layer_of_the_hf_model(after: str, tmp_path: Path) -> None:
    """wav2vec2's export wraps the HF model; a layer is named as in the HF model, and the chain equals the whole
    model's graph on padded batches too (the gate's sweep)."""
    from core.card import load_model_and_card
    from split.__main__ import main
    from tests.test_wav2vec2 import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path / "model")
    out = tmp_path / "cut"
    assert main(["export", "--family", "wav2vec2", "--checkpoint", str(model_dir), "--after", after,
                 "--out", str(out), "--threads", "1"]) == 0
    head = load_model_and_card(out / "head.onnx")[1].to_dict()
    assert head["split"]["cut"]["after"] == after and head["split_parity"]["passed"]
    assert any(len(case) > 1 for case in head["split_parity"]["sweep"])
    wave = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
    chained = run_chain(out / "head.onnx", out / "tail.onnx",
                        {onnx.load(str(out / "head.onnx")).graph.input[0].name: wave}, threads=1)
    assert chained[0].shape[:1] == (2,) and chained[0].shape[-1] == 32 and np.isfinite(chained[0]).all()


def test_wav2vec2_unknown_layer_lists_the_hf_models_modules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from split.__main__ import main
    from tests.test_wav2vec2 import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path / "model")
    assert main(["export", "--family", "wav2vec2", "--checkpoint", str(model_dir), "--after", "encoder",
                 "--out", str(tmp_path / "cut"), "--threads", "1"]) == 2
    assert "top-level modules: ['lm_head', 'wav2vec2']" in caplog.text and not (tmp_path / "cut" / "head.onnx").exists()
