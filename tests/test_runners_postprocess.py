"""runners + postprocess on the tiny corpus: run dirs, run.json, scores, tables, and the errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.card import card_path_for, read_card
from postprocess.score import score_run
from tests.conftest import run_quiet
from preprocess.build import BuildOptions, build_dataset
from core.dataset_dir import DatasetDir
from core.corpora import read_an4_raw


@pytest.fixture(scope="module")
def dataset(tiny_an4_test: Path) -> Path:
    return tiny_an4_test


_run = run_quiet


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, dataset: Path, tiny_export: Path, tiny_ckpt: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {"ort1": root / "ort1", "ort3": root / "ort3", "torch1": root / "torch1", "torch4": root / "torch4"}
    assert _run(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(dataset),
                 "--out", str(out["ort1"])]) == 0
    assert _run(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(dataset),
                 "--out", str(out["ort3"]), "--batch-size", "3"]) == 0
    card = str(card_path_for(tiny_export))
    assert _run(["--backend", "torch", "--card", card, "--checkpoint", str(tiny_ckpt), "--dataset", str(dataset),
                 "--out", str(out["torch1"])]) == 0
    assert _run(["--backend", "torch", "--card", card, "--checkpoint", str(tiny_ckpt), "--dataset", str(dataset),
                 "--out", str(out["torch4"]), "--batch-size", "4"]) == 0
    return out


def test_run_dir_layout_and_summary(runs: dict[str, Path], dataset: Path) -> None:
    ds = DatasetDir.open(dataset)
    run = json.loads((runs["ort3"] / "run.json").read_text())
    assert run["backend"] == "onnxruntime" and run["batch_size"] == 3
    assert run["batches"] == -(-len(ds.samples) // 3)
    assert len(run["batch_latency_ms"]) == run["batches"]
    assert run["seq_per_s"] > 0 and run["latency_ms"]["p90"] >= run["latency_ms"]["p50"]
    assert run["machine"]["cpu"] and run["backend_info"]["providers"] == ["CPUExecutionProvider"]
    assert sorted(s["key"] for s in run["samples"]) == sorted(s.key for s in ds.samples)
    for s in ds.samples:
        assert (runs["ort3"] / "probs" / f"{s.key}.bin").is_file()
        assert (runs["ort3"] / "output_lengths" / f"{s.key}.bin").stat().st_size == 4


def test_backends_and_batch_sizes_agree(runs: dict[str, Path], dataset: Path, tiny_export: Path) -> None:
    ds = DatasetDir.open(dataset)
    card = read_card(card_path_for(tiny_export))
    scored = {name: score_run(path, ds, card) for name, path in runs.items()}
    hyps = {name: s["hypotheses"] for name, s in scored.items()}
    assert hyps["ort1"] == hyps["torch1"] == hyps["ort3"] == hyps["torch4"]
    from postprocess.score import lengths_by_uid, output_diff

    lengths = lengths_by_uid(card, runs["torch1"], ds)
    diff = output_diff(runs["ort3"], ds, runs["torch1"], ds, card, lengths)
    assert diff["max_abs"] < 1e-5 and diff["argmax_agreement"] == 1.0
    assert diff["frames"] == sum(lengths.values())
    assert (runs["ort1"] / "scores.json").is_file() and (runs["ort1"] / "transcripts.csv").is_file()


def test_report_writes_tables_and_plot(tmp_path: Path, runs: dict[str, Path], dataset: Path, tiny_export: Path) -> None:
    from postprocess.__main__ import main

    card = str(card_path_for(tiny_export))
    rc = main(["report", "--dataset", str(dataset), "--card", card, "--reference", f"PyTorch={runs['torch1']}",
               "--candidate", f"ORT bs1={runs['ort1']}", "--candidate", f"ORT bs3={runs['ort3']}",
               "--throughput", str(runs["ort1"]), str(runs["ort3"]), str(runs["torch1"]), str(runs["torch4"]),
               "--out", str(tmp_path), "--name", "t"])
    assert rc == 0
    assert main(["readme", "--out", str(tmp_path), "--names", "t"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "## Precision" in readme and "## Throughput" in readme and "t_throughput.png" in readme
    speakers = json.loads((tmp_path / "t_speakers.json").read_text())["rows"]
    assert sum(r["utterances"] for r in speakers) == len(DatasetDir.open(dataset).samples)
    assert all(r["speaker"] != "(unknown)" for r in speakers)
    md = (tmp_path / "t_precision.md").read_text()
    assert "| PyTorch |" in md and "CER with spaces removed" in md and "Machine:" in md
    prec = json.loads((tmp_path / "t_precision.json").read_text())
    assert [r["system"] for r in prec["rows"]] == ["PyTorch", "ORT bs1", "ORT bs3"]
    assert prec["rows"][1]["ΔWER (points)"] == 0.0
    thr = json.loads((tmp_path / "t_throughput.json").read_text())
    assert {(r["backend"], r["batch"]) for r in thr["rows"]} == {("onnxruntime", 1), ("onnxruntime", 3),
                                                                ("torch", 1), ("torch", 4)}
    assert (tmp_path / "t_throughput.png").stat().st_size > 1000
    assert (tmp_path / "t_throughput.csv").read_text().startswith("backend,precision,batch")


def test_runner_refuses_dataset_of_another_feature_config(tmp_path: Path, dataset: Path, tiny_export: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    other = tmp_path / "ds"
    shutil.copytree(dataset, other)
    header = json.loads((other / "dataset.json").read_text())
    header["feature"]["hop_length"] = 80
    (other / "dataset.json").write_text(json.dumps(header))
    assert _run(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(other),
                 "--out", str(tmp_path / "r")]) == 2
    assert "another feature config" in caplog.text


def test_scoring_an_incomplete_run_names_what_is_missing(tmp_path: Path, runs: dict[str, Path], dataset: Path,
                                                        tiny_export: Path) -> None:
    import shutil

    from core.run_dir import RunError

    broken = tmp_path / "run"
    shutil.copytree(runs["ort1"], broken)
    victim = next((broken / "probs").iterdir())
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(Exception) as err:
        score_run(broken, DatasetDir.open(dataset), read_card(card_path_for(tiny_export)))
    assert victim.name in str(err.value) and "expected" in str(err.value)
    (broken / "run.json").unlink()
    with pytest.raises(RunError, match="not a finished run dir"):
        score_run(broken, DatasetDir.open(dataset), read_card(card_path_for(tiny_export)))


def test_modelzoo_decoding_reads_half_the_input_length(tmp_path: Path, tiny_corpus: Path, tiny_export: Path) -> None:
    card = read_card(card_path_for(tiny_export))
    mz = build_dataset(read_an4_raw(tiny_corpus / "an4", "test"), tmp_path / "mz", card, {"kind": "an4_raw"},
                       BuildOptions(layout="modelzoo"), progress=False)
    assert _run(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(mz),
                 "--out", str(tmp_path / "r"), "--keep-order"]) == 0
    ds = DatasetDir.open(mz)
    from postprocess.score import decode_lengths
    from core.run_dir import open_run

    quirk = decode_lengths(card, tmp_path / "r", open_run(tmp_path / "r"), ds, modelzoo=True)
    model = decode_lengths(card, tmp_path / "r", open_run(tmp_path / "r"), ds, modelzoo=False)
    for s in ds.samples:
        size = int(ds.load(s, "lengths")[0])
        assert quirk[s.key] == size // 2
        assert model[s.key] == (size + 1) // 2  # the model's own ceil(L/2)
    out = score_run(tmp_path / "r", ds, card, modelzoo=True)
    assert out["decode_lengths"] == "ModelZoo postprocess: floor(input length / 2) frames"
    assert np.isfinite(out["wer"])


def test_output_length_rule_matches_the_model(tiny_export: Path) -> None:
    import torch

    from families.deepspeech2.recipe import conv_output_lengths

    card = read_card(card_path_for(tiny_export))
    for n in (1, 2, 37, 620, 621, 1000):
        assert card.output_frames(n) == int(conv_output_lengths(torch.tensor([n]))[0])
