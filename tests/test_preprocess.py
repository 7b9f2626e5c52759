"""preprocess: audio readers, DeepSpeech features, dataset readers, the dataset dir (resume, modelzoo)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from families.deepspeech2.guide import GUIDE
from families.deepspeech2.recipe import DeepSpeechConfig, feature_config
from core.audio import AudioError, load_audio, read_raw_pcm
from preprocess.build import BuildOptions, _modelzoo_size, build_dataset
from core.dataset_dir import DatasetDir, DatasetDirError, read_bin
from core.model_card import ModelCard
from core.corpora import DatasetError, read_an4_raw, read_ds_manifest, read_librispeech
from families.deepspeech2.features import deepspeech_spectrogram
from families.registry import frames_for
from core.text import to_labels

FEAT = feature_config(DeepSpeechConfig())


def _card(labels: list[str] | None = None) -> ModelCard:
    cfg = DeepSpeechConfig()
    return ModelCard.from_dict({
        "family": "deepspeech2",
        "onnx": "model.onnx",
        "labels": labels or cfg.labels,
        "blank_index": 0,
        "feature": FEAT,
        "modelzoo": GUIDE,
        "inputs": [
            {"name": "spect", "dtype": "float32", "shape": ["batch", 1, 161, "time"], "role": "features", "time_axis": 3},
            {"name": "lengths", "dtype": "int32", "shape": ["batch"], "role": "lengths"},
        ],
        "outputs": [],
    })


def test_spectrogram_matches_the_formula() -> None:
    """Independent check: reflect-pad n_fft/2, hamming (periodic) frames every 160 samples, |rFFT|,
    log1p, then (x - mean) / std with the unbiased std."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(5000) * 0.1).astype(np.float32)
    got = deepspeech_spectrogram(audio, FEAT)
    padded = np.pad(audio.astype(np.float64), 160, mode="reflect")
    n = np.arange(320)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / 320)
    frames = 1 + (len(padded) - 320) // 160
    mag = np.stack([np.abs(np.fft.rfft(padded[i * 160: i * 160 + 320] * window)) for i in range(frames)], axis=1)
    ref = np.log1p(mag)
    ref = (ref - ref.mean()) / ref.std(ddof=1)
    assert got.shape == (161, frames) == (161, frames_for(5000, FEAT))
    np.testing.assert_allclose(got, ref, atol=2e-4)


def test_raw_reader_is_big_endian(tmp_path: Path) -> None:
    samples = np.array([0, 1000, -1000, 32767, -32768], dtype=">i2")
    path = tmp_path / "x.raw"
    path.write_bytes(samples.tobytes())
    np.testing.assert_allclose(read_raw_pcm(path), samples.astype(np.float32) / 32768)


def test_audio_errors_name_the_file(tmp_path: Path) -> None:
    odd = tmp_path / "odd.raw"
    odd.write_bytes(b"\x00\x01\x02")
    with pytest.raises(AudioError, match="odd.raw.*truncated"):
        load_audio(odd)
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.raw: empty audio"):
        load_audio(empty)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.flac")
    wav8k = tmp_path / "a8k.wav"
    sf.write(wav8k, np.zeros(8000, dtype=np.int16), 8000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"a8k.wav: sample rate 8000 Hz, expected 16000 Hz"):
        load_audio(wav8k)
    assert load_audio(wav8k, resample=True).size == 16000
    stereo = tmp_path / "st.wav"
    sf.write(stereo, np.zeros((16000, 2), dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="2 channels, expected mono"):
        load_audio(stereo)
    f32 = tmp_path / "f32.wav"
    sf.write(f32, np.zeros(16000, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="expected 16-bit PCM"):
        load_audio(f32)
    raw8k = tmp_path / "r.raw"
    raw8k.write_bytes(np.zeros(8000, dtype=">i2").tobytes())
    with pytest.raises(AudioError, match="sample rate 8000"):
        load_audio(raw8k, raw_rate=8000)


def test_transcript_characters_outside_labels_are_dropped_and_counted() -> None:
    text, dropped = to_labels("Hello, world 42!", DeepSpeechConfig().labels, blank="_")
    assert text == "HELLO WORLD"
    assert dropped == {",": 1, "4": 1, "2": 1, "!": 1}


def test_an4_reader_checks_layout(tmp_path: Path) -> None:
    etc = tmp_path / "an4" / "etc"
    etc.mkdir(parents=True)
    (etc / "an4_test.fileids").write_text("fash/an251-fash-b\nfash/cen1-fash-b\n")
    (etc / "an4_test.transcription").write_text("<s> YES </s> (an251-fash-b)\n<s> G M E F </s> (cen1-fash-b)\n")
    utts = read_an4_raw(tmp_path, "test")
    assert [u.uid for u in utts] == ["an251-fash-b", "cen1-fash-b"]
    assert utts[1].transcript == "G M E F"
    assert utts[0].audio == tmp_path / "an4" / "wav" / "an4test_clstk" / "fash" / "an251-fash-b.raw"
    (etc / "an4_test.transcription").write_text("<s> YES </s> (an251-fash-b)\n")
    with pytest.raises(DatasetError, match="lists 2 utterances"):
        read_an4_raw(tmp_path, "test")
    with pytest.raises(DatasetError, match="an4_train.fileids"):
        read_an4_raw(tmp_path, "train")


def test_ds_manifest_reader(tmp_path: Path) -> None:
    (tmp_path / "wav").mkdir()
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("HELLO THERE\n")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"root_path": str(tmp_path),
                                    "samples": [{"wav_path": "wav/a.wav", "transcript_path": "txt/a.txt"}]}))
    utts = read_ds_manifest(manifest)
    assert utts[0].uid == "a" and utts[0].transcript == "HELLO THERE"
    manifest.write_text(json.dumps({"samples": []}))
    with pytest.raises(DatasetError, match="root_path"):
        read_ds_manifest(manifest)


def test_librispeech_reader(tiny_corpus: Path) -> None:
    utts = read_librispeech(next((tiny_corpus / "LibriSpeech").glob("test*")))
    assert len(utts) == 3 and all(u.audio.suffix == ".flac" and u.transcript for u in utts)


def test_dataset_dir_from_synthetic_an4(tmp_path: Path, tiny_corpus: Path) -> None:
    utts = read_an4_raw(tiny_corpus / "an4", "test")
    out = build_dataset(utts, tmp_path / "ds", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False)
    ds = DatasetDir.open(out)
    assert len(ds.samples) == len(utts)
    assert [s.key for s in ds.samples] == [f"{i:06d}" for i in range(1, len(utts) + 1)]
    s = ds.samples[0]
    spect = ds.load(s, "spect")
    assert spect.shape == (1, 1, 161, s.length)
    assert int(ds.load(s, "lengths")[0]) == s.length
    direct = deepspeech_spectrogram(load_audio(Path(s.audio)), FEAT)
    np.testing.assert_array_equal(spect[0, 0], direct)
    assert (out / "spect" / f"{s.key}.bin").stat().st_size == 161 * s.length * 4


def test_default_layout_reads_each_file_once(tmp_path: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --pad-to or the ModelZoo layout nothing needs a file's length before it is decoded, so no
    header-only pass over the set; each file is opened once, for its samples."""
    import core.audio
    import preprocess.build

    opened: list[str] = []
    real = core.audio.sf.SoundFile

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    def no_header_pass(*args, **kwargs):
        raise AssertionError("num_samples called in the default layout")

    monkeypatch.setattr(preprocess.build, "num_samples", no_header_pass)
    monkeypatch.setattr(core.audio.sf, "SoundFile", counting)
    utts = read_librispeech(tiny_corpus / "LibriSpeech" / "test-demo")
    build_dataset(utts, tmp_path / "ds", _card(), {"kind": "librispeech"}, BuildOptions(), progress=False)
    assert sorted(opened) == sorted(str(u.audio) for u in utts)


def test_threads_write_the_same_dataset_dir(tmp_path: Path, tiny_corpus: Path) -> None:
    utts = read_an4_raw(tiny_corpus / "an4", "test")
    one = build_dataset(utts, tmp_path / "one", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False, threads=1)
    four = build_dataset(utts, tmp_path / "four", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False,
                         threads=4)
    assert (one / "manifest.jsonl").read_bytes() == (four / "manifest.jsonl").read_bytes()
    files = sorted(p.relative_to(one) for p in one.rglob("*.bin"))
    assert files and files == sorted(p.relative_to(four) for p in four.rglob("*.bin"))
    assert all((one / f).read_bytes() == (four / f).read_bytes() for f in files)


def test_a_bad_file_stops_a_threaded_build_with_its_name(tmp_path: Path, tiny_corpus: Path) -> None:
    import shutil

    corpus = tmp_path / "an4"
    shutil.copytree(tiny_corpus / "an4", corpus)
    utts = read_an4_raw(corpus, "test")
    Path(utts[2].audio).write_bytes(b"\x00")  # one odd byte: not whole 16-bit samples
    with pytest.raises(AudioError, match=Path(utts[2].audio).name):
        build_dataset(utts, tmp_path / "ds", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False, threads=3)
    with pytest.raises(DatasetDirError, match="incomplete"):
        DatasetDir.open(tmp_path / "ds")


def test_interrupted_preprocess_resumes(tmp_path: Path, tiny_corpus: Path) -> None:
    utts = read_an4_raw(tiny_corpus / "an4", "test")
    out = build_dataset(utts, tmp_path / "ds", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False)
    header = json.loads((out / "dataset.json").read_text())
    # Simulate a crash: header not complete, last manifest line torn, one bin truncated.
    header["complete"] = False
    (out / "dataset.json").write_text(json.dumps(header))
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    (out / "manifest.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    victim = out / "spect" / "000002.bin"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DatasetDirError, match="incomplete"):
        DatasetDir.open(out)
    build_dataset(utts, out, _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False)
    ds = DatasetDir.open(out)
    assert len(ds.samples) == len(utts)
    for s in ds.samples:
        ds.load(s, "spect")  # every file has the size the manifest says


def test_truncated_bin_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    np.zeros((1, 1, 161, 10), dtype=np.float32).tofile(p)
    assert read_bin(p, "float32", (1, 1, 161, 10)).shape == (1, 1, 161, 10)
    p.write_bytes(p.read_bytes()[:6436])
    with pytest.raises(DatasetDirError, match=r"x.bin: 6436 bytes, expected 6440 for float32 shape \[1, 1, 161, 10\]"):
        read_bin(p, "float32", (1, 1, 161, 10))


def test_other_settings_in_existing_dir_are_refused(tmp_path: Path, tiny_corpus: Path) -> None:
    utts = read_an4_raw(tiny_corpus / "an4", "test")
    out = build_dataset(utts[:2], tmp_path / "ds", _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False)
    with pytest.raises(DatasetDirError, match="other settings"):
        build_dataset(utts, out, _card(), {"kind": "an4_raw"}, BuildOptions(), progress=False)


def test_modelzoo_layout(tmp_path: Path, tiny_corpus: Path) -> None:
    utts = read_an4_raw(tiny_corpus / "an4", "test")
    out = build_dataset(utts, tmp_path / "mz", _card(), {"kind": "an4_raw"}, BuildOptions(layout="modelzoo"),
                        progress=False)
    ds = DatasetDir.open(out)
    keys = [s.key for s in ds.samples]
    assert keys == [f"data{i}" for i in range(1, len(utts) + 1)]
    lengths = [s.length for s in ds.samples]
    assert lengths == sorted(lengths, reverse=True)
    longest = lengths[0]
    for s in ds.samples:
        assert (out / "spect" / f"{s.key}.bin").stat().st_size == 161 * longest * 4
        assert (out / "sizes" / f"{s.key}.bin").stat().st_size == 4
        assert int(ds.load(s, "lengths")[0]) == _modelzoo_size(s.length, longest)
    sizes_txt = (out / "sizes" / "sizes.txt").read_text()
    assert sizes_txt.endswith(" ") and len(sizes_txt.split()) == len(utts)
    assert len((out / "target_sizes.txt").read_text().split()) == len(utts)


def test_modelzoo_size_quirk() -> None:
    # float32(L / 621) * 621 truncates below L for some L: the guide's sizes are one frame short there.
    short = [n for n in range(1, 622) if _modelzoo_size(n, 621) != n]
    assert short and all(_modelzoo_size(n, 621) == n - 1 for n in short)
    assert _modelzoo_size(621, 621) == 621
