"""core/: the bottom layer's own contracts (it imports no stage; its lock and writes behave as documented)."""
from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest

from core.fsio import DirLock, DirLockedError, atomic_write_bytes, read_json_file

REPO = Path(__file__).resolve().parents[1]
STAGES = {"export", "preprocess", "runners", "postprocess", "split", "tests", "scripts"}


def test_core_imports_no_project_package() -> None:
    for path in (REPO / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in STAGES, f"{path.name} imports {name}"


def test_dir_lock_is_exclusive_reentrant_and_released(tmp_path: Path) -> None:
    import fcntl

    with DirLock(tmp_path / "d"):
        assert (tmp_path / "d" / ".writer.lock").read_text().strip() == str(os.getpid())
        with DirLock(tmp_path / "d"):  # the same process again: re-entrant
            pass
        # Another open file description contends like another process would.
        fd = os.open(tmp_path / "d" / ".writer.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    with DirLock(tmp_path / "d"):  # released on exit: the stale lock file blocks no one
        fd = os.open(tmp_path / "d" / ".writer.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)


def test_dir_lock_names_the_holder(tmp_path: Path) -> None:
    import fcntl

    (tmp_path / "d").mkdir()
    fd = os.open(tmp_path / "d" / ".writer.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"4242\n", 0)
    try:
        with pytest.raises(DirLockedError, match="pid 4242"):
            with DirLock(tmp_path / "d"):
                pass
    finally:
        os.close(fd)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and not (tmp_path / "x.bin.tmp").exists()


def test_read_json_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"a": 1')
    with pytest.raises(ValueError, match=str(path)):
        read_json_file(path, "run summary")
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="lacks 'b'"):
        read_json_file(path, "run summary", required=("a", "b"))
