"""wav2vec2 weights that do not belong to the model: an error naming the keys, never a random model.

transformers loads a safetensors file that lacks tensors or holds another model's, initialises the rest at
random and only says so in its load report; the export then passed its parity gate (the random model is
its own reference) and exited 0.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from families.wav2vec2 import recipe as w2v
from test_wav2vec2 import make_tiny_model_dir


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("w2v_weights") / "model")


def _with_weights(tmp_path: Path, good_dir: Path, tensors: dict[str, torch.Tensor]) -> Path:
    broken = tmp_path / "m"
    shutil.copytree(good_dir, broken)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    return broken


def test_missing_tensors_are_named(tmp_path: Path, good_dir: Path) -> None:
    state = load_file(str(good_dir / "model.safetensors"))
    kept = {k: v for k, v in state.items() if not k.startswith("lm_head.")}
    with pytest.raises(w2v.ModelDirError, match=r"2 missing \(lm_head\.bias, lm_head\.weight\)"):
        w2v.load(_with_weights(tmp_path, good_dir, kept))


def test_another_models_tensors_are_named(tmp_path: Path, good_dir: Path) -> None:
    state = load_file(str(good_dir / "model.safetensors"))
    renamed = {"bert." + k: v for k, v in state.items()}
    with pytest.raises(w2v.ModelDirError, match=r"missing \(.*\), \d+ unexpected \(bert\.") as err:
        w2v.load(_with_weights(tmp_path, good_dir, renamed))
    assert "\n" not in str(err.value)


def test_misshaped_tensor_is_named(tmp_path: Path, good_dir: Path) -> None:
    state = load_file(str(good_dir / "model.safetensors"))
    state["lm_head.weight"] = torch.zeros(5, state["lm_head.weight"].shape[1])
    with pytest.raises(w2v.ModelDirError, match=r"1 mis-shaped \(lm_head\.weight: \[5, 32\] in the file, "
                                                r"\[32, 32\] in the model\)"):
        w2v.load(_with_weights(tmp_path, good_dir, state))


@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_unreadable_safetensors_is_one_line(tmp_path: Path, good_dir: Path, cut: str) -> None:
    broken = tmp_path / "m"
    shutil.copytree(good_dir, broken)
    data = (good_dir / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(b"" if cut == "empty" else data[: len(data) - 100])
    with pytest.raises(w2v.ModelDirError, match=r"model\.safetensors: not a complete safetensors file") as err:
        w2v.load(broken)
    assert "\n" not in str(err.value)


def test_cli_exits_2_and_writes_nothing(tmp_path: Path, good_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    state = load_file(str(good_dir / "model.safetensors"))
    broken = _with_weights(tmp_path, good_dir, {k: v for i, (k, v) in enumerate(state.items()) if i % 2})
    out = tmp_path / "out"
    assert main(["wav2vec2", "--model-dir", str(broken), "--out", str(out), "--threads", "1"]) == 2
    assert "does not hold this model's weights" in caplog.text and not (out / "model.onnx").exists()
