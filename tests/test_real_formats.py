"""Dataset readers against fixtures in the real release formats (tests/fixtures/real_formats/README.md).

The demo corpus generator and the readers must not define the format between them: each reader is checked
here against files laid out as the real AN4 raw release, deepspeech.pytorch V3.0's AN4 manifest and the
LibriSpeech release lay them out.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from core.corpora import DatasetError, read_an4_raw, read_ds_manifest, read_librispeech

FIXTURES = Path(__file__).parent / "fixtures" / "real_formats"
AN4 = FIXTURES / "an4"
LIBRI = FIXTURES / "LibriSpeech"


def test_real_an4_fileids_are_relative_to_wav() -> None:
    """`an4test_clstk/<spk>/<utt>` joins to wav/ (as deepspeech.pytorch's data/an4.py does); the reader used to
    prepend the split folder a second time and stop on `.../an4test_clstk/an4test_clstk/...`."""
    utts = read_an4_raw(AN4, "test")
    assert [u.uid for u in utts] == ["an406-fcaw-b", "an407-fcaw-b", "cen1-fcaw-b"]
    assert utts[0].audio == AN4 / "wav" / "an4test_clstk" / "fcaw" / "an406-fcaw-b.raw"
    assert all(u.audio.is_file() and u.speaker == "fcaw" for u in utts)
    assert utts[0].transcript == "RUBOUT G M E F THREE NINE"
    train = read_an4_raw(FIXTURES, "train")  # the parent of an4/ works too
    assert [u.audio.relative_to(AN4 / "wav").as_posix() for u in train] == [
        "an4_clstk/fash/an251-fash-b.raw", "an4_clstk/fash/an253-fash-b.raw"]


def test_an4_fileid_of_unknown_shape_is_named(tmp_path: Path) -> None:
    root = tmp_path / "an4"
    shutil.copytree(AN4, root)
    fileids = root / "etc" / "an4_test.fileids"
    fileids.write_text(fileids.read_text().replace("an4test_clstk/fcaw/an407-fcaw-b", "x/an4test_clstk/fcaw/an407-fcaw-b"))
    with pytest.raises(DatasetError, match=r"an4_test\.fileids:2: expected 'an4test_clstk/<speaker>/<utt-id>'"):
        read_an4_raw(root, "test")


def test_preprocess_cli_reads_the_real_an4_layout(tmp_path: Path, tiny_export: Path) -> None:
    from core.card import card_path_for
    from preprocess.__main__ import main
    from core.dataset_dir import DatasetDir

    out = tmp_path / "ds"
    assert main(["--an4-root", str(AN4), "--card", str(card_path_for(tiny_export)), "--out", str(out),
                 "--no-progress"]) == 0
    ds = DatasetDir.open(out)
    assert sorted(s.uid for s in ds.samples) == ["an406-fcaw-b", "an407-fcaw-b", "cen1-fcaw-b"]
    assert all(ds.load(s, "spect").size for s in ds.samples)


def _v3_manifest(path: Path, root_path: str, wav_paths: list[str]) -> Path:
    """What deepspeech.pytorch V3.0's create_manifest writes: json.dumps of root_path + samples, where the
    transcript sits at `<wav dir>/../txt/<stem>.txt`."""
    samples = []
    for wav in wav_paths:
        txt = Path(wav).parent.with_name("txt") / (Path(wav).stem + ".txt")
        samples.append({"wav_path": wav, "transcript_path": txt.as_posix()})
    path.write_text(json.dumps({"root_path": root_path, "samples": samples}), encoding="utf8")
    return path


def test_ds_manifest_v3_absolute_root(tmp_path: Path) -> None:
    root = FIXTURES / "an4_dataset" / "test"
    manifest = _v3_manifest(tmp_path / "an4_test_manifest.json", str(root.resolve()),
                            ["an4/wav/an406-fcaw-b.wav", "an4/wav/cen1-fcaw-b.wav"])
    utts = read_ds_manifest(manifest)
    assert [u.uid for u in utts] == ["an406-fcaw-b", "cen1-fcaw-b"]
    assert utts[0].audio == root.resolve() / "an4" / "wav" / "an406-fcaw-b.wav" and utts[0].audio.is_file()
    assert [u.transcript for u in utts] == ["RUBOUT G M E F THREE NINE", "W O O D"]


def test_ds_manifest_relative_root_and_absolute_wav_path(tmp_path: Path) -> None:
    """V3.0 joins with os.path.join(root_path, wav_path): an absolute wav_path wins over root_path. A relative
    root_path is taken relative to the manifest's folder (V3.0 itself resolves it against the working dir)."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "an4_dataset", data / "an4_dataset")
    manifest = _v3_manifest(data / "m.json", "an4_dataset/test", ["an4/wav/an407-fcaw-b.wav"])
    (utt,) = read_ds_manifest(manifest)
    assert utt.audio == (data / "an4_dataset" / "test" / "an4" / "wav" / "an407-fcaw-b.wav").resolve()
    assert utt.audio.is_file() and utt.transcript == "ERASE C Q Q F SEVEN"
    absolute = str((data / "an4_dataset" / "test" / "an4" / "wav" / "cen1-fcaw-b.wav").resolve())
    doc = json.loads(manifest.read_text())
    doc["samples"] = [{"wav_path": absolute,
                       "transcript_path": os.path.join(str(data / "an4_dataset" / "test"), "an4/txt/cen1-fcaw-b.txt")}]
    manifest.write_text(json.dumps(doc))
    (utt,) = read_ds_manifest(manifest)
    assert str(utt.audio) == absolute and utt.transcript == "W O O D"


def test_librispeech_split_folder_beside_the_release_files() -> None:
    utts = read_librispeech(LIBRI / "test-clean")
    assert [u.uid for u in utts] == ["121-127105-0000", "121-127105-0001"]
    assert utts[0].transcript == "THE CAT'S HAT WAS RED" and all(u.audio.is_file() for u in utts)


def test_librispeech_root_needs_a_named_split() -> None:
    with pytest.raises(DatasetError, match=r"several splits \(dev-clean, test-clean\); name one with --split"):
        read_librispeech(LIBRI)
    assert [u.uid for u in read_librispeech(LIBRI, "dev-clean")] == ["84-121123-0000", "84-121123-0001"]
    with pytest.raises(DatasetError, match=r"no LibriSpeech split 'test-other' here \(found: dev-clean, test-clean\)"):
        read_librispeech(LIBRI, "test-other")
    with pytest.raises(DatasetError, match="is the LibriSpeech split 'test-clean', not 'dev-clean'"):
        read_librispeech(LIBRI / "test-clean", "dev-clean")


def test_librispeech_root_with_one_split_is_taken(tmp_path: Path) -> None:
    root = tmp_path / "LibriSpeech"
    shutil.copytree(LIBRI, root, ignore=shutil.ignore_patterns("dev-clean"))
    assert len(read_librispeech(root)) == 2


def test_split_with_a_manifest_is_refused(tmp_path: Path, tiny_export: Path) -> None:
    from core.card import card_path_for
    from preprocess.__main__ import main

    manifest = _v3_manifest(tmp_path / "m.json", str((FIXTURES / "an4_dataset" / "test").resolve()),
                            ["an4/wav/an406-fcaw-b.wav"])
    assert main(["--manifest", str(manifest), "--split", "test", "--card", str(card_path_for(tiny_export)),
                 "--out", str(tmp_path / "ds"), "--no-progress"]) == 2
    assert not (tmp_path / "ds").exists()
