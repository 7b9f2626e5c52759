"""DeepSpeech2 models for the throughput benchmark: V3.0 checkpoints with random weights.

Speed does not depend on the weights, so a random model of a real size, saved in the V3.0 checkpoint
format, loads and runs through the same path as a trained one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from families.deepspeech2.checkpoint_writer import save_deepspeech_checkpoint
from families.deepspeech2.recipe import DeepSpeechConfig, build_model


def an4_size_config() -> DeepSpeechConfig:
    """deepspeech.pytorch V3.0's an4 model: 5 bidirectional LSTM layers of 1024 (86.6 M parameters)."""
    return DeepSpeechConfig(rnn_type="lstm", hidden_size=1024, hidden_layers=5, bidirectional=True)


def random_deepspeech2_checkpoint(path: Path, config: DeepSpeechConfig | None = None) -> Path:
    """A DeepSpeech2 of `config` (default the an4 size) with random weights, saved as a V3.0 checkpoint."""
    cfg = config or an4_size_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    save_deepspeech_checkpoint(path, model.state_dict(), cfg.labels, cfg.model_dict(), cfg.spect_dict())
    return path


def random_an4_size_checkpoint(folder: Path) -> Path:
    """The benchmark's --deepspeech2-real model, written into `folder`."""
    return random_deepspeech2_checkpoint(folder / "deepspeech2_an4_size.ckpt")
