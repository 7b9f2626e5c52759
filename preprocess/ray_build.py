"""`python -m preprocess --ray`: the utterances still to do mapped to feature files by Ray Data tasks.

The driver plans the dataset dir exactly as the single-process build does (keys, padding, header, resume) and
hands `build_dataset` a mapper; each Ray task runs the same `write_sample` on a few utterances, writing their
input files atomically on shared storage, and sends back only the manifest entries. The driver appends those
as they arrive (so an interrupted build resumes) and puts the manifest in key order at the end, so the dataset
dir is the one the single-process build writes.
"""
from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any, Callable, Iterator

import numpy as np

from preprocess.build import Mapper
from core.dataset_dir import DatasetDirError, Sample
from core.ray_cluster import RayCluster, RayOptions, worker_error_line

# Utterances per Ray block: enough to amortise a task's start, few enough to spread a small set over the cluster.
UTTERANCES_PER_BLOCK = 8


def _write_rows(rows: dict[str, np.ndarray], fn: Callable[[Any], tuple[Sample, Counter]],
                items: list[Any]) -> dict[str, list[str]]:
    samples, drops = [], []
    for i in rows["i"]:
        try:
            sample, dropped = fn(items[int(i)])
        except DatasetDirError:
            raise
        except Exception as exc:  # one message type for the driver to find in Ray's wrapping
            raise DatasetDirError(f"{items[int(i)][1].audio}: {type(exc).__name__}: {exc}") from None
        samples.append(sample.to_json())
        drops.append(json.dumps(dict(dropped)))
    return {"sample": samples, "drops": drops}


def ray_map(fn: Callable[[Any], tuple[Sample, Counter]], items: list[Any]) -> Iterator[tuple[Sample, Counter]]:
    """`fn` over `items` as Ray Data tasks on the connected cluster; results in completion order."""
    import ray.data

    if not items:
        return
    ray.data.DataContext.get_current().enable_progress_bars = False  # the build's own bar counts utterances
    blocks = max(1, min(len(items), -(-len(items) // UTTERANCES_PER_BLOCK)))
    ds = ray.data.from_items([{"i": i} for i in range(len(items))], override_num_blocks=blocks)
    ds = ds.map_batches(_write_rows, batch_size=1, num_cpus=1, fn_kwargs={"fn": fn, "items": items})
    try:
        for row in ds.iter_rows():
            yield Sample.from_dict(json.loads(row["sample"])), Counter(json.loads(row["drops"]))
    except DatasetDirError:
        raise
    except Exception as exc:  # Ray wraps the worker's error in its own exception types
        raise DatasetDirError(worker_error_line(exc, DatasetDirError)) from None


@contextlib.contextmanager
def mapper_for(use_ray: bool, address: str | None = None) -> Iterator[Mapper | None]:
    """The mapper `build_dataset` takes: None (this process) or Ray's, connected for the `with`."""
    if not use_ray:
        yield None
        return
    with RayCluster(RayOptions(address=address)):
        yield ray_map
