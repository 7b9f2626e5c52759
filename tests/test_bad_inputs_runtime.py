"""Bad inputs and faults at run time (issue 9, sections 2, 4 and 5, and the runner's non-finite check).

Each test names the bad input it tries and the behaviour expected; docs/bad_inputs_runtime.md lists them.
Stale caches, racing writers and artifacts that do not belong together are refused by name; bad flags and
unwritable outputs are one line and exit code 2; batches respect a frame budget and run.json records peak memory.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.card import card_path_for
from tests.conftest import make_tiny_checkpoint, run_quiet

TRANSCRIPTS = ["HELLO WORLD", "GOOD MORNING", "SPEECH TEST", "ONE TWO THREE"]


def _exit_code(main, argv: list[str]) -> int:
    """A CLI's exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _write_wav(path: Path, seconds: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(str(path), (x * 32767).astype(np.int16), 16000, subtype="PCM_16")


def _manifest_corpus(root: Path) -> Path:
    """deepspeech.pytorch's JSON manifest over a few wav + txt files (the format its data scripts write)."""
    (root / "wav").mkdir(parents=True)
    (root / "txt").mkdir()
    samples = []
    for i, text in enumerate(TRANSCRIPTS):
        _write_wav(root / "wav" / f"utt{i}.wav", 0.6 + 0.1 * i, i)
        (root / "txt" / f"utt{i}.txt").write_text(text + "\n")
        samples.append({"wav_path": f"wav/utt{i}.wav", "transcript_path": f"txt/utt{i}.txt"})
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"root_path": str(root), "samples": samples}))
    return manifest


def _preprocess(manifest: Path, card: Path, out: Path, *extra: str) -> int:
    from preprocess.__main__ import main

    return _exit_code(main, ["--manifest", str(manifest), "--card", str(card), "--out", str(out), "--no-progress",
                             *extra])


def _run(model: Path, dataset: Path, out: Path, *extra: str) -> int:
    return _exit_code(run_quiet, ["--backend", "onnxruntime", "--model", str(model), "--dataset", str(dataset),
                                  "--out", str(out), *extra])


def _score(run: Path, dataset: Path, card: Path) -> int:
    from postprocess.__main__ import main

    return _exit_code(main, ["score", "--run", str(run), "--dataset", str(dataset), "--card", str(card)])


@pytest.fixture()
def card(tiny_export: Path) -> Path:
    return card_path_for(tiny_export)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return _manifest_corpus(tmp_path / "corpus")


@pytest.fixture()
def dataset(tmp_path: Path, tiny_an4_test: Path) -> Path:
    """A private copy of the tiny AN4 dataset dir, free to damage."""
    return Path(shutil.copytree(tiny_an4_test, tmp_path / "ds"))


@pytest.fixture()
def ort_run(tmp_path: Path, tiny_export: Path, dataset: Path) -> Path:
    out = tmp_path / "run"
    assert _run(tiny_export, dataset, out) == 0
    return out


def _hold_lock(directory: Path) -> int:
    """Take the writer lock on `directory` as another process would (flock on its lock file, pid inside)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"424242\n", 0)
    return fd


# ---- section 2: stale caches ----

def test_preprocess_rebuilds_after_transcript_and_audio_change(tmp_path: Path, corpus: Path, card: Path) -> None:
    """A corrected transcript and a replaced recording are picked up by the same command (no stale samples)."""
    from core.dataset_dir import DatasetDir

    out = tmp_path / "ds"
    assert _preprocess(corpus, card, out) == 0
    before = DatasetDir.open(out).samples[0]
    (corpus.parent / "txt" / "utt0.txt").write_text("CORRECTED TEXT\n")
    _write_wav(corpus.parent / "wav" / "utt0.wav", 1.3, 9)
    assert _preprocess(corpus, card, out) == 0
    after = DatasetDir.open(out).samples[0]
    assert after.transcript_raw == "CORRECTED TEXT"
    assert after.length > before.length


def test_preprocess_force_redoes_everything(tmp_path: Path, corpus: Path, card: Path) -> None:
    """--force on a finished dataset dir rewrites every sample (a damaged .bin of the right size is repaired)."""
    from core.dataset_dir import DatasetDir

    out = tmp_path / "ds"
    assert _preprocess(corpus, card, out) == 0
    ds = DatasetDir.open(out)
    sample = ds.samples[0]
    name = next(iter(sample.inputs))
    path = ds.input_path(sample, name)
    good = path.read_bytes()
    path.write_bytes(b"\0" * len(good))
    assert _preprocess(corpus, card, out, "--force") == 0
    assert path.read_bytes() == good


def test_runner_reruns_when_dataset_content_changes(tmp_path: Path, corpus: Path, card: Path,
                                                    tiny_export: Path) -> None:
    """A dataset rebuilt at the same path from changed audio is not taken as the one a finished run read."""
    ds, run = tmp_path / "ds", tmp_path / "run"
    assert _preprocess(corpus, card, ds) == 0
    assert _run(tiny_export, ds, run) == 0
    first = json.loads((run / "run.json").read_text())
    _write_wav(corpus.parent / "wav" / "utt0.wav", 1.3, 9)
    assert _preprocess(corpus, card, ds) == 0
    assert _run(tiny_export, ds, run) == 0
    second = json.loads((run / "run.json").read_text())
    assert second["finished_at"] != first["finished_at"] or second["config"] != first["config"]
    assert second["config"]["dataset_hash"] != first["config"]["dataset_hash"]
    assert _score(run, ds, card) == 0


# ---- section 2: racing writers ----

def test_preprocess_refuses_a_second_writer(tmp_path: Path, corpus: Path, card: Path, caplog) -> None:
    """A second preprocess into a dir another process is writing is refused, naming the holder's pid."""
    out = tmp_path / "ds"
    fd = _hold_lock(out)
    try:
        with caplog.at_level(logging.ERROR):
            assert _preprocess(corpus, card, out) == 2
    finally:
        os.close(fd)
    assert "424242" in caplog.text and str(out) in caplog.text


def test_runner_refuses_a_second_writer(tmp_path: Path, tiny_export: Path, dataset: Path, caplog) -> None:
    """A second runner into a run dir another process is writing is refused, naming the holder's pid."""
    out = tmp_path / "run"
    fd = _hold_lock(out)
    try:
        with caplog.at_level(logging.ERROR):
            assert _run(tiny_export, dataset, out) == 2
    finally:
        os.close(fd)
    assert "424242" in caplog.text
    assert not (out / "run.json").exists()


def test_preprocess_repairs_a_manifest_with_duplicate_lines(tmp_path: Path, corpus: Path, card: Path) -> None:
    """A manifest holding some samples twice (two writers raced) is repaired by a rerun."""
    from core.dataset_dir import DatasetDir

    out = tmp_path / "ds"
    assert _preprocess(corpus, card, out) == 0
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines + lines[:2]))
    assert _preprocess(corpus, card, out) == 0
    assert len(DatasetDir.open(out).samples) == len(TRANSCRIPTS)


# ---- section 2: artifacts that do not belong together ----

def test_runner_refuses_onnx_that_is_not_the_cards(tmp_path: Path, tiny_export: Path, dataset: Path,
                                                   caplog) -> None:
    """Another model.onnx (same graph interface, other bytes) beside a card is refused by name."""
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(card_path_for(tiny_export), folder / "model.card.json")
    proto = onnx.load(str(tiny_export))
    proto.doc_string = "another model"
    onnx.save(proto, str(folder / "model.onnx"))
    with caplog.at_level(logging.ERROR):
        assert _run(folder / "model.onnx", dataset, tmp_path / "run") == 2
    assert "model.onnx" in caplog.text and "sha256" in caplog.text


def test_torch_backend_refuses_another_checkpoint(tmp_path: Path, tiny_export: Path, dataset: Path,
                                                  caplog) -> None:
    """--checkpoint whose sha256 is not the card's source checkpoint is refused by name."""
    other = make_tiny_checkpoint(tmp_path / "other.ckpt", seed=5)
    with caplog.at_level(logging.ERROR):
        rc = _exit_code(run_quiet, ["--backend", "torch", "--card", str(card_path_for(tiny_export)),
                                    "--checkpoint", str(other), "--dataset", str(dataset),
                                    "--out", str(tmp_path / "run")])
    assert rc == 2
    assert "other.ckpt" in caplog.text and "sha256" in caplog.text


def test_score_refuses_a_run_of_another_dataset(tmp_path: Path, corpus: Path, card: Path, ort_run: Path,
                                                caplog) -> None:
    """Scoring a run against a dataset it was not made from is refused, naming both."""
    other = tmp_path / "other_ds"
    assert _preprocess(corpus, card, other) == 0
    with caplog.at_level(logging.ERROR):
        assert _score(ort_run, other, card) == 2
    assert str(other) in caplog.text


def test_score_checks_output_frames_against_the_dataset(ort_run: Path, dataset: Path, card: Path, caplog) -> None:
    """An output whose frame count does not follow the card's output-length rule for the sample is refused."""
    run = json.loads((ort_run / "run.json").read_text())
    key = run["samples"][0]["key"]
    lengths = ort_run / "output_lengths" / f"{key}.bin"
    value = np.fromfile(lengths, dtype="<i4")
    (value + 25).astype("<i4").tofile(lengths)
    with caplog.at_level(logging.ERROR):
        assert _score(ort_run, dataset, card) == 2
    assert key in caplog.text


def test_score_checks_the_time_axis_against_the_padded_length(ort_run: Path, dataset: Path, card: Path,
                                                              caplog) -> None:
    """Without relying on a length output: a sample whose output time axis is not the card's rule applied to
    the length its batch was padded to (as run.json records it) is refused, naming the sample."""
    run_json = ort_run / "run.json"
    run = json.loads(run_json.read_text())
    run["samples"][1]["input_length"] += 40
    run_json.write_text(json.dumps(run))
    with caplog.at_level(logging.ERROR):
        assert _score(ort_run, dataset, card) == 2
    assert run["samples"][1]["key"] in caplog.text and "probs output has" in caplog.text


def test_score_refuses_a_card_of_another_model(tmp_path: Path, ort_run: Path, dataset: Path, card: Path,
                                               caplog) -> None:
    """A card whose labels differ from those of the model that made the run is refused."""
    other = json.loads(card.read_text())
    other["labels"] = list(reversed(other["labels"]))
    other_card = tmp_path / "other.card.json"
    other_card.write_text(json.dumps(other))
    with caplog.at_level(logging.ERROR):
        assert _score(ort_run, dataset, other_card) == 2
    assert "labels" in caplog.text


# ---- section 3 (runner side): non-finite values ----

def test_runner_refuses_a_nan_input_naming_the_sample(tmp_path: Path, tiny_export: Path, dataset: Path,
                                                      caplog) -> None:
    """A NaN in an input .bin stops the run and names the sample, instead of writing NaN outputs."""
    from core.dataset_dir import DatasetDir

    ds = DatasetDir.open(dataset)
    sample = ds.samples[1]
    path = ds.input_path(sample, "spect")
    arr = np.fromfile(path, dtype="<f4")
    arr[3] = np.nan
    arr.tofile(path)
    with caplog.at_level(logging.ERROR):
        assert _run(tiny_export, dataset, tmp_path / "run") == 2
    assert sample.key in caplog.text and "NaN" in caplog.text


def test_runner_refuses_a_nan_output_and_writes_no_run_json(tmp_path: Path, tiny_export: Path,
                                                             dataset: Path) -> None:
    """A backend that returns NaN for one sample: the run stops naming that sample, nothing is written for
    it, and the outputs of the batches before it do not become a finished run."""
    from core.card import load_model_and_card
    from core.dataset_dir import DatasetDir
    from core.run_dir import RunError
    from runners.base import RunOptions, run_dataset
    from runners.onnxruntime_backend import OnnxRuntimeBackend

    _, card = load_model_and_card(tiny_export)
    ds = DatasetDir.open(dataset)
    real = OnnxRuntimeBackend(tiny_export, card, threads=1)
    calls = []

    class NanOnThirdSample:
        name = "nan-on-third"

        def infer(self, inputs: dict) -> dict:
            calls.append(1)
            outputs = real.infer(inputs)
            if len(calls) == 3 + 2:  # after the two warm-up calls
                outputs[card.outputs[0].name][0, 0, 0] = np.nan
            return outputs

        def info(self) -> dict:
            return {}

    with pytest.raises(RunError, match=f"sample {ds.samples[2].key} .*output .*NaN"):
        run_dataset(NanOnThirdSample(), ds, card, tmp_path / "run", RunOptions(progress=False))
    assert not (tmp_path / "run" / "run.json").exists()
    assert (tmp_path / "run" / card.outputs[0].name / f"{ds.samples[0].key}.bin").is_file()
    assert not (tmp_path / "run" / card.outputs[0].name / f"{ds.samples[2].key}.bin").exists()


# ---- section 4: one line and exit code 2 ----

def test_out_that_is_a_file_is_refused_by_every_stage(tmp_path: Path, tiny_export: Path, tiny_ckpt: Path,
                                                      dataset: Path, ort_run: Path, corpus: Path, capsys) -> None:
    from export.__main__ import main as export_main
    from postprocess.__main__ import main as post_main

    card = str(card_path_for(tiny_export))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _preprocess(corpus, Path(card), blocker) == 2
    assert _run(tiny_export, dataset, blocker) == 2
    assert _exit_code(post_main, ["report", "--dataset", str(dataset), "--card", card, "--reference", str(ort_run),
                                  "--out", str(blocker), "--name", "t"]) == 2
    assert _exit_code(export_main, ["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("a_file is a file") == 4


def test_read_only_out_is_refused(tiny_export: Path, dataset: Path, capsys) -> None:
    ro = Path("/sys/kernel/issue9_out")
    try:
        (Path("/sys/kernel") / ".probe").touch()
        pytest.skip("/sys is writable here; no read-only location to try")
    except OSError:
        pass
    assert _run(tiny_export, dataset, ro) == 2
    assert "cannot write" in capsys.readouterr().err


def test_out_on_a_full_disk_is_refused(tmp_path: Path, tiny_export: Path, dataset: Path, monkeypatch,
                                       capsys) -> None:
    import shutil as shutil_module

    real = shutil_module.disk_usage
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: real(p)._replace(free=1024))
    assert _run(tiny_export, dataset, tmp_path / "run") == 2
    assert "free" in capsys.readouterr().err
    assert not (tmp_path / "run" / "run.json").exists()


def test_disk_full_mid_run_is_one_line(tmp_path: Path, tiny_export: Path, dataset: Path, monkeypatch,
                                       caplog) -> None:
    """A disk that fills while outputs are written: one line naming the file, exit 2, no run.json."""
    import errno

    import core.dataset_dir as dataset_dir

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(dataset_dir, "atomic_write_bytes", full)
    with caplog.at_level(logging.ERROR):
        assert _run(tiny_export, dataset, tmp_path / "run") == 2
    assert "disk is full" in caplog.text and ".bin" in caplog.text
    assert not (tmp_path / "run" / "run.json").exists()


def test_truncated_flac_is_named(tmp_path: Path, card: Path) -> None:
    from core.card import read_card
    from preprocess.build import BuildOptions, build_dataset
    from core.corpora import Utterance

    good = tmp_path / "a.flac"
    x = (0.3 * np.sin(np.arange(16000) / 5.0) * 32767).astype(np.int16)
    sf.write(str(good), x, 16000, subtype="PCM_16")
    data = good.read_bytes()
    bad = tmp_path / "b.flac"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="b.flac"):
        build_dataset([Utterance(uid="b", audio=bad, transcript="HELLO")], tmp_path / "ds", read_card(card),
                      {"kind": "test"}, BuildOptions(), progress=False)


@pytest.mark.parametrize("damage", ["missing_keys", "corrupt"])
def test_bad_run_json_is_named(ort_run: Path, dataset: Path, card: Path, damage: str, caplog) -> None:
    run_json = ort_run / "run.json"
    if damage == "missing_keys":
        run = json.loads(run_json.read_text())
        del run["samples"], run["outputs"]
        run_json.write_text(json.dumps(run))
    else:
        run_json.write_text(run_json.read_text()[:100])
    with caplog.at_level(logging.ERROR):
        assert _score(ort_run, dataset, card) == 2
    assert str(run_json) in caplog.text


def test_corrupt_dataset_json_is_named(tmp_path: Path, tiny_export: Path, dataset: Path, caplog) -> None:
    header = dataset / "dataset.json"
    header.write_text(header.read_text()[:50])
    with caplog.at_level(logging.ERROR):
        assert _run(tiny_export, dataset, tmp_path / "run") == 2
    assert str(header) in caplog.text


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--batch-size", "-2"], ["--threads", "-1"],
                                   ["--warmup", "-1"], ["--threads", "100000"], ["--max-batch-frames", "0"]],
                         ids=lambda flags: "=".join(flags))
def test_bad_runner_numbers_are_refused(tmp_path: Path, tiny_export: Path, dataset: Path, flags: list[str],
                                        capsys) -> None:
    from runners.__main__ import main

    rc = _exit_code(main, ["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(dataset),
                           "--out", str(tmp_path / "run"), "--no-progress", *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert flags[0] in err and flags[1] in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_bad_numbers_are_refused_by_preprocess_and_export(tmp_path: Path, corpus: Path, card: Path,
                                                          tiny_ckpt: Path, capsys) -> None:
    """The same argparse types serve every stage: preprocess --batch-size 0, export --threads -1."""
    from export.__main__ import main as export_main

    assert _preprocess(corpus, card, tmp_path / "ds", "--batch-size", "0") == 2
    assert _exit_code(export_main, ["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(tmp_path / "x"),
                                    "--threads", "-1"]) == 2
    err = capsys.readouterr().err
    assert "argument --batch-size: 0 is not allowed" in err and "argument --threads: -1 is not allowed" in err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "x").exists()


def test_empty_onnx_is_named_as_empty(tmp_path: Path, tiny_export: Path, dataset: Path, caplog) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(card_path_for(tiny_export), folder / "model.card.json")
    (folder / "model.onnx").write_bytes(b"")
    with caplog.at_level(logging.ERROR):
        assert _run(folder / "model.onnx", dataset, tmp_path / "run") == 2
    assert "0 bytes" in caplog.text and "does not match" not in caplog.text


# ---- section 5: resource limits ----

def test_batches_respect_a_frame_budget_and_name_long_clips(caplog) -> None:
    from core.dataset_dir import Sample
    from runners.base import make_batches

    def sample(key: str, length: int) -> Sample:
        return Sample(key=key, uid=key, audio=f"/a/{key}.wav", transcript_raw="", transcript="", num_samples=length,
                      length=length, padded_length=length, inputs={})

    samples = [sample("000001", 1000)] + [sample(f"00000{i}", 30) for i in range(2, 8)]
    with caplog.at_level(logging.WARNING):
        batches = make_batches(samples, 4, True, max_batch_frames=120)
    assert [len(b) for b in batches] == [1, 4, 2]
    assert all(len(b) * max(s.length for s in b) <= 120 for b in batches[1:])
    assert "/a/000001.wav" in caplog.text


def test_run_json_records_peak_memory(ort_run: Path) -> None:
    run = json.loads((ort_run / "run.json").read_text())
    assert run["peak_rss_mb"] > 0
    assert run["max_batch_frames"] >= 1
