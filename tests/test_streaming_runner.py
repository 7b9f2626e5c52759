"""`python -m runners --streaming`: a dataset dir chunk by chunk into the normal run dir, scored unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.card import card_path_for, read_card
from families.deepspeech2 import recipe as ds
from core.dataset_dir import DatasetDir
from tests.conftest import run_quiet

GRU_FIXTURE = Path(__file__).parent / "fixtures" / "ds2_v3_unidir_gru_tiny.ckpt"


@pytest.fixture
def stream_export(uni_stream_export: Path) -> Path:
    return uni_stream_export


def test_streaming_run_matches_offline_and_scores(stream_export: Path, tiny_an4_test: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    from postprocess.score import score_run

    run = tmp_path / "run"
    assert run_quiet(["--backend", "onnxruntime", "--streaming", "--model", str(stream_export),
                      "--dataset", str(tiny_an4_test), "--out", str(run), "--batch-size", "2", "--show-partials"]) == 0
    summary = json.loads((run / "run.json").read_text())
    assert summary["streaming"]["chunk_frames"] == 16 and summary["batch_size"] == 2
    assert [o["name"] for o in summary["outputs"]] == ["probs", "probs_lengths"]
    dataset = DatasetDir.open(tiny_an4_test)
    model = ds.load(GRU_FIXTURE).module
    for meta, sample in zip(sorted(summary["samples"], key=lambda m: m["key"]), dataset.samples):
        spect = torch.from_numpy(dataset.load(sample, "spect")[..., :sample.length].copy())
        with torch.no_grad():
            probs, lengths = model(spect, torch.tensor([sample.length], dtype=torch.int32))
        got = np.fromfile(run / "probs" / f"{sample.key}.bin", dtype="<f4").reshape(meta["shapes"]["probs"])
        assert got.shape == (int(lengths[0]), 29)
        assert np.abs(got - probs[0].numpy()).max() <= 1e-4
    card = read_card(card_path_for(stream_export))
    scores = score_run(run, dataset, card, write=False)
    assert set(scores["hypotheses"]) == {s.uid for s in dataset.samples}
    printed = capsys.readouterr().out
    assert printed.count("[final]") == len(dataset.samples)


def test_torch_streaming_backend_writes_the_same_outputs(stream_export: Path, tiny_an4_test: Path,
                                                         tmp_path: Path) -> None:
    a, b = tmp_path / "ort", tmp_path / "torch"
    assert run_quiet(["--backend", "onnxruntime", "--streaming", "--model", str(stream_export),
                      "--dataset", str(tiny_an4_test), "--out", str(a)]) == 0
    assert run_quiet(["--backend", "torch", "--streaming", "--model", str(stream_export),
                      "--dataset", str(tiny_an4_test), "--out", str(b)]) == 0
    for f in sorted((a / "probs").iterdir()):
        np.testing.assert_allclose(np.fromfile(f, "<f4"), np.fromfile(b / "probs" / f.name, "<f4"), atol=1e-5)


def test_streaming_export_without_the_flag_and_flag_without_streaming_export(
        stream_export: Path, tiny_export: Path, tiny_an4_test: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    assert run_quiet(["--backend", "onnxruntime", "--model", str(stream_export), "--dataset", str(tiny_an4_test),
                      "--out", str(tmp_path / "a")]) == 2
    assert "run it with --streaming" in caplog.text
    assert run_quiet(["--backend", "onnxruntime", "--streaming", "--model", str(tiny_export),
                      "--dataset", str(tiny_an4_test), "--out", str(tmp_path / "b")]) == 2
    assert "not a streaming export" in caplog.text


def test_streaming_table_and_plot(stream_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    from postprocess.__main__ import main as post_main

    run = tmp_path / "run"
    assert run_quiet(["--backend", "onnxruntime", "--streaming", "--model", str(stream_export),
                      "--dataset", str(tiny_an4_test), "--out", str(run)]) == 0
    card = card_path_for(stream_export)
    assert post_main(["streaming", "--dataset", str(tiny_an4_test), "--card", str(card), "--row", f"fp32 16={run}",
                      "--row", f"again={run}", "--out", str(tmp_path / "results"), "--name", "tiny"]) == 0
    table = json.loads((tmp_path / "results" / "tiny_streaming.json").read_text())
    first, second = table["rows"]
    assert first["chunk frames"] == 16 and first["precision"] == "fp32"
    assert first["latency ms (+chunk wait)"] == first["algorithmic latency ms"] + 150
    assert second["same transcripts as first row"] == second["utterances"] == len(DatasetDir.open(tiny_an4_test).samples)
    assert first["chunk compute p90 ms"] >= first["chunk compute p50 ms"] > 0
    assert (tmp_path / "results" / "tiny_streaming.png").stat().st_size > 0
    assert (tmp_path / "results" / "tiny_streaming.md").read_text().startswith("#")
