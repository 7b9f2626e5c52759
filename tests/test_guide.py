"""The guide profile as data (core/guide.py): what the family declares reaches the card, older cards'
named rules still read, and bad profiles and batch disagreements are refused with the values named."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.card import CardError
from core.guide import decode_rule, guide_batch_size, guide_feature, guide_profile, model_batch
from families.deepspeech2.guide import GUIDE as DS_GUIDE
from families.wav2vec2.guide import GUIDE as W2V_GUIDE

STAGES = ("export", "preprocess", "runners", "postprocess")


def _card(guide: dict | None, batch: int | str = "batch") -> dict:
    card = {"family": "f", "feature": {"kind": "k", "norm_eps": 1e-7},
            "inputs": [{"name": "x", "shape": [batch, "time"], "role": "features"}]}
    if guide is not None:
        card["modelzoo"] = guide
    return card


def test_family_profiles_declare_a_known_layout_and_rule() -> None:
    for guide in (DS_GUIDE, W2V_GUIDE):
        profile = guide_profile(_card(guide))
        assert profile["layout"] in ("sorted_padded", "batch_files")
        assert profile["decode_frames"]["from"] in ("lengths_input", "output")
        assert isinstance(profile["batch_size"], int) and profile["static_shape"]


def test_export_records_the_family_profile_in_the_card(tiny_export: Path) -> None:
    from core.card import card_path_for, read_card

    assert read_card(card_path_for(tiny_export)).to_dict()["modelzoo"] == DS_GUIDE


def test_older_cards_named_rules_are_translated() -> None:
    old_ds = {"decode_frames": "input_length_floor_half", "layout": "spect/data{i}.bin, sizes/data{i}.bin"}
    profile = guide_profile(_card(old_ds))
    assert profile["layout"] == "sorted_padded" and profile["lengths_folder"] == "sizes"
    assert profile["decode_frames"] == {"from": "lengths_input", "divide": 2}
    old_w2v = {"decode_frames": "all", "batch_files": "batch_{k}.bin", "feature_overrides": {"norm_eps": 1e-5}}
    assert guide_profile(_card(old_w2v))["layout"] == "batch_files"
    assert guide_feature(_card(old_w2v)) == {"kind": "k", "norm_eps": 1e-5}


@pytest.mark.parametrize("rule", ["floor_third", {"from": "nowhere"}, {"from": "output", "divide": 0}])
def test_a_bad_decode_rule_is_named(rule: object) -> None:
    with pytest.raises(CardError, match="decode_frames"):
        decode_rule({"decode_frames": rule})


def test_a_card_without_a_profile_is_refused() -> None:
    with pytest.raises(CardError, match="no ModelZoo guide profile.*drop --modelzoo"):
        guide_profile(_card(None))


def test_the_model_file_owns_the_batch() -> None:
    card, om = _card(W2V_GUIDE), _card(W2V_GUIDE, batch=8)
    assert model_batch(card) is None and model_batch(om) == 8
    assert guide_batch_size(card, None, om) == 8
    assert guide_batch_size(card, 8, om) == 8
    assert guide_batch_size(card, 4, None) == 4
    assert guide_batch_size(card, None, None) == W2V_GUIDE["batch_size"]
    with pytest.raises(CardError, match=r"--batch-size 4 does not match the batch 8 that om\.card\.json"):
        guide_batch_size(card, 4, om, "om.card.json")


def test_no_stage_holds_a_guide_rule_by_name() -> None:
    """The decode rules and layouts are data in the profile; the stages read them through core/guide.py."""
    repo = Path(__file__).resolve().parents[1]
    for stage in STAGES:
        for path in (repo / stage).rglob("*.py"):
            text = path.read_text()
            for name in ("input_length_floor_half", 'get("modelzoo"', '["modelzoo"]'):
                assert name not in text, (path, name)
