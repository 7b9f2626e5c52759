"""Mel spectrograms as torchaudio's `transforms.MelSpectrogram` computes them, without torchaudio.

torchaudio's PyPI wheels do not import beside the CPU torch we use, so its transform is reproduced
here with librosa: a centred STFT (reflect padding, periodic Hann window of win_length, n_fft bins),
power |X|^p, then a triangular mel filterbank on the linear frequency axis (HTK or Slaney mel scale,
optional Slaney area normalisation), applied as `fbank @ power`. With the card's parameters at
torchaudio's defaults (sample rate 16000, n_fft 400, hop 200, 128 HTK mels, f_min 0, f_max sr/2,
no norm, power 2, no log) this is `torchaudio.transforms.MelSpectrogram()`.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any

import librosa
import numpy as np

from core.features import stft_window

MEL_SCALES = ("htk", "slaney")


def _params(cfg: dict[str, Any]) -> tuple[int, int, int, int, float, float, str, str | None]:
    sr = int(cfg["sample_rate"])
    n_fft = int(cfg["n_fft"])
    win = int(cfg.get("win_length") or n_fft)
    hop = int(cfg.get("hop_length") or win // 2)
    f_min = float(cfg.get("f_min", 0.0))
    f_max = float(cfg.get("f_max") or sr / 2)
    scale = str(cfg.get("mel_scale", "htk"))
    if scale not in MEL_SCALES:
        raise ValueError(f"mel_scale {scale!r} is not one of {MEL_SCALES}")
    norm = cfg.get("mel_norm")
    if norm not in (None, "slaney"):
        raise ValueError(f"mel_norm {norm!r} is not None or 'slaney'")
    if cfg.get("log") is not None:
        raise ValueError(f"log {cfg['log']!r} is not supported for mel_spectrogram (torchaudio's transform has none)")
    return sr, n_fft, win, hop, f_min, f_max, scale, norm


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float, mel_scale: str,
                   norm: str | None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, as torchaudio.functional.melscale_fbanks
    (transposed). With many mels and few FFT bins some low filters are all zero; torchaudio keeps them
    (and warns), so do we."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
                                 htk=mel_scale == "htk", norm=norm, dtype=np.float32)
    fb.setflags(write=False)
    return fb


def mel_spectrogram(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(n_mels, frames) float32 for mono float audio, frames = mel_frames(len(audio), cfg)."""
    sr, n_fft, win, hop, f_min, f_max, scale, norm = _params(cfg)
    stft = librosa.stft(audio.astype(np.float32), n_fft=n_fft, hop_length=hop, win_length=win,
                        window=stft_window(cfg.get("window", "hann"), win), center=bool(cfg.get("center", True)),
                        pad_mode=cfg.get("pad_mode", "reflect"))
    power = float(cfg.get("power", 2.0))
    spec = np.abs(stft) ** power if power != 1.0 else np.abs(stft)
    fb = mel_filterbank(sr, n_fft, int(cfg["n_mels"]), f_min, f_max, scale, norm)
    mel = fb @ spec.astype(np.float32)
    return mel.astype(np.float32, copy=False)


def mel_frames(num_samples: int, cfg: dict[str, Any]) -> int:
    _, n_fft, _, hop, *_ = _params(cfg)
    if cfg.get("center", True):
        return 1 + num_samples // hop
    return 1 + (num_samples - n_fft) // hop
