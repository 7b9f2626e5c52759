"""The original's character map (data_processing/text_transform.py TextTransform) as a label list.

Index 0 is the apostrophe, 1 the space (`<SPACE>`), 2..27 the letters a..z, and 28 the CTC blank (its
GreedyDecoder and CTCLoss use blank=28). The original maps lower-case text; the labels here are upper
case because the pipeline normalises transcripts to upper case (core/text.py); the indices, which
are all a checkpoint depends on, are the same.
"""
from __future__ import annotations

LABELS: list[str] = ["'", " ", *(chr(ord("A") + i) for i in range(26)), "_"]
BLANK_INDEX = 28
WORD_DELIMITER = " "
N_CLASS = len(LABELS)


def text_to_ids(text: str) -> list[int]:
    """Ids of a transcript already normalised to the labels (upper case, no other characters)."""
    index = {c: i for i, c in enumerate(LABELS)}
    try:
        return [index[c] for c in text.upper()]
    except KeyError as exc:
        raise ValueError(f"transcript {text!r} has a character outside the labels: {exc.args[0]!r}") from None


def ids_to_text(ids: list[int]) -> str:
    return "".join(LABELS[i] for i in ids)
