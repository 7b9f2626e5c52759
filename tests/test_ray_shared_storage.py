"""A Ray worker on a node that does not see the shared dataset or run dir stops with one clear message.

The worker class is built directly (no cluster needed): on a node without the shared storage, the dataset
dir's path or the run dir's progress folder, which the driver created, is simply not there.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.card import card_path_for, read_card
from core.run_dir import RunError

pytest.importorskip("ray")


def _worker(tiny_export: Path, dataset: Path, out: Path, warm_keys: list[str] | None = None):
    from runners.ray_runner import BackendSpec, BatchWorker

    spec = BackendSpec("onnxruntime", model=str(tiny_export), options={"threads": 1})
    card = read_card(card_path_for(tiny_export))
    return BatchWorker(spec, card, str(dataset), str(out), warm_keys=warm_keys or [], fixed=None, warmup=1, pause_s=0.0)


def test_worker_without_the_dataset_dir_names_it(tiny_export: Path, tmp_path: Path) -> None:
    from runners.ray_runner import PROGRESS_DIR

    out = tmp_path / "run"
    (out / PROGRESS_DIR).mkdir(parents=True)
    missing = tmp_path / "not-mounted" / "an4_test"
    with pytest.raises(RunError, match=r"cannot read the dataset dir .*not-mounted.*same path"):
        _worker(tiny_export, missing, out)


def test_worker_without_the_run_dir_names_it(tiny_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"  # the driver made out/.ray on its own node; this node does not see it
    with pytest.raises(RunError, match=r"cannot write the run dir .*shared storage"):
        _worker(tiny_export, tiny_an4_test, out)
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_worker_with_a_read_only_run_dir_names_it(tiny_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    from runners.ray_runner import PROGRESS_DIR

    progress = tmp_path / "run" / PROGRESS_DIR
    progress.mkdir(parents=True)
    progress.chmod(0o555)
    try:
        with pytest.raises(RunError, match="cannot write the run dir"):
            _worker(tiny_export, tiny_an4_test, tmp_path / "run")
    finally:
        progress.chmod(0o755)
        shutil.rmtree(tmp_path / "run")


def test_worker_that_sees_both_writes_its_record(tiny_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    from core.dataset_dir import DatasetDir
    from runners.ray_runner import PROGRESS_DIR

    out = tmp_path / "run"
    (out / PROGRESS_DIR).mkdir(parents=True)
    first = DatasetDir.open(tiny_an4_test).samples[0].key
    worker = _worker(tiny_export, tiny_an4_test, out, warm_keys=[first])
    records = list((out / PROGRESS_DIR).glob("worker-*.json"))
    assert len(records) == 1 and str(worker.pid) in records[0].name
