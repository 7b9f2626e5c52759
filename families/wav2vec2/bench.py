"""wav2vec2 models for the throughput benchmark: wav2vec2-base's architecture with random weights."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.audio import SAMPLE_RATE


def random_wav2vec2_base(folder: Path) -> Path:
    """A Hugging Face model directory of wav2vec2-base's architecture with random weights, written into
    `folder` (speed does not depend on the weights)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    out = folder / "w2v_base"
    torch.manual_seed(0)
    out.mkdir(parents=True)
    Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32)).save_pretrained(out)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5, **{chr(65 + i): 6 + i for i in range(26)}}
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": SAMPLE_RATE,
                                                              "padding_value": 0.0, "return_attention_mask": False}))
    return out
