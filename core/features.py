"""Model input features: what a feature kind is, and the checks every kind's output gets.

A feature kind is declared by the family that defines it (its `Family.features`, families/<name>/): one
function from mono float32 audio to an array whose last axis is time, plus the rule that gives its frame
count from the sample count (so a whole set can be ordered by length before any audio is decoded). The
card's `feature` entry names the kind and every parameter; families/registry.py finds the kind by name.
Only family-independent helpers live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import librosa
import numpy as np

from core.audio import AudioError

# Floor under a per-utterance std. A normalisation that divides by the std as it is turns digital silence
# (every value equal, std 0) into 0/0 = NaN everywhere. With the floor, silence normalises to all zeros
# (the mean), and any clip with sound is untouched: its std is many orders of magnitude above the floor.
SPECT_STD_FLOOR = 1e-6

FeatureFunction = Callable[[np.ndarray, dict[str, Any]], np.ndarray]
FrameRule = Callable[[int, dict[str, Any]], int]


def normalize_utterance(x: np.ndarray, ddof: int) -> np.ndarray:
    """(x - mean) / std over the whole array (float64 statistics), the std floored at SPECT_STD_FLOOR."""
    mean = x.mean(dtype=np.float64)
    std = x.std(dtype=np.float64, ddof=ddof)
    return ((x - mean) / max(std, SPECT_STD_FLOOR)).astype(np.float32)


@lru_cache(maxsize=8)
def stft_window(name: str, length: int) -> np.ndarray:
    """The window librosa.stft builds from a window name (periodic, as for an FFT), made once per config and
    passed to it as an array instead of rebuilt for every clip (on short clips, building it is a visible
    share of the STFT's time)."""
    window = librosa.filters.get_window(name, length, fftbins=True)
    window.setflags(write=False)  # shared by every clip
    return window


def samples_as_frames(num_samples: int, cfg: dict[str, Any]) -> int:
    """The frame rule of a waveform kind: one frame per sample."""
    return num_samples


@dataclass(frozen=True)
class FeatureKind:
    """One kind of model input feature: how to compute it and how many frames it has."""

    compute: FeatureFunction
    frames: FrameRule

    def extract(self, audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
        """The features of one clip; raises AudioError rather than return a NaN/inf feature."""
        bad = int(audio.size - np.isfinite(audio).sum())
        if bad:
            raise AudioError(f"a {audio.size}-sample clip holds {bad} non-finite samples; expected finite audio")
        feats = self.compute(audio, cfg)
        bad = int(feats.size - np.isfinite(feats).sum())
        if bad:
            raise AudioError(f"{cfg.get('kind')} features of a {audio.size}-sample clip hold {bad} non-finite "
                             f"values of {feats.size}; expected finite features")
        return feats
