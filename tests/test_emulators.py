"""The Ascend tool emulators (tests/emulators) against a tiny ONNX model, run as the real tools would be."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.emulators import emulator_env

STAMP = re.compile(r"^\d{6,8}_\d{1,2}_\d{1,2}_\d{1,2}_\d{1,6}$")
BATCH, T = 2, 4


def run_tool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=emulator_env(), capture_output=True, text=True, timeout=60)


def tiny_model(path: Path) -> Path:
    """x float32 [batch, 3, T], len int32 [batch] -> y = 2x (float32), n = len + 1 (int32 [batch])."""
    nodes = [
        helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])),
        helper.make_node("Mul", ["x", "two"], ["y"]),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.INT32, [], [1])),
        helper.make_node("Add", ["len", "one"], ["n"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "T"]),
         helper.make_tensor_value_info("len", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, "T"]),
         helper.make_tensor_value_info("n", TensorProto.INT32, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def atc(workdir: Path, onnx_path: Path, input_shape: str, output: str) -> subprocess.CompletedProcess[str]:
    return run_tool(["atc", "--framework=5", f"--model={onnx_path}", "--input_format=ND",
                     f"--input_shape={input_shape}", f"--output={output}", "--soc_version=Ascend310",
                     "--log=error"], workdir)


@pytest.fixture(scope="module")
def om(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model compiled by the emulated atc for batch 2, T 4."""
    work = tmp_path_factory.mktemp("atc")
    res = atc(work, tiny_model(work / "tiny.onnx"), f"x:{BATCH},3,{T};len:{BATCH}", "tiny_bs2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ATC run success, welcome to the next use." in res.stdout
    return work / "tiny_bs2.om"


def sample(i: int) -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(BATCH * 3 * T, dtype=np.float32).reshape(BATCH, 3, T) - 5) / 7 * i
    return x, np.full(BATCH, i, dtype=np.int32)


def write_inputs(root: Path, ids: list[int]) -> tuple[Path, Path]:
    spect, sizes = root / "spect", root / "sizes"
    spect.mkdir()
    sizes.mkdir()
    for i in ids:
        x, n = sample(i)
        x.tofile(spect / f"data{i}.bin")
        n.tofile(sizes / f"data{i}.bin")
    (sizes / "sizes.txt").write_text("1 2 ")  # extra files in the other folders are ignored
    return spect, sizes


def test_atc_writes_static_om_and_rejects_unknown_input(om: Path, tmp_path: Path) -> None:
    model = onnx.load(om)
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in model.graph.input}
    assert dims == {"x": [BATCH, 3, T], "len": [BATCH]}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["emulator"] == "atc" and meta["soc_version"] == "Ascend310"
    assert meta["input_shape"] == f"x:{BATCH},3,{T};len:{BATCH}"

    bad = atc(tmp_path, om.with_name("tiny.onnx"), f"spect:{BATCH},3,{T};len:{BATCH}", "bad")
    assert bad.returncode != 0
    assert "ATC run failed" in bad.stdout and "E10001" in bad.stdout and "[--input_shape]" in bad.stdout
    assert not (tmp_path / "bad.om").exists()


def test_msame_folder_mode_txt(om: Path, tmp_path: Path) -> None:
    spect, sizes = write_inputs(tmp_path, [1, 2, 10])
    res = run_tool(["msame", "--model", str(om), "--input", f"{spect},{sizes}", "--output", "result",
                    "--outfmt", "TXT"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    stamps = list((tmp_path / "result").iterdir())
    assert len(stamps) == 1 and STAMP.match(stamps[0].name), stamps
    # Names from the first folder in bytewise order: data1, data10, data2; each folder read by that name.
    processed = re.findall(r"^\[INFO\] start to process file:(.*)$", res.stdout, re.M)
    assert processed == [f"{d}/data{i}.bin" for i in (1, 10, 2) for d in (spect, sizes)]
    assert len(re.findall(r"^Inference time: [\d.e+-]+ms$", res.stdout, re.M)) == 3
    assert re.search(r"^Inference average time : \d+\.\d\d ms$", res.stdout, re.M)
    assert "[INFO] unload model success, model Id is 1" in res.stdout

    for i in (1, 2, 10):
        x, n = sample(i)
        text = (stamps[0] / f"data{i}_output_0.txt").read_text()
        lines = text.split("\n")
        assert len(lines) == BATCH * 3 + 1 and lines[-1] == ""  # one line per last-dim row
        assert all(line.endswith(" ") and len(line.split()) == T for line in lines[:-1])
        np.testing.assert_allclose(np.array(text.split(), dtype=np.float64).reshape(x.shape), 2 * x, rtol=5e-6)
        # 1-D int output: values with trailing spaces and no newline (as the real tool writes it).
        assert (stamps[0] / f"data{i}_output_1.txt").read_text() == " ".join(map(str, n + 1)) + " "


def test_msame_refuses_wrong_input_size(om: Path, tmp_path: Path) -> None:
    spect, sizes = write_inputs(tmp_path, [1, 2])
    np.zeros((BATCH, 3, T + 1), dtype=np.float32).tofile(spect / "data2.bin")
    res = run_tool(["msame", "--model", str(om), "--input", f"{spect},{sizes}", "--output", "result",
                    "--outfmt", "BIN"], tmp_path)
    assert res.returncode != 0
    error = next(line for line in res.stdout.splitlines() if line.startswith("[ERROR]") and "data2.bin" in line)
    assert str(4 * BATCH * 3 * (T + 1)) in error and str(4 * BATCH * 3 * T) in error


def test_ais_bench_outputs_and_summary(om: Path, tmp_path: Path) -> None:
    spect, sizes = write_inputs(tmp_path, [1, 2, 10])
    res = run_tool([sys.executable, "-m", "ais_bench", "--model", str(om), "--input", f"{spect},{sizes}",
                    "--output", "result", "--output_dirname", "bs2", "--outfmt", "BIN"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[INFO] -----------------Performance Summary------------------" in res.stdout
    assert re.search(r"^\[INFO\] throughput 1000\*batchsize\.mean\(2\)/NPU_compute_time\.mean\(.+\): .+$",
                     res.stdout, re.M)
    out = tmp_path / "result" / "bs2"
    for i in (1, 2, 10):
        x, n = sample(i)
        np.testing.assert_array_equal(np.fromfile(out / f"data{i}_0.bin", dtype=np.float32).reshape(x.shape), 2 * x)
        np.testing.assert_array_equal(np.fromfile(out / f"data{i}_1.bin", dtype=np.int32), n + 1)

    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert set(summary) == {"filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
                            "npu_compute_time_list", "pid"}
    # Natural sort: data1, data2, data10 are samples 0, 1, 2.
    assert summary["filesinfo"]["2"] == {"infiles": [str(spect / "data10.bin"), str(sizes / "data10.bin")],
                                         "outfiles": [str(Path("result/bs2/data10_0.bin")),
                                                      str(Path("result/bs2/data10_1.bin"))]}
    assert set(summary["NPU_compute_time"]) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert summary["NPU_compute_time"]["count"] == 3 == len(summary["npu_compute_time_list"])
    assert summary["throughput"] == pytest.approx(1000 * BATCH / summary["NPU_compute_time"]["mean"])

    np.zeros(5, dtype=np.float32).tofile(spect / "data2.bin")
    bad = run_tool([sys.executable, "-m", "ais_bench", "--model", str(om), "--input", f"{spect},{sizes}",
                    "--output", "result"], tmp_path)
    assert bad.returncode == 1 and re.search(r"^\[ERROR\] .*data2\.bin", bad.stdout, re.M), bad.stdout


def test_torch_aie_refuses_uncompiled_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "emulators"))
    import torch_aie

    scripted = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3))
    torch_aie.set_device(0)
    compiled = torch_aie.compile(scripted, inputs=[torch_aie.Input((4, 3), dtype=torch_aie.dtype.FLOAT)],
                                 precision_policy=torch_aie.PrecisionPolicy.FP16, soc_version="Ascend310P3")
    x = torch.randn(4, 3)
    torch.testing.assert_close(compiled(x), scripted(x))
    with pytest.raises(RuntimeError, match="compiled for"):
        compiled(torch.randn(2, 3))
    with pytest.raises(TypeError):
        torch_aie.compile(torch.nn.Linear(3, 2), inputs=[torch_aie.Input((4, 3))])


# --- dynamic OMs, chip names and the npu device, as the real tools' sources handle them ---------------------

def dynamic_om(workdir: Path, kind: str) -> Path:
    """The tiny model with dynamic batch gears 1,2 (T fixed at 4), or dims gears (1, 4) and (2, 6)."""
    onnx_path = tiny_model(workdir / "tiny.onnx")
    if kind == "batch":
        flags = [f"--input_shape=x:-1,3,{T};len:-1", "--dynamic_batch_size=1,2"]
    else:
        flags = ["--input_shape=x:-1,3,-1;len:-1", "--dynamic_dims=1,4,1;2,6,2"]
    res = run_tool(["atc", "--framework=5", f"--model={onnx_path}", "--input_format=ND", f"--output={kind}",
                    "--soc_version=Ascend310P3", *flags], workdir)
    assert res.returncode == 0, res.stdout
    return workdir / f"{kind}.om"


def one_row_inputs(root: Path) -> tuple[Path, Path]:
    """Two samples, one row each at T=4 (the (1, 4) gear)."""
    spect, sizes = root / "x", root / "len"
    spect.mkdir()
    sizes.mkdir()
    for i in (1, 2):
        (np.arange(3 * T, dtype=np.float32).reshape(1, 3, T) * i).tofile(spect / f"data{i}.bin")
        np.array([i], dtype=np.int32).tofile(sizes / f"data{i}.bin")
    return spect, sizes


def test_msame_dims_om_needs_dymdims_and_pads_outputs_to_the_largest_gear(tmp_path: Path) -> None:
    om = dynamic_om(tmp_path, "dims")
    spect, sizes = one_row_inputs(tmp_path)
    base = ["msame", "--model", str(om), "--input", f"{spect},{sizes}", "--output", "out", "--outfmt", "BIN"]
    res = run_tool(base, tmp_path)
    assert "[ERROR] model has dynamic_dims, please add dymDims parameter" in res.stdout.splitlines()
    bad = run_tool(base + ["--dymDims", "x:1,3,5;len:1"], tmp_path)
    assert "[ERROR] the dynamic_dims parameter is not correct" in bad.stdout, bad.stdout
    res = run_tool(base + ["--dymDims", f"x:1,3,{T};len:1"], tmp_path)
    assert res.returncode == 0 and "[ERROR]" not in res.stdout, res.stdout
    folder = next(p for p in (tmp_path / "out").iterdir() if STAMP.match(p.name) and any(p.iterdir()))
    y = np.fromfile(folder / "data2_output_0.bin", dtype=np.float32)
    n = np.fromfile(folder / "data2_output_1.bin", dtype=np.int32)
    # Buffers of the largest gear (2 x 3 x 6 and 2), the gear's result at their start.
    assert y.size == 2 * 3 * 6 and n.size == 2
    np.testing.assert_array_equal(y[: 3 * T], 2 * 2 * np.arange(3 * T, dtype=np.float32))
    assert n[0] == 3
    assert np.any(y[3 * T:] != 0)  # the rest is left-over memory, not zeros


def test_msame_batch_om_without_dymbatch_fails_to_execute(tmp_path: Path) -> None:
    om = dynamic_om(tmp_path, "batch")
    spect, sizes = one_row_inputs(tmp_path)
    base = ["msame", "--model", str(om), "--input", f"{spect},{sizes}", "--output", "out", "--outfmt", "TXT"]
    res = run_tool(base, tmp_path)
    assert "[ERROR] model execute failed" in res.stdout and "Inference time" not in res.stdout, res.stdout
    bad = run_tool(base + ["--dymBatch", "4"], tmp_path)
    assert "[ERROR] model has dynamic batch size:{[1][2]}, please set correct dynamic batch size" in bad.stdout
    res = run_tool(base + ["--dymBatch", "1"], tmp_path)
    assert res.returncode == 0 and "[ERROR]" not in res.stdout, res.stdout
    folder = max((p for p in (tmp_path / "out").iterdir() if STAMP.match(p.name)), key=lambda p: len(list(p.iterdir())))
    # --dymBatch trims the largest gear's buffer by max // dymBatch: exactly one row here.
    lines = (folder / "data1_output_0.txt").read_text().splitlines()
    assert len(lines) == 3 and all(len(line.split()) == T for line in lines)
    assert (folder / "data1_output_1.txt").read_text() == "2 "


def test_ais_bench_dynamic_oms_take_their_gear(tmp_path: Path) -> None:
    om = dynamic_om(tmp_path, "dims")
    spect, sizes = one_row_inputs(tmp_path)
    base = [sys.executable, "-m", "ais_bench", "--model", str(om), "--input", f"{spect},{sizes}", "--output", "out",
            "--output_dirname", "r"]
    res = run_tool(base, tmp_path)
    assert res.returncode == 1, res.stdout
    assert re.search(r"^\[ERROR\] .*(not match|acl execute failed)", res.stdout, re.M), res.stdout
    res = run_tool(base + ["--dymDims", f"x:1,3,{T};len:1"], tmp_path)
    assert res.returncode == 0, res.stdout
    y = np.fromfile(tmp_path / "out" / "r" / "data2_0.bin", dtype=np.float32)
    np.testing.assert_array_equal(y, 2 * 2 * np.arange(3 * T, dtype=np.float32))  # the gear's shape, no padding
    summary = json.loads((tmp_path / "out" / "r_summary.json").read_text())
    assert summary["throughput"] == pytest.approx(1000 * 1 / summary["NPU_compute_time"]["mean"])


def test_ais_bench_joins_files_up_to_the_om_batch(om: Path, tmp_path: Path) -> None:
    """io_oprations.get_files_count_per_batch: tensor size // file size files per inference, last one padded."""
    spect, sizes = tmp_path / "x", tmp_path / "len"
    spect.mkdir()
    sizes.mkdir()
    for i in range(3):  # three 1-row files for the batch-2 OM: two inferences, the second padded
        x, n = sample(i + 1)
        x[:1].tofile(spect / f"s{i}.bin")
        n[:1].tofile(sizes / f"s{i}.bin")
    res = run_tool([sys.executable, "-m", "ais_bench", "--model", str(om), "--input", f"{spect},{sizes}",
                    "--output", "out", "--output_dirname", "r"], tmp_path)
    assert res.returncode == 0, res.stdout
    assert "filesperbatch:2 runcount:2" in res.stdout
    summary = json.loads((tmp_path / "out" / "r_summary.json").read_text())
    assert len(summary["npu_compute_time_list"]) == 2 and len(summary["filesinfo"]) == 3
    for i in range(3):
        x, _ = sample(i + 1)
        np.testing.assert_array_equal(np.fromfile(tmp_path / "out" / "r" / f"s{i}_0.bin", dtype=np.float32),
                                      (2 * x[:1]).reshape(-1))


@pytest.mark.parametrize("soc", ["Ascend310", "Ascend310P1", "Ascend310P3", "Ascend310B4", "Ascend910A",
                                 "Ascend910B", "Ascend910B3", "Ascend910B4"])
def test_atc_takes_chip_names(soc: str, tmp_path: Path) -> None:
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    res = run_tool(["atc", "--framework=5", f"--model={onnx_path}", "--input_format=ND", "--output=m",
                    f"--input_shape=x:1,3,{T};len:1", f"--soc_version={soc}"], tmp_path)
    assert res.returncode == 0, res.stdout


def test_atc_refuses_a_soc_it_has_no_config_for(tmp_path: Path) -> None:
    onnx_path = tiny_model(tmp_path / "tiny.onnx")
    res = run_tool(["atc", "--framework=5", f"--model={onnx_path}", "--input_format=ND", "--output=m",
                    f"--input_shape=x:1,3,{T};len:1", "--soc_version=Ascend999"], tmp_path)
    assert res.returncode != 0 and "E10001: Value [Ascend999] for parameter [--soc_version]" in res.stdout


def test_torch_aie_npu_device_and_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "emulators"))
    import torch_aie

    scripted = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3))
    torch_aie.set_device(0)
    compiled = torch_aie.compile(scripted, inputs=[torch_aie.Input((4, 3), dtype=torch_aie.dtype.FLOAT)])
    x = torch.randn(4, 3)
    stream = torch_aie.npu.Stream("npu:0")
    with torch_aie.npu.stream(stream):
        out = compiled(x.to("npu:0"))
        stream.synchronize()
    assert compiled.last_input_devices == ["npu:0"] and stream.synchronized == 1
    torch.testing.assert_close(out.to("cpu"), scripted(x))
    with pytest.raises(RuntimeError, match="compiled for"):
        compiled(x.to(torch.float64))
    with pytest.raises(RuntimeError, match="set_device"):
        x.to("npu:1")
