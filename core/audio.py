"""Reading audio: headerless big-endian AN4 .raw, and anything libsndfile reads (FLAC, WAV).

Every loader returns mono float32 in [-1, 1) at the requested rate, or raises AudioError naming the file
and what was expected. A raw file carries no header, so its rate and sample format come from the caller.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger("preprocess")

RAW_SUFFIXES = {".raw", ".pcm"}
# The rate the corpora (LibriSpeech, AN4) and every model family here use: the default wherever a rate is
# not given by a card or a flag.
SAMPLE_RATE = 16000
# Shortest audio the centred STFT can reflect-pad: more than half an n_fft window.
MIN_SAMPLES = 200


class AudioError(ValueError):
    """Audio that cannot be used as it is; the message names the file and what was expected."""


def read_raw_pcm(path: Path, *, byte_order: str = "big") -> np.ndarray:
    """Samples of a headerless 16-bit mono file as float32 (AN4's .raw is big-endian)."""
    data = Path(path).read_bytes()
    if len(data) % 2:
        raise AudioError(f"{path}: {len(data)} bytes is not a whole number of 16-bit samples (truncated file?)")
    dtype = ">i2" if byte_order == "big" else "<i2"
    return np.frombuffer(data, dtype=dtype).astype(np.float32) / 32768.0


def _read_soundfile(path: Path, *, downmix: bool) -> tuple[np.ndarray, int]:
    # One open for the checks and the read: opening a FLAC parses its headers, a cost per file that a
    # large test set pays once per open.
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile's own error text says what is wrong with the file
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    with f:
        if f.subtype not in ("PCM_16",):
            raise AudioError(f"{path}: sample format {f.subtype}, expected 16-bit PCM (PCM_16)")
        if f.channels != 1 and not downmix:
            raise AudioError(f"{path}: {f.channels} channels, expected mono (pass --downmix to average them, "
                             "as deepspeech.pytorch does)")
        audio = f.read(dtype="float32", always_2d=True)
        rate = f.samplerate
    return audio.mean(axis=1).astype(np.float32), int(rate)


def load_audio(path: Path, *, sample_rate: int = SAMPLE_RATE, raw_rate: int | None = None, resample: bool = False,
               downmix: bool = False) -> np.ndarray:
    """Mono float32 audio at `sample_rate`.

    `raw_rate` is the rate of headerless files (which cannot say it themselves; default: `sample_rate`).
    A file at another rate is refused unless `resample` is set, in which case it is resampled with soxr
    and a warning is logged.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    if path.suffix.lower() in RAW_SUFFIXES:
        audio, rate = read_raw_pcm(path), int(raw_rate or sample_rate)
    else:
        audio, rate = _read_soundfile(path, downmix=downmix)
    if audio.size == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if rate != sample_rate:
        if not resample:
            raise AudioError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz "
                             "(pass --resample to convert it, or --raw-rate for headerless files)")
        import soxr

        log.warning("%s: resampling %d Hz -> %d Hz", path, rate, sample_rate)
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32)
    if audio.size < MIN_SAMPLES:
        raise AudioError(f"{path}: {audio.size} samples is too short (need at least {MIN_SAMPLES})")
    return audio


def decode_audio(path: Path, **options: Any) -> np.ndarray:
    """load_audio, with libsndfile's decode errors (soundfile.LibsndfileError, a RuntimeError raised by a
    truncated FLAC whose header still reads) turned into an AudioError naming the file."""
    try:
        return load_audio(path, **options)
    except RuntimeError as exc:
        raise AudioError(f"{path}: cannot be decoded ({exc}); expected a complete audio file "
                         "(truncated or corrupt?)") from None


def num_samples(path: Path, *, sample_rate: int = SAMPLE_RATE, raw_rate: int | None = None) -> int:
    """Sample count at `sample_rate` without decoding (for ordering a set by length before reading it)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    if path.suffix.lower() in RAW_SUFFIXES:
        n, rate = path.stat().st_size // 2, int(raw_rate or sample_rate)
    else:
        try:
            info = sf.info(str(path))
        except Exception as exc:
            raise AudioError(f"{path}: not a readable audio file ({exc})") from None
        n, rate = info.frames, info.samplerate
    return n if rate == sample_rate else int(round(n * sample_rate / rate))
