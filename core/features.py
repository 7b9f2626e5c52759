"""Model input features, chosen by the `feature` entry of a model card.

Each feature kind is one function from mono float32 audio to an array whose last axis is time, plus the
rule that gives its frame count from the sample count (so a whole set can be ordered by length before
any audio is decoded).
"""
from __future__ import annotations

from typing import Any, Callable

import librosa
import numpy as np

from core.audio import AudioError
from core.mel import mel_frames, mel_spectrogram

# Floor under the per-utterance std of the DeepSpeech spectrogram. deepspeech.pytorch divides by the std
# as it is, so digital silence (every magnitude 0, std 0) gives 0/0 = NaN in every bin. With the floor,
# silence normalises to all zeros (the mean), and any clip with sound is untouched: its log-magnitude std
# is many orders of magnitude above the floor.
SPECT_STD_FLOOR = 1e-6


def deepspeech_spectrogram(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(freq_bins, frames) float32: |STFT| -> log1p -> (x - mean) / std over the whole utterance.

    This is deepspeech.pytorch V3.0's SpectrogramParser without augmentation: librosa's centred STFT
    with n_fft = win_length (0.02 s at 16 kHz = 320), hop 160, a hamming window, then per-utterance
    normalisation with the unbiased std (torch.std's default, hence ddof=1), floored at SPECT_STD_FLOOR
    so that digital silence gives zeros where the original gives NaN.
    """
    stft = librosa.stft(
        audio.astype(np.float32),
        n_fft=int(cfg["n_fft"]),
        hop_length=int(cfg["hop_length"]),
        win_length=int(cfg["win_length"]),
        window=cfg["window"],
        center=bool(cfg.get("center", True)),
        pad_mode=cfg.get("pad_mode", "reflect"),
    )
    spect = np.log1p(np.abs(stft)).astype(np.float32)
    if cfg.get("normalize") == "utterance_mean_std":
        mean = spect.mean(dtype=np.float64)
        std = spect.std(dtype=np.float64, ddof=int(cfg.get("std_ddof", 1)))
        spect = ((spect - mean) / max(std, SPECT_STD_FLOOR)).astype(np.float32)
    return spect


def deepspeech_frames(num_samples: int, cfg: dict[str, Any]) -> int:
    if cfg.get("center", True):
        return 1 + num_samples // int(cfg["hop_length"])
    return 1 + (num_samples - int(cfg["n_fft"])) // int(cfg["hop_length"])


def wav2vec2_waveform(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """(samples,) float32: zero mean, unit variance over the utterance, as Wav2Vec2FeatureExtractor does
    (population variance plus `norm_eps`, before any padding; a constant clip, silence included, gives
    zeros)."""
    x = audio.astype(np.float32)
    if cfg.get("do_normalize", True):
        x = ((x - x.mean()) / np.sqrt(x.var() + float(cfg.get("norm_eps", 1e-7)))).astype(np.float32)
    return x


EXTRACTORS: dict[str, Callable[[np.ndarray, dict[str, Any]], np.ndarray]] = {
    "deepspeech_spectrogram": deepspeech_spectrogram,
    "wav2vec2_waveform": wav2vec2_waveform,
    "mel_spectrogram": mel_spectrogram,
}
FRAME_RULES: dict[str, Callable[[int, dict[str, Any]], int]] = {
    "deepspeech_spectrogram": deepspeech_frames,
    "wav2vec2_waveform": lambda num_samples, cfg: num_samples,
    "mel_spectrogram": mel_frames,
}


def extract(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """The card's features of one clip; raises AudioError rather than return a NaN/inf feature."""
    kind = cfg.get("kind")
    if kind not in EXTRACTORS:
        raise ValueError(f"feature kind {kind!r} is not supported; known: {sorted(EXTRACTORS)}")
    bad = int(audio.size - np.isfinite(audio).sum())
    if bad:
        raise AudioError(f"a {audio.size}-sample clip holds {bad} non-finite samples; expected finite audio")
    feats = EXTRACTORS[kind](audio, cfg)
    bad = int(feats.size - np.isfinite(feats).sum())
    if bad:
        raise AudioError(f"{kind} features of a {audio.size}-sample clip hold {bad} non-finite values of "
                         f"{feats.size}; expected finite features")
    return feats


def frames_for(num_samples: int, cfg: dict[str, Any]) -> int:
    return FRAME_RULES[cfg["kind"]](num_samples, cfg)
