"""Exporting the split ASR model: the whole model (python -m export split-asr) and its Head/Tail cut
(python -m split export), with cards, gates, padded batches, bad inputs, and preprocess from the card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel, output_frames
from tests.card_checks import assert_card_round_trips

CFG = SplitASRConfig(n_cnn_layers=1, n_rnn_layers=2, rnn_dim=8, n_feats=32, channels=4)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("split_asr_ckpt")
    torch.manual_seed(3)
    model = SpeechRecognitionModel(CFG)
    torch.save(model.state_dict(), root / "model.pth")
    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=CFG.rnn_dim, hidden_size=6, bottleneck=3))
    for p in ae.parameters():
        torch.nn.init.normal_(p, std=0.4)
    torch.save(ae.state_dict(), root / "autoencoder.pth")
    return root / "model.pth", root / "autoencoder.pth"


@pytest.fixture(scope="module")
def whole_export(tmp_path_factory: pytest.TempPathFactory, checkpoints: tuple[Path, Path]) -> Path:
    from export.__main__ import main

    out = tmp_path_factory.mktemp("split_asr_export")
    assert main(["split-asr", "--checkpoint", str(checkpoints[0]), "--out", str(out), "--threads", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def split_export(tmp_path_factory: pytest.TempPathFactory, checkpoints: tuple[Path, Path]) -> Path:
    from split.__main__ import main

    out = tmp_path_factory.mktemp("split_export")
    assert main(["export", "--checkpoint", str(checkpoints[0]), "--autoencoder", str(checkpoints[1]),
                 "--out", str(out), "--threads", "1"]) == 0
    return out


def _torch_model(path: Path) -> SpeechRecognitionModel:
    from families.split_asr.checkpoint import load_model

    return load_model(path)[0]


def _session(path: Path):
    from core.ort_session import create_session

    return create_session(path, threads=1)


def test_whole_model_card(whole_export: Path) -> None:
    from core.card import load_model_and_card

    _, model_card = load_model_and_card(whole_export / "model.onnx")
    card = model_card.to_dict()  # the JSON layout the card is written in
    assert model_card.family == "split_asr" and model_card.scores_output.name == "logits"
    assert card["inputs"] == [{"name": "spec", "dtype": "float32", "shape": ["batch", 1, 32, "time"],
                               "role": "features", "time_axis": 3}]
    assert card["outputs"][0]["name"] == "logits" and card["outputs"][0]["role"] == "logits"
    assert card["outputs"][0]["shape"] == ["batch", "frames", 29]
    assert "log_softmax" in card["output_semantics"]
    assert card["labels"][0] == "'" and card["labels"][1] == " " and card["labels"][2] == "A"
    assert card["blank_index"] == 28 and card["labels"][28] == "_"
    assert card["feature"]["kind"] == "mel_spectrogram" and card["feature"]["n_mels"] == 32
    assert card["output_length_rule"] == {"kind": "conv", "layers": [{"kernel": 3, "stride": 2, "padding": 1,
                                                                      "dilation": 1}]}
    assert card["architecture"]["gru_batch_first"] == [True, False]
    assert "batch_first=False" in card["quirks"]["gru_batch_first"]
    assert card["parity"]["passed"] and card["parity"]["padding_invariant"] is False
    # The quirk couples a padded batch's rows, and the gate records it rather than hiding it.
    assert card["parity"]["padded_batch_vs_batch1"]["logits"]["mismatched"] > 0


def test_whole_model_onnx_matches_torch_on_a_padded_batch(whole_export: Path, checkpoints: tuple[Path, Path]) -> None:
    model = _torch_model(checkpoints[0])
    spec = torch.rand(3, 1, 32, 57) * 3
    spec[1, :, :, 30:] = 0
    got = _session(whole_export / "model.onnx").run(None, {"spec": spec.numpy()})[0]
    with torch.no_grad():
        ref = model(spec).numpy()
    assert got.shape == (3, output_frames(57), 29)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_bad_checkpoint_exits_2_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    bad = tmp_path / "model.pth"
    torch.save({"cnn.weight": torch.zeros(4, 1, 3, 3)}, bad)
    assert main(["split-asr", "--checkpoint", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "fully_connected.weight" in caplog.text and str(bad) in caplog.text
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_split_files_and_cards(split_export: Path, tmp_path: Path) -> None:
    from core.card import load_model_and_card

    names = ["head", "tail", "ae_encoder", "ae_decoder"]
    assert sorted(p.name for p in split_export.iterdir()) == sorted(
        [f"{n}.onnx" for n in names] + [f"{n}.card.json" for n in names])
    cards = {n: load_model_and_card(split_export / f"{n}.onnx")[1].to_dict() for n in names}
    for n in names:
        assert_card_round_trips(split_export / f"{n}.card.json", tmp_path)
    head, tail = cards["head"], cards["tail"]
    boundary = head["split"]["boundary"]
    assert boundary["name"] == "features" and boundary["shape"] == ["batch", "frames", 8]
    assert boundary["lengths"]["rule"] == head["output_length_rule"]
    assert head["outputs"][0]["name"] == tail["inputs"][0]["name"] == "features"
    assert head["inputs"][0]["name"] == "spec" and tail["outputs"][0]["name"] == "logits"
    assert head["feature"]["kind"] == "mel_spectrogram" and tail["feature"]["kind"] == "split_activations"
    assert cards["ae_encoder"]["outputs"][0]["shape"] == ["batch", "frames", 3]
    assert cards["ae_decoder"]["outputs"][0]["shape"] == ["batch", "frames", 8]
    for card in cards.values():
        assert card["parity"]["passed"]
        assert set(card["split_parity"]) == {"head+tail", "head+ae+tail"}
        assert all(r["passed"] and len(r["cases"]) == 5 for r in card["split_parity"].values())
        assert any(len(c["lengths"]) > 1 for c in card["split_parity"]["head+tail"]["cases"])


def test_head_then_tail_equals_the_whole_model(split_export: Path, checkpoints: tuple[Path, Path]) -> None:
    model = _torch_model(checkpoints[0])
    spec = torch.rand(2, 1, 32, 44)
    spec[0, :, :, 25:] = 0
    feats = _session(split_export / "head.onnx").run(None, {"spec": spec.numpy()})[0]
    assert feats.shape == (2, 22, 8)
    logits = _session(split_export / "tail.onnx").run(None, {"features": feats})[0]
    code = _session(split_export / "ae_encoder.onnx").run(None, {"features": feats})[0]
    recon = _session(split_export / "ae_decoder.onnx").run(None, {"code": code})[0]
    from families.split_asr.checkpoint import load_autoencoder

    ae = load_autoencoder(checkpoints[1])
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(spec).numpy(), atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(code, ae.encoder(torch.from_numpy(feats)).numpy(), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(recon, ae(torch.from_numpy(feats)).numpy(), atol=1e-5, rtol=1e-4)
    assert code.shape == (2, 22, 3) and float(np.abs(recon).max()) > 0


def test_split_export_refuses_a_mismatched_autoencoder(tmp_path: Path, checkpoints: tuple[Path, Path],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from split.__main__ import main

    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=16, hidden_size=4, bottleneck=2))
    torch.save(ae.state_dict(), tmp_path / "ae16.pth")
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(checkpoints[0]), "--autoencoder", str(tmp_path / "ae16.pth"),
                 "--out", str(out)]) == 2
    assert "rnn_dim = 8" in caplog.text
    assert not out.exists() or not list(out.glob("*.onnx"))


def test_composition_gate_catches_a_wrong_tail(tmp_path: Path, checkpoints: tuple[Path, Path],
                                               split_export: Path) -> None:
    from families.split_asr import recipe
    from split.export_split import check_composition

    model = _torch_model(checkpoints[0])
    other = SpeechRecognitionModel(CFG).eval()  # other weights: its tail must not pass for this head's model
    report = check_composition([split_export / "head.onnx", split_export / "tail.onnx"], other,
                               lambda lens: recipe.make_spec_inputs(CFG, lens), [9, 20], output_frames,
                               atol=1e-4, rtol=1e-3, threads=1)
    assert not report["passed"] and report["failures"]
    ok = check_composition([split_export / "head.onnx", split_export / "tail.onnx"], model,
                           lambda lens: recipe.make_spec_inputs(CFG, lens), [9, 20], output_frames,
                           atol=1e-4, rtol=1e-3, threads=1)
    assert ok["passed"] and ok["max_abs"] < 1e-4


def test_preprocess_makes_the_cards_features(tmp_path: Path, whole_export: Path) -> None:
    import soundfile as sf

    from core.card import card_path_for, read_card
    from preprocess.build import BuildOptions, build_dataset
    from core.dataset_dir import DatasetDir
    from core.corpora import Utterance
    from families.registry import extract

    t = np.arange(12345) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 16000, subtype="PCM_16")
    card = read_card(card_path_for(whole_export / "model.onnx"))
    out = build_dataset([Utterance(uid="a", audio=wav, transcript="it's a test")], tmp_path / "ds", card,
                        {"kind": "test"}, BuildOptions(), progress=False)
    ds = DatasetDir.open(out)
    sample = ds.samples[0]
    ref = sample.inputs["spec"]
    assert tuple(ref.shape) == (1, 1, 32, 1 + 12345 // 200) and sample.transcript == "IT'S A TEST"
    stored = np.fromfile(out / "spec" / ref.file, dtype="<f4").reshape(ref.shape)
    want = extract(sf.read(wav, dtype="float32")[0], card.feature.params())
    np.testing.assert_allclose(stored[0, 0], want, rtol=1e-6)


def test_pipeline_runs_the_family_from_its_card(tmp_path: Path, whole_export: Path, checkpoints: tuple[Path, Path],
                                                tiny_corpus: Path) -> None:
    """preprocess -> onnxruntime and torch runners -> postprocess score, from the card alone."""
    from conftest import run_quiet
    from postprocess.__main__ import main as post
    from preprocess.__main__ import main as pre

    card = whole_export / "model.card.json"
    ds = tmp_path / "ds"
    assert pre(["--librispeech", str(tiny_corpus / "LibriSpeech" / "test-demo"), "--card", str(card),
                "--out", str(ds), "--no-progress"]) == 0
    assert run_quiet(["--backend", "onnxruntime", "--model", str(whole_export / "model.onnx"), "--dataset", str(ds),
                      "--out", str(tmp_path / "ort")]) == 0
    assert run_quiet(["--backend", "torch", "--checkpoint", str(checkpoints[0]), "--card", str(card),
                      "--dataset", str(ds), "--out", str(tmp_path / "torch")]) == 0
    scores = []
    for run in ("ort", "torch"):
        assert post(["score", "--run", str(tmp_path / run), "--dataset", str(ds), "--card", str(card)]) == 0
        scores.append(json.loads((tmp_path / run / "scores.json").read_text()))
    assert scores[0]["utterances"] == scores[1]["utterances"] > 0
    assert scores[0]["word"] == scores[1]["word"] and scores[0]["char"] == scores[1]["char"]


def test_fit_klt_weighted_by_the_tails_fisher_information(split_export: Path, checkpoints: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """fit-klt --checkpoint takes the Tail from the family's own cut; the weighted fit differs from the plain
    one, and both make working codecs on the real Head's boundary."""
    from split.__main__ import main
    from split.codecs import get_codec
    from split.codecs.klt import KLT_FILE, load_klt
    from split.edge import HeadModel, utterances_from_dataset
    from tests.split_helpers import make_dataset

    ds = make_dataset(tmp_path / "ds", count=5, feats=CFG.n_feats)
    common = ["fit-klt", "--head", str(split_export / "head.onnx"), "--dataset", str(ds), "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "plain" / KLT_FILE)]) == 0
    assert main([*common, "--checkpoint", str(checkpoints[0]), "--out", str(tmp_path / "fisher" / KLT_FILE)]) == 0
    plain, fisher = load_klt(tmp_path / "plain" / KLT_FILE), load_klt(tmp_path / "fisher" / KLT_FILE)
    assert plain.weighting == "none" and fisher.weighting == "fisher" and fisher.channels == CFG.rnn_dim
    # The split ASR Tail opens with LayerNorm over the channels (its first BiGRU block): frames standardised.
    assert plain.frame_normalize and fisher.frame_normalize
    assert not np.allclose(plain.forward, fisher.forward)
    head = HeadModel(split_export / "head.onnx")
    utt = next(iter(utterances_from_dataset(ds, head.input.name, 1)))
    boundary, _ = head.run(utt.features, utt.length)
    for where in ("plain", "fisher"):
        codec = get_codec("klt-ans", tmp_path / where)
        enc = codec.encode(boundary)
        assert codec.decode(enc.payload, enc.params, boundary.shape).shape == boundary.shape
    assert main([*common, "--checkpoint", str(checkpoints[0]), "--family", "wav2vec2", "--out",
                 str(tmp_path / "x.json")]) == 2
