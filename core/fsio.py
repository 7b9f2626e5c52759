"""File-system primitives every stage writes through: atomic writes, an exclusive lock per output dir,
out-dir checks, hashes and JSON files that name themselves when they are broken."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

LOCK_FILE = ".writer.lock"
# Below this much free space an output dir is refused up front: every stage writes at least a header,
# and a write that fails half-way on a full disk is worse than not starting.
MIN_FREE_BYTES = 16 << 20


class OutDirError(ValueError):
    """An output location that cannot be written: a file, read-only, on a full disk, or held by another writer."""


class DirLockedError(OutDirError):
    """Another process is writing the same output dir."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also leave a half-written temporary behind
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json_file(path: Path, what: str, *, required: Iterable[str] = (),
                   error: type[Exception] = ValueError) -> dict[str, Any]:
    """A JSON object from `path`; a corrupt file or a missing key raises `error` naming the file."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON ({exc}); the file is corrupt, write it again") from None
    if not isinstance(obj, dict):
        raise error(f"{what} {path} holds a JSON {type(obj).__name__}, expected an object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise error(f"{what} {path} lacks {', '.join(repr(k) for k in missing)} (written by another version, "
                    "or edited?); write it again")
    return obj


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(path: Path, *, min_free: int = MIN_FREE_BYTES) -> Path:
    """Refuse an output dir that is a file, cannot be written, or sits on a (nearly) full disk."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutDirError(f"{path} is a file; expected a directory (or a path that does not exist yet)")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise OutDirError(f"{path}: {base} is a file, so no directory can be made under it")
    try:  # os.access says yes to root on a read-only mount; only a real write tells
        with tempfile.TemporaryFile(dir=base, prefix=".probe"):
            pass
    except OSError as exc:
        raise OutDirError(f"{path}: cannot write in {base} ({exc.strerror or exc}); expected a writable "
                          "directory") from None
    free = shutil.disk_usage(base).free
    if free < min_free:
        raise OutDirError(f"{path}: only {free // (1 << 20)} MiB free on the disk of {base}; expected at "
                          f"least {min_free // (1 << 20)} MiB")
    return path


def describe_os_error(exc: OSError) -> str:
    """One line for a failed write (full disk, read-only, permission), naming the file."""
    name = exc.filename or "a file"
    if exc.errno == errno.ENOSPC:
        return f"cannot write {name}: the disk is full (free space, then rerun: finished files are kept)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {name}: {exc.strerror}; expected a writable location"
    return f"{name}: {exc.strerror or exc}"


class DirLock:
    """An exclusive lock on an output dir: one writer at a time, refused (not waited for) otherwise.

    The lock is fcntl.flock on `<dir>/.writer.lock`, which holds the holder's pid for the message; the
    kernel releases it when the holder exits, however it exits, so a stale file never blocks anyone.
    Re-entrant within one process (a CLI locks its --out and the library function it calls locks it again).
    """

    _held: dict[str, int] = {}  # resolved dir -> nesting depth, for this process

    def __init__(self, directory: Path, what: str = "output dir") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None
        self._key = ""

    def __enter__(self) -> "DirLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = str(self.directory.resolve())
        if self._key in DirLock._held:
            DirLock._held[self._key] += 1
            return self
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DirLockedError(f"{self.what} {self.directory} is being written by another process (pid {holder}, "
                                 f"lock {path}); wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        DirLock._held[self._key] = 1
        return self

    def __exit__(self, *exc: object) -> None:
        DirLock._held[self._key] -= 1
        if DirLock._held[self._key] == 0:
            del DirLock._held[self._key]
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
