"""The split ASR features: torchaudio MelSpectrogram() defaults, checked against the documented formula.

The reference below is written from the definitions (a reflect-padded centred frame, the periodic Hann
window, the DFT as a matrix product, |X|^2, HTK mel = 2595 log10(1 + f / 700), triangular filters with
vertices at equally spaced mels interpolated on the linear FFT-bin frequencies, as
torchaudio.functional.melscale_fbanks builds them) and shares no code with core/mel.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from families.split_asr.features import feature_config
from families.registry import extract, frames_for

CFG = feature_config()


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def reference_fbank(sr: int = 16000, n_fft: int = 400, n_mels: int = 128) -> np.ndarray:
    n_freqs = n_fft // 2 + 1
    all_freqs = np.linspace(0, sr // 2, n_freqs)
    f_pts = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sr / 2)), n_mels + 2))
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        lo, mid, hi = f_pts[m], f_pts[m + 1], f_pts[m + 2]
        down = (all_freqs - lo) / (mid - lo)
        up = (hi - all_freqs) / (hi - mid)
        fb[:, m] = np.maximum(0.0, np.minimum(down, up))
    return fb.T  # (n_mels, n_freqs)


def reference_mel(audio: np.ndarray, sr: int = 16000, n_fft: int = 400, hop: int = 200, n_mels: int = 128) -> np.ndarray:
    x = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann (torch.hann_window's default)
    frames = np.stack([x[i * hop: i * hop + n_fft] * window for i in range(n_frames)])
    k = np.arange(n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(n, k) / n_fft)
    power = np.abs(frames @ dft) ** 2  # (frames, freqs)
    return reference_fbank(sr, n_fft, n_mels) @ power.T


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
            ).astype(np.float32)


def test_config_is_torchaudio_defaults() -> None:
    assert CFG["kind"] == "mel_spectrogram"
    assert (CFG["sample_rate"], CFG["n_fft"], CFG["win_length"], CFG["hop_length"]) == (16000, 400, 400, 200)
    assert (CFG["n_mels"], CFG["mel_scale"], CFG["mel_norm"], CFG["power"], CFG["log"]) == (128, "htk", None, 2.0, None)
    assert (CFG["f_min"], CFG["f_max"], CFG["center"], CFG["pad_mode"]) == (0.0, 8000.0, True, "reflect")


@pytest.mark.parametrize("n", [400, 3201, 16000])
def test_matches_the_formula(n: int) -> None:
    audio = _speechlike(n)
    got = extract(audio, CFG)
    ref = reference_mel(audio)
    assert got.dtype == np.float32 and got.shape == ref.shape == (128, 1 + n // 200)
    assert got.shape[1] == frames_for(n, CFG)
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


def test_filterbank_matches_the_formula() -> None:
    from core.mel import mel_filterbank

    fb = mel_filterbank(16000, 400, 128, 0.0, 8000.0, "htk", None)
    ref = reference_fbank()
    assert fb.shape == (128, 201)
    np.testing.assert_allclose(fb, ref, atol=1e-6)
    # 128 HTK bands on 201 bins: some low bands fall between bins and are all zero, as in torchaudio.
    assert (fb.sum(axis=1) == 0).any() and (fb.sum(axis=1) > 0).sum() > 100


def test_a_tone_lands_in_its_band() -> None:
    t = np.arange(16000) / 16000
    mel = extract((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), CFG)
    band = int(mel[:, 10:-10].mean(axis=1).argmax())
    centres = _mel_to_hz(np.linspace(0, _hz_to_mel(np.array(8000.0)), 130))[1:-1]
    assert abs(centres[band] - 1000) < 60


def test_unsupported_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="mel_scale"):
        extract(_speechlike(800), {**CFG, "mel_scale": "bark"})
    with pytest.raises(ValueError, match="log"):
        extract(_speechlike(800), {**CFG, "log": "natural"})


def test_matches_torchaudio_when_it_imports() -> None:
    torchaudio = pytest.importorskip("torchaudio")  # not importable beside CPU torch on our machines
    import torch

    audio = _speechlike(8000)
    ref = torchaudio.transforms.MelSpectrogram()(torch.from_numpy(audio)).numpy()
    np.testing.assert_allclose(extract(audio, CFG), ref, rtol=1e-4, atol=1e-5 * float(ref.max()))
