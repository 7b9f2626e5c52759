"""python -m bench scale: Ray's overhead against the single-process runner, and N-worker projections.

Measured, in one invocation on one dataset dir and ONNX model (onnxruntime):
  - the single-process runner with W x T intra-op threads (samples / wall time, warm-up excluded);
  - the Ray runner with W workers of T threads each (samples / span from the first batch's start to the last
    batch's end, so actor start-up and model loading are left out, as warm-up is on the other side);
  - from the Ray run: the mean model time per batch and the per-batch coordination cost, i.e. the time each
    worker spent on a batch beyond the model call (reading inputs, writing outputs, Ray's scheduling).
Both runs are repeated as alternating pairs (--repeat) and the pair with the median ratio is reported.
Projected, not measured: throughput for N workers, N x (samples per batch) / (model time + coordination) per
batch, which assumes every worker has its own T cores and that the driver and the shared storage keep up.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from core.machine import machine_label

log = logging.getLogger("bench")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="the .onnx (card beside it)")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir made for that card")
    p.add_argument("--out", type=Path, required=True, help="folder for the two run dirs (and the report, by default)")
    p.add_argument("--report", type=Path,
                   help="the report's path without suffix: REPORT.json, .md and .png (default: OUT/bench_scale)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers W (the single-process run gets W x T threads)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads T of each Ray worker")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5,
                   help="alternating single-process / Ray pairs; the pair with the median ratio is reported")
    p.add_argument("--project", default="1,2,4,8,16,32", help="worker counts N to project, comma-separated")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting a local instance")
    p.add_argument("--no-progress", action="store_true")


def scale_report(single: dict[str, Any], ray_run: dict[str, Any], project: list[int]) -> dict[str, Any]:
    """The measured ratio and coordination cost from two run.json contents, and the projections."""
    n = ray_run["dataset"]["samples"]
    batches = ray_run["batches"]
    workers = ray_run["ray"]["workers"]
    single_rate = single["seq_per_s_wall"]
    ray_rate = ray_run["ray"]["seq_per_s_total"]
    model_s = sum(ray_run["batch_latency_ms"]) / 1000.0
    span_s = n / ray_rate if ray_rate else None
    coord_s = max(0.0, (span_s * workers - model_s) / batches) if span_s else None
    per_batch_s = model_s / batches
    per_batch_samples = n / batches
    projected = [{"workers": w, "seq_per_s": w * per_batch_samples / (per_batch_s + (coord_s or 0.0)),
                  "kind": "projected"} for w in project]
    return {
        "model": {k: (single.get("model") or {}).get(k) for k in ("family", "precision", "sha256")},
        "dataset": Path(single["dataset"]["path"]).name if single["dataset"].get("path") else None,
        "machine": single.get("machine"),
        "measured": {
            "samples": n, "batches": batches, "batch_size": ray_run["batch_size"], "workers": workers,
            "threads_per_worker": ray_run["ray"]["threads_per_worker"],
            "ray_tasks": ray_run["ray"].get("tasks_this_run"),
            "single_seq_per_s": single_rate, "ray_seq_per_s": ray_rate,
            "ray_over_single": ray_rate / single_rate if single_rate and ray_rate else None,
            "ray_overhead": 1 - ray_rate / single_rate if single_rate and ray_rate else None,
            "model_s_per_batch": per_batch_s, "coordination_s_per_batch": coord_s,
            "per_worker_seq_per_s": [w["seq_per_s"] for w in ray_run["ray"]["per_worker"]],
            "cluster": ray_run["ray"]["cluster"],
        },
        "projected": projected,
        "projection_rule": "N x samples per batch / (model time per batch + coordination per batch); assumes each "
                           "worker has its own cores and the driver and shared storage keep up",
    }


def median_pair(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of the pair with the median Ray / single-process ratio, with every pair's ratio beside it."""
    ratios = [p["measured"]["ray_over_single"] or 0.0 for p in pairs]
    order = sorted(range(len(pairs)), key=lambda i: ratios[i])
    rep = pairs[order[(len(pairs) - 1) // 2]]
    rep["measured"]["ratio_of_each_pair"] = ratios
    return rep


def _threads(m: dict[str, Any]) -> str:
    return f"{m['threads_per_worker']} thread{'s' if m['threads_per_worker'] != 1 else ''}"


def _markdown(rep: dict[str, Any]) -> str:
    m = rep["measured"]
    model = rep.get("model") or {}
    what = " ".join(str(x) for x in (model.get("family"), model.get("precision")) if x)
    lines = ["### Ray scaling" + (f": {what}" if what else "") + (f" on {rep['dataset']}" if rep.get("dataset") else ""),
             "",
             f"{m['samples']} utterances, batch {m['batch_size']}, {m['batches']} batches"
             + (f" in {m['ray_tasks']} Ray tasks" if m.get("ray_tasks") else "")
             + f"; cluster: {m['cluster']['nodes']} node(s), {m['cluster']['cpus']} CPUs.",
             *([f"Measured on {machine_label(rep['machine'])} (onnxruntime for both runs).", ""]
               if rep.get("machine") else [""]),
             "| setup | seq/s | kind |", "|---|---|---|",
             f"| single process, {m['workers'] * m['threads_per_worker']} threads | {m['single_seq_per_s']:.2f} | measured |",
             f"| Ray, {m['workers']} workers x {_threads(m)} | {m['ray_seq_per_s']:.2f} | measured |"]
    lines += [f"| Ray, {p['workers']} worker{'s' if p['workers'] != 1 else ''} x {_threads(m)} | {p['seq_per_s']:.2f} | projected |"
              for p in rep["projected"]]
    ratio = m["ray_over_single"]
    each = m.get("ratio_of_each_pair") or []
    spread = (f"; the median of {len(each)} alternating pairs, which ranged {min(each):.3f} to {max(each):.3f}"
              if len(each) > 1 else "")
    cost = (f"overhead {100 * m['ray_overhead']:.1f}%" if m["ray_overhead"] >= 0 else
            f"Ray {-100 * m['ray_overhead']:.1f}% faster: separate processes of one thread each beat one process's "
            "threads here")
    lines += ["",
              f"Measured: Ray / single process = {ratio:.3f} at equal total threads ({cost}{spread}); model time {1000 * m['model_s_per_batch']:.2f} ms and coordination "
              f"{1000 * (m['coordination_s_per_batch'] or 0):.2f} ms per batch per worker.",
              f"Projected (not measured): {rep['projection_rule']}.", ""]
    return "\n".join(lines)


def _plot(rep: dict[str, Any], path: Path) -> Path:
    from postprocess.plots import plt, save_figure

    m = rep["measured"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([p["workers"] for p in rep["projected"]], [p["seq_per_s"] for p in rep["projected"]], "--",
            marker=".", label="Ray, projected")
    ax.scatter([m["workers"]], [m["ray_seq_per_s"]], marker="o", s=50, zorder=3, label="Ray, measured")
    ax.scatter([m["workers"]], [m["single_seq_per_s"]], marker="s", s=50, zorder=3,
               label=f"single process ({m['workers'] * m['threads_per_worker']} threads), measured")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"workers ({m['threads_per_worker']} threads each)")
    ax.set_ylabel("sequences / s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Ray scaling: measured and projected")
    return save_figure(fig, path)


def main(args: argparse.Namespace) -> int:
    from core.card import CardError, load_model_and_card
    from core.dataset_dir import DatasetDirError, atomic_write_bytes, atomic_write_json
    from core.run_dir import RunError
    from runners.base import RunOptions, open_dataset_for, run_dataset
    from runners.onnxruntime_backend import OnnxRuntimeBackend
    from runners.ray_runner import BackendSpec, RayOptions, run_dataset_ray

    try:
        project = [int(x) for x in args.project.split(",") if x.strip()]
        if args.workers < 1 or args.threads < 1 or not project or min(project) < 1:
            raise ValueError("--workers, --threads and every --project count must be at least 1")
        _, card = load_model_and_card(args.model, None)
        dataset = open_dataset_for(args.dataset, card)
        if args.repeat < 1:
            raise ValueError("--repeat must be at least 1")
        opts = RunOptions(batch_size=args.batch_size, warmup=args.warmup, progress=not args.no_progress, force=True)
        pairs = []
        # Alternating pairs, so that a busy moment of a shared machine lands on both sides alike.
        for _ in range(args.repeat):
            single = run_dataset(OnnxRuntimeBackend(args.model, card, threads=args.workers * args.threads), dataset,
                                 card, args.out / "single", opts, model_path=args.model)
            ray_run = run_dataset_ray(BackendSpec("onnxruntime", model=str(args.model.resolve()),
                                                  options={"threads": args.threads}),
                                      dataset, card, args.out / "ray", opts,
                                      RayOptions(address=args.ray_address, workers=args.workers),
                                      model_path=args.model)
            pairs.append(scale_report(single, ray_run, project))
    except (CardError, DatasetDirError, RunError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    rep = median_pair(pairs)
    report = args.report or args.out / "bench_scale"
    report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(report.with_name(report.name + ".json"), rep)
    atomic_write_bytes(report.with_name(report.name + ".md"), _markdown(rep).encode())
    _plot(rep, report.with_name(report.name + ".png"))
    log.info("measured: Ray / single process = %.3f at equal total threads", rep["measured"]["ray_over_single"] or 0)
    log.info("wrote %s (.json, .md, .png)", report)
    return 0
