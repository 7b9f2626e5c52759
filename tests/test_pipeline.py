"""The run matrix driver (pipeline/): options as run_all.sh documents them, and the commands a plan expands to."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.plan import DemoModel, Export, GuideFlow, GuideRun, Plan, SplitPoint, SplitSection, Variants
from pipeline.matrix import Collected
from pipeline.options import HELP, OptionError, parse
from pipeline.run_all import load_plan, walk
from pipeline.steps import Runner

REPO = Path(__file__).resolve().parents[1]
PLANNED = ("deepspeech2", "wav2vec2", "split_asr")


def _opts(tmp_path: Path, *argv: str, env: dict[str, str] | None = None):
    opts = parse(["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"), "--threads", "3", *argv],
                  env=env or {})
    assert opts is not None
    return opts


def _tiny_plan(**kw) -> Plan:
    fields = dict(family="fam", report="fam_an4", title="Fam on AN4 {test_name}", corpus="an4",
                  model=DemoModel(option="deepspeech_ckpt", path="models/fam.ckpt"),
                  export=Export(command="fam", model_flag="--checkpoint"), test_set="data/fam_test",
                  batch_sizes=(1, 2), ray=False)
    fields.update(kw)
    return Plan(**fields)


def _walk(plan: Plan, opts) -> tuple[list[str], Collected]:
    runner = Runner(dry_run=True, python="PY")
    collected = Collected()
    walk(runner, plan, opts, collected)
    return [" ".join(c) for c in runner.commands], collected


def test_a_tiny_plan_expands_to_the_stage_commands(tmp_path: Path) -> None:
    opts = _opts(tmp_path, "--deepspeech-ckpt", "my.ckpt", "--an4-root", "/an4")
    w, r = tmp_path / "w", tmp_path / "r"
    commands, collected = _walk(_tiny_plan(), opts)
    card, data, runs = f"{w}/export/fam/model.card.json", f"{w}/data/fam_test", f"{w}/runs/fam"

    def run(backend: str, bs: int) -> str:
        model = f"--card {card} --checkpoint my.ckpt" if backend == "torch" else f"--model {w}/export/fam/model.onnx"
        return (f"PY -m runners --backend {backend} {model} --dataset {data} --out {runs}/{backend}_bs{bs} "
                f"--batch-size {bs} --threads 3 --no-progress")

    assert commands == [
        f"PY -m export fam --checkpoint my.ckpt --out {w}/export/fam --threads 3",
        f"PY -m preprocess --an4-root /an4 --split test --card {card} --out {data}",
        run("torch", 1), run("onnxruntime", 1), run("torch", 2), run("onnxruntime", 2),
        f"PY -m postprocess report --dataset {data} --card {card} "
        f"--reference PyTorch fp32 (reference, bs 1)={runs}/torch_bs1 "
        f"--candidate ONNX Runtime fp32 (bs 1)={runs}/onnxruntime_bs1 "
        f"--candidate ONNX Runtime fp32 (padded bs 2)={runs}/onnxruntime_bs2 "
        f"--candidate PyTorch (padded bs 2)={runs}/torch_bs2 "
        f"--throughput {runs}/torch_bs1 {runs}/onnxruntime_bs1 {runs}/torch_bs2 {runs}/onnxruntime_bs2 "
        f"--out {r} --name fam_an4 --title Fam on AN4 test",
    ]
    assert collected.names == ["fam_an4"] and collected.trainings == []


def test_demo_model_ray_and_batch_sizes_from_the_options(tmp_path: Path) -> None:
    """Without a checkpoint the demo model is trained (and its record kept); --ray reaches preprocess and the
    runners of a plan that allows it; a plan's batch-size option replaces its batch sizes."""
    opts = _opts(tmp_path, "--ray-address", "head:6379", "--batch-sizes", "4 2", "--quick")
    work = Path(str(tmp_path / "w") + "-quick")
    plan = _tiny_plan(ray=True, batch_sizes_option="batch_sizes",
                      model=DemoModel(option="deepspeech_ckpt", path="models/fam.ckpt", train_record="models/fam.json",
                                      train_args=("--epochs", "9"), quick_train_args=("--epochs", "1")))
    commands, collected = _walk(plan, opts)
    # the trainer keeps its own fixed thread count (core/numerics.py), whatever --threads says
    assert commands[0] == f"PY -m demo train fam --an4-root {work}/corpus/an4 --out {work}/models/fam.ckpt --epochs 1"
    assert commands[1] == f"cp {work}/models/fam.json {tmp_path}/r/fam_demo_training.json"
    assert collected.trainings == [tmp_path / "r" / "fam_demo_training.json"]
    runs = [c for c in commands if " -m runners " in c or " -m preprocess " in c]
    assert runs and all(c.split(" -m ")[1].split()[1:4] == ["--ray", "--ray-address", "head:6379"] for c in runs)
    assert [c.split("--batch-size ")[1].split()[0] for c in commands if " -m runners " in c] == ["4", "4", "2", "2"]
    assert "--reference PyTorch fp32 (reference, bs 4)=" in commands[-1]


def test_variants_guide_and_calibration(tmp_path: Path) -> None:
    opts = _opts(tmp_path, "--deepspeech-ckpt", "m.ckpt", "--an4-manifest", "test.json", "--soc-version", "S9")
    plan = _tiny_plan(
        guide=GuideFlow(script="scripts/g.sh", dataset="data/g", extra=("--batch-size", "8"),
                        runs=(GuideRun(run="ort_g", label="ORT guide"),
                              GuideRun(run="tool_g", label="tool on {soc}", backend="tool", if_available=True))),
        variants=Variants(kinds=("fp16", "int8-static"), batch_sizes=(1, 4), openvino=("int8-static",),
                          calibration="data/calib", max_delta_wer=0.5))
    commands, _ = _walk(plan, opts)
    w, runs = tmp_path / "w", tmp_path / "w" / "runs" / "fam"
    guide = [c for c in commands if c.startswith("bash scripts/g.sh")]
    assert guide == [f"bash scripts/g.sh --checkpoint m.ckpt --manifest test.json --batch-size 8 --soc-version S9 "
                     f"--work {w} --threads 3 --run {runs}/ort_g",
                     f"bash scripts/g.sh --checkpoint m.ckpt --manifest test.json --batch-size 8 --soc-version S9 "
                     f"--work {w} --threads 3 --backend tool --if-available --run {runs}/tool_g"]
    report = next(c for c in commands if " report " in c)
    # The optional tool's row appears only when its run dir was written.
    assert f"--modelzoo ORT guide={runs}/ort_g --modelzoo-dataset {w}/data/g" in report and "tool on" not in report
    # A manifest has no training split: int8-static calibrates on the test set, nothing else is preprocessed.
    variants = [c for c in commands if " -m export variant " in c]
    assert [c.split("--dataset ")[1].split()[0] for c in variants] == [f"{w}/data/fam_test"] * 2
    assert not any("--max-delta-wer" in c for c in variants)  # a fallback chosen on the test set: never
    assert sum(" -m preprocess " in c for c in commands) == 1
    table = commands[-1]
    assert table.startswith("PY -m postprocess variants ")
    assert [part.split("=")[0] for part in table.split(" --row ")[1:]] == [
        "PyTorch fp32 (reference)", "ONNX Runtime fp32", "ONNX Runtime fp16", "ONNX Runtime int8 static (QDQ)",
        "OpenVINO int8 static (QDQ)"]
    assert f"ONNX Runtime fp16={runs}/onnxruntime.fp16_bs1,{runs}/onnxruntime.fp16_bs4 " in table


def test_int8_fallback_budget_goes_to_int8_static_calibrated_on_training_utterances(tmp_path: Path) -> None:
    opts = _opts(tmp_path, "--deepspeech-ckpt", "m.ckpt", "--an4-root", "/an4")
    plan = _tiny_plan(variants=Variants(kinds=("int8-dynamic", "int8-static"), calibration="data/calib",
                                        max_delta_wer=0.5))
    commands, _ = _walk(plan, opts)
    variants = {c.split("--kind ")[1].split()[0]: c for c in commands if " -m export variant " in c}
    assert variants["int8-static"].endswith("--max-delta-wer 0.5")
    assert f"--dataset {tmp_path / 'w'}/data/calib " in variants["int8-static"]
    assert "--max-delta-wer" not in variants["int8-dynamic"]


def test_split_section_skips_what_is_up_to_date(tmp_path: Path) -> None:
    opts = _opts(tmp_path, "--split-asr-ckpt", str(tmp_path / "m.pth"), "--split-asr-autoencoder",
                 str(tmp_path / "ae.pth"), "--librispeech", "/ls/test-clean")
    (tmp_path / "m.pth").write_bytes(b"x")
    (tmp_path / "ae.pth").write_bytes(b"x")
    plan = _tiny_plan(corpus="librispeech", model=DemoModel(option="split_asr_ckpt", path="m"),
                      split=SplitSection(autoencoder=DemoModel(option="split_asr_autoencoder", path="a"),
                                         points=(SplitPoint("a", "layer_a"), SplitPoint("own")),
                                         codec_option="split_codec", bandwidths="1mbit", quick_bandwidths="1mbit",
                                         limit=5, quick_limit=1, slow_edge_scale=10.0, max_delta_wer=1.0))
    done = tmp_path / "w" / "split" / "fam" / "a" / "tail.onnx"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"newer than the checkpoints")
    commands, collected = _walk(plan, opts)
    exports = [c for c in commands if " -m split export " in c]
    assert len(exports) == 1 and "--autoencoder" in exports[0] and "--after" not in exports[0]
    serve = next(i for i, c in enumerate(commands) if " -m split serve " in c)
    edges = [i for i, c in enumerate(commands) if " -m split edge " in c]
    report = next(i for i, c in enumerate(commands) if " report " in c)
    assert len(edges) == 4 and serve < min(edges) and max(edges) < report
    # No KLT in this plan: the default klt-ans falls back to the plain low-bit codec.
    assert "--codec q4-ans" in commands[edges[-1]] and not any(" fit-klt " in c for c in commands)
    assert "Split Head -> gRPC -> Tail, fp32 boundary=" in commands[report]
    assert collected.tables[:2] == ["fam_timing_fp32", "fam_timing_q4-ans"]
    assert "--title Fam on AN4 test-clean" in commands[report]
    plans = [c for c in commands if " -m split plan " in c]
    assert len(plans) == 2 and "--edge-scale" not in plans[0]
    assert all(" --max-delta-wer 1 " in c for c in plans)
    assert "--edge-scale 10 " in plans[1] and "--name fam_plan_edge10x --measure" in plans[1]
    assert collected.tables[-4:] == ["fam_plan_edge10x", "fam_plan_edge10x_chosen", "fam_plan_edge10x_measured",
                                     "fam_plan_edge10x_check"]


def test_split_section_fits_the_klt_codec_on_training_utterances(tmp_path: Path) -> None:
    opts = _opts(tmp_path, "--split-asr-ckpt", str(tmp_path / "m.pth"), "--split-asr-autoencoder",
                 str(tmp_path / "ae.pth"), "--librispeech", "/ls/test-clean", env={"LIBRISPEECH_CALIB": "/ls/train"})
    plan = _tiny_plan(corpus="librispeech", model=DemoModel(option="split_asr_ckpt", path="m"),
                      split=SplitSection(autoencoder=DemoModel(option="split_asr_autoencoder", path="a"),
                                         points=(SplitPoint("own"),), codec_option="split_codec",
                                         bandwidths="1mbit", quick_bandwidths="1mbit", limit=5, quick_limit=1,
                                         klt_utterances=30))
    commands, _ = _walk(plan, opts)
    own = tmp_path / "w" / "split" / "fam" / "own"
    fit_data = f"{tmp_path}/w/data/fam_an4_klt_fit"
    pre = next(i for i, c in enumerate(commands) if f"--out {fit_data}" in c)
    assert "--librispeech /ls/train" in commands[pre] and "--spread 30" in commands[pre]
    fit = next(i for i, c in enumerate(commands) if " -m split fit-klt " in c)
    assert pre < fit and f"--head {own}/head.onnx --dataset {fit_data} --checkpoint {tmp_path}/m.pth" in commands[fit]
    assert f"--out {own}/klt.json" in commands[fit]
    edges = [c for c in commands if " -m split edge " in c]
    assert edges and "--codec klt-ans" in edges[-1] and fit < commands.index(edges[0])


def test_split_plan_reruns_when_its_wer_budget_changes(tmp_path: Path) -> None:
    import json
    import os

    from pipeline.split_section import _planned

    profile, check = tmp_path / "profile.json", tmp_path / "plan_check.json"
    profile.write_text("{}")
    os.utime(profile, (1_000_000, 1_000_000))  # older than every check written below
    check.write_text(json.dumps({"max_delta_wer": None, "rows": []}))
    assert _planned(check, profile, None) and not _planned(check, profile, 1.0)
    check.write_text(json.dumps({"max_delta_wer": 1.0, "rows": []}))
    assert _planned(check, profile, 1.0)
    check.write_text("not json")
    assert not _planned(check, profile, 1.0)


def test_options_follow_run_all_sh(tmp_path: Path) -> None:
    env = {"WORK_DIR": "/scratch/w", "BATCH_SIZES": "2 3", "THREADS": "5", "FAMILIES": "wav2vec2", "STREAMING": "1",
           "AN4_ROOT": ""}
    opts = parse(["--quick", "--batch-sizes", "7"], env=env)
    assert opts is not None
    assert opts.work == Path("/scratch/w-quick") and opts.results == Path("/scratch/w-quick/results")
    assert opts.batch_sizes == (7,) and opts.w2v_batch_sizes == (1, 4, 8, 16, 32, 64) and opts.threads == 5
    assert opts.families == ("wav2vec2",) and opts.streaming and opts.an4_root == "" and opts.ray_args() == []
    assert parse([], env={}).results == Path("results")
    with pytest.raises(OptionError, match="--batch-sizes"):
        parse(["--batch-sizes", "1 x"], env={})
    with pytest.raises(OptionError, match="unknown option --bogus"):
        parse(["--bogus"], env={})


def test_cli_help_dry_run_and_bad_input(tmp_path: Path) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    helped = cli("run-all", "--help")
    assert helped.returncode == 0 and helped.stdout == HELP
    for flag in ("--an4-root", "--families", "--quick", "--streaming", "--ray-address", "--dry-run", "SPLIT_CODEC"):
        assert flag in HELP
    bad = cli("run-all", "--families", "nope", "--dry-run")
    assert bad.returncode == 2 and "'nope' has no run plan" in bad.stderr
    assert cli("run-all", "--threads", "0").returncode == 2
    work = tmp_path / "work"
    dry = cli("run-all", "--dry-run", "--quick", "--work", str(work), "--families", "deepspeech2 split_asr")
    assert dry.returncode == 0, dry.stderr
    assert not Path(str(work) + "-quick").exists()  # a dry run writes nothing
    lines = dry.stdout.splitlines()
    assert any(" -m demo synth " in line for line in lines)
    assert lines[-1].split(" -m ")[1].startswith("postprocess readme")
    assert "--names deepspeech2_an4 split_asr_librispeech split_asr_timing_fp32" in lines[-1]


@pytest.mark.parametrize("family", PLANNED)
def test_family_plans_load(family: str) -> None:
    plan = load_plan(family)
    assert plan.family == family
    if plan.variants:
        # Every variant a plan builds is one export knows and has a row label in the variants table.
        from export.variants import KINDS
        from pipeline.matrix import VARIANT_LABELS

        assert set(plan.variants.kinds) <= set(KINDS)
        assert all(("onnxruntime", kind) in VARIANT_LABELS for kind in plan.variants.kinds)
        assert all(("openvino", "" if k == "fp32" else k) in VARIANT_LABELS for k in plan.variants.openvino)


def test_the_driver_names_no_family() -> None:
    """Family facts live in the plans; the driver's code (help text aside) is generic."""
    for path in (REPO / "pipeline").glob("*.py"):
        if path.name == "options.py":  # the CLI: flag names and help text
            continue
        text = path.read_text()
        assert not [f for f in PLANNED if f in text], path


@pytest.mark.parametrize("native", [True, False])
def test_openvino_bf16_runs_only_where_the_cpu_computes_bf16(tmp_path: Path, monkeypatch, capsys,
                                                              native: bool) -> None:
    import pipeline.matrix as matrix

    monkeypatch.setattr(matrix, "cpu_has_native_bf16", lambda: native)
    opts = _opts(tmp_path, "--deepspeech-ckpt", "m.ckpt", "--an4-root", "/an4")
    plan = _tiny_plan(variants=Variants(kinds=("int8-static",), batch_sizes=(1,), openvino=("fp32", "bf16"),
                                        calibration="data/calib"))
    commands, _ = _walk(plan, opts)
    w = tmp_path / "w"
    bf16 = [c for c in commands if "--ov-precision bf16" in c]
    table = commands[-1]
    if native:  # the fp32 graph with the precision hint, into a run dir of its own, and a row in the table
        assert bf16 == [f"PY -m runners --backend openvino --model {w}/export/fam/model.onnx --ov-precision bf16 "
                        f"--dataset {w}/data/fam_test --out {w}/runs/fam/openvino.bf16_bs1 --batch-size 1 "
                        "--threads 3 --no-progress"]
        assert f"OpenVINO bf16 (precision hint, fp32 graph)={w}/runs/fam/openvino.bf16_bs1" in table
    else:
        assert not bf16 and "OpenVINO bf16" not in table
        assert "OpenVINO bf16 not run: this CPU has neither avx512_bf16 nor AMX" in capsys.readouterr().out
