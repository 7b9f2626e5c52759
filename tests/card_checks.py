"""One check shared by the tests of every stage that writes a model card: the card reads back as a
ModelCard whose JSON is the file's, key for key and byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

from core.card import read_card, write_card
from core.model_card import CARD_VERSION, ModelCard


def assert_card_round_trips(card_path: Path, tmp_dir: Path) -> ModelCard:
    text = card_path.read_text()
    data = json.loads(text)
    assert data["card_version"] == CARD_VERSION, card_path
    card = read_card(card_path)
    assert card.to_dict() == data and list(card.to_dict()) == list(data), card_path
    assert ModelCard.from_dict(card.to_dict()) == card
    again = tmp_dir / f"again.{card_path.name}"
    write_card(card, again)
    assert again.read_text() == text, card_path
    return card
