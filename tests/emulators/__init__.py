"""TEST EMULATORS of the Huawei Ascend tools atc, msame, ais_bench and torch_aie - not the real tools;
used only by tests.

bin/atc and bin/msame are executables; ais_bench/ runs as ``python -m ais_bench``; torch_aie/ is
imported as ``torch_aie``. emulator_env() builds the environment in which a subprocess finds them as
it would find the real ones.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

EMULATORS = Path(__file__).resolve().parent
BIN = EMULATORS / "bin"


def _prepend(*parts: str, rest: str | None) -> str:
    return os.pathsep.join([*parts, *([rest] if rest else [])])


def emulator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) in which atc / msame / ais_bench / torch_aie are the emulators.

    PATH gets bin/ (atc, msame) and this interpreter's folder (so their ``#!/usr/bin/env python3``
    finds a python with numpy, onnx and onnxruntime); PYTHONPATH gets this folder, for
    ``python -m ais_bench`` and ``import torch_aie``.
    """
    env = dict(os.environ if base is None else base)
    env["PATH"] = _prepend(str(BIN), os.path.dirname(sys.executable), rest=env.get("PATH"))
    env["PYTHONPATH"] = _prepend(str(EMULATORS), rest=env.get("PYTHONPATH"))
    return env
