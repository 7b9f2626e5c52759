"""Our side of the benchmark's peer (HF Optimum): a subprocess in the peer venv, spoken to in JSON lines.

The peer runs bench/peer_optimum.py with the peer venv's python, so our venv never imports
Optimum (it pins an older transformers). Timings are taken inside the peer around its forward call,
so the pipe does not count against it.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

PEER_SCRIPT = Path(__file__).with_name("peer_optimum.py")


class PeerError(RuntimeError):
    """The peer could not start, or refused a command (its message is attached)."""


class OptimumPeer:
    """One peer process; use as a context manager so it always exits."""

    def __init__(self, python: Path | str) -> None:
        python = Path(python)
        if not python.is_file():
            raise PeerError(f"peer python not found: {python} (make it with: bash scripts/bench.sh --peer)")
        # stderr is inherited: the peer's library logs and tracebacks stay visible.
        self.proc = subprocess.Popen([str(python), str(PEER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise PeerError(f"the peer exited (code {self.proc.wait()}) before {cmd!r}") from None
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"the peer exited (code {self.proc.wait()}) during {cmd!r}; see its stderr above")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerError(f"peer {cmd!r} failed: {reply.get('error')}")
        return reply

    def feed(self, array: np.ndarray, path: Path) -> None:
        np.save(path, array)
        self.request("feed", path=str(path))

    def run_seconds(self, session: str) -> float:
        return float(self.request("run", session=session)["seconds"])

    def logits(self, session: str, path: Path) -> np.ndarray:
        self.request("logits", session=session, out=str(path))
        return np.load(path)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("quit")
            except (PeerError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> OptimumPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
