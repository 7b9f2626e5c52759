"""Exceptions that mean bad input or an unusable peer (the CLI prints them as one line and exits 2)."""
from __future__ import annotations


class SplitError(Exception):
    """A failure the user can act on: an unreachable server, a server's error status, a refused option."""


# ValueError covers CodecError, RequestError, CardError and DatasetDirError; OSError missing files.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, SplitError)
