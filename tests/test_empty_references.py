"""Empty reference transcripts: warned about when read and when scored, counted, and scores.json stays valid
JSON (an empty reference with a non-empty hypothesis has an infinite WER, which json.dumps wrote as the
non-JSON token `Infinity`)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import run_quiet
from core.corpora import read_an4_raw

FIXTURE_AN4 = Path(__file__).parent / "fixtures" / "real_formats" / "an4"


def _strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _an4_with_empty_transcripts(tmp_path: Path, empty: int) -> Path:
    root = tmp_path / "an4"
    shutil.copytree(FIXTURE_AN4, root)
    trans = root / "etc" / "an4_test.transcription"
    lines = trans.read_text().splitlines(keepends=True)
    for i in range(empty):
        lines[i] = "<s> </s> (" + lines[i].split("(")[1]
    trans.write_text("".join(lines))
    return root


def test_reader_warns_on_empty_references(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _an4_with_empty_transcripts(tmp_path, 1)
    with caplog.at_level(logging.WARNING):
        utts = read_an4_raw(root, "test")
    assert utts[0].transcript == ""
    assert "1 of 3 utterances have an empty transcript (an406-fcaw-b)" in caplog.text


def test_scores_json_is_valid_with_empty_references(tmp_path: Path, tiny_export: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from core.card import ModelCard, card_path_for, read_card
    from postprocess import score
    from preprocess.build import BuildOptions, build_dataset
    from core.dataset_dir import DatasetDir

    card = read_card(card_path_for(tiny_export))
    root = _an4_with_empty_transcripts(tmp_path, 3)
    ds_dir = build_dataset(read_an4_raw(root, "test"), tmp_path / "ds", card, {"kind": "an4_raw"}, BuildOptions(),
                           progress=False)
    assert run_quiet(["--backend", "onnxruntime", "--model", str(tiny_export), "--dataset", str(ds_dir),
                      "--out", str(tmp_path / "run")]) == 0
    # Every hypothesis non-empty, so every utterance (and the corpus) has an undefined, infinite rate.
    monkeypatch.setattr(ModelCard, "decode", lambda self, scores, frames: "A")
    with caplog.at_level(logging.WARNING):
        result = score.score_run(tmp_path / "run", DatasetDir.open(ds_dir), card)
    assert result["empty_references"] == 3
    assert "3 of 3 references are empty" in caplog.text
    written = _strict_json(tmp_path / "run" / score.SCORES_JSON)
    assert written["empty_references"] == 3 and written["wer"] is None and written["cer"] is None
    assert written["empty_reference_uids"] == ["an406-fcaw-b", "an407-fcaw-b", "cen1-fcaw-b"]


def test_table_json_has_no_infinity(tmp_path: Path) -> None:
    from postprocess.tables import write_table

    rows = [{"system": "all references empty", "WER %": float("inf"), "CER %": 12.5}]
    written = write_table(tmp_path, "t", "T", rows, ["note"], {"machine": "test"})
    table = _strict_json(next(p for p in written if p.suffix == ".json"))
    assert table["rows"][0]["WER %"] is None and table["rows"][0]["CER %"] == 12.5
