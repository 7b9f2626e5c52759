"""Running the plan's commands: each step is one command line, printed before it runs (or only printed, with
--dry-run), so every step can be rerun by hand."""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


class StepFailed(RuntimeError):
    def __init__(self, command: Sequence[str], returncode: int) -> None:
        super().__init__(f"step failed (exit {returncode}): {shlex.join(command)}")
        self.returncode = returncode


def fresh(out: Path, *deps: Path) -> bool:
    """`out` exists and is newer than every dependency, so the step that writes it can be skipped."""
    if not out.exists():
        return False
    mtime = out.stat().st_mtime
    return all(dep.exists() and mtime > dep.stat().st_mtime for dep in deps)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Runner:
    """Runs (or, dry, prints) commands in order; `commands` keeps what was issued, for the log and the tests."""

    def __init__(self, dry_run: bool = False, python: str | None = None, env: dict[str, str] | None = None) -> None:
        self.dry_run = dry_run
        self.python = python or sys.executable
        self.env = env
        self.commands: list[list[str]] = []
        self._start = time.monotonic()

    def py(self, module: str, *args: str) -> list[str]:
        return [self.python, "-m", module, *args]

    def step(self, title: str) -> None:
        print(f"\n==> [{time.monotonic() - self._start:.0f}s] {title}", flush=True)

    def note(self, text: str) -> None:
        print(f"run_all: {text}", flush=True)

    def run(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        command = [str(c) for c in command]
        self.commands.append(command)
        print(("" if not env else " ".join(f"{k}={v}" for k, v in env.items()) + " ") + shlex.join(command),
              flush=True)
        if self.dry_run:
            return
        full_env = None if env is None and self.env is None else {**(self.env or os.environ), **(env or {})}
        proc = subprocess.run(command, env=full_env)
        if proc.returncode != 0:
            raise StepFailed(command, proc.returncode)

    def copy(self, src: Path, dst: Path) -> None:
        self.run_builtin(["cp", str(src), str(dst)], lambda: shutil.copyfile(src, dst))

    def run_builtin(self, shown: list[str], action) -> None:
        """A step done in this process, logged as the shell command that does the same."""
        self.commands.append(shown)
        print(shlex.join(shown), flush=True)
        if not self.dry_run:
            action()

    @contextmanager
    def background(self, command: Sequence[str], log: Path, ready: str, wait_s: float = 60.0) -> Iterator[None]:
        """A server for the steps inside the block: started, waited for until its log says `ready`, stopped after."""
        command = [str(c) for c in command]
        self.commands.append(command)
        print(f"{shlex.join(command)} > {log} 2>&1 &", flush=True)
        if self.dry_run:
            yield
            return
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        try:
            deadline = time.monotonic() + wait_s
            while ready not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.stderr.write(log.read_text(errors="replace"))
                    raise RuntimeError(f"{shlex.join(command)} did not start (no {ready!r} in {log})")
                time.sleep(0.5)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
