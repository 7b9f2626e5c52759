"""The demo trainings' CPU numerics (core/numerics.py): the caps reach the trainer's process before torch,
and the training record says whether the model should be the same on another CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.numerics import PINNED_ENV, TRAIN_THREADS, numerics_record, pin_cpu_numerics
from demo.__main__ import wants_bf16

ROOT = Path(__file__).resolve().parents[1]


def test_pin_sets_every_cap_in_the_given_environment() -> None:
    env: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx512"}
    assert pin_cpu_numerics(env) is True
    assert env == PINNED_ENV


def test_pin_refuses_once_torch_is_loaded() -> None:
    import torch  # noqa: F401  (the test process has it already; make sure)

    before = {k: os.environ.get(k) for k in PINNED_ENV}
    assert pin_cpu_numerics() is False
    assert {k: os.environ.get(k) for k in PINNED_ENV} == before


def test_record_is_portable_only_with_float32_the_caps_and_the_fixed_threads() -> None:
    assert numerics_record("off", TRAIN_THREADS, dict(PINNED_ENV))["portable"] is True
    assert numerics_record("bfloat16", TRAIN_THREADS, dict(PINNED_ENV))["portable"] is False
    assert numerics_record("off", TRAIN_THREADS + 1, dict(PINNED_ENV))["portable"] is False
    uncapped = numerics_record("off", TRAIN_THREADS, {})
    assert uncapped["portable"] is False and uncapped["env"] == {k: None for k in PINNED_ENV}


def test_bf16_request_is_read_before_the_trainer_is_imported() -> None:
    assert wants_bf16(["--bf16", "on"]) and wants_bf16(["--out", "x", "--bf16=auto"])
    assert not wants_bf16(["--bf16", "off"]) and not wants_bf16(["--out", "x"])


def test_demo_train_runs_capped_and_records_it(tmp_path: Path, tiny_corpus: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    out = tmp_path / "model.pth"
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "train", "split_asr", "--librispeech",
         str(tiny_corpus / "LibriSpeech" / "train-demo"), "--out", str(out), "--n-cnn", "1", "--n-rnn", "1",
         "--rnn-dim", "8", "--n-feats", "32", "--epochs", "1", "--batch-size", "2", "--val-fraction", "0.25",
         "--limit", "8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.with_name("model.train.json").read_text())
    assert record["threads"] == TRAIN_THREADS
    assert record["cpu_numerics"] == {"portable": True, "precision": "float32", "env": PINNED_ENV}
