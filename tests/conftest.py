"""Shared fixtures: a tiny synthetic corpus and a tiny DeepSpeech2 checkpoint, made once per session."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AN4 + LibriSpeech layouts, a handful of utterances each (espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup_env.sh installs it)")
    from demo.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(root, seed=7, an4_train=16, an4_test=6, libri_train=4, libri_test=3, workers=2,
                      progress=False)
    return root


def make_tiny_checkpoint(path: Path, *, bidirectional: bool = True, rnn_type: str = "lstm",
                         hidden: int = 16, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised DeepSpeech2 saved in the V3.0 checkpoint structure (BN stats randomised)."""
    from families.deepspeech2.recipe import DeepSpeechConfig, build_model
    from families.deepspeech2.checkpoint_writer import save_deepspeech_checkpoint

    torch.manual_seed(seed)
    cfg = DeepSpeechConfig(rnn_type=rnn_type, hidden_size=hidden, hidden_layers=layers, bidirectional=bidirectional,
                           lookahead_context=None if bidirectional else 4)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    save_deepspeech_checkpoint(path, model.state_dict(), cfg.labels, cfg.model_dict(), cfg.spect_dict())
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path) -> Path:
    """The tiny checkpoint exported (parity gate passed): returns the .onnx path."""
    from export.__main__ import main

    out = tmp_path_factory.mktemp("export")
    assert main(["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--threads", "1"]) == 0
    return out / "model.onnx"


@pytest.fixture(scope="session")
def tiny_an4_test(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path, tiny_export: Path) -> Path:
    """The tiny corpus's AN4 test split preprocessed for the tiny export (read-only for tests)."""
    from core.card import card_path_for, read_card
    from preprocess.build import BuildOptions, build_dataset
    from core.corpora import read_an4_raw

    out = tmp_path_factory.mktemp("ds") / "an4_test"
    build_dataset(read_an4_raw(tiny_corpus / "an4", "test"), out, read_card(card_path_for(tiny_export)),
                  {"kind": "an4_raw"}, BuildOptions(), progress=False)
    return out


def run_quiet(args: list[str]) -> int:
    """`python -m runners ARGS` in-process, one thread, one warm-up batch, no progress bar."""
    from runners.__main__ import main

    return main(args + ["--no-progress", "--threads", "1", "--warmup", "1"])


@pytest.fixture(scope="session")
def uni_stream_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real-format unidirectional GRU fixture exported as a streaming graph of 16-frame chunks (gated)."""
    from export.__main__ import main

    out = tmp_path_factory.mktemp("uni_stream16")
    checkpoint = Path(__file__).parent / "fixtures" / "ds2_v3_unidir_gru_tiny.ckpt"
    assert main(["deepspeech2", "--checkpoint", str(checkpoint), "--streaming", "--chunk-frames", "16",
                 "--out", str(out), "--threads", "1"]) == 0
    return out / "model.onnx"
