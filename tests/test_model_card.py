"""The typed model card (core/model_card.py): round trips of the cards the stages write, the version-1
migration of a card the repo wrote before cards were typed, refusal of newer versions, the derived helpers,
and a scan that no stage reads a card as a raw dict any more."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.card import CardError, card_path_for, load_model_and_card, read_card
from core.model_card import (CARD_VERSION, DEFAULT_METRICS_CONVENTION, DEFAULT_WORD_DELIMITER, ModelCard,
                             metrics_convention_of)
from tests.card_checks import assert_card_round_trips

REPO = Path(__file__).resolve().parents[1]
# Written by `python -m export deepspeech2` (card_version 1) before the card was typed; copied byte for byte.
V1_CARD = Path(__file__).parent / "fixtures" / "deepspeech2_v1.card.json"


def test_v1_card_migrates_in_memory() -> None:
    raw = json.loads(V1_CARD.read_text())
    assert raw["card_version"] == 1
    card = read_card(V1_CARD)
    assert card.card_version == CARD_VERSION == 2
    migrated = card.to_dict()
    # Only the version changes for a v1 card that states its convention and delimiter; order is kept.
    assert migrated == {**raw, "card_version": 2} and list(migrated) == list(raw)
    assert card.family == "deepspeech2" and card.input_names == ["spect", "lengths"]
    assert card.labels[card.blank_index] == "_" and card.metrics == "deepspeech" and card.delimiter == " "
    assert card.modelzoo.decode_frames == "input_length_floor_half"
    assert card.parity.passed is True and card.source.sha256 == raw["source"]["sha256"]
    assert V1_CARD.read_text() == json.dumps(raw, indent=2) + "\n"  # reading never rewrites the file


def test_v1_card_without_convention_or_delimiter_gets_the_defaults() -> None:
    raw = json.loads(V1_CARD.read_text())
    raw["metrics_convention"] = None
    del raw["word_delimiter"], raw["card_version"]  # the first cards had no version: they are version 1
    card = ModelCard.from_dict(raw)
    assert card.card_version == 2
    assert card.metrics_convention == DEFAULT_METRICS_CONVENTION and card.word_delimiter == DEFAULT_WORD_DELIMITER
    assert card.to_dict()["word_delimiter"] == " " and list(card.to_dict())[0] == "card_version"


@pytest.mark.parametrize("version", [3, 99, "2", 0, True])
def test_newer_or_unknown_version_is_refused_by_name(tmp_path: Path, version: object) -> None:
    raw = {**json.loads(V1_CARD.read_text()), "card_version": version}
    path = tmp_path / "model.card.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CardError, match=rf"{re.escape(str(path))} has card_version {re.escape(repr(version))}; "
                                        r"this pipeline reads card_version 2 \(and migrates version 1\)"):
        read_card(path)


def test_missing_or_malformed_entries_are_named(tmp_path: Path) -> None:
    raw = json.loads(V1_CARD.read_text())
    with pytest.raises(CardError, match="has no 'labels' entry"):
        ModelCard.from_dict({k: v for k, v in raw.items() if k != "labels"})
    bad = {**raw, "inputs": [{k: v for k, v in raw["inputs"][0].items() if k != "role"}, raw["inputs"][1]]}
    with pytest.raises(CardError, match=r"inputs\[0\] \(spect\) has no 'role' entry"):
        ModelCard.from_dict(bad)
    with pytest.raises(CardError, match=r"output_length_rule.layers\[0\] has no 'stride' entry"):
        ModelCard.from_dict({**raw, "output_length_rule": {"kind": "conv", "layers": [{"kernel": 3}]}})
    with pytest.raises(CardError, match="expected a JSON object"):
        ModelCard.from_dict(["not", "a", "card"])


def test_unknown_keys_a_family_adds_are_kept_in_place() -> None:
    raw = json.loads(V1_CARD.read_text())
    raw["card_version"] = 2
    items = list(raw.items())
    items.insert(3, ("family_note", {"why": "kept", "list": [1, 2]}))
    raw = dict(items)
    raw["feature"] = {**raw["feature"], "dither": 0.0}
    raw["parity"] = {**raw["parity"], "extra_report": [1]}
    card = ModelCard.from_dict(raw)
    assert card.extra["family_note"] == {"why": "kept", "list": [1, 2]}
    assert card.feature.extra["dither"] == 0.0 and card.feature.params()["dither"] == 0.0
    out = card.to_dict()
    assert out == raw and list(out) == list(raw) and list(out["feature"]) == list(raw["feature"])


def test_the_card_is_frozen_and_replace_appends_new_entries() -> None:
    card = read_card(V1_CARD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.family = "other"  # type: ignore[misc]
    sha = "0" * 64
    bare = ModelCard.from_dict({k: v for k, v in card.to_dict().items() if k != "onnx_sha256"})
    out = bare.replace(onnx_sha256=sha).to_dict()
    assert list(out)[-1] == "onnx_sha256" and out["onnx_sha256"] == sha
    # A card is a snapshot: changing the dict it came from changes nothing in it.
    raw = json.loads(V1_CARD.read_text())
    made = ModelCard.from_dict(raw)
    raw["feature"]["n_fft"] = 1
    assert made.feature.params()["n_fft"] == 320


def test_offline_export_card_and_its_helpers(tiny_export: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    card = assert_card_round_trips(card_path_for(tiny_export), tmp_path)
    assert card.scores_output.name == "probs" and card.scores_output.lengths_from == "output_lengths"
    assert card.lengths_input.name == "lengths" and card.time_input.name == "spect"
    assert card.static_batch is None and card.precision_name == "fp32"
    assert card.metrics == "deepspeech" and card.delimiter == " " and card.blank_label == "_"
    assert metrics_convention_of(card) == "deepspeech" and metrics_convention_of(None) == DEFAULT_METRICS_CONVENTION
    with pytest.raises(CardError, match="no input 'nope'"):
        card.input("nope")
    # The card's length rule against the graph's own length output.
    session = ort.InferenceSession(str(tiny_export), providers=["CPUExecutionProvider"])
    for n in (37, 120, 121, 300):
        spect = np.zeros((1, 1, 161, n), np.float32)
        _, lengths = session.run(None, {"spect": spect, "lengths": np.array([n], np.int32)})
        assert card.output_frames(n) == int(lengths[0])
    # CTC decoding by the card's vocabulary: repeats collapse, the blank separates, the space is a label.
    idx = [card.labels.index(c) for c in "HH_I I"]
    scores = np.eye(len(card.labels), dtype=np.float32)[idx]
    assert card.decode(scores, len(idx)) == "HI I" and card.decode(scores, 2) == "H"
    meta = {p.key: p.value for p in load_model_and_card(tiny_export)[0].metadata_props}
    assert json.loads(meta["card_version"]) == 2 and card.metadata()["labels"] == list(card.labels)


def test_a_card_without_a_length_rule_names_the_family() -> None:
    raw = json.loads(V1_CARD.read_text())
    raw["output_length_rule"] = None
    with pytest.raises(CardError, match="card of deepspeech2 has no usable output_length_rule"):
        ModelCard.from_dict(raw).output_frames(10)


def test_streaming_export_card(uni_stream_export: Path, tmp_path: Path) -> None:
    card = assert_card_round_trips(card_path_for(uni_stream_export), tmp_path)
    s = card.streaming
    assert s.chunk_frames == 16 and s.features_input == "spect"
    assert [st.name for st in s.states] == [name for name in s.inputs if name not in ("chunk", "chunk_lengths", "end")]
    assert all(st.output == st.name + "_next" for st in s.states)
    assert card.scores_output.name == "probs" and card.lengths_input.name == "chunk_lengths"


def test_om_card_with_gears(tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from export.atc import AtcOptions, convert

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no atc: the command and the card are written
    om, ran = convert(tiny_export, read_card(card_path_for(tiny_export)), tmp_path / "om", "dyn",
                      AtcOptions(length=621, dynamic_batch=[1, 4]))
    assert not ran
    card = assert_card_round_trips(card_path_for(om), tmp_path)
    assert card.om.dynamic_batch_size == (1, 4) and [g["batch"] for g in card.om.gears] == [1, 4]
    assert card.om.source_onnx_sha256 == read_card(card_path_for(tiny_export)).onnx_sha256
    assert card.om.gears[1]["output_shapes"]["probs"][1] == card.output_frames(621)


STAGES = ("core", "export", "preprocess", "runners", "postprocess", "split", "families")
RAW_READ = re.compile(r"\w*card\[|\w*card\.get\(")
# Modules allowed to index a card-named dict, with the reason. Run.json and dataset-dir headers are not
# cards; nothing in the stages needs an entry today.
ALLOWED: dict[str, str] = {}


def test_no_stage_reads_a_card_as_a_raw_dict() -> None:
    found = []
    for stage in STAGES:
        for path in sorted((REPO / stage).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            if rel in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                code = line.split("#", 1)[0]
                if RAW_READ.search(code):
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "raw card reads (use core.model_card.ModelCard):\n" + "\n".join(found)
