"""The split ASR model's input features as a card feature config.

The original computes `torchaudio.transforms.MelSpectrogram()` with its defaults (its training
transform adds SpecAugment masking, evaluation uses the bare transform): sample rate 16000, n_fft 400,
win_length 400, hop 200, a periodic Hann window, centred reflect-padded STFT, power 2, 128 mel bands on
the HTK scale from 0 Hz to 8 kHz without filter normalisation, and no log. preprocess computes the
`mel_spectrogram` kind from this dict (core/mel.py).
"""
from __future__ import annotations

from typing import Any

from core.audio import SAMPLE_RATE

MEL_KIND = "mel_spectrogram"  # computed by core/mel.py
N_FFT = 400
WIN_LENGTH = N_FFT
HOP_LENGTH = WIN_LENGTH // 2
N_MELS = 128
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH


def feature_config(n_mels: int = N_MELS) -> dict[str, Any]:
    """torchaudio MelSpectrogram() defaults, every parameter spelled out; n_mels = the model's n_feats."""
    return {
        "kind": MEL_KIND,
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "win_length": WIN_LENGTH,
        "hop_length": HOP_LENGTH,
        "window": "hann",
        "center": True,
        "pad_mode": "reflect",
        "power": 2.0,
        "n_mels": int(n_mels),
        "f_min": 0.0,
        "f_max": SAMPLE_RATE / 2,
        "mel_scale": "htk",
        "mel_norm": None,
        "log": None,
        "normalize": None,
        "reproduces": "torchaudio.transforms.MelSpectrogram()" + ("" if n_mels == N_MELS else f" with n_mels={n_mels}"),
    }
