"""Digital silence and constant clips: features are never NaN, and preprocess never writes a NaN tensor."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from families.deepspeech2.recipe import DeepSpeechConfig, feature_config
from core.audio import AudioError
from families.deepspeech2.features import deepspeech_spectrogram
from core.model_card import ModelCard
from families.registry import extract
from families.wav2vec2.features import wav2vec2_waveform

FEAT = feature_config(DeepSpeechConfig())
FIXTURE_AN4 = Path(__file__).parent / "fixtures" / "real_formats" / "an4"


@pytest.mark.parametrize("value", [0.0, 0.25])
def test_constant_clip_gives_finite_spectrogram(value: float) -> None:
    """deepspeech.pytorch divides by the std as it is: silence gives 0/0 = NaN there; ours gives zeros."""
    spect = deepspeech_spectrogram(np.full(16000, value, dtype=np.float32), FEAT)
    assert np.isfinite(spect).all()
    if value == 0.0:
        assert not spect.any()


def test_wav2vec2_silence_is_zeros() -> None:
    x = wav2vec2_waveform(np.zeros(4000, dtype=np.float32), {"do_normalize": True, "norm_eps": 1e-7})
    assert np.isfinite(x).all() and not x.any()


def test_non_finite_audio_and_features_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = np.ones(4000, dtype=np.float32)
    audio[10] = np.nan
    with pytest.raises(AudioError, match="holds 1 non-finite samples"):
        extract(audio, FEAT)
    from core import features

    # A feature function that ever lets NaN through (here: no std floor) is stopped at extract().
    monkeypatch.setattr(features, "SPECT_STD_FLOOR", 0.0)
    with np.errstate(invalid="ignore"), pytest.raises(AudioError, match="deepspeech_spectrogram features of a "
                                                                        "4000-sample clip hold"):
        extract(np.zeros(4000, dtype=np.float32), FEAT)


def test_preprocess_writes_no_nan_for_digital_silence(tmp_path: Path) -> None:
    """An AN4 recording replaced by digital silence used to become a 100% NaN spect .bin, silently."""
    from preprocess.build import BuildOptions, build_dataset
    from core.dataset_dir import DatasetDir
    from core.corpora import read_an4_raw

    root = tmp_path / "an4"
    shutil.copytree(FIXTURE_AN4, root)
    silent = root / "wav" / "an4test_clstk" / "fcaw" / "an407-fcaw-b.raw"
    silent.write_bytes(bytes(silent.stat().st_size))
    card = {"family": "deepspeech2", "onnx": "model.onnx", "labels": DeepSpeechConfig().labels, "blank_index": 0,
            "feature": FEAT,
            "inputs": [{"name": "spect", "dtype": "float32", "shape": ["batch", 1, 161, "time"],
                        "role": "features", "time_axis": 3},
                       {"name": "lengths", "dtype": "int32", "shape": ["batch"], "role": "lengths"}],
            "outputs": []}
    out = build_dataset(read_an4_raw(root, "test"), tmp_path / "ds", ModelCard.from_dict(card), {"kind": "an4_raw"},
                        BuildOptions(),
                        progress=False)
    ds = DatasetDir.open(out)
    for sample in ds.samples:
        assert np.isfinite(ds.load(sample, "spect")).all(), sample.uid
