"""Writing deepspeech.pytorch V3 checkpoints: the real format, checked against the module's own state_dict.

Every written file is read back through checkpoint_reader.py and compared with the real-format fixtures
(tests/fixtures/*.ckpt, made with the real omegaconf/hydra by make_v3_ckpt_fixtures.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import families.deepspeech2.checkpoint_writer as writer
from families.deepspeech2.checkpoint_reader import (
    CheckpointError,
    expected_state_dict_shapes,
    load_deepspeech_checkpoint,
)
from families.deepspeech2.checkpoint_writer import model_state_dict_shapes, save_deepspeech_checkpoint
from families.deepspeech2.recipe import DEFAULT_LABELS
from tests.test_ds_checkpoint_reader import NAMES, fixture, pickle_globals


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    src = load_deepspeech_checkpoint(fixture(name))
    path = tmp_path / "sub" / "out.ckpt"
    modules_before = dict(sys.modules)
    save_deepspeech_checkpoint(path, src.state_dict, src.labels, src.model, src.spect, src.optim,
                               epoch=src.meta["epoch"], global_step=src.meta["global_step"],
                               precision=src.meta["precision"])
    assert sys.modules == modules_before  # nothing planted, nothing imported
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.ckpt"]  # no temp file left behind
    back = load_deepspeech_checkpoint(path)
    assert (back.labels, back.model, back.spect, back.optim) == (src.labels, src.model, src.spect, src.optim)
    assert list(back.state_dict) == list(src.state_dict)
    for key, tensor in src.state_dict.items():
        assert torch.equal(back.state_dict[key], tensor), key
        assert back.state_dict[key].dtype == tensor.dtype
    for key in ("epoch", "global_step", "precision", "pytorch-lightning_version", "hparams_name", "config_classes"):
        assert back.meta[key] == src.meta[key], key
    assert set(back.meta["train_config"]) == set(src.meta["train_config"])


@pytest.mark.parametrize("name", NAMES)
def test_saved_pickle_names_the_same_globals_as_the_real_one(tmp_path: Path, name: str) -> None:
    src = load_deepspeech_checkpoint(fixture(name))
    path = tmp_path / "out.ckpt"
    save_deepspeech_checkpoint(path, src.state_dict, src.labels, src.model, src.spect, src.optim,
                               precision=src.meta["precision"])

    def without_storages(found: set[tuple[str, str]]) -> set[tuple[str, str]]:
        return {g for g in found if "Storage" not in g[1]}  # storage class names vary with torch versions

    assert without_storages(pickle_globals(path)) == without_storages(pickle_globals(fixture(name)))


def test_save_with_enum_pickled_by_name_still_loads(tmp_path: Path, monkeypatch) -> None:
    """Newer Pythons may pickle an enum member as getattr(EnumClass, name) instead of EnumClass(value)."""
    def by_name(self, protocol):
        name = next(k for k, v in writer._ENUM_FIELDS[self.enum_cls].items() if v is self.value)
        return getattr, (self.enum_cls, name)

    monkeypatch.setattr(writer._EmitEnum, "__reduce_ex__", by_name)
    src = load_deepspeech_checkpoint(fixture(NAMES[1]))
    path = tmp_path / "byname.ckpt"
    save_deepspeech_checkpoint(path, src.state_dict, src.labels, src.model, src.spect, src.optim)
    assert ("__builtin__", "getattr") in pickle_globals(path)
    back = load_deepspeech_checkpoint(path)
    assert back.model == src.model and back.spect == src.spect


def test_save_defaults_optim_to_v3_adam_and_writes_unidirectional_default_lookahead(tmp_path: Path) -> None:
    src = load_deepspeech_checkpoint(fixture(NAMES[1]))
    path = tmp_path / "out.ckpt"
    save_deepspeech_checkpoint(path, src.state_dict, src.labels, src.model, src.spect)
    back = load_deepspeech_checkpoint(path)
    assert back.optim == {"learning_rate": 1.5e-4, "learning_anneal": 0.99, "weight_decay": 1e-5, "eps": 1e-8,
                          "betas": [0.9, 0.999]}
    assert back.meta["config_classes"]["optim_cfg"].endswith(".AdamConfig")


def test_save_refuses_a_mismatched_state_dict_and_writes_nothing(tmp_path: Path) -> None:
    src = load_deepspeech_checkpoint(fixture(NAMES[0]))
    state_dict = dict(src.state_dict)
    del state_dict["conv.seq_module.0.weight"]
    path = tmp_path / "out.ckpt"
    with pytest.raises(CheckpointError, match="missing keys: conv.seq_module.0.weight"):
        save_deepspeech_checkpoint(path, state_dict, src.labels, src.model, src.spect)
    with pytest.raises(CheckpointError, match="rnn_type"):
        save_deepspeech_checkpoint(path, src.state_dict, src.labels, {**src.model, "rnn_type": "transformer"},
                                   src.spect)
    with pytest.raises(CheckpointError, match="lookahead_context"):
        save_deepspeech_checkpoint(path, src.state_dict, src.labels, {**src.model, "lookahead_context": 5}, src.spect)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rnn_type, bidirectional, hidden, layers, lookahead, sample_rate, window_size", [
    ("lstm", True, 1024, 5, None, 16000, 0.02),  # the real an4/librispeech_pretrained_v3 size
    ("gru", False, 16, 3, 4, 16000, 0.02),
    ("rnn", True, 8, 1, None, 8000, 0.02),
    ("lstm", False, 12, 2, 20, 22050, 0.0255),  # a window whose sample count is not a whole number
])
def test_module_state_dict_matches_the_v3_layout(rnn_type, bidirectional, hidden, layers, lookahead, sample_rate,
                                                 window_size) -> None:
    """What the writer takes from the module equals what the reader expects of a V3 file, key order included."""
    model = {"rnn_type": rnn_type, "hidden_size": hidden, "hidden_layers": layers, "bidirectional": bidirectional,
             "lookahead_context": lookahead}
    spect = {"sample_rate": sample_rate, "window_size": window_size, "window_stride": 0.01, "window": "hamming"}
    from_module = model_state_dict_shapes(DEFAULT_LABELS, model, spect)
    assert list(from_module.items()) == list(expected_state_dict_shapes(model, len(DEFAULT_LABELS), spect).items())


def test_shapes_from_the_module_draw_nothing_from_the_seeded_rng() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    model_state_dict_shapes(DEFAULT_LABELS, {"rnn_type": "lstm", "hidden_size": 1024, "hidden_layers": 5,
                                             "bidirectional": True, "lookahead_context": None},
                            {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming"})
    assert torch.equal(torch.get_rng_state(), before)  # a trainer's seeded run is not shifted by saving


def test_save_names_the_module_mismatch(tmp_path: Path) -> None:
    src = load_deepspeech_checkpoint(fixture(NAMES[1]))
    state_dict = dict(src.state_dict)
    state_dict["rnns.1.rnn.weight_hh_l0"] = torch.zeros(48, 17)
    path = tmp_path / "out.ckpt"
    with pytest.raises(CheckpointError, match=r"out\.ckpt: .*wrong shapes: rnns\.1\.rnn\.weight_hh_l0 \(48, 17\) "
                                              r"\(expected \(48, 16\)\)"):
        save_deepspeech_checkpoint(path, state_dict, src.labels, src.model, src.spect)
    assert not path.exists()
