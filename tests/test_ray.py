"""The Ray runner and the Ray preprocess: same files as the single-process stages, resume, faults, bad input.

Every test that needs Ray shares one small local instance (two CPUs, a small object store), started once.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_quiet

MB = 1024 * 1024


@pytest.fixture(scope="session")
def ray_local():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        pytest.skip("ray[data] is not installed (requirements.txt pins it)")
    from core.ray_cluster import RayCluster, RayOptions

    with RayCluster(RayOptions(num_cpus=2, object_store_memory=256 * MB)) as cluster:
        yield cluster


def output_files(run: Path) -> dict[str, bytes]:
    """Every output file of a run dir (run.json, scores and Ray's progress records left out)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*.bin"))}


def single_run(tiny_export: Path, dataset: Path, out: Path, batch_size: int) -> Path:
    assert run_quiet(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(dataset),
                      "--out", str(out), "--batch-size", str(batch_size)]) == 0
    return out


def open_inputs(tiny_export: Path, dataset: Path):
    from core.card import card_path_for, read_card
    from core.dataset_dir import DatasetDir

    return read_card(card_path_for(tiny_export)), DatasetDir.open(dataset)


def ort_spec(tiny_export: Path):
    from runners.ray_runner import BackendSpec

    return BackendSpec("onnxruntime", model=str(tiny_export), options={"threads": 1})


def test_ray_run_scores_like_single_process(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from postprocess.score import score_run
    from core.run_dir import open_run

    single = single_run(tiny_export, tiny_an4_test, tmp_path / "single", 2)
    ray_dir = tmp_path / "ray"
    assert run_quiet(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(tiny_an4_test),
                      "--out", str(ray_dir), "--batch-size", "2", "--ray", "--workers", "2"]) == 0
    a, b = open_run(single), open_run(ray_dir)
    assert output_files(single) and output_files(ray_dir) == output_files(single)
    assert [(s["key"], s["batch"], s["shapes"]) for s in b["samples"]] == \
        [(s["key"], s["batch"], s["shapes"]) for s in a["samples"]]
    assert b["ray"]["workers"] == 2 and b["ray"]["cluster"]["nodes"] >= 1
    assert sum(w["samples"] for w in b["ray"]["per_worker"]) == a["dataset"]["samples"]
    assert len(b["batch_latency_ms"]) == a["batches"] and b["latency_ms"]["p90"] is not None
    assert not (ray_dir / ".ray").exists()
    card, ds = open_inputs(tiny_export, tiny_an4_test)
    sa, sb = score_run(single, ds, card), score_run(ray_dir, ds, card)
    assert sb["hypotheses"] == sa["hypotheses"]
    assert (sb["wer"], sb["cer"]) == (sa["wer"], sa["cer"])
    # The same command again finds the finished run and does nothing.
    mtime = (ray_dir / "run.json").stat().st_mtime_ns
    assert run_quiet(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(tiny_an4_test),
                      "--out", str(ray_dir), "--batch-size", "2", "--ray", "--workers", "2"]) == 0
    assert (ray_dir / "run.json").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_ray_run_other_backends_match_their_single_process_run(ray_local, backend, tiny_export, tiny_ckpt,
                                                               tiny_an4_test, tmp_path):
    from core.card import card_path_for

    model = (["--model", str(tiny_export)] if backend == "openvino"
             else ["--card", str(card_path_for(tiny_export)), "--checkpoint", str(tiny_ckpt)])
    args = ["--backend", backend, *model, "--dataset", str(tiny_an4_test), "--batch-size", "2"]
    assert run_quiet(args + ["--out", str(tmp_path / "single")]) == 0
    assert run_quiet(args + ["--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    assert output_files(tmp_path / "single") and output_files(tmp_path / "ray") == output_files(tmp_path / "single")


def test_killed_worker_loses_nothing(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from core.run_dir import open_run
    from runners.base import RunOptions
    from runners.ray_runner import RayOptions, run_dataset_ray

    single = single_run(tiny_export, tiny_an4_test, tmp_path / "single", 1)
    card, ds = open_inputs(tiny_export, tiny_an4_test)
    killed: list[int] = []

    def kill_first_worker(record: dict) -> None:
        if not killed:  # the worker that finished the first batch still has batches queued (pause_s)
            killed.append(record["worker"]["pid"])
            os.kill(record["worker"]["pid"], signal.SIGKILL)

    out = tmp_path / "ray"
    run_dataset_ray(ort_spec(tiny_export), ds, card, out, RunOptions(batch_size=1, warmup=1, progress=False),
                    RayOptions(workers=2, pause_s=0.5), on_batch=kill_first_worker)
    run = open_run(out)
    pids = {w["pid"] for w in run["ray"]["per_worker"]}
    assert killed and killed[0] in pids
    # Its unfinished batches were redone elsewhere: by its restarted actor or, when the survivor drains the
    # retried tasks before the restart is up, by the survivor alone (Ray's timing decides which).
    assert len(pids - {killed[0]}) >= 1, "no other worker took over the killed one's batches"
    assert output_files(out) == output_files(single)
    assert sorted(s["key"] for s in run["samples"]) == sorted(s.key for s in ds.samples)


def test_interrupted_run_resumes_without_redoing(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from core.run_dir import RunError, open_run
    from runners.base import RunOptions
    from runners.ray_runner import RayOptions, run_dataset_ray

    single = single_run(tiny_export, tiny_an4_test, tmp_path / "single", 1)
    card, ds = open_inputs(tiny_export, tiny_an4_test)
    out = tmp_path / "ray"
    seen: list[dict] = []

    class Interrupt(Exception):
        pass

    def stop_after_two(record: dict) -> None:
        seen.append(record)
        if len(seen) == 2:
            raise Interrupt("stopped by the test")

    opts = RunOptions(batch_size=1, warmup=1, progress=False)
    with pytest.raises(RunError):
        run_dataset_ray(ort_spec(tiny_export), ds, card, out, opts, RayOptions(workers=2, pause_s=0.3),
                        on_batch=stop_after_two)
    assert not (out / "run.json").exists()
    time.sleep(1.0)  # let the batches in flight when the driver stopped settle
    first = out / card.outputs[0].name
    finished = {k: (first / f"{k}.bin").stat().st_mtime_ns for r in seen for k in r["keys"]}
    assert finished
    run_dataset_ray(ort_spec(tiny_export), ds, card, out, opts, RayOptions(workers=2))
    run = open_run(out)
    assert run["ray"]["batches_resumed"] >= 2
    assert run["ray"]["batches_this_run"] + run["ray"]["batches_resumed"] == run["batches"]
    assert {k: (first / f"{k}.bin").stat().st_mtime_ns for k in finished} == finished
    assert output_files(out) == output_files(single)


def test_batches_dealt_into_few_tasks_give_the_same_files(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from core.run_dir import open_run
    from runners.base import RunOptions
    from runners.ray_runner import RayOptions, run_dataset_ray

    single = single_run(tiny_export, tiny_an4_test, tmp_path / "single", 1)
    card, ds = open_inputs(tiny_export, tiny_an4_test)
    assert len(ds.samples) > 2  # so that each of the two tasks holds several batches
    out = tmp_path / "ray"
    run_dataset_ray(ort_spec(tiny_export), ds, card, out, RunOptions(batch_size=1, warmup=1, progress=False),
                    RayOptions(workers=2, tasks_per_worker=1))
    run = open_run(out)
    assert output_files(out) == output_files(single)
    assert sorted(s["key"] for s in run["samples"]) == sorted(s.key for s in ds.samples)
    assert len(run["batch_latency_ms"]) == run["batches"] == len(ds.samples)


def test_retried_task_skips_the_batches_it_finished(tiny_export, tiny_an4_test, tmp_path):
    """Ray retries a whole task after its worker dies; the batches it had written are not run again."""
    from core.dataset_dir import atomic_write_json
    from runners.ray_runner import PROGRESS_DIR, BatchWorker

    card, ds = open_inputs(tiny_export, tiny_an4_test)
    out = tmp_path / "run"
    (out / PROGRESS_DIR).mkdir(parents=True)
    for o in card.outputs:
        (out / o.name).mkdir()
    keys = [s.key for s in ds.samples[:3]]
    worker = BatchWorker(ort_spec(tiny_export), card, str(tiny_an4_test), str(out), keys[:1], None, 0, 0.0)
    first = worker({"batches": [json.dumps([[0, keys[:1]]])]})["record"]
    out_file = out / card.outputs[0].name / f"{keys[0]}.bin"
    before = out_file.stat().st_mtime_ns
    time.sleep(0.01)
    # A record for other keys under a batch's index (a stale one) does not count as finished.
    atomic_write_json(out / PROGRESS_DIR / "batch-00000002.json", {"batch": 2, "keys": ["nope"]})
    retry = worker({"batches": [json.dumps([[0, keys[:1]], [1, keys[1:2]], [2, keys[2:3]]])]})["record"]
    assert retry[0] == first[0] and out_file.stat().st_mtime_ns == before
    assert [json.loads(r)["keys"] for r in retry] == [keys[:1], keys[1:2], keys[2:3]]
    assert all((out / card.outputs[0].name / f"{k}.bin").is_file() for k in keys)


def test_model_that_fails_to_load_on_a_worker(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from core.run_dir import RunError
    from runners.base import RunOptions
    from runners.ray_runner import BackendSpec, RayOptions, run_dataset_ray

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    card, ds = open_inputs(tiny_export, tiny_an4_test)
    out = tmp_path / "ray"
    with pytest.raises(RunError, match=r"cannot load model .*broken\.onnx"):
        run_dataset_ray(BackendSpec("onnxruntime", model=str(bad), options={"threads": 1}), ds, card, out,
                        RunOptions(batch_size=1, warmup=1, progress=False), RayOptions(workers=1))
    assert not (out / "run.json").exists()


def test_more_workers_than_cluster_cpus_is_refused(ray_local, tiny_export, tiny_an4_test, tmp_path):
    from core.run_dir import RunError
    from runners.base import RunOptions
    from runners.ray_runner import RayOptions, run_dataset_ray

    card, ds = open_inputs(tiny_export, tiny_an4_test)
    with pytest.raises(RunError, match="more than the cluster's 2 CPUs"):
        run_dataset_ray(ort_spec(tiny_export), ds, card, tmp_path / "r", RunOptions(progress=False),
                        RayOptions(workers=3))
    assert not (tmp_path / "r" / "run.json").exists()


def test_unreachable_cluster_is_one_clear_message(tiny_export, tiny_an4_test, tmp_path, caplog):
    pytest.importorskip("ray", reason="ray[data] is not installed (requirements.txt pins it)")
    t0 = time.monotonic()
    rc = run_quiet(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(tiny_an4_test),
                    "--out", str(tmp_path / "r"), "--ray", "--ray-address", "127.0.0.1:1"])
    assert rc == 2
    assert time.monotonic() - t0 < 30
    assert "127.0.0.1:1 does not answer" in caplog.text
    assert not (tmp_path / "r" / "run.json").exists()


def test_ray_refuses_tool_backends(tiny_export, tiny_an4_test, tmp_path, caplog):
    rc = run_quiet(["--backend", "msame", "--model", str(tiny_export), "--dataset", str(tiny_an4_test),
                    "--out", str(tmp_path / "r"), "--ray"])
    assert rc == 2 and "--ray runs onnxruntime, openvino or torch" in caplog.text


def test_worker_error_line_finds_the_message():
    from core.ray_cluster import worker_error_line
    from core.run_dir import RunError

    wrapped = RuntimeError("Traceback (most recent call last):\n  File x\nrunners.base.RunError: cannot load model m")
    assert worker_error_line(wrapped, RunError) == "cannot load model m"
    assert worker_error_line(RunError("plain"), RunError) == "plain"
    assert json.dumps(worker_error_line(KeyError("k"), RunError)).startswith('"the Ray run failed')


def dir_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ray_preprocess_writes_the_same_dataset_dir(ray_local, tiny_corpus, tiny_export, tmp_path):
    from core.card import card_path_for
    from preprocess.__main__ import main

    args = ["--card", str(card_path_for(tiny_export)), "--an4-root", str(tiny_corpus / "an4"), "--no-progress"]
    single, ray_dir = tmp_path / "single", tmp_path / "ray"
    assert main(args + ["--out", str(single)]) == 0
    assert main(args + ["--out", str(ray_dir), "--ray"]) == 0
    assert dir_files(ray_dir) == dir_files(single)
    # An interrupted build (the manifest's last entries lost, header not complete) resumes over Ray.
    header = json.loads((ray_dir / "dataset.json").read_text())
    header["complete"] = False
    (ray_dir / "dataset.json").write_text(json.dumps(header))
    lines = (ray_dir / "manifest.jsonl").read_text().splitlines(keepends=True)
    (ray_dir / "manifest.jsonl").write_text("".join(lines[:2]))
    kept = {p: p.stat().st_mtime_ns for p in ray_dir.rglob("*.bin")
            if p.stem in {json.loads(line)["key"] for line in lines[:2]}}
    assert main(args + ["--out", str(ray_dir), "--ray"]) == 0
    assert dir_files(ray_dir) == dir_files(single)
    assert kept and {p: p.stat().st_mtime_ns for p in kept} == kept


def test_ray_preprocess_modelzoo_layout_is_the_same(ray_local, tiny_corpus, tiny_export, tmp_path):
    """The Ascend guide's sorted-and-padded layout (DeepSpeech2's guide profile) over Ray: the same files, in the
    same order and numbering, as the single-process build."""
    from core.card import card_path_for
    from preprocess.__main__ import main

    args = ["--card", str(card_path_for(tiny_export)), "--an4-root", str(tiny_corpus / "an4"), "--no-progress",
            "--modelzoo"]
    single, ray_dir = tmp_path / "single", tmp_path / "ray"
    assert main(args + ["--out", str(single)]) == 0
    assert main(args + ["--out", str(ray_dir), "--ray"]) == 0
    files = dir_files(single)
    assert any(name.startswith("sizes/") for name in files)  # the guide's layout, not the default one
    assert dir_files(ray_dir) == files


def test_ray_preprocess_unreachable_cluster(tiny_corpus, tiny_export, tmp_path, caplog):
    pytest.importorskip("ray", reason="ray[data] is not installed (requirements.txt pins it)")
    from core.card import card_path_for
    from preprocess.__main__ import main

    rc = main(["--card", str(card_path_for(tiny_export)), "--an4-root", str(tiny_corpus / "an4"), "--no-progress",
               "--out", str(tmp_path / "ds"), "--ray", "--ray-address", "127.0.0.1:1"])
    assert rc == 2 and "127.0.0.1:1 does not answer" in caplog.text
    assert not (tmp_path / "ds" / "dataset.json").exists()


def test_bench_scale_smoke(ray_local, tiny_export, tiny_an4_test, tmp_path):
    """A tiny run of the scaling report: files written, measured and projected rows told apart (no speed check)."""
    from bench.__main__ import main

    out = tmp_path / "scale"
    assert main(["scale", "--model", str(tiny_export), "--dataset", str(tiny_an4_test), "--out", str(out),
                 "--workers", "2", "--threads", "1", "--warmup", "1", "--project", "1,4", "--repeat", "2",
                 "--no-progress"]) == 0
    rep = json.loads((out / "bench_scale.json").read_text())
    assert len(rep["measured"]["ratio_of_each_pair"]) == 2
    assert rep["measured"]["ray_over_single"] in rep["measured"]["ratio_of_each_pair"]
    assert [p["workers"] for p in rep["projected"]] == [1, 4] and all(p["kind"] == "projected" for p in rep["projected"])
    assert rep["measured"]["workers"] == 2 and rep["measured"]["ray_over_single"] > 0
    table = (out / "bench_scale.md").read_text()
    assert table.count("| measured |") == 2 and table.count("| projected |") == 2
    assert (out / "bench_scale.png").stat().st_size > 0
    assert output_files(out / "ray") == output_files(out / "single")


def test_scale_report_projection_follows_its_rule():
    from bench.scale import scale_report

    def run(rate_key: str, rate: float) -> dict:
        return {"dataset": {"samples": 8}, "batches": 4, "batch_size": 2, "batch_latency_ms": [100.0] * 4,
                rate_key: rate, "ray": {"workers": 2, "threads_per_worker": 1, "seq_per_s_total": rate,
                                        "per_worker": [], "cluster": {"nodes": 1, "cpus": 2}}}

    # 8 samples over 2 workers in 0.5 s: 1.0 worker-s for 0.4 s of model time -> 0.15 s coordination per batch.
    rep = scale_report(run("seq_per_s_wall", 20.0), run("seq_per_s_wall", 16.0), [1, 2])
    assert rep["measured"]["coordination_s_per_batch"] == pytest.approx(0.15)
    assert rep["measured"]["ray_over_single"] == pytest.approx(0.8)
    assert [p["seq_per_s"] for p in rep["projected"]] == pytest.approx([2 / 0.25, 4 / 0.25])


def test_scale_report_takes_the_median_pair():
    from bench.scale import median_pair

    pairs = [{"measured": {"ray_over_single": r, "tag": i}} for i, r in enumerate([0.9, 1.2, 0.7])]
    rep = median_pair(pairs)
    assert rep["measured"]["tag"] == 0 and rep["measured"]["ratio_of_each_pair"] == [0.9, 1.2, 0.7]
