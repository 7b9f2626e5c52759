"""The demo split ASR trainers: a few steps of a tiny model and of its autoencoder, written in the
original's formats and loaded back through the family's readers and the split export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY = ["--n-cnn", "1", "--n-rnn", "2", "--rnn-dim", "8", "--n-feats", "32", "--epochs", "1", "--batch-size", "2",
        "--threads", "1", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> tuple[Path, Path]:
    from demo.__main__ import main

    root = tmp_path_factory.mktemp("split_asr_train")
    libri = tiny_corpus / "LibriSpeech" / "train-demo"
    assert main(["train", "split_asr", "--librispeech", str(libri), "--out", str(root / "model.pth"), *TINY]) == 0
    assert main(["train", "split_asr", "--autoencoder", "--checkpoint", str(root / "model.pth"), "--librispeech",
                 str(libri), "--out", str(root / "autoencoder.pth"), "--ae-hidden", "6", "--ae-bottleneck", "2",
                 *TINY]) == 0
    return root / "model.pth", root / "autoencoder.pth"


def test_model_pth_is_a_plain_state_dict_that_loads(trained: tuple[Path, Path]) -> None:
    from families.split_asr.checkpoint import load_model

    sd = torch.load(trained[0], weights_only=True)
    assert isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
    _, cfg = load_model(trained[0])
    assert (cfg.n_cnn_layers, cfg.n_rnn_layers, cfg.rnn_dim, cfg.n_feats, cfg.n_class) == (1, 2, 8, 32, 29)
    info = json.loads(trained[0].with_name("model.train.json").read_text())
    assert info["family"] == "split_asr" and info["seed"] == 7 and len(info["history"]) == 1
    row = info["history"][0]
    assert row["train_loss"] > 0 and 0 <= row["val_cer"] and info["val_utterances"] >= 1
    assert info["feature"]["kind"] == "mel_spectrogram" and info["feature"]["n_mels"] == 32


def test_autoencoder_pth_loads_against_the_model(trained: tuple[Path, Path]) -> None:
    from families.split_asr.checkpoint import load_autoencoder

    ae = load_autoencoder(trained[1], rnn_dim=8)
    assert (ae.cfg.input_size, ae.cfg.hidden_size, ae.cfg.bottleneck) == (8, 6, 2)
    info = json.loads(trained[1].with_name("autoencoder.train.json").read_text())
    assert info["part"] == "autoencoder" and info["history"][0]["train_mse"] > 0
    assert "val_relative_mse" in info["history"][0]


def test_trained_files_split_export(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from split.__main__ import main

    assert main(["export", "--checkpoint", str(trained[0]), "--autoencoder", str(trained[1]), "--out",
                 str(tmp_path), "--threads", "1"]) == 0
    assert (tmp_path / "ae_decoder.onnx").is_file() and (tmp_path / "head.card.json").is_file()


def test_rerun_keeps_the_trained_file(trained: tuple[Path, Path], tiny_corpus: Path) -> None:
    from demo.__main__ import main

    before = trained[0].stat().st_mtime_ns
    assert main(["train", "split_asr", "--librispeech", str(tiny_corpus / "LibriSpeech" / "train-demo"),
                 "--out", str(trained[0]), *TINY]) == 0
    assert trained[0].stat().st_mtime_ns == before
    assert json.loads(trained[0].with_name("model.train.json").read_text())["options"]["rnn_dim"] == 8
    ae_options = json.loads(trained[1].with_name("autoencoder.train.json").read_text())["options"]
    assert set(ae_options["checkpoint"]) == {"sha256"}  # the model under it, by content


def test_rerun_with_other_options_trains_again(trained: tuple[Path, Path], tiny_corpus: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # A changed option must not leave the old model in place (run_all passes the plan's options every time).
    import logging
    import shutil

    from demo.__main__ import main

    caplog.set_level(logging.INFO)
    out = tmp_path / "autoencoder.pth"
    shutil.copy(trained[1], out)
    shutil.copy(trained[1].with_name("autoencoder.train.json"), tmp_path / "autoencoder.train.json")
    args = ["train", "split_asr", "--autoencoder", "--checkpoint", str(trained[0]), "--librispeech",
            str(tiny_corpus / "LibriSpeech" / "train-demo"), "--out", str(out), "--ae-hidden", "6",
            "--ae-bottleneck", "2"]
    before = out.stat().st_mtime_ns
    assert main([*args, *TINY]) == 0 and out.stat().st_mtime_ns == before
    assert main([*args, *TINY, "--seed", "8"]) == 0
    assert "trained with other options (seed 7 -> 8); training it again" in caplog.text
    assert out.stat().st_mtime_ns != before
    assert json.loads((tmp_path / "autoencoder.train.json").read_text())["options"]["seed"] == 8


def test_autoencoder_needs_a_checkpoint(tmp_path: Path, tiny_corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    from demo.__main__ import main

    assert main(["train", "split_asr", "--autoencoder", "--librispeech", str(tiny_corpus / "LibriSpeech" / "train-demo"),
                 "--out", str(tmp_path / "ae.pth"), *TINY]) == 2
    assert "--checkpoint" in caplog.text and not (tmp_path / "ae.pth").exists()


def test_spec_augment_masks_within_bounds() -> None:
    from families.split_asr.train import spec_augment

    spec = torch.ones(2, 1, 32, 50)
    out = spec_augment(spec, 10, 20, torch.Generator().manual_seed(0))
    assert out.shape == spec.shape and torch.equal(spec, torch.ones_like(spec))  # input untouched
    zero_rows = (out[0, 0] == 0).all(dim=1).sum()
    zero_cols = (out[0, 0] == 0).all(dim=0).sum()
    assert zero_rows < 10 and zero_cols < 20 and torch.equal(out[0], out[1])
    assert torch.equal(spec_augment(spec, 0, 0, torch.Generator()), spec)


def test_spread_trains_on_utterances_from_the_whole_split(tmp_path: Path, tiny_corpus: Path) -> None:
    # --limit takes the first N (a few speakers of a split in reading order); --spread N steps over all of it.
    from core.corpora import spread_evenly
    from demo.__main__ import main

    assert spread_evenly(list(range(10)), 4) == [0, 2, 5, 7] and spread_evenly([1, 2], 5) == [1, 2]
    out = tmp_path / "model.pth"
    assert main(["train", "split_asr", "--librispeech", str(tiny_corpus / "LibriSpeech" / "train-demo"),
                 "--out", str(out), *TINY, "--spread", "4"]) == 0
    record = json.loads(out.with_name("model.train.json").read_text())
    assert record["train_utterances"] + record["val_utterances"] == 4 and record["options"]["spread"] == 4
