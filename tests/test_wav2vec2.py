"""wav2vec2 family: loading an HF directory from local files, export + parity, features, decoding."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.card import card_path_for, load_model_and_card, read_card
from tests.card_checks import assert_card_round_trips
from families.wav2vec2 import recipe as w2v

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5, **{chr(65 + i): 6 + i for i in range(26)}}


def make_tiny_model_dir(out: Path, seed: int = 0) -> Path:
    """A random Wav2Vec2ForCTC saved as save_pretrained writes it, with processor files."""
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(VOCAB))
    tok = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(out)
    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(16,) * 7, pad_token_id=0, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4)
    Wav2Vec2ForCTC(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("w2v") / "model")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    from export.__main__ import main

    out = tmp_path_factory.mktemp("w2v_export")
    assert main(["wav2vec2", "--model-dir", str(model_dir), "--out", str(out), "--threads", "1"]) == 0
    return out / "model.onnx"


def test_export_folder_has_hf_companion_files(exported: Path, model_dir: Path) -> None:
    """config, processor and tokenizer files beside model.onnx, byte for byte (Optimum's ORTModelForCTC
    needs config.json to open the folder; tests/test_peer.py opens it there)."""
    copied = [f for f in ("config.json", "processor_config.json", "preprocessor_config.json", "vocab.json",
                          "tokenizer_config.json", "special_tokens_map.json") if (model_dir / f).is_file()]
    assert "config.json" in copied and "vocab.json" in copied
    for name in copied:
        assert (exported.parent / name).read_bytes() == (model_dir / name).read_bytes()
    assert not list(exported.parent.glob(".*.tmp"))


def test_export_card(exported: Path) -> None:
    proto, model_card = load_model_and_card(exported)
    card = model_card.to_dict()
    assert model_card.metrics == "hf" and model_card.delimiter == "|" and model_card.special_tokens == (1, 2, 3)
    assert card["family"] == "wav2vec2" and card["metrics_convention"] == "hf"
    assert card["labels"][:5] == ["<pad>", "<s>", "</s>", "<unk>", "|"] and card["blank_index"] == 0
    assert card["special_tokens"] == [1, 2, 3] and card["word_delimiter"] == "|"
    assert card["inputs"][0]["shape"] == ["batch", "samples"]
    assert card["outputs"][0]["shape"] == ["batch", "frames", 32]
    par = card["parity"]
    assert par["passed"] and par["outputs"]["logits"]["max_abs"] < 1e-4
    assert 100000 in {n for c in par["cases"] for n in c["lengths"]}
    # No attention mask + group norm: padding changes a row's logits, and the gate records by how much.
    assert par["padding_invariant"] is False
    assert par["padded_batch_vs_batch1"]["logits"]["max_abs"] > 1e-4
    assert w2v.frames_for(card["output_length_rule"], 100000) == 312


def test_waveform_features_match_transformers() -> None:
    from transformers import Wav2Vec2FeatureExtractor

    from families.registry import extract

    audio = (np.random.default_rng(0).standard_normal(12345) * 0.05).astype(np.float32)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    ref = fe(audio, sampling_rate=16000, return_tensors="np").input_values[0]
    cfg = {"kind": "wav2vec2_waveform", "do_normalize": True, "norm_eps": 1e-7}
    np.testing.assert_allclose(extract(audio, cfg), ref, atol=1e-5)


def test_incomplete_model_dir_is_named(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "m"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").unlink()
    (broken / "vocab.json").unlink()
    with pytest.raises(w2v.ModelDirError, match="missing vocab.json, model.safetensors or pytorch_model.bin"):
        w2v.load(broken)


def test_vocab_that_does_not_match_the_model(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "m"
    shutil.copytree(model_dir, broken)
    vocab = dict(VOCAB)
    vocab["Ä"] = len(vocab)
    (broken / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(w2v.ModelDirError, match="33 tokens but the model's output size .* is 32"):
        w2v.load(broken)


def test_librispeech_through_both_backends(tmp_path: Path, tiny_corpus: Path, model_dir: Path, exported: Path) -> None:
    from postprocess.score import score_run
    from preprocess.build import BuildOptions, build_dataset
    from core.dataset_dir import DatasetDir
    from core.corpora import read_librispeech
    from runners.__main__ import main as run_main

    card = read_card(card_path_for(exported))
    utts = read_librispeech(next((tiny_corpus / "LibriSpeech").glob("test*")))
    data = build_dataset(utts, tmp_path / "ds", card, {"kind": "librispeech"}, BuildOptions(), progress=False)
    ds = DatasetDir.open(data)
    x = ds.load(ds.samples[0], "input_values")
    assert x.shape == (1, ds.samples[0].num_samples)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert all(set(s.transcript) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") for s in ds.samples)
    common = ["--dataset", str(data), "--threads", "1", "--no-progress", "--warmup", "0"]
    assert run_main(["--backend", "onnxruntime", "--model", str(exported), "--out", str(tmp_path / "ort"), *common]) == 0
    assert run_main(["--backend", "torch", "--card", str(card_path_for(exported)), "--checkpoint", str(model_dir),
                     "--out", str(tmp_path / "pt"), *common]) == 0
    a, b = score_run(tmp_path / "ort", ds, card), score_run(tmp_path / "pt", ds, card)
    assert a["hypotheses"] == b["hypotheses"]
    assert a["convention"] == "hf" and a["cer_spaces"] == "counted"


def test_torchscript_trace_is_checked(tmp_path: Path, model_dir: Path) -> None:
    from export.__main__ import main

    out = tmp_path / "ts"
    assert main(["wav2vec2", "--model-dir", str(model_dir), "--out", str(out), "--torchscript", "--threads", "1"]) == 0
    card = assert_card_round_trips(card_path_for(out / "model.onnx"), tmp_path)
    ts = card.torchscript.to_dict()
    assert ts["passed"] and ts["max_abs"] < 1e-4 and {c["length"] for c in ts["cases"]} == {16000, 40000, 100000}
    traced = torch.jit.load(str(out / "model.ts.pt"))
    x = w2v.make_example_inputs([23456])["input_values"]
    with torch.no_grad():
        assert traced(x).shape[1] == w2v.frames_for(card.output_length_rule.to_dict(), 23456)


def test_modelzoo_batched_layout(tmp_path: Path, tiny_corpus: Path, exported: Path) -> None:
    """The wav2vec2 guide's layout: batch_{k}.bin of (bs,1,100000), the map (with the unscored partial
    batch), ground_truth_texts.txt, eps 1e-5; and the runner reassembles the same batches."""
    from postprocess.score import score_run
    from preprocess.__main__ import main as pre_main
    from core.dataset_dir import DatasetDir
    from runners.__main__ import main as run_main

    split = next((tiny_corpus / "LibriSpeech").glob("train*"))
    card = card_path_for(exported)
    out = tmp_path / "mz"
    assert pre_main(["--librispeech", str(split), "--card", str(card), "--out", str(out), "--modelzoo",
                     "--batch-size", "3", "--no-progress"]) == 0
    ds = DatasetDir.open(out)
    batch_map = json.loads((out / "batch_i_filename_map_bs3.json").read_text())
    n = sum(len(v) for v in batch_map.values())
    full = n // 3
    assert sorted(p.name for p in (out / "input_values").iterdir()) == sorted(f"batch_{k}.bin" for k in range(full))
    assert (out / "input_values" / "batch_0.bin").stat().st_size == 3 * 100000 * 4
    assert len(ds.samples) == full * 3 and ds.header["unscored_partial_batch"] == batch_map.get(f"batch_{full}", [])
    assert ds.header["feature"]["norm_eps"] == 1e-5
    truth = (out / "ground_truth_texts.txt").read_text().splitlines()
    assert len(truth) == n and all(" " in line for line in truth)
    raw = np.fromfile(out / "input_values" / "batch_0.bin", dtype="<f4").reshape(3, 1, 100000)
    first = ds.samples[0]
    np.testing.assert_array_equal(ds.load(first, "input_values")[0], raw[0, 0])
    x = raw[0, 0, : first.num_samples]
    assert abs(float(x.mean())) < 1e-4 and not np.any(raw[0, 0, first.num_samples:])
    assert run_main(["--backend", "onnxruntime", "--model", str(exported), "--dataset", str(out), "--out",
                     str(tmp_path / "run"), "--batch-size", "3", "--keep-order", "--threads", "1", "--no-progress"]) == 0
    scored = score_run(tmp_path / "run", ds, read_card(card))
    assert scored["utterances"] == full * 3
    guide = score_run(tmp_path / "run", ds, read_card(card), modelzoo=True)
    assert guide["decode_lengths"] == "ModelZoo postprocess: every output frame"  # every one of the 312 frames, padding included


def test_other_rates_are_resampled_by_default_and_long_clips_skipped(tmp_path: Path, exported: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import soundfile as sf

    from preprocess.__main__ import main as pre_main
    from core.dataset_dir import DatasetDir

    split = tmp_path / "LibriSpeech" / "test-x" / "1" / "2"
    split.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(split / "1-2-0000.flac", (rng.standard_normal(8000) * 3000).astype(np.int16), 8000, subtype="PCM_16")
    sf.write(split / "1-2-0001.flac", (rng.standard_normal(48000) * 3000).astype(np.int16), 16000, subtype="PCM_16")
    (split / "1-2.trans.txt").write_text("1-2-0000 HELLO\n1-2-0001 WORLD\n")
    card = str(card_path_for(exported))
    caplog.set_level("INFO")
    out = tmp_path / "ds"
    assert pre_main(["--librispeech", str(split.parents[1]), "--card", card, "--out", str(out), "--max-samples",
                     "40000", "--no-progress"]) == 0
    ds = DatasetDir.open(out)
    assert [s.uid for s in ds.samples] == ["1-2-0000"] and ds.samples[0].num_samples == 16000
    assert "resampling 8000 Hz -> 16000 Hz" in caplog.text and "1-2-0001.flac" in caplog.text
    caplog.clear()
    assert pre_main(["--librispeech", str(split.parents[1]), "--card", card, "--out", str(tmp_path / "ds2"),
                     "--no-resample", "--no-progress"]) == 2
    assert "sample rate 8000 Hz, expected 16000 Hz" in caplog.text
