"""argparse types shared by every stage's CLI, so a bad flag is refused the same way everywhere:
one line naming the flag's value and what was expected, exit code 2 (argparse's usage error)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from core.fsio import OutDirError, check_out_dir

# More threads than this many per core only adds contention; far more exhausts the machine.
MAX_THREADS_PER_CORE = 4


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, counts)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; expected a whole number >= 1")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (warm-up batches)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; expected a whole number >= 0")
    return value


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or taskset may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def io_threads(cap: int = 4) -> int:
    """Threads for per-file work in one process (decode, features, writes): the usable cores, at most `cap`."""
    return max(1, min(cap, usable_cores()))


def max_threads() -> int:
    return MAX_THREADS_PER_CORE * usable_cores()


def thread_count(text: str) -> int:
    """0 (the runtime's default) up to a few threads per core of this machine."""
    value = non_negative_int(text)
    limit = max_threads()
    if value > limit:
        raise argparse.ArgumentTypeError(f"{value} threads with {usable_cores()} usable cores; expected 0 "
                                         f"(the runtime's default) to {limit}")
    return value


def out_dir(text: str) -> Path:
    """A directory that exists or can be made, is writable, and has free space."""
    try:
        return check_out_dir(Path(text))
    except OutDirError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
