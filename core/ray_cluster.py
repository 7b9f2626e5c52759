"""Joining a Ray cluster (or starting a local instance) for the stages that run over Ray.

Both `python -m preprocess --ray` and `python -m runners --ray` use it, so it is a shared contract and
sits in core/ (ray itself is imported only when a cluster is entered).
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ClusterError(ValueError):
    """A Ray cluster that cannot be reached or joined."""


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray instance with this machine's cores
    workers: int | None = None  # None: the cluster's CPUs divided by the CPUs one worker takes
    connect_timeout_s: float = 5.0
    num_cpus: int | None = None  # local instance only
    object_store_memory: int | None = None  # local instance only; only small descriptions travel through it
    pause_s: float = 0.0  # runners: after each batch, in the worker; lets a fault test kill a worker with work left
    # runners: the batches are dealt into workers x this many Ray tasks. Starting a task costs about as much
    # as a small model call, so one task per batch would spend half the cluster on scheduling; a few tasks per
    # worker still balance the load, and a retried task skips the batches it had already finished.
    tasks_per_worker: int = 8


class RayCluster:
    """Ray for the duration of a `with`; shuts down only an instance this process started."""

    def __init__(self, opts: RayOptions) -> None:
        self.opts = opts
        self.started = False

    def __enter__(self) -> "RayCluster":
        import ray

        address = self.opts.address
        if address and address != "auto":
            probe(address, self.opts.connect_timeout_s)
        if ray.is_initialized():
            return self
        _repo_on_worker_path()
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # Only batch descriptions and small records travel through the object store: keep it small.
                ray.init(num_cpus=self.opts.num_cpus or os.cpu_count(),
                         object_store_memory=self.opts.object_store_memory or 256 * 1024 * 1024,
                         include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot join the Ray cluster at {address or 'a new local instance'}: {exc}") from None
        self.started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        import ray

        if self.started:
            ray.shutdown()

    def describe(self) -> dict[str, Any]:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"address": self.opts.address or "local", "nodes": len(nodes),
                "node_addresses": sorted(n.get("NodeManagerAddress", "") for n in nodes),
                "cpus": int(ray.cluster_resources().get("CPU", 0)), "ray_version": ray.__version__}


def probe(address: str, timeout_s: float) -> None:
    """Fail fast on an address that does not answer (ray.init itself keeps retrying for a long time)."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address.strip())
    if not m:
        raise ClusterError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by default), "
                           "ray://HOST:PORT, or auto")
    host, port = m.group(1), int(m.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"the Ray cluster at {address} does not answer within {timeout_s:g}s ({exc}); "
                           "start its head with `ray start --head` or check --ray-address") from None


def _repo_on_worker_path() -> None:
    """Workers of a local instance inherit this environment: make sure they import this checkout."""
    repo = str(Path(__file__).resolve().parents[1])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if repo not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo, *parts])


def worker_error_line(exc: BaseException, marker: type[BaseException]) -> str:
    """The one line that says what went wrong on a worker, out of Ray's wrapped exceptions.

    Ray re-raises a worker's exception as a subclass of both its own error type and the original
    class; failing that, the original's message is in the wrapped traceback text.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, marker):
            text = str(seen).strip().splitlines()
            found = [ln for ln in text if f"{marker.__name__}: " in ln]
            if found:
                return found[-1].split(f"{marker.__name__}: ", 1)[1].strip()
            if text and "Traceback" not in str(seen):
                return text[-1].strip()
        seen = seen.__cause__ or getattr(seen, "cause", None)
    found = re.findall(rf"{marker.__name__}: (.+)", str(exc))
    if found:
        return found[-1].strip()
    lines = str(exc).strip().splitlines()
    return f"the Ray run failed: {type(exc).__name__}: {lines[-1] if lines else ''}"


def add_ray_arguments(p: Any, ray_help: str) -> None:
    """`--ray` (with the stage's own wording of what it spreads) and `--ray-address`, the same in every stage."""
    p.add_argument("--ray", action="store_true", help=ray_help)
    p.add_argument("--ray-address", help="join this Ray cluster (HOST:PORT of `ray start --head`, or auto); "
                                         "default: start a local Ray instance on this machine's cores")
