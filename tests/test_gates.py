"""Gates that must stop non-finite numbers (docs/bad_inputs.md, section 3): NaN passes max() and `>`,
so every gate tests isfinite first."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import families.deepspeech2.recipe as ds
from conftest import make_tiny_checkpoint
from core.parity import ParityError, run_parity


def _poison_last_float_initializer(src: Path, dst: Path) -> str:
    """NaN into the last weight matrix (the classifier, past every clamp that could swallow it)."""
    proto = onnx.load(str(src))
    for init in reversed(proto.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            arr = arr.copy()
            arr.flat[0] = np.nan
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            onnx.save(proto, str(dst))
            return init.name
    raise AssertionError("no float initializer")


def test_parity_gate_fails_on_nan_reference(tiny_ckpt: Path, tiny_export: Path) -> None:
    """One NaN weight makes the PyTorch reference all-NaN; the finite ONNX output must not 'match' it."""
    model = ds.load(tiny_ckpt)
    with torch.no_grad():
        next(p for p in model.module.parameters() if p.dim() > 1).view(-1)[0] = float("nan")
    with pytest.raises(ParityError, match="non-finite") as err:
        run_parity(model, tiny_export)
    assert err.value.report["passed"] is False
    out = err.value.report["outputs"][model.outputs[0].name]
    assert out["nonfinite_reference"] > 0 and out["nonfinite_output"] == 0


def test_parity_gate_fails_on_nan_output(tmp_path: Path, tiny_ckpt: Path, tiny_export: Path) -> None:
    poisoned = tmp_path / "poisoned.onnx"
    _poison_last_float_initializer(tiny_export, poisoned)
    with pytest.raises(ParityError, match="non-finite values in the ONNX output") as err:
        run_parity(ds.load(tiny_ckpt), poisoned)
    assert err.value.report["outputs"][ds.load(tiny_ckpt).outputs[0].name]["nonfinite_output"] > 0


def _nan_checkpoint(path: Path, name: str) -> Path:
    make_tiny_checkpoint(path)
    from families.deepspeech2.checkpoint_reader import load_deepspeech_checkpoint
    from families.deepspeech2.checkpoint_writer import save_deepspeech_checkpoint

    ckpt = load_deepspeech_checkpoint(path)
    state = {k: v.clone() for k, v in ckpt.state_dict.items()}
    state[name].view(-1)[3] = float("inf")
    save_deepspeech_checkpoint(path, state, ckpt.labels, ckpt.model, ckpt.spect)
    return path


def test_export_refuses_non_finite_weights_by_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    name = "fc.0.module.1.weight"
    ckpt = _nan_checkpoint(tmp_path / "nan.ckpt", name)
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        assert main(["deepspeech2", "--checkpoint", str(ckpt), "--out", str(out), "--threads", "1"]) == 2
    assert name in caplog.text and "non-finite" in caplog.text and "1 inf" in caplog.text
    assert not (out / "model.onnx").exists()


def test_lossy_variant_gate_fails_on_nan(tmp_path: Path, tiny_export: Path, tiny_an4_test: Path) -> None:
    """The variants' gate compares argmax paths; np.argmax takes NaN for the maximum, so it checks first."""
    from core.card import card_path_for, read_card
    from export.variants import VariantOptions, lossy_parity
    from core.dataset_dir import DatasetDir

    poisoned = tmp_path / "variant.onnx"
    _poison_last_float_initializer(tiny_export, poisoned)
    opts = VariantOptions(kind="fp16", parity_samples=2, min_argmax_agreement=0.0, max_text_cer=float("inf"),
                          threads=1)
    report = lossy_parity(tiny_export, poisoned, read_card(card_path_for(tiny_export)),
                          DatasetDir.open(tiny_an4_test), opts)
    assert report["passed"] is False and report["nonfinite"] > 0
    assert "non-finite" in report["failures"][0]
