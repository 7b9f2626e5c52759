"""The benchmark runs on tiny inputs and prints its rows (its timings are never asserted)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_bench_prints_rows(tmp_path: Path, tiny_ckpt: Path, tiny_export: Path, tiny_corpus: Path,
                           capsys: pytest.CaptureFixture) -> None:
    from bench.__main__ import main
    from tests.test_wav2vec2 import make_tiny_model_dir

    w2v = make_tiny_model_dir(tmp_path / "w2v")
    out = tmp_path / "bench.json"
    assert main(["--deepspeech2-ckpt", str(tiny_ckpt), "--wav2vec2-dir", str(w2v), "--threads", "1",
                 "--repeats", "2", "--warmup", "1", "--batch-sizes", "1", "2", "--frames", "60", "--samples", "4000", "--triad-mib", "8",
                 "--pipeline", f"{tiny_export}={tiny_corpus / 'an4'}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "matmul peak" in printed and "ORT/torch" in printed and "int8/fp32" in printed
    assert "x real time" in printed and "not model execution" in printed
    assert "memory bandwidth (STREAM triad" in printed and "machine: " in printed
    result = json.loads(out.read_text())
    bandwidth = result["memory_bandwidth_gbs"]
    assert bandwidth["triad"] > 0 and (bandwidth["llc_triad"] is None or bandwidth["llc_triad"] > 0)
    machine = result["machine"]
    assert machine["vendor"] and set(machine["flags"]) >= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"}
    assert all(isinstance(v, bool) for v in machine["flags"].values())
    rows = result["rows"]
    assert [(r["model"], r["batch"]) for r in rows] == [("DeepSpeech2 (demo)", 1), ("DeepSpeech2 (demo)", 2),
                                                        ("wav2vec2 (given dir)", 1), ("wav2vec2 (given dir)", 2)]
    for r in rows:
        assert r["gflop_per_forward"] > 0 and r["ort_over_torch"] > 0
        assert r["torch_ms"]["min"] <= r["torch_ms"]["median"] <= r["torch_ms"]["max"]
        assert r["int8_over_fp32"] > 0 and r["openvino_over_ort"] > 0
        # Roofline: the int8 graph moves fewer weight bytes; every contender has a point on the binding roof.
        assert r["traffic"]["int8"]["weight_bytes"] < r["traffic"]["fp32"]["weight_bytes"]
        assert {"torch eager", "onnxruntime", "onnxruntime int8"} <= set(r["roofline"])
        for pt in r["roofline"].values():
            assert pt["bound"] in ("memory", "compute") and pt["fraction_of_roof"] > 0
    ds_bs1, ds_bs2 = rows[0]["traffic"]["fp32"], rows[1]["traffic"]["fp32"]
    assert ds_bs1["recurrent_bytes"] > 0 and ds_bs2["activation_bytes"] > ds_bs1["activation_bytes"]
    assert rows[2]["traffic"]["fp32"]["recurrent_bytes"] == 0  # wav2vec2 has no recurrent weights
    assert "roofline: intensity" in printed and (tmp_path / "bench_roofline.png").stat().st_size > 0
    pre, pipe = result["stages"]
    assert pre["stage"] == "preprocess" and pre["utterances"] == 6 and pre["x_real_time"] > 0
    assert pipe["stage"] == "pipeline" and 0 < pipe["not_model_share"] < 1
    assert pipe["model_execution_s"] < pipe["total_s"] and 0 < pipe["model_alone_s"] < pipe["total_s"]
    assert pipe["repeats"] == 3 and "medians" in pipe["note"] and pipe["in_run_over_alone"] > 0
    # 6 utterances: one input .bin each (plus manifest and header), one output .bin each (plus run.json).
    assert pipe["files_written"] >= 12 and pipe["file_create_ms"] > 0 and pipe["scratch"]["dir"]
    assert (tmp_path / "bench_pipeline.png").stat().st_size > 0
    # The same numbers as Markdown tables, and `python -m bench markdown` remakes that page from the JSON alone.
    page = (tmp_path / "bench.md").read_text()
    assert "### Runtimes side by side" in page and "### Roofline" in page and "### Around the model" in page
    assert "| % of cache triad |" in page
    assert "| DeepSpeech2 (demo) | 2 |" in page and f"{100 * pipe['not_model_share']:.1f}%" in page
    per_utt = 1000 * (pipe["total_s"] - pipe["model_execution_s"]) / pipe["utterances"]
    assert f"| {per_utt:.2f} ms |" in page and f"{pipe['files_written']} files written" in page
    assert main(["markdown", str(out), "--out", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == page
    (tmp_path / "broken.json").write_text("{")
    assert main(["markdown", str(tmp_path / "broken.json")]) == 2
    assert "broken.json is not valid JSON" in capsys.readouterr().err


def test_an4_size_deepspeech2_checkpoint(tmp_path: Path) -> None:
    """The benchmark's real-size DeepSpeech2: an4's architecture, written as a V3.0 checkpoint that loads
    through the family's loader (checked at a small width; the an4 size is counted on the meta device)."""
    import dataclasses

    import torch

    from families.registry import family_module
    from families.deepspeech2.recipe import build_model
    from families.deepspeech2.bench import an4_size_config, random_deepspeech2_checkpoint

    cfg = an4_size_config()
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg).parameters())
    assert (cfg.hidden_size, cfg.hidden_layers, cfg.rnn_type, cfg.bidirectional) == (1024, 5, "lstm", True)
    assert 86.5e6 < params < 86.7e6
    small = dataclasses.replace(cfg, hidden_size=32, hidden_layers=2)
    loaded = family_module("deepspeech2").load(random_deepspeech2_checkpoint(tmp_path / "ds.ckpt", small))
    rnn = loaded.module.rnns[1].rnn
    assert (rnn.hidden_size, rnn.bidirectional, len(loaded.module.rnns)) == (32, True, 2)


@pytest.mark.parametrize("old, new", [("bench", "python -m bench"), ("bench-scale", "python -m bench scale")])
def test_old_postprocess_bench_commands_point_to_bench(old: str, new: str, capsys: pytest.CaptureFixture) -> None:
    """The benchmarks left the postprocess stage: its old commands name the new one and exit 2."""
    from postprocess.__main__ import main

    assert main([old, "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert new in err and err.count("\n") == 1


def test_bench_help_lists_both_benchmarks(capsys: pytest.CaptureFixture) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "models" in printed and "scale" in printed


def test_pipeline_scratch_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--pipeline-scratch must be a folder it can write in: a file is refused before anything is timed."""
    from bench.__main__ import main

    afile = tmp_path / "scratch"
    afile.write_text("not a folder")
    with pytest.raises(SystemExit) as exc:
        main(["--pipeline", "m.onnx=data", "--pipeline-scratch", str(afile)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--pipeline-scratch" in err and "scratch is a file" in err


def test_bf16_contender_runs_where_the_cpu_would_compute_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No CPU here computes bf16, so the contender has never run for real: force the gate and check that the
    # row, the roofline point and the table carry it. (OpenVINO runs it in f32 on this CPU: timings only.)
    import bench.runtimes as runtimes
    from bench.__main__ import main
    from tests.test_wav2vec2 import make_tiny_model_dir

    monkeypatch.setattr(runtimes, "cpu_has_native_bf16", lambda: True)
    w2v = make_tiny_model_dir(tmp_path / "w2v")
    out = tmp_path / "bench.json"
    assert main(["--wav2vec2-dir", str(w2v), "--threads", "1", "--repeats", "2", "--warmup", "1",
                 "--batch-sizes", "1", "--samples", "4000", "--triad-mib", "8", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["openvino_bf16_ms"]["median"] > 0 and row["openvino_bf16_over_ort"] > 0
    assert "openvino bf16" in row["roofline"]
    page = (tmp_path / "bench.md").read_text()
    assert "OpenVINO bf16 ms" in page and "OpenVINO bf16 / ORT fp32" in page and "No bf16 contender" not in page
