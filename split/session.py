"""onnxruntime sessions for the split stage, with load failures reported as bad input."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.ort_session import create_session


def load_session(path: Path, threads: int) -> Any:
    """An onnxruntime session for `path`; a file onnxruntime cannot load is a ValueError naming it."""
    try:
        return create_session(path, threads=threads)
    except FileNotFoundError:
        raise
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ValueError(f"{path}: onnxruntime cannot load it: {str(exc).splitlines()[0][:300]}") from None
