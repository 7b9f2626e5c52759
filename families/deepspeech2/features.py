"""DeepSpeech2's input features: deepspeech.pytorch V3.0's spectrogram, computed from the card's config."""
from __future__ import annotations

from typing import Any

import librosa
import numpy as np

from core.features import normalize_utterance, stft_window

FEATURE_KIND = "deepspeech_spectrogram"


def deepspeech_spectrogram(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(freq_bins, frames) float32: |STFT| -> log1p -> (x - mean) / std over the whole utterance.

    This is deepspeech.pytorch V3.0's SpectrogramParser without augmentation: librosa's centred STFT
    with n_fft = win_length (0.02 s at 16 kHz = 320), hop 160, a hamming window, then per-utterance
    normalisation with the unbiased std (torch.std's default, hence ddof=1), floored at
    core.features.SPECT_STD_FLOOR so that digital silence gives zeros where the original gives NaN.
    """
    stft = librosa.stft(
        audio.astype(np.float32),
        n_fft=int(cfg["n_fft"]),
        hop_length=int(cfg["hop_length"]),
        win_length=int(cfg["win_length"]),
        window=stft_window(cfg["window"], int(cfg["win_length"])),
        center=bool(cfg.get("center", True)),
        pad_mode=cfg.get("pad_mode", "reflect"),
    )
    spect = np.log1p(np.abs(stft)).astype(np.float32)
    if cfg.get("normalize") == "utterance_mean_std":
        spect = normalize_utterance(spect, ddof=int(cfg.get("std_ddof", 1)))
    return spect


def deepspeech_frames(num_samples: int, cfg: dict[str, Any]) -> int:
    if cfg.get("center", True):
        return 1 + num_samples // int(cfg["hop_length"])
    return 1 + (num_samples - int(cfg["n_fft"])) // int(cfg["hop_length"])
