"""The runner over a Ray cluster: the same run dir as `runners.base.run_dataset`, the work spread by Ray Data.

The driver forms the batches exactly as the single-process run does (`make_batches`), deals their
descriptions (batch index + sample keys, never tensors) into a few Ray tasks per worker, and streams those
through `map_batches` into a pool of actors. Each
actor builds its own backend session once, reads its samples from the dataset dir on shared storage, pads
them with the same `assemble`, and writes every sample's outputs atomically into the run dir. So the outputs
are bit-identical to a single-process run of the same backend and settings.

Resume: after a batch's outputs are in place the actor writes a small record of it (keys, shapes, latency,
worker) into `<run>/.ray/`; a rerun skips the batches that have one. Ray Data's actor pool restarts a
worker that dies and retries its task there, where the batches the task had finished are skipped the same way. run.json (the last file written, as in the single-process
run) merges the records, and the records are removed, so a finished run dir holds the same files.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from core.dataset_dir import DatasetDir, atomic_write_json, write_bin
from core.ray_cluster import RayCluster, RayOptions, worker_error_line
from runners.backend_spec import LOCAL_BACKENDS, BackendSpec, backend_spec
from core.model_card import ModelCard
from core.run_dir import RUN_JSON, RunError, cached_run, finish_run
from runners.base import RunOptions, assemble, make_batches

log = logging.getLogger("runners")

PROGRESS_DIR = ".ray"
RAY_BACKENDS = LOCAL_BACKENDS
# A retried batch rewrites the same files; a batch that kills every worker it lands on must still end the run.
MAX_RESTARTS = 3


def spec_from_args(args: Any, card: ModelCard) -> BackendSpec:
    """The backend of `python -m runners` arguments, as a description each worker builds for itself."""
    if args.backend not in RAY_BACKENDS:
        raise RunError(f"--ray runs the backends {', '.join(RAY_BACKENDS)}, not {args.backend}")
    if args.profile:
        raise RunError("--profile is not available with --ray (one profile per worker would be needed)")
    return backend_spec(args, card)


class BatchWorker:
    """One Ray actor: one backend session; maps batch descriptions to outputs written into the run dir."""

    def __init__(self, spec: BackendSpec, card: ModelCard, dataset_path: str, out: str,
                 warm_keys: list[str], fixed: int | None, warmup: int, pause_s: float) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.card, self.fixed, self.pause_s, self.threads = card, fixed, pause_s, spec.threads
        self.out = Path(out)
        try:
            self.dataset = DatasetDir.open(Path(dataset_path))
        except (OSError, ValueError) as exc:
            raise RunError(f"worker on {self.host} cannot read the dataset dir {dataset_path} "
                           f"(every node must see it at the same path: {exc})") from None
        progress = self.out / PROGRESS_DIR
        if not progress.is_dir() or not os.access(progress, os.W_OK):
            raise RunError(f"worker on {self.host} cannot write the run dir {out} "
                           "(every node must see it at the same path, on shared storage)")
        self.by_key = {s.key: s for s in self.dataset.samples}
        try:
            self.backend = spec.build(card)
            warm = assemble(self.dataset, card, [self.by_key[k] for k in warm_keys], fixed)
            for _ in range(warmup):
                self.backend.infer(warm)
        except RunError:
            raise
        except Exception as exc:
            raise RunError(f"worker on {self.host} cannot load model {spec.source} with the {spec.name} backend: "
                           f"{type(exc).__name__}: {exc}") from None
        atomic_write_json(progress / f"worker-{self.host}-{self.pid}.json",
                          {"host": self.host, "pid": self.pid, "backend_info": self.backend.info()})

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        records = []
        for task in rows["batches"]:
            for index, keys in json.loads(str(task)):
                record = self.finished(int(index), keys)
                if record is None:
                    record = self.run_batch(int(index), keys)
                    if self.pause_s:
                        time.sleep(self.pause_s)
                records.append(json.dumps(record))
        return {"record": records}

    def finished(self, index: int, keys: list[str]) -> dict[str, Any] | None:
        """The record of a batch an earlier attempt of this task completed (Ray retries whole tasks)."""
        try:
            record = json.loads((self.out / PROGRESS_DIR / f"batch-{index:08d}.json").read_text())
        except (OSError, ValueError):
            return None
        return record if record.get("keys") == keys else None

    def run_batch(self, index: int, keys: list[str]) -> dict[str, Any]:
        if self.threads and "torch" in sys.modules:
            # Ray calls the actor from another thread than the one that built the backend, and OpenMP's
            # thread count is per thread: without this torch computes with its default count there, which
            # changes its sums' order and so the output bits.
            sys.modules["torch"].set_num_threads(self.threads)
        batch = [self.by_key[k] for k in keys]
        inputs = assemble(self.dataset, self.card, batch, self.fixed)
        started = time.time()
        t0 = time.perf_counter()
        outputs = self.backend.infer(inputs)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        shapes: list[dict[str, list[int]]] = [{} for _ in batch]
        for spec in self.card.outputs:
            if spec.name not in outputs:
                raise RunError(f"backend {self.backend.name} returned no output {spec.name!r}")
            for row, sample in enumerate(batch):
                ref = write_bin(self.out / spec.name / f"{sample.key}.bin", outputs[spec.name][row],
                                spec.dtype)
                shapes[row][spec.name] = list(ref.shape)
        record = {"batch": index, "keys": keys, "shapes": shapes, "latency_ms": latency_ms,
                  "started": started, "ended": time.time(), "worker": {"host": self.host, "pid": self.pid}}
        # Written after the outputs: a record means the batch is complete.
        atomic_write_json(self.out / PROGRESS_DIR / f"batch-{index:08d}.json", record)
        return record


def run_dataset_ray(spec: BackendSpec, dataset: DatasetDir, card: ModelCard, out: Path, opts: RunOptions,
                    ray_opts: RayOptions, *, model_path: Path | None = None,
                    on_batch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every sample over Ray into `out` (resuming finished batches); return run.json's content.

    `on_batch` sees each batch's record as it arrives on the driver (the fault test kills a worker there).
    """
    out = Path(out)
    config = {
        "backend": spec.name,
        "backend_options": spec.options,
        "model_sha256": card.onnx_sha256,
        "dataset": str(dataset.path.resolve()),
        "dataset_hash": dataset.header.get("config_hash"),
        "batch_size": opts.batch_size,
        "warmup": opts.warmup,
        "sort_by_length": opts.sort_by_length,
        "runner": "ray",
    }
    cached = cached_run(out, config, opts.force)
    if cached:
        return cached
    fixed = card.static_batch
    if fixed and opts.batch_size != fixed:
        raise RunError(f"the model has a static batch of {fixed}; run it with --batch-size {fixed}")
    batches = make_batches(dataset.samples, opts.batch_size, opts.sort_by_length)
    if not batches:
        raise RunError(f"{dataset.path}: no samples")
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_JSON).unlink(missing_ok=True)  # a run dir without run.json is never taken as finished
    for o in card.outputs:
        (out / o.name).mkdir(exist_ok=True)
    done = _resume(out, config, batches, card, opts.force)
    todo = [i for i in range(len(batches)) if i not in done]
    if done:
        log.info("resuming %s: %d of %d batches already written", out, len(done), len(batches))

    with RayCluster(ray_opts) as ray_cluster:
        cluster = ray_cluster.describe()
        cpus_per_worker = max(1, spec.threads)
        workers = ray_opts.workers or max(1, cluster["cpus"] // cpus_per_worker)
        if workers * cpus_per_worker > cluster["cpus"]:
            # Ray would wait for CPUs that never come.
            raise RunError(f"--workers {workers} x {cpus_per_worker} CPUs each needs more than the cluster's "
                           f"{cluster['cpus']} CPUs; lower --workers or --threads")
        workers = max(1, min(workers, len(todo) or 1))
        tasks = max(1, min(len(todo), workers * ray_opts.tasks_per_worker))
        wall0 = time.perf_counter()
        if todo:
            _stream(spec, dataset, card, out, opts, ray_opts, batches, todo, fixed, workers, tasks,
                    cpus_per_worker, on_batch)
        wall_s = time.perf_counter() - wall0

    records = [json.loads(p.read_text()) for p in sorted((out / PROGRESS_DIR).glob("batch-*.json"))]
    if sorted(r["batch"] for r in records) != list(range(len(batches))):
        raise RunError(f"{out}: the Ray run ended with batches missing; run the same command again to finish them")
    infos = [json.loads(p.read_text()) for p in sorted((out / PROGRESS_DIR).glob("worker-*.json"))]
    latencies = [r["latency_ms"] for r in records]
    samples_meta = [{"key": k, "batch": r["batch"], "shapes": shapes}
                    for r in records for k, shapes in zip(r["keys"], r["shapes"])]
    fresh = [r for r in records if r["batch"] not in done]
    ray_summary = {
        "cluster": cluster,
        "workers": workers,
        "threads_per_worker": spec.threads,
        "tasks_this_run": tasks if todo else 0,
        "batches_this_run": len(todo),
        "batches_resumed": len(done),
        "seq_per_s_total": _span_rate(fresh),
        "per_worker": _per_worker(records),
    }
    summary = finish_run(out, config=config, backend=spec.name,
                         backend_info=infos[0]["backend_info"] if infos else {}, card=card, dataset=dataset,
                         batch_size=opts.batch_size, batches=len(batches), latencies_ms=latencies, wall_s=wall_s,
                         samples_meta=samples_meta, model_path=model_path,
                         batching="sorted by length" if opts.sort_by_length and opts.batch_size > 1 else "manifest order",
                         warmup=opts.warmup, extra={"ray": ray_summary})
    shutil.rmtree(out / PROGRESS_DIR, ignore_errors=True)
    return summary


def _resume(out: Path, config: dict[str, Any], batches: list, card: ModelCard, force: bool) -> set[int]:
    """Batches a previous run of the same config finished (record written and every output file present)."""
    progress = out / PROGRESS_DIR
    marker = progress / "config.json"
    if force or not marker.is_file() or json.loads(marker.read_text()) != config:
        shutil.rmtree(progress, ignore_errors=True)
        progress.mkdir(parents=True)
        atomic_write_json(marker, config)
        return set()
    done = set()
    for p in progress.glob("batch-*.json"):
        rec = json.loads(p.read_text())
        i = rec.get("batch")
        if (isinstance(i, int) and i < len(batches) and rec.get("keys") == [s.key for s in batches[i]]
                and all((out / o.name / f"{k}.bin").is_file() for o in card.outputs for k in rec["keys"])):
            done.add(i)
        else:
            p.unlink()
    for p in progress.glob("worker-*.json"):
        p.unlink()  # this run's workers describe themselves again
    return done


def _stream(spec: BackendSpec, dataset: DatasetDir, card: ModelCard, out: Path, opts: RunOptions,
            ray_opts: RayOptions, batches: list, todo: list[int], fixed: int | None, workers: int, tasks: int,
            cpus_per_worker: int, on_batch: Callable[[dict[str, Any]], None] | None) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts batches
    ctx.max_consecutive_actor_init_deaths = 1  # a model that cannot load fails the run instead of looping
    # Batches dealt round-robin, so that with batches sorted by length every task gets a like share of work.
    items = [{"batches": json.dumps([[i, [s.key for s in batches[i]]] for i in todo[t::tasks]])}
             for t in range(tasks)]
    # One block per task: the unit Ray schedules and retries.
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    with warnings.catch_warnings():
        # Ray 2.60 takes an actor's restart limits only as extra remote args, which it flags as deprecated.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        ds = ds.map_batches(
            BatchWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
            fn_constructor_kwargs={"spec": spec, "card": card, "dataset_path": str(dataset.path.resolve()),
                                   "out": str(out.resolve()), "warm_keys": [s.key for s in batches[0]],
                                   "fixed": fixed, "warmup": opts.warmup, "pause_s": ray_opts.pause_s},
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)

    try:
        with tqdm(total=len(todo), desc=f"ray {spec.name} bs{opts.batch_size} x{workers}", unit="batch",
                  disable=not opts.progress) as bar:
            for row in ds.iter_rows():
                bar.update(1)
                if on_batch:
                    on_batch(json.loads(row["record"]))
    except RunError:
        raise
    except Exception as exc:  # Ray wraps the worker's error in its own exception types
        raise RunError(worker_error_line(exc, RunError)) from None


def _span_rate(records: list[dict[str, Any]]) -> float | None:
    """Samples / (last batch end - first batch start): all workers together, their start-up and warm-up
    excluded (the nodes' clocks are taken to agree, as NTP keeps them)."""
    if not records:
        return None
    span = max(r["ended"] for r in records) - min(r["started"] for r in records)
    return sum(len(r["keys"]) for r in records) / span if span > 0 else None


def _per_worker(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault((r["worker"]["host"], r["worker"]["pid"]), []).append(r)
    rows = []
    for (host, pid), rs in sorted(by.items()):
        lat = sorted(r["latency_ms"] for r in rs)
        n = sum(len(r["keys"]) for r in rs)
        compute_s = sum(lat) / 1000.0
        rows.append({"host": host, "pid": pid, "batches": len(rs), "samples": n, "compute_s": round(compute_s, 6),
                     "seq_per_s": n / compute_s if compute_s > 0 else None,
                     "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                                    "mean": statistics.fmean(lat)}})
    return rows


def run_from_args(args: Any, card: ModelCard, dataset: DatasetDir) -> dict[str, Any]:
    """`python -m runners ... --ray`: the run of those arguments, over Ray."""
    spec = spec_from_args(args, card)
    opts = RunOptions(batch_size=args.batch_size, warmup=args.warmup, sort_by_length=not args.keep_order,
                      progress=not args.no_progress, force=args.force)
    if args.workers is not None and args.workers < 1:
        raise RunError(f"--workers {args.workers}: give at least 1")
    return run_dataset_ray(spec, dataset, card, args.out, opts,
                           RayOptions(address=args.ray_address, workers=args.workers), model_path=args.model)


