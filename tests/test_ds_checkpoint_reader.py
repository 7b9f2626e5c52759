"""deepspeech.pytorch V3 checkpoints: restricted loading, refusal of unsafe or foreign files.

The two fixtures were written by tests/fixtures/make_v3_ckpt_fixtures.py with the real omegaconf 2.0.6 and
hydra 1.0.6 (not installed here); their .expected.json sidecars hold what the loader must produce.
"""
from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import families.deepspeech2.checkpoint_reader as ds
import families.deepspeech2.checkpoint_writer as writer
from families.deepspeech2.checkpoint_reader import (
    CheckpointError,
    check_deepspeech_state_dict,
    expected_state_dict_shapes,
    load_deepspeech_checkpoint,
)
from families.deepspeech2.checkpoint_writer import save_deepspeech_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
NAMES = ["ds2_v3_bidir_lstm_tiny", "ds2_v3_unidir_gru_tiny"]
FOREIGN_TOP_LEVEL = ("omegaconf", "deepspeech_pytorch", "pytorch_lightning", "hydra", "hydra_configs")


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.ckpt"


def expected(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text())


def pickle_globals(path: Path) -> set[tuple[str, str]]:
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    found = set()
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        assert op.name != "STACK_GLOBAL", "protocol 2 (torch.save's default) has no STACK_GLOBAL"
    return found


def replace_data_pkl(src: Path, dst: Path, data: bytes) -> None:
    """A torch zip whose data.pkl is our own bytes: the way to hand-craft a hostile checkpoint."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            zout.writestr(item, data if item.filename.endswith("/data.pkl") else zin.read(item))


# ------------------------------------------------------------------------------------------------ loading

@pytest.mark.parametrize("name", NAMES)
def test_fixture_loads_expected_hparams_and_tensors(name: str) -> None:
    ckpt = load_deepspeech_checkpoint(fixture(name))
    exp = expected(name)
    assert ckpt.path == fixture(name)
    assert ckpt.labels == exp["labels"]
    assert ckpt.model == exp["model"]
    assert ckpt.spect == exp["spect"]
    assert ckpt.optim == exp["optim"]
    for key, value in exp["meta"].items():
        assert ckpt.meta[key] == value, key
    assert list(ckpt.state_dict) == list(exp["state_dict"])  # module order kept
    for key, info in exp["state_dict"].items():
        tensor = ckpt.state_dict[key]
        assert list(tensor.shape) == info["shape"], key
        assert str(tensor.dtype) == f"torch.{info['dtype']}", key
        assert float(tensor.double().sum()) == pytest.approx(info["sum"], rel=1e-9, abs=1e-9), key


def test_fixtures_have_the_real_structure() -> None:
    """Guards the fixtures themselves: hydra's composed root and V3's enum-by-torch-class are in there."""
    for name in NAMES:
        found = pickle_globals(fixture(name))
        assert ("omegaconf.dictconfig", "DictConfig") in found
        assert ("omegaconf.nodes", "EnumNode") in found
        assert ("deepspeech_pytorch.enums", "RNNType") in found
        assert ("torch.nn.modules.rnn", "LSTM") in found  # RNNType's values are torch classes
        assert ("hydra_configs.pytorch_lightning.callbacks", "ModelCheckpointConf") in found  # via _parent
        assert found == {tuple(g) for g in expected(name)["pickle_globals"]}
    assert load_deepspeech_checkpoint(fixture(NAMES[0])).meta["train_config"]["checkpoint"]["dirpath"] == "???"


def test_loading_imports_none_of_the_training_packages() -> None:
    """In a clean interpreter where importing them would fail loudly, both fixtures load."""
    script = f"""
import sys
BLOCKED = {FOREIGN_TOP_LEVEL!r}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("tried to import " + name)
sys.meta_path.insert(0, Blocker())
from families.deepspeech2.checkpoint_reader import load_deepspeech_checkpoint
for name in {NAMES!r}:
    load_deepspeech_checkpoint("tests/fixtures/" + name + ".ckpt")
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


# ------------------------------------------------------------------------------------------------ hostile files

class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evals:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


class _Popen:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __reduce__(self):
        return subprocess.Popen, (self.argv,)


@pytest.mark.parametrize("make, refused", [
    (lambda marker: _RunsShell(f"touch {marker}"), "system"),
    (lambda marker: _Evals(f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
    (lambda marker: _Popen(["touch", str(marker)]), "subprocess.Popen"),
])
def test_code_executing_pickles_are_refused_before_running(tmp_path: Path, make, refused: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    # Buried where a real checkpoint has its configs: refusal must not depend on where the global sits.
    torch.save({"state_dict": {}, "hyper_parameters": {"labels": ["_"], "model_cfg": make(marker)}}, path)
    with pytest.raises(CheckpointError) as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value) and refused in str(err.value)
    assert not marker.exists()


def test_crafted_getattr_on_an_allowed_class_is_refused(tmp_path: Path) -> None:
    # getattr(collections.OrderedDict, "__init__"): only foreign placeholders may be getattr'd (enum by name).
    data = (b"\x80\x02c__builtin__\ngetattr\nccollections\nOrderedDict\nX" + struct.pack("<I", 8) + b"__init__"
            + b"\x86R.")
    path = tmp_path / "crafted.ckpt"
    replace_data_pkl(fixture(NAMES[1]), path, data)
    with pytest.raises(CheckpointError, match="getattr") as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.ckpt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="TorchScript") as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------------------ broken files

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(bytes(range(256)) * 17)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "truncated.ckpt"
    data = fixture(NAMES[0]).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


def test_legacy_pickle_format(tmp_path: Path) -> None:
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {}}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy") as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("payload, message", [
    ({"epoch": 3, "hyper_parameters": {"labels": ["_"]}}, "no 'state_dict'"),
    ({"epoch": 3, "state_dict": {}}, "no 'hyper_parameters'"),
    ({"state_dict": {}, "hyper_parameters": {"model_cfg": {}}}, "lacks 'labels'"),
    ({"state_dict": {}, "hyper_parameters": {"labels": ["_", "A"]}}, "lacks 'model_cfg'"),
    ([1, 2, 3], "expected a Lightning checkpoint dict"),
])
def test_not_a_deepspeech_checkpoint(tmp_path: Path, payload, message: str) -> None:
    path = tmp_path / "other.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


def _save_unchecked(monkeypatch, path: Path, state_dict: dict, **overrides) -> None:
    """Write a checkpoint the real way but skip save's own architecture check, to get a wrong one on disk."""
    base = load_deepspeech_checkpoint(fixture(NAMES[0]))
    monkeypatch.setattr(writer, "check_state_dict_against_model", lambda *a, **k: None)
    args = dict(labels=base.labels, model=base.model, spect=base.spect, optim=base.optim)
    args.update(overrides)
    save_deepspeech_checkpoint(path, state_dict, **args)
    monkeypatch.undo()


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("conv.seq_module.0.weight"), "missing keys: conv.seq_module.0.weight"),
    (lambda sd: sd.pop("fc.0.module.1.weight"), "missing keys: fc.0.module.1.weight"),
    (lambda sd: sd.__setitem__("rnns.1.rnn.weight_hh_l0", torch.zeros(64, 17)),
     r"wrong shapes: rnns.1.rnn.weight_hh_l0 \(64, 17\) \(expected \(64, 16\)\)"),
    (lambda sd: sd.__setitem__("decoder.weight", torch.zeros(3)), "unexpected keys: decoder.weight"),
])
def test_wrong_architecture_is_refused_naming_keys(tmp_path: Path, monkeypatch, damage, message: str) -> None:
    state_dict = dict(load_deepspeech_checkpoint(fixture(NAMES[0])).state_dict)
    damage(state_dict)
    path = tmp_path / "wrong.ckpt"
    _save_unchecked(monkeypatch, path, state_dict)
    with pytest.raises(CheckpointError, match=message) as err:
        load_deepspeech_checkpoint(path)
    assert str(path) in str(err.value)


def test_state_dict_of_another_config_is_refused(tmp_path: Path, monkeypatch) -> None:
    # The bidirectional LSTM weights under a unidirectional GRU config: reverse weights unexpected, gates wrong.
    base = load_deepspeech_checkpoint(fixture(NAMES[0]))
    path = tmp_path / "mismatch.ckpt"
    _save_unchecked(monkeypatch, path, base.state_dict,
                    model={**base.model, "rnn_type": "gru", "bidirectional": False, "lookahead_context": 3})
    with pytest.raises(CheckpointError) as err:
        load_deepspeech_checkpoint(path)
    text = str(err.value)
    assert str(path) in text
    assert "missing keys: lookahead.0.conv.weight" in text
    assert "rnns.0.rnn.weight_ih_l0_reverse" in text and "wrong shapes: rnns.0.rnn.weight_ih_l0 (64, 1312)" in text


def test_check_deepspeech_state_dict_directly() -> None:
    ckpt = load_deepspeech_checkpoint(fixture(NAMES[1]))
    check_deepspeech_state_dict(ckpt.state_dict, ckpt.model, ckpt.labels, "x.ckpt", spect=ckpt.spect)
    with pytest.raises(CheckpointError, match=r"x\.ckpt: .*wrong shapes: fc\.0\.module\.1\.weight \(29, 16\)"):
        check_deepspeech_state_dict(ckpt.state_dict, ckpt.model, ckpt.labels[:-1], "x.ckpt")
    with pytest.raises(CheckpointError, match="wrong shapes: rnns.0.rnn.weight_ih_l0"):
        # 8 kHz audio has fewer frequency bins, hence a narrower first RNN input than 1312
        check_deepspeech_state_dict(ckpt.state_dict, ckpt.model, ckpt.labels, "x.ckpt",
                                    spect={**ckpt.spect, "sample_rate": 8000})
    with pytest.raises(CheckpointError, match="not a mapping|must map names to tensors"):
        check_deepspeech_state_dict({"conv.seq_module.0.weight": [1.0]}, ckpt.model, ckpt.labels, "x.ckpt")


def test_expected_shapes_of_the_full_size_v3_model() -> None:
    shapes = expected_state_dict_shapes({"rnn_type": "lstm", "hidden_size": 1024, "hidden_layers": 5,
                                         "bidirectional": True, "lookahead_context": None}, 29)
    assert shapes["rnns.0.rnn.weight_ih_l0"] == (4096, 1312)
    assert shapes["rnns.4.rnn.weight_hh_l0_reverse"] == (4096, 1024)
    assert "rnns.0.batch_norm.module.weight" not in shapes and shapes["rnns.1.batch_norm.module.weight"] == (1024,)
    assert shapes["fc.0.module.1.weight"] == (29, 1024)
    assert len(shapes) == 14 + 5 * 8 + 4 * 5 + 5 + 1  # conv, rnn weights, rnn batch norms, fc norm, fc


# ------------------------------------------------------------------------------------------------ other writers

def test_lightning_1_0_attribute_dict_hparams_load(tmp_path: Path, monkeypatch) -> None:
    """Lightning 1.0 stored model.hparams itself, an AttributeDict (a dict subclass: NEWOBJ + SETITEMS)."""
    attribute_dict = writer._emit_class("pytorch_lightning.utilities.parsing", "AttributeDict", dict)
    real_save = torch.save

    def save_with_attribute_dict(obj, f, **kwargs):
        obj["hyper_parameters"] = attribute_dict(obj["hyper_parameters"])
        return real_save(obj, f, **kwargs)

    src = load_deepspeech_checkpoint(fixture(NAMES[0]))
    path = tmp_path / "pl10.ckpt"
    monkeypatch.setattr(torch, "save", save_with_attribute_dict)
    save_deepspeech_checkpoint(path, src.state_dict, src.labels, src.model, src.spect, src.optim)
    monkeypatch.undo()
    assert ("pytorch_lightning.utilities.parsing", "AttributeDict") in pickle_globals(path)
    back = load_deepspeech_checkpoint(path)
    assert (back.labels, back.model, back.spect, back.optim) == (src.labels, src.model, src.spect, src.optim)


def test_typing_subscripts_become_inert_placeholders() -> None:
    """omegaconf >= 2.1 keeps ref types like Optional[int]: getitem(typing.Union, (int, type(None)))."""
    import pickle
    import typing

    unpickler = ds._restricted_pickle_module("x.ckpt").Unpickler
    value = unpickler(io.BytesIO(pickle.dumps(typing.Optional[int], protocol=2))).load()
    assert isinstance(value, ds._ForeignSubscript)
    assert ds._to_plain(value) == "typing.Union[int, NoneType]"
    # ... but the same two helpers refuse anything that is not a foreign placeholder.
    with pytest.raises(CheckpointError, match=r"x\.ckpt: .*operator\.getitem"):
        unpickler(io.BytesIO(b"\x80\x02c_operator\ngetitem\n]K\x00\x86R.")).load()
    with pytest.raises(CheckpointError, match=r"x\.ckpt: .*builtins\.type"):
        unpickler(io.BytesIO(b"\x80\x02c__builtin__\ntype\nK\x01\x85R.")).load()
