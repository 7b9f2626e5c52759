"""Tests for demo.synth: layout, formats, determinism, resumption and refusal paths."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demo import synth

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed")

SIZES = dict(seed=7, an4_train=6, an4_test=4, libri_train=4, libri_test=3)
AN4_VOCAB = set(synth.LETTERS) | set(synth.DIGITS) | set(synth.COMMANDS)


def _make(out: Path, **overrides) -> dict:
    kwargs = {**SIZES, "workers": 2, "progress": False, **overrides}
    return synth.synthesize_corpus(out, **kwargs)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("synth") / "corpus"
    return root, _make(root)


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text.splitlines()


# --------------------------------------------------------------------------- AN4


@needs_espeak
def test_an4_layout_and_indexes(corpus):
    root, info = corpus
    etc = root / "an4" / "etc"
    for role, wav_dir, n in (("train", "an4_clstk", 6), ("test", "an4test_clstk", 4)):
        fileids = _read_lines(etc / f"an4_{role}.fileids")
        trans = _read_lines(etc / f"an4_{role}.transcription")
        assert len(fileids) == len(trans) == n
        # Real AN4 lists paths relative to wav/: "an4test_clstk/<spk>/<uttid>".
        on_disk = sorted(p.relative_to(root / "an4" / "wav").with_suffix("").as_posix()
                         for p in (root / "an4" / "wav" / wav_dir).rglob("*.raw"))
        assert sorted(fileids) == on_disk
        for fid, line in zip(fileids, trans):
            audio_dir, spk, uttid = fid.split("/")
            assert audio_dir == wav_dir
            assert re.fullmatch(r"[a-z]{4}", spk)
            assert re.fullmatch(rf"an\d+-{spk}-b", uttid)
            m = re.fullmatch(r"<s> ([A-Z ]+) </s> \((\S+)\)", line)
            assert m, line
            assert m.group(2) == uttid  # same order in both files
            tokens = m.group(1).split(" ")
            assert 1 <= len(tokens) <= 7 and set(tokens) <= AN4_VOCAB
            assert tokens[0] != "A"
        assert set(info["speakers"]["an4"][role]) == {f.split("/")[1] for f in fileids}


@needs_espeak
def test_an4_raw_is_big_endian_int16(corpus):
    root, _ = corpus
    raws = sorted((root / "an4" / "wav").rglob("*.raw"))
    assert len(raws) == 10
    for path in raws:
        data = path.read_bytes()
        assert len(data) % 2 == 0 and len(data) > 2 * 16000 * 0.2  # > 0.2 s
        big = np.frombuffer(data, dtype=">i2").astype(np.float64)
        little = np.frombuffer(data, dtype="<i2").astype(np.float64)
        rms_big = np.sqrt(np.mean(big**2)) / 32768
        rms_little = np.sqrt(np.mean(little**2)) / 32768
        assert 0.005 < rms_big < 0.5
        # Speech is mostly low-frequency: in the right byte order neighbouring samples are
        # strongly correlated; byte-swapped, the low byte turns into high-order noise.
        assert np.corrcoef(big[:-1], big[1:])[0, 1] > 0.5
        assert rms_little > 2 * rms_big


# --------------------------------------------------------------------------- LibriSpeech


@needs_espeak
def test_librispeech_layout_and_flac(corpus):
    root, info = corpus
    for split, n in (("train-demo", 4), ("test-demo", 3)):
        base = root / "LibriSpeech" / split
        flacs = sorted(base.rglob("*.flac"))
        assert len(flacs) == n
        trans_ids = {}
        for tpath in sorted(base.rglob("*.trans.txt")):
            spk, chapter = tpath.parent.parent.name, tpath.parent.name
            assert spk.isdigit() and chapter.isdigit()
            assert tpath.name == f"{spk}-{chapter}.trans.txt"
            for line in _read_lines(tpath):
                uttid, text = line.split(" ", 1)
                assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}}", uttid)
                assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", text)
                assert 4 <= len(text.split()) <= 12
                trans_ids[uttid] = tpath.parent / f"{uttid}.flac"
        assert sorted(trans_ids.values()) == flacs
        for path in flacs:
            meta = sf.info(str(path))
            assert (meta.samplerate, meta.channels, meta.format, meta.subtype) == (16000, 1, "FLAC", "PCM_16")
            audio, _ = sf.read(str(path), dtype="float64")
            assert 0.005 < np.sqrt(np.mean(audio**2)) < 0.5
        assert set(info["speakers"]["librispeech"][split]) == {p.parent.parent.name for p in flacs}
        # SPEAKERS.TXT beside the splits, as in the release: "ID | SEX | SUBSET | MINUTES | NAME".
        rows = [[c.strip() for c in line.split("|")] for line in _read_lines(root / "LibriSpeech" / "SPEAKERS.TXT")
                if not line.startswith(";")]
        assert {r[0] for r in rows if r[2] == split} == set(info["speakers"]["librispeech"][split])
        assert all(r[1] in ("F", "M") for r in rows)
    assert (root / "LibriSpeech" / "CHAPTERS.TXT").is_file()


# --------------------------------------------------------------------------- speakers


@needs_espeak
def test_test_speakers_never_in_training(corpus):
    root, info = corpus
    for dataset, train, test in (("an4", "train", "test"), ("librispeech", "train-demo", "test-demo")):
        spk = info["speakers"][dataset]
        assert not set(spk[train]) & set(spk[test])
        combos = {s: {(v["voice"], v["variant"]) for v in spk[s].values()} for s in (train, test)}
        assert not combos[train] & combos[test]
        train_voices = {v for v, _ in combos[train]}
        assert {v for v, _ in combos[test]} - train_voices  # an accent never heard in training
    an4_wav = root / "an4" / "wav"
    assert not {p.name for p in (an4_wav / "an4_clstk").iterdir()} & {p.name for p in (an4_wav / "an4test_clstk").iterdir()}


def test_speaker_pools_disjoint_at_default_sizes():
    # Planning needs no espeak-ng, so check the default-size corpus without synthesising it.
    params = synth._params(1234, 2400, 300, 1500, 200, synth.DATASETS, "train-demo", "test-demo")
    plans = synth._plan(params)
    train = {(s.voice, s.variant) for p in plans if p.role == "train" for s in p.speakers}
    test = {(s.voice, s.variant) for p in plans if p.role == "test" for s in p.speakers}
    assert not train & test
    assert not {v for v, _ in train} & set(synth.HELDOUT_VOICES)
    for p in plans:
        tuples = [(s.voice, s.variant, s.speed, s.pitch) for s in p.speakers]
        assert len(set(tuples)) == len(tuples)
        assert len({u.uttid for u in p.utterances}) == len(p.utterances)
    assert sum(len(p.utterances) for p in plans) == 2400 + 300 + 1500 + 200


def test_sentence_generators():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        tokens = synth.an4_sentence(rng)
        assert 1 <= len(tokens) <= 7 and tokens[0] != "A" and set(tokens) <= AN4_VOCAB
        text = synth.libri_sentence(rng)
        assert re.fullmatch(r"[A-Z']+( [A-Z']+){3,11}", text), text
    assert synth.an4_spoken(["B", "A", "ENTER"]) == "b [['eI]] enter"


# --------------------------------------------------------------------------- reruns, determinism


@needs_espeak
def test_rerun_is_noop(corpus):
    root, info = corpus
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = _make(root)
    assert again == json.loads((root / synth.INFO_NAME).read_text())
    assert again["complete"] is True and again == info
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


@needs_espeak
def test_same_seed_same_bytes_and_resume(corpus, tmp_path):
    root, _ = corpus
    reference = _files(root)
    other = tmp_path / "again"
    _make(other, workers=1)  # worker count must not matter either
    assert _files(other) == reference

    # Simulate a run killed midway: some audio and the indexes missing, a stale partial file.
    info_path = other / synth.INFO_NAME
    info = json.loads(info_path.read_text())
    info["complete"] = False
    info_path.write_text(json.dumps(info))
    victims = [sorted((other / "an4").rglob("*.raw"))[1], sorted((other / "LibriSpeech").rglob("*.flac"))[0]]
    for v in victims:
        v.unlink()
    (other / "an4" / "etc" / "an4_test.transcription").unlink()
    stale = victims[0].with_name(f".{victims[0].name}.999.partial")
    stale.write_bytes(b"junk")
    _make(other)
    assert _files(other) == reference


@needs_espeak
def test_different_parameters_refused(corpus):
    root, _ = corpus
    with pytest.raises(synth.CorpusMismatchError, match="another --out"):
        _make(root, seed=8)
    with pytest.raises(synth.CorpusMismatchError):
        _make(root, an4_train=7)
    with pytest.raises(synth.CorpusMismatchError):
        _make(root, datasets=("an4",))


def test_foreign_directory_refused(tmp_path):
    (tmp_path / "an4" / "etc").mkdir(parents=True)  # e.g. the real AN4 release
    with pytest.raises(synth.CorpusMismatchError, match="SYNTH_INFO.json"):
        _make(tmp_path)


def test_missing_espeak_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(synth.EspeakNotFoundError, match=r"apt-get install espeak-ng") as e:
        _make(tmp_path / "out")
    assert isinstance(e.value, RuntimeError)


def test_bad_arguments():
    with pytest.raises(ValueError):
        synth.synthesize_corpus(Path("/nonexistent"), an4_train=0)
    with pytest.raises(ValueError):
        synth.synthesize_corpus(Path("/nonexistent"), datasets=("timit",))


# --------------------------------------------------------------------------- CLI


@needs_espeak
def test_cli_main_on_existing_corpus(corpus, capsys):
    root, _ = corpus
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args(["--out", str(root), "--seed", "7", "--an4-train", "6", "--an4-test", "4",
                              "--libri-train", "4", "--libri-test", "3", "--no-progress"])
    assert synth.main(args) == 0
    assert "corpus ready" in capsys.readouterr().out
    args.seed = 99
    assert synth.main(args) == 2
    assert "another --out" in capsys.readouterr().err


def test_module_help():
    proc = subprocess.run([sys.executable, "-m", "demo.synth", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "--an4-train" in proc.stdout and "espeak-ng" in proc.stdout and "an4test_clstk" in proc.stdout


@needs_espeak
def test_pipeline_readers_accept_corpus(corpus):
    datasets = pytest.importorskip("core.corpora")
    root, _ = corpus
    for role, n in (("train", 6), ("test", 4)):
        utts = datasets.read_an4_raw(root, role)
        assert len(utts) == n and all(u.audio.is_file() for u in utts)
    for split, n in (("train-demo", 4), ("test-demo", 3)):
        assert len(datasets.read_librispeech(root / "LibriSpeech" / split)) == n


def test_espeak_failure_is_reported(tmp_path):
    job = synth._Job("/bin/false", "en-us+m1", 150, 50, "yes", str(tmp_path / "x.raw"), "raw", (1, 2, 3))
    with pytest.raises(synth.SynthError, match="espeak-ng failed"):
        synth._synthesize_one(job)
    assert list(tmp_path.iterdir()) == []
