"""The demo corpus and demo models, made when the user brings no data or checkpoint.

The one place that spells the generator's and the trainers' command lines.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.options import Options
from pipeline.steps import Runner

QUICK_SYNTH_SIZES = ("--an4-train", "120", "--an4-test", "24", "--libri-train", "24", "--libri-test", "8")


def synth(runner: Runner, opts: Options, out: Path) -> None:
    """espeak-ng (installed by scripts/setup_env.sh when missing), then the corpus in the AN4 and LibriSpeech layouts."""
    runner.run(["bash", "scripts/setup_env.sh"], env={"NEED_ESPEAK": "1"})
    runner.run(runner.py("demo", "synth", "--out", str(out), *(QUICK_SYNTH_SIZES if opts.quick else ())))


def train(runner: Runner, family: str, corpus: list[str], out: Path, options: tuple[str, ...],
          flags: tuple[str, ...] = (), checkpoint: str | None = None) -> None:
    """The family's demo trainer (fixed seed; it skips a model already trained with the same options).

    Not given --threads: the trainer's fixed default is part of what makes the model the same on every machine
    (core/numerics.py)."""
    runner.run(runner.py("demo", "train", family, *flags, *(["--checkpoint", checkpoint] if checkpoint else []),
                         *corpus, "--out", str(out), *options))
