"""CPU numerics that do not depend on the CPU: what the demo trainings run under.

The demo models are the root of every accuracy column in results/, so the same seed must give the same
weights on the next machine, not only on this one. Three things make a float32 training differ between two
x86-64 CPUs even with one seed:

- the instruction set: MKL's and oneDNN's AVX-512 GEMM and convolution kernels sum in another order than
  their AVX2 ones, and ATen vectorises elementwise ops and reductions per instruction set; a training turns a
  last-bit difference into another model within an epoch;
- bfloat16 autocast, which only CPUs with native bf16 (avx512_bf16, AMX) run at speed, so an "auto" choice
  trains a different model on each kind of CPU;
- the thread count, which sets how parallel reductions (weight gradients, losses) are split.

So the demo trainer caps ATen, oneDNN and MKL at their AVX2 code paths (MKL in its strict conditional
reproducibility mode), trains in float32, and uses a fixed number of threads. The caps must be in the
environment before torch is imported (each library reads its variable once, at first use); `python -m demo
train` sets them first thing. They cost speed on AVX-512 machines and nothing on AVX2 ones; a user who wants
the speed instead passes `--bf16 on` to the trainer, and the record then says the model depends on the CPU.
"""
from __future__ import annotations

import os
import sys
from typing import Any, MutableMapping

# Each library's own switch: ATen's dispatch level, oneDNN's ISA ceiling, MKL's conditional numerical
# reproducibility branch (STRICT: bitwise-equal results whatever the thread count, where MKL offers it).
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}

# The demo trainings' torch threads, whatever the machine's cores: the committed models were trained on two.
TRAIN_THREADS = 2


def pin_cpu_numerics(environ: MutableMapping[str, str] | None = None) -> bool:
    """Put PINNED_ENV into the environment (os.environ by default); False, setting nothing, when torch is
    already imported in this process: the libraries have read their variables by then, and setting them now
    would make the training record claim caps that did not apply."""
    if environ is None:
        if "torch" in sys.modules:
            return False
        environ = os.environ
    environ.update(PINNED_ENV)
    return True


def numerics_record(autocast: str, threads: int,
                    environ: MutableMapping[str, str] | None = None) -> dict[str, Any]:
    """The training record's `cpu_numerics`: whether the same seed should give this model on another CPU."""
    env = os.environ if environ is None else environ
    pinned = {k: env.get(k) for k in PINNED_ENV}
    portable = autocast == "off" and pinned == PINNED_ENV and threads == TRAIN_THREADS
    return {"portable": portable, "precision": "float32" if autocast == "off" else f"{autocast} autocast",
            "env": pinned}
