"""Exceptions that mean bad input or an unusable peer, and the CLI wrapper that turns them into exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable


class SplitError(Exception):
    """A failure the user can act on: an unreachable server, a server's error status, a refused option."""


# ValueError covers CodecError, RequestError, CardError and DatasetDirError; OSError missing files.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, SplitError)


def run_cli(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """fn(args), with a user error printed as one line and exit code 2 (no traceback)."""
    try:
        return int(fn(args))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
