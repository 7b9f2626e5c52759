"""wav2vec2's input feature: the waveform normalised as Hugging Face's Wav2Vec2FeatureExtractor does."""
from __future__ import annotations

from typing import Any

import numpy as np

FEATURE_KIND = "wav2vec2_waveform"


def wav2vec2_waveform(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(samples,) float32: zero mean, unit variance over the utterance, as Wav2Vec2FeatureExtractor does
    (population variance plus `norm_eps`, before any padding; a constant clip, silence included, gives
    zeros)."""
    x = audio.astype(np.float32)
    if cfg.get("do_normalize", True):
        x = ((x - x.mean()) / np.sqrt(x.var() + float(cfg.get("norm_eps", 1e-7)))).astype(np.float32)
    return x
