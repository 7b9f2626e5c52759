"""Ascend tools: the atc command from the card, and the msame / ais_bench / torch_aie runners.

The real tools cannot run here; the flows run against the test emulators in tests/emulators, which
follow the tools' documented flags, folder layouts and file formats and run the model with
onnxruntime. Each flow must decode to the same text as the onnxruntime backend on the same data.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from export.atc import AtcError, AtcOptions, atc_command, convert
from core.card import ModelCard, card_path_for, read_card
from core.tensor_spec import TensorSpec
from core.dataset_dir import DatasetDir
from core.run_dir import RunError, open_run
from runners.tool_outputs import ToolNotFound, check_files, read_output
from tests.emulators import EMULATORS, emulator_env
from tests.card_checks import assert_card_round_trips


@pytest.fixture()
def ascend_tools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The emulators where the real tools would be: atc/msame on PATH, ais_bench/torch_aie importable."""
    env = emulator_env()
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    monkeypatch.syspath_prepend(str(EMULATORS))
    yield
    sys.modules.pop("torch_aie", None)  # the emulator must not leak into tests of the missing module


def _run(argv: list[str]) -> int:
    from runners.__main__ import main

    return main(argv)


def _hyps(run: Path, ds: Path, card: dict, modelzoo: bool = False) -> dict:
    from postprocess.score import score_run

    return score_run(run, DatasetDir.open(ds), card, modelzoo=modelzoo)


# --- the atc command -------------------------------------------------------------------------------------

def test_atc_static_shape_from_card(tiny_export: Path) -> None:
    card = read_card(card_path_for(tiny_export))
    cmd = atc_command(tiny_export, card, Path("/o/ds_bs1"), AtcOptions(soc_version="Ascend310", batch=1, length=621))
    assert cmd[:2] == ["atc", "--framework=5"]
    assert "--input_shape=spect:1,1,161,621;lengths:1" in cmd
    assert "--input_format=NCHW" in cmd and "--soc_version=Ascend310" in cmd and "--log=error" in cmd
    assert f"--model={tiny_export}" in cmd and "--output=/o/ds_bs1" in cmd


def test_atc_dynamic_profiles(tiny_export: Path) -> None:
    card = read_card(card_path_for(tiny_export))
    batch = atc_command(tiny_export, card, Path("o"), AtcOptions(length=621, dynamic_batch=[1, 4, 8]))
    assert "--input_shape=spect:-1,1,161,621;lengths:-1" in batch and "--dynamic_batch_size=1,4,8" in batch
    dims = atc_command(tiny_export, card, Path("o"), AtcOptions(dynamic_dims=[(1, 621), (8, 400)]))
    assert "--input_format=ND" in dims and "--input_shape=spect:-1,1,161,-1;lengths:-1" in dims
    assert "--dynamic_dims=1,621,1;8,400,8" in dims


def test_atc_refuses_what_it_cannot_build(tiny_export: Path) -> None:
    card = read_card(card_path_for(tiny_export))
    with pytest.raises(AtcError, match="--length"):
        atc_command(tiny_export, card, Path("o"), AtcOptions(batch=1))
    with pytest.raises(AtcError, match="not both"):
        atc_command(tiny_export, card, Path("o"), AtcOptions(length=621, dynamic_batch=[1], dynamic_dims=[(1, 9)]))


def test_atc_without_toolkit_writes_the_script_and_card(tmp_path: Path, tiny_export: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    card = read_card(card_path_for(tiny_export))
    om, ran = convert(tiny_export, card, tmp_path / "om", "ds_bs1", AtcOptions(batch=1, length=621))
    assert not ran and not om.exists()
    script = (tmp_path / "om" / "ds_bs1.atc.sh").read_text()
    assert "atc --framework=5" in script and "spect:1,1,161,621;lengths:1" in script
    om_card = assert_card_round_trips(card_path_for(om), tmp_path)
    assert om_card.inputs[0].shape == (1, 1, 161, 621) and om_card.om.soc_version == "Ascend310P3"


def test_atc_simplify_folds_at_the_static_shape(tmp_path: Path, tiny_export: Path, tiny_an4_test: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--simplify runs onnxslim at the compiled shape first; the slimmed graph computes the same thing."""
    import onnx
    import onnxruntime as ort

    from export.__main__ import main as export_main

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert export_main(["atc", "--model", str(tiny_export), "--out", str(tmp_path / "om"), "--name", "ds", "--length",
                        "300", "--simplify"]) == 0
    slim = tmp_path / "om" / "ds.slim.onnx"
    assert f"--model={slim.resolve()}" in (tmp_path / "om" / "ds.atc.sh").read_text()
    before = len(onnx.load(str(tiny_export)).graph.node)
    assert len(onnx.load(str(slim)).graph.node) < before
    x = np.random.default_rng(0).standard_normal((1, 1, 161, 300)).astype(np.float32)
    feeds = {"spect": x, "lengths": np.array([300], dtype=np.int32)}
    a = ort.InferenceSession(str(tiny_export), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    b = ort.InferenceSession(str(slim), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


# --- DeepSpeech2: the ModelZoo msame flow ----------------------------------------------------------------

@pytest.fixture(scope="module")
def ds_modelzoo(tmp_path_factory: pytest.TempPathFactory, tiny_ckpt: Path, tiny_corpus: Path) -> dict[str, Path]:
    """Static 1x1x161x621 export, --modelzoo preprocess, and its onnxruntime run (the reference)."""
    from export.__main__ import main as export_main
    from preprocess.__main__ import main as pre_main

    root = tmp_path_factory.mktemp("ds_mz")
    assert export_main(["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(root / "export"),
                        "--static-shape", "1,1,161,621", "--threads", "1"]) == 0
    onnx_path = root / "export" / "model.onnx"
    assert pre_main(["--an4-root", str(tiny_corpus / "an4"), "--card", str(card_path_for(onnx_path)), "--out",
                     str(root / "data"), "--modelzoo", "--pad-to", "621", "--no-progress"]) == 0
    assert _run(["--backend", "onnxruntime", "--model", str(onnx_path), "--dataset", str(root / "data"), "--out",
                 str(root / "ort"), "--keep-order", "--threads", "1", "--no-progress"]) == 0
    return {"onnx": onnx_path, "data": root / "data", "ort": root / "ort", "root": root}


def test_msame_flow_matches_onnxruntime(tmp_path: Path, ds_modelzoo: dict[str, Path], ascend_tools: None) -> None:
    from export.__main__ import main as export_main

    assert export_main(["atc", "--model", str(ds_modelzoo["onnx"]), "--out", str(tmp_path / "om"), "--name",
                        "deepspeech_bs1", "--soc-version", "Ascend310", "--log", "debug"]) == 0
    om = tmp_path / "om" / "deepspeech_bs1.om"
    assert om.is_file() and (tmp_path / "om" / "deepspeech_bs1.atc.sh").is_file()
    assert _run(["--backend", "msame", "--model", str(om), "--dataset", str(ds_modelzoo["data"]), "--out",
                 str(tmp_path / "msame")]) == 0
    run = open_run(tmp_path / "msame")
    n = len(DatasetDir.open(ds_modelzoo["data"]).samples)
    assert run["backend"] == "msame" and run["output_format"] == "TXT" and run["dataset"]["samples"] == n
    assert len(run["batch_latency_ms"]) == n - 1  # msame's first file excluded, as its own average does
    stamp = Path(run["tool"]["raw_output"]).name
    assert stamp.count("_") == 4 and (Path(run["tool"]["raw_output"]) / "data1_output_0.txt").is_file()
    card = read_card(card_path_for(om))
    for modelzoo in (False, True):
        ref = _hyps(ds_modelzoo["ort"], ds_modelzoo["data"], card, modelzoo)
        got = _hyps(tmp_path / "msame", ds_modelzoo["data"], card, modelzoo)
        assert got["hypotheses"] == ref["hypotheses"]
        assert got["wer"] == ref["wer"] and got["cer"] == ref["cer"]
    # TXT keeps 6 significant digits: probabilities move by rounding only.
    key = DatasetDir.open(ds_modelzoo["data"]).samples[0].key
    a = np.fromfile(ds_modelzoo["ort"] / "probs" / f"{key}.bin", dtype="<f4")
    b = np.fromfile(tmp_path / "msame" / "probs" / f"{key}.bin", dtype="<f4")
    assert a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_msame_bin_output_and_bad_outputs(tmp_path: Path, ds_modelzoo: dict[str, Path], ascend_tools: None) -> None:
    from export.__main__ import main as export_main

    assert export_main(["atc", "--model", str(ds_modelzoo["onnx"]), "--out", str(tmp_path / "om"), "--name",
                        "ds"]) == 0
    om = tmp_path / "om" / "ds.om"
    assert _run(["--backend", "msame", "--model", str(om), "--dataset", str(ds_modelzoo["data"]), "--out",
                 str(tmp_path / "bin"), "--outfmt", "BIN"]) == 0
    run = open_run(tmp_path / "bin")
    key = DatasetDir.open(ds_modelzoo["data"]).samples[0].key
    np.testing.assert_array_equal(np.fromfile(ds_modelzoo["ort"] / "probs" / f"{key}.bin", dtype="<f4"),
                                  np.fromfile(tmp_path / "bin" / "probs" / f"{key}.bin", dtype="<f4"))
    # An output folder with a file missing and a stray one: both named.
    raw = Path(run["tool"]["raw_output"])
    expected = sorted(p.name for p in raw.iterdir())
    (raw / "data2_output_1.bin").unlink()
    (raw / "stray.bin").write_bytes(b"")
    with pytest.raises(RunError, match=r"1 missing \(data2_output_1.bin\); 1 unexpected \(stray.bin\)"):
        check_files(raw, expected, "msame")


def test_tool_errors_are_clear(tmp_path: Path, ds_modelzoo: dict[str, Path], tiny_export: Path,
                               monkeypatch: pytest.MonkeyPatch, ascend_tools: None) -> None:
    from runners.msame import run_msame

    card = read_card(card_path_for(ds_modelzoo["onnx"]))
    ds = DatasetDir.open(ds_modelzoo["data"])
    # A tool that exits non-zero: its own error lines end up in ours. The OM compiled for 400 frames
    # refuses the 621-frame files, as a real OM refuses inputs of another size.
    from export.atc import convert as atc_convert

    om, ran = atc_convert(tiny_export, read_card(card_path_for(tiny_export)), tmp_path / "om", "short",
                          AtcOptions(batch=1, length=400))
    assert ran
    # A shape the static export cannot take is refused before atc; atc's own refusals come back with its message.
    with pytest.raises(AtcError, match="time axis is fixed to 621"):
        atc_convert(ds_modelzoo["onnx"], card, tmp_path / "om", "bad", AtcOptions(batch=1, length=400))
    with pytest.raises(AtcError, match=r"atc failed \(status 255.*\n(.*\n)*E10001.*framework"):
        atc_convert(ds_modelzoo["onnx"], card, tmp_path / "om", "bad", AtcOptions(extra=["--framework=3"]))
    with pytest.raises(RunError, match=r"(?s)msame exited with status [1-9].*\[ERROR\] input file .*data1.bin"):
        run_msame(om, card, ds, tmp_path / "bad")
    # The real msame exits 0 after many failures; its [ERROR] lines are what counts.
    fake = tmp_path / "fake_msame"
    fake.write_text("#!/bin/sh\necho '[ERROR] model execute failed'\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MSAME_BIN", str(fake))
    with pytest.raises(RunError, match=r"msame reported errors.*\n\[ERROR\] model execute failed"):
        run_msame(om, card, ds, tmp_path / "quiet")
    monkeypatch.delenv("MSAME_BIN")
    # Not installed: what to install and which variable to set.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolNotFound, match="MSAME_BIN"):
        run_msame(om, card, ds, tmp_path / "none")


def test_read_output_checks_the_value_count(tmp_path: Path) -> None:
    spec = TensorSpec("probs", "float32", (1, "frames", 29), "probabilities")
    good = tmp_path / "data1_output_0.txt"
    good.write_text("".join(" ".join("0.5" for _ in range(29)) + " \n" for _ in range(4)))
    assert read_output(good, "TXT", spec, 1).shape == (1, 4, 29)
    bad = tmp_path / "data2_output_0.txt"
    bad.write_text("0.5 " * 30 + "\n")
    with pytest.raises(RunError, match="data2_output_0.txt: 30 values do not fit output probs of shape 1xframesx29"):
        read_output(bad, "TXT", spec, 1)
    static = TensorSpec("probs", "float32", (1, 311, 29), "probabilities")
    with pytest.raises(RunError, match="116 values, expected 9019"):
        read_output(good, "TXT", static, 1)
    # A buffer of the largest gear (msame --dymDims): the gear's shape from the card, the rest dropped.
    padded = tmp_path / "data3_output_0.txt"
    values = np.arange(8 * 29, dtype=np.float32).reshape(8, 29)
    padded.write_text("".join(" ".join(str(v) for v in row) + " \n" for row in values))
    got = read_output(padded, "TXT", spec, 1, [1, 3, 29], padded=True)
    np.testing.assert_array_equal(got, values[:3].reshape(1, 3, 29))
    with pytest.raises(RunError, match="232 values, expected 87"):
        read_output(padded, "TXT", spec, 1, [1, 3, 29])


# --- dynamic OMs, the OM batch, chip names: the tools as their sources behave ------------------------------

@pytest.fixture(scope="module")
def ds_dynamic(tmp_path_factory: pytest.TempPathFactory, tiny_export: Path, tiny_corpus: Path) -> dict[str, Path]:
    """The dynamic-axes export, the guide's layout (one 621-frame file per utterance), its onnxruntime run."""
    from preprocess.__main__ import main as pre_main

    root = tmp_path_factory.mktemp("ds_dyn")
    assert pre_main(["--an4-root", str(tiny_corpus / "an4"), "--card", str(card_path_for(tiny_export)), "--out",
                     str(root / "data"), "--modelzoo", "--pad-to", "621", "--no-progress"]) == 0
    assert _run(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(root / "data"), "--out",
                 str(root / "ort"), "--keep-order", "--threads", "1", "--no-progress"]) == 0
    return {"onnx": tiny_export, "data": root / "data", "ort": root / "ort"}


def _same_as_onnxruntime(run_dir: Path, ds: dict[str, Path], card: ModelCard) -> None:
    """Every sample's outputs have onnxruntime's shapes and values (TXT rounding aside), and decode the same."""
    for sample in DatasetDir.open(ds["data"]).samples:
        for spec in card.outputs:
            a = np.fromfile(ds["ort"] / spec.name / f"{sample.key}.bin", dtype=spec.dtype)
            b = np.fromfile(run_dir / spec.name / f"{sample.key}.bin", dtype=spec.dtype)
            assert a.shape == b.shape, (sample.key, spec.name)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ref = _hyps(ds["ort"], ds["data"], card)
    got = _hyps(run_dir, ds["data"], card)
    assert got["hypotheses"] == ref["hypotheses"]


@pytest.mark.parametrize("tool,kind", [("msame", "dims"), ("msame", "batch"), ("ais_bench", "dims"),
                                       ("ais_bench", "batch")])
def test_dynamic_om_runs_at_the_gear_of_the_data(tmp_path: Path, ds_dynamic: dict[str, Path], tool: str, kind: str,
                                                 ascend_tools: None) -> None:
    """msame and ais_bench need --dymDims / --dymBatch for a dynamic OM (a dims OM without it is refused,
    a batch OM without it fails to execute), and msame writes --dymDims outputs padded to the largest gear."""
    from export.__main__ import main as export_main

    gears = ["--dynamic-dims", "1x621,2x700"] if kind == "dims" else ["--length", "621", "--dynamic-batch", "1,2"]
    assert export_main(["atc", "--model", str(ds_dynamic["onnx"]), "--out", str(tmp_path / "om"), "--name", kind,
                        *gears]) == 0
    om = tmp_path / "om" / f"{kind}.om"
    assert _run(["--backend", tool, "--model", str(om), "--dataset", str(ds_dynamic["data"]), "--out",
                 str(tmp_path / "run")]) == 0
    run = open_run(tmp_path / "run")
    flag = {"dims": ["--dymDims", "spect:1,1,161,621;lengths:1"], "batch": ["--dymBatch", "1"]}[kind]
    command = run["tool"]["command"] if "command" in run["tool"] else run["backend_info"]["command"]
    assert any(command[i:i + 2] == flag for i in range(len(command))), command
    _same_as_onnxruntime(tmp_path / "run", ds_dynamic, read_card(card_path_for(om)))


def test_dynamic_om_refuses_data_of_no_gear(tmp_path: Path, ds_dynamic: dict[str, Path], ascend_tools: None) -> None:
    from export.__main__ import main as export_main
    from runners.msame import run_msame

    assert export_main(["atc", "--model", str(ds_dynamic["onnx"]), "--out", str(tmp_path / "om"), "--name", "d",
                        "--dynamic-dims", "1x400,2x700"]) == 0
    om = tmp_path / "om" / "d.om"
    with pytest.raises(RunError, match=r"spect 1x1x161x621.*no gear.*1x1x161x400"):
        run_msame(om, read_card(card_path_for(om)), DatasetDir.open(ds_dynamic["data"]), tmp_path / "run")


def test_ais_bench_records_the_om_batch(tmp_path: Path, ds_dynamic: dict[str, Path], ascend_tools: None) -> None:
    """A batch-4 OM over one-utterance files: ais_bench joins 4 files per inference and pads the last, so the
    run's batch size, batch count, per-batch latencies and ais_bench's throughput are per 4 utterances."""
    from export.__main__ import main as export_main

    assert export_main(["atc", "--model", str(ds_dynamic["onnx"]), "--out", str(tmp_path / "om"), "--name", "bs4",
                        "--batch-size", "4", "--length", "621"]) == 0
    om = tmp_path / "om" / "bs4.om"
    assert _run(["--backend", "ais_bench", "--model", str(om), "--dataset", str(ds_dynamic["data"]), "--out",
                 str(tmp_path / "run"), "--warmup", "1"]) == 0
    run = open_run(tmp_path / "run")
    n = len(DatasetDir.open(ds_dynamic["data"]).samples)
    inferences = -(-n // 4)
    assert run["batch_size"] == 4 and run["batches"] == inferences and len(run["batch_latency_ms"]) == inferences
    assert sorted({m["batch"] for m in run["samples"]}) == list(range(inferences))
    summary = run["tool"]["summary"]
    assert summary["throughput"] == pytest.approx(1000 * 4 / summary["NPU_compute_time_ms"]["mean"])
    _same_as_onnxruntime(tmp_path / "run", ds_dynamic, read_card(card_path_for(om)))


def test_msame_refuses_files_smaller_than_the_om_batch(tmp_path: Path, ds_dynamic: dict[str, Path],
                                                       ascend_tools: None) -> None:
    from export.__main__ import main as export_main
    from runners.msame import run_msame

    assert export_main(["atc", "--model", str(ds_dynamic["onnx"]), "--out", str(tmp_path / "om"), "--name", "bs4",
                        "--batch-size", "4", "--length", "621"]) == 0
    om = tmp_path / "om" / "bs4.om"
    with pytest.raises(RunError, match="msame runs one file per inference.*1 row.*batch 4"):
        run_msame(om, read_card(card_path_for(om)), DatasetDir.open(ds_dynamic["data"]), tmp_path / "run")


@pytest.mark.parametrize("soc", ["Ascend310P1", "Ascend910B3", "Ascend910B4", "Ascend310B2"])
def test_atc_takes_chip_names(tmp_path: Path, ds_modelzoo: dict[str, Path], soc: str, ascend_tools: None) -> None:
    """ModelZoo compiles for Ascend910B3/B4; atc takes "Ascend" + any chip name its toolkit knows."""
    from export.__main__ import main as export_main

    assert export_main(["atc", "--model", str(ds_modelzoo["onnx"]), "--out", str(tmp_path), "--name", "m",
                        "--soc-version", soc]) == 0
    assert (tmp_path / "m.om").is_file() and read_card(card_path_for(tmp_path / "m.om")).om.soc_version == soc


def test_atc_warns_on_an_unknown_chip_but_passes_it_on(tiny_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    card = read_card(card_path_for(tiny_export))
    with caplog.at_level("WARNING", logger="export"):
        cmd = atc_command(tiny_export, card, Path("o"), AtcOptions(length=621, soc_version="Ascend920X"))
    assert "--soc_version=Ascend920X" in cmd
    assert any("Ascend920X" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_torch_aie_backend_on_the_npu_with_the_cards_dtypes(tmp_path: Path, ascend_tools: None) -> None:
    """An int32 input is compiled as INT32 and fed as int32; tensors go to npu:0 and run in a stream."""
    import torch

    from runners.torch_aie_backend import TorchAieBackend

    class Twice(torch.nn.Module):
        def forward(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, n + 1

    ts = tmp_path / "m.pt"
    torch.jit.trace(Twice(), (torch.zeros(2, 3, 4), torch.ones(2, dtype=torch.int32))).save(str(ts))
    card = ModelCard.from_dict({
        "family": "twice", "onnx": "m.onnx", "labels": ["_"], "blank_index": 0, "feature": {"kind": "none"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 3, "time"], "role": "features",
                    "time_axis": 2},
                   {"name": "n", "dtype": "int32", "shape": ["batch"], "role": "lengths"}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 3, "time"], "role": "features"},
                    {"name": "m", "dtype": "int32", "shape": ["batch"], "role": "lengths"}]})
    backend = TorchAieBackend(ts, card, batch_size=2, length=4, device="npu:0", guide_loops=1, guide_warmup=1)
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = backend.infer({"x": x, "n": np.array([3, 4], dtype=np.int32)})
    np.testing.assert_array_equal(out["y"], 2 * x)
    np.testing.assert_array_equal(out["m"], [4, 5])
    assert [i.dtype for i in backend.compiled.compiled_inputs] == [torch.float32, torch.int32]
    assert backend.compiled.last_input_devices == ["npu:0", "npu:0"] and backend.stream.synchronized > 0


# --- wav2vec2: the ModelZoo ais_bench flow and torch_aie -------------------------------------------------

@pytest.fixture(scope="module")
def w2v_modelzoo(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> dict[str, Path]:
    from export.__main__ import main as export_main
    from preprocess.__main__ import main as pre_main
    from tests.test_wav2vec2 import make_tiny_model_dir

    root = tmp_path_factory.mktemp("w2v_mz")
    model_dir = make_tiny_model_dir(root / "model")
    assert export_main(["wav2vec2", "--model-dir", str(model_dir), "--out", str(root / "export"), "--threads", "1",
                        "--torchscript"]) == 0
    onnx_path = root / "export" / "model.onnx"
    split = next((tiny_corpus / "LibriSpeech").glob("train*"))
    assert pre_main(["--librispeech", str(split), "--card", str(card_path_for(onnx_path)), "--out",
                     str(root / "data"), "--modelzoo", "--batch-size", "2", "--no-progress"]) == 0
    assert _run(["--backend", "onnxruntime", "--model", str(onnx_path), "--dataset", str(root / "data"), "--out",
                 str(root / "ort"), "--batch-size", "2", "--keep-order", "--threads", "1", "--no-progress"]) == 0
    return {"onnx": onnx_path, "data": root / "data", "ort": root / "ort"}


def test_ais_bench_flow_matches_onnxruntime(tmp_path: Path, w2v_modelzoo: dict[str, Path], ascend_tools: None) -> None:
    from export.__main__ import main as export_main

    assert export_main(["atc", "--model", str(w2v_modelzoo["onnx"]), "--out", str(tmp_path / "om"), "--name",
                        "wav2vec2_bs2", "--batch-size", "2", "--length", "100000"]) == 0
    om = tmp_path / "om" / "wav2vec2_bs2.om"
    assert read_card(card_path_for(om)).om.input_shape == {"input_values": [2, 100000]}
    assert _run(["--backend", "ais_bench", "--model", str(om), "--dataset", str(w2v_modelzoo["data"]), "--out",
                 str(tmp_path / "ais"), "--warmup", "1"]) == 0
    run = open_run(tmp_path / "ais")
    ds = DatasetDir.open(w2v_modelzoo["data"])
    batches = len(ds.samples) // 2
    assert run["backend"] == "ais_bench" and run["batch_size"] == 2 and len(run["batch_latency_ms"]) == batches
    summary = run["tool"]["summary"]
    assert summary["throughput"] > 0 and summary["NPU_compute_time_ms"]["mean"] > 0
    assert (Path(run["tool"]["raw_output"]) / "batch_0_0.bin").is_file()
    card = read_card(card_path_for(om))
    for modelzoo in (False, True):
        ref = _hyps(w2v_modelzoo["ort"], w2v_modelzoo["data"], card, modelzoo)
        got = _hyps(tmp_path / "ais", w2v_modelzoo["data"], card, modelzoo)
        assert got["hypotheses"] == ref["hypotheses"] and got["cer"] == ref["cer"]


def test_the_om_owns_the_batch_of_the_guide_batch_files(tmp_path: Path, w2v_modelzoo: dict[str, Path],
                                                        tiny_corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    """preprocess --modelzoo --om takes the OM's compiled batch; a --batch-size that disagrees is refused with
    both values named, and so is an OM whose batch differs from a dataset's batch files (nothing written)."""
    from export.__main__ import main as export_main
    from preprocess.__main__ import main as pre_main

    for bs in (2, 3):
        assert export_main(["atc", "--model", str(w2v_modelzoo["onnx"]), "--out", str(tmp_path / "om"), "--name",
                            f"w_bs{bs}", "--batch-size", str(bs), "--length", "100000"]) == 0
    card = card_path_for(w2v_modelzoo["onnx"])
    split = next((tiny_corpus / "LibriSpeech").glob("train*"))
    om3 = tmp_path / "om" / "w_bs3.om"
    assert pre_main(["--librispeech", str(split), "--card", str(card), "--out", str(tmp_path / "d3"), "--modelzoo",
                     "--om", str(om3), "--no-progress"]) == 0
    assert DatasetDir.open(tmp_path / "d3").header["batch_size"] == 3
    assert (tmp_path / "d3" / "batch_i_filename_map_bs3.json").is_file()
    caplog.clear()
    assert pre_main(["--librispeech", str(split), "--card", str(card), "--out", str(tmp_path / "bad"), "--modelzoo",
                     "--om", str(om3), "--batch-size", "2", "--no-progress"]) == 2
    assert "--batch-size 2 does not match the batch 3" in caplog.text and str(card_path_for(om3)) in caplog.text
    assert not (tmp_path / "bad").exists()
    caplog.clear()
    assert _run(["--backend", "ais_bench", "--model", str(om3), "--dataset", str(w2v_modelzoo["data"]), "--out",
                 str(tmp_path / "ais")]) == 2
    assert "holds batch files of 2 clips" in caplog.text and "compiled for batch 3" in caplog.text
    assert not (tmp_path / "ais" / "run.json").exists()


def test_ais_bench_missing_is_named(tmp_path: Path, w2v_modelzoo: dict[str, Path]) -> None:
    from runners.ais_bench import run_ais_bench

    if any((Path(p) / "ais_bench").exists() for p in sys.path if p):
        pytest.skip("an ais_bench package is importable here")
    card = read_card(card_path_for(w2v_modelzoo["onnx"]))
    with pytest.raises(ToolNotFound, match="ais_bench is not importable.*ais-bench_workload"):
        run_ais_bench(tmp_path / "x.om", card, DatasetDir.open(w2v_modelzoo["data"]), tmp_path / "r")


def test_torch_aie_compiles_the_trace_as_the_guide(tmp_path: Path, w2v_modelzoo: dict[str, Path],
                                                    ascend_tools: None) -> None:
    # The default --aie-device npu: set_device, .to("npu:0") and the stream run against the emulator's npu.
    assert _run(["--backend", "torch_aie", "--model", str(w2v_modelzoo["onnx"]), "--dataset",
                 str(w2v_modelzoo["data"]), "--out", str(tmp_path / "aie"), "--batch-size", "2",
                 "--aie-loops", "2", "--keep-order", "--no-progress"]) == 0
    run = open_run(tmp_path / "aie")
    info = run["backend_info"]
    assert info["compiled_input_shapes"] == [[2, 100000]] and info["precision_policy"] == "FP16"
    assert info["device"] == "npu:0"
    assert info["guide_fps"]["fps"] > 0 and info["guide_fps"]["loops"] == 2
    card = read_card(card_path_for(w2v_modelzoo["onnx"]))
    ref = _hyps(w2v_modelzoo["ort"], w2v_modelzoo["data"], card)
    got = _hyps(tmp_path / "aie", w2v_modelzoo["data"], card)
    assert got["hypotheses"] == ref["hypotheses"]


def test_torch_aie_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from runners.torch_aie_backend import import_torch_aie

    monkeypatch.setitem(sys.modules, "torch_aie", None)  # what Python does for a module that is not installed
    with pytest.raises(RunError, match="cannot import torch_aie.*torch-aie wheel"):
        import_torch_aie()
