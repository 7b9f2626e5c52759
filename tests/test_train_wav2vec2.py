"""The demo wav2vec2 trainer: one tiny epoch, a directory the wav2vec2 recipe loads, skip/atomic reruns."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from families.wav2vec2.train import VOCAB, encode_transcript

TINY = ["--conv-dim", "16", "--hidden-size", "32", "--layers", "1", "--heads", "2", "--intermediate-size", "64",
        "--pos-conv-kernel", "16", "--pos-conv-groups", "4", "--epochs", "1", "--batch-size", "2",
        "--threads", "2", "--bf16", "off", "--val-fraction", "0.25"]


def test_vocab_layout_and_targets() -> None:
    assert VOCAB[:6] == ["<pad>", "<s>", "</s>", "<unk>", "|", "'"]
    assert VOCAB[6:] == [chr(ord("A") + i) for i in range(26)] and len(VOCAB) == 32
    text, ids = encode_transcript("  It's a 2nd  dog! ")
    assert text == "IT'S A ND DOG"
    assert [VOCAB[i] for i in ids] == list("IT'S|A|ND|DOG")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> tuple[Path, list[str]]:
    from demo.__main__ import main

    out = tmp_path_factory.mktemp("w2v_train") / "wav2vec2_demo"
    argv = ["train", "wav2vec2", "--librispeech", str(tiny_corpus / "LibriSpeech" / "train-demo"),
            "--out", str(out), *TINY]
    assert main(argv) == 0
    return out, argv


def test_trained_dir_loads_through_the_recipe(trained: tuple[Path, list[str]]) -> None:
    from families.wav2vec2 import recipe as w2v

    out, _ = trained
    model = w2v.load(out)
    facts = model.card_facts
    assert facts["labels"] == VOCAB and facts["blank_index"] == 0
    assert facts["special_tokens"] == [1, 2, 3] and facts["word_delimiter"] == "|"
    assert facts["feature"]["do_normalize"] and not facts["feature"]["return_attention_mask"]
    assert facts["feature"]["sample_rate"] == 16000
    assert facts["architecture"]["feat_extract_norm"] == "group" and facts["architecture"]["conv_dim"] == [16] * 7
    assert model.padding_invariant is False  # base-like: zero padding changes outputs
    assert json.loads((out / "vocab.json").read_text()) == {t: i for i, t in enumerate(VOCAB)}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["do_stable_layer_norm"] is False and cfg["pad_token_id"] == 0 and cfg["vocab_size"] == 32
    assert not list(out.parent.glob(".*partial*"))  # trained beside --out, renamed into place


def test_train_json(trained: tuple[Path, list[str]], tiny_corpus: Path) -> None:
    out, _ = trained
    info = json.loads((out / "train.json").read_text())
    assert info["family"] == "wav2vec2" and info["seed"] == 1234 and info["epochs"] == 1
    assert len(info["history"]) == 1 and info["chosen_epoch"] == 1
    row = info["history"][0]
    assert row["epoch"] == 1 and row["train_loss"] > 0 and 0 <= row["val_cer"] and "val_wer" in row
    n_libri = sum(1 for f in (tiny_corpus / "LibriSpeech" / "train-demo").glob("*/*/*.flac"))
    assert info["train_utterances"] + info["val_utterances"] == n_libri and info["val_utterances"] >= 1
    assert info["parameters"] > 0 and info["autocast"] == "off" and info["threads"] == 2


def test_rerun_without_force_does_nothing(trained: tuple[Path, list[str]]) -> None:
    from demo.__main__ import main

    out, argv = trained
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
