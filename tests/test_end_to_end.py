"""The whole chain through the command-line entry points, on the tiny corpus with a tiny trained model."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_train_export_preprocess_run_report(tmp_path: Path, tiny_corpus: Path) -> None:
    from demo.__main__ import main as demo_main
    from export.__main__ import main as export_main
    from families.deepspeech2.checkpoint_reader import load_deepspeech_checkpoint
    from postprocess.__main__ import main as post_main
    from preprocess.__main__ import main as pre_main
    from runners.__main__ import main as run_main

    ckpt = tmp_path / "demo.ckpt"
    assert demo_main(["train", "deepspeech2", "--an4-root", str(tiny_corpus / "an4"), "--out", str(ckpt),
                      "--epochs", "1", "--hidden-size", "16", "--hidden-layers", "1", "--threads", "1"]) == 0
    loaded = load_deepspeech_checkpoint(ckpt)
    assert loaded.model["hidden_size"] == 16
    train_log = json.loads(ckpt.with_suffix(".train.json").read_text())
    assert len(train_log["history"]) == 1 and train_log["seed"] == 1234

    export_dir = tmp_path / "export"
    assert export_main(["deepspeech2", "--checkpoint", str(ckpt), "--out", str(export_dir), "--threads", "1"]) == 0
    card = export_dir / "model.card.json"
    data = tmp_path / "data"
    assert pre_main(["--an4-root", str(tiny_corpus), "--card", str(card), "--out", str(data), "--no-progress"]) == 0
    runs = tmp_path / "runs"
    common = ["--dataset", str(data), "--threads", "1", "--no-progress"]
    assert run_main(["--backend", "torch", "--card", str(card), "--checkpoint", str(ckpt),
                     "--out", str(runs / "torch"), *common]) == 0
    assert run_main(["--backend", "onnxruntime", "--model", str(export_dir / "model.onnx"), "--batch-size", "2",
                     "--out", str(runs / "ort"), *common]) == 0
    results = tmp_path / "results"
    assert post_main(["report", "--dataset", str(data), "--card", str(card), "--reference", str(runs / "torch"),
                      "--candidate", str(runs / "ort"), "--throughput", str(runs / "torch"), str(runs / "ort"),
                      "--out", str(results), "--name", "e2e"]) == 0
    rows = json.loads((results / "e2e_precision.json").read_text())["rows"]
    assert rows[0]["same transcripts"] == rows[1]["same transcripts"]
    assert rows[1]["ΔWER (points)"] == 0.0
    assert rows[1]["max |Δ output|"] < 1e-5


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the whole chain with every family and section; pytest.ini's 600 s is per unit test
def test_run_all_quick(tmp_path: Path) -> None:
    """scripts/run_all.sh --quick from the repo, into a scratch work dir, with the Ascend test emulators
    installed where the real tools would be: their ModelZoo rows must match onnxruntime's."""
    from tests.emulators import emulator_env

    env = emulator_env(dict(os.environ, WORK_DIR=str(tmp_path / "work"), RESULTS_DIR=str(tmp_path / "results"),
                            AIE_DEVICE="cpu"))
    proc = subprocess.run(["bash", "scripts/run_all.sh", "--quick", "--batch-sizes", "1 4"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "results" / "deepspeech2_an4_precision.md").is_file()
    assert (tmp_path / "results" / "deepspeech2_an4_throughput.png").is_file()
    for name, ours, tools in (("deepspeech2_an4", "ONNX Runtime static", ["msame"]),
                              ("wav2vec2_librispeech", "ONNX Runtime, ModelZoo", ["ais_bench", "torch_aie"])):
        rows = {r["system"]: r for r in json.loads((tmp_path / "results" / f"{name}_precision.json").read_text())["rows"]}
        ort = next(r for label, r in rows.items() if label.startswith(ours))
        for tool in tools:
            row = next(r for label, r in rows.items() if label.startswith(tool))
            assert (row["WER %"], row["CER %"]) == (ort["WER %"], ort["CER %"]), (tool, row, ort)
    # The split section: the model over loopback gRPC scored beside the whole model, and its own tables.
    results = tmp_path / "results"
    rows = {r["system"]: r for r in json.loads((results / "split_asr_librispeech_precision.json").read_text())["rows"]}
    split_fp32 = next(r for label, r in rows.items() if label.startswith("Split") and "fp32" in label)
    assert split_fp32["max |Δ output|"] < 1e-3
    for name in ("split_asr_codecs.png", "split_asr_timing_fp32.json", "split_asr_plan_check.json",
                 "split_asr_plan_measured.md", "split_resnet50_partitions.json"):
        assert (results / name).is_file(), name
    assert len(json.loads((results / "split_asr_timing_fp32.json").read_text())["rows"]) == 8
    assert "Split boundary codecs" in (results / "README.md").read_text()
