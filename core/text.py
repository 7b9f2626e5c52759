"""Transcripts mapped onto a model's label set."""
from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Iterable

_SPACES = re.compile(r"\s+")


def to_labels(text: str, labels: Iterable[str], *, blank: str | None = None,
              word_delimiter: str = " ") -> tuple[str, Counter]:
    """Uppercase `text` and drop every character the labels cannot spell.

    Returns the normalised text and a Counter of the dropped characters, which the caller logs:
    deepspeech.pytorch silently drops them too, and a silent drop hides a wrong label file.
    """
    allowed = {lab for lab in labels if len(lab) == 1 and lab != blank}
    if word_delimiter != " " and word_delimiter in allowed:
        allowed.add(" ")
    text = _SPACES.sub(" ", text.upper()).strip()
    kept: list[str] = []
    dropped: Counter = Counter()
    for ch in text:
        if ch in allowed:
            kept.append(ch)
        else:
            dropped[ch] += 1
    return _SPACES.sub(" ", "".join(kept)).strip(), dropped


def log_dropped(dropped: Counter, log: logging.Logger) -> None:
    """One warning with every character the labels could not spell, and how often."""
    if dropped:
        log.warning("dropped %d transcript characters outside the labels: %s", sum(dropped.values()),
                    ", ".join(f"{c!r} x{n}" for c, n in dropped.most_common()))
