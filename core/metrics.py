"""Word and character error rates with substitution/deletion/insertion counts.

Alignment uses ``Levenshtein.editops``, which returns a minimal edit script, so
``S + D + I`` always equals the Levenshtein distance that deepspeech.pytorch
reports as its per-utterance "WER" numerator.  How the total splits into S, D
and I can depend on tie-breaking between equally short scripts (``"AB"`` ->
``"BA"`` is two substitutions or one deletion plus one insertion); the total,
and hence every rate, cannot.

For word-level alignment every distinct word of the pair is mapped to one
Unicode character, so the character-level algorithm compares whole words as
tokens.

Corpus-level rates sum edits and reference lengths over all utterances before
dividing (deepspeech.pytorch validation, jiwer and HF ``evaluate`` all do
this); the mean of per-utterance rates is reported separately because it
weights short utterances more and is *not* what published numbers use.

Empty references: an utterance with an empty reference has N = 0, so every
hypothesis word is an insertion.  Its rate is 0.0 when the hypothesis is empty
too and ``inf`` otherwise (see :attr:`ErrorCounts.rate`).  At corpus level its
insertions are added to the error total while it adds nothing to N, which is
how summing counts treats it; jiwer and HF ``evaluate`` instead refuse empty
references.  The per-utterance mean skips such utterances, since their rate is
undefined.  JSON has no infinity: :func:`jsonable` writes such rates as null.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import Levenshtein

__all__ = [
    "CONVENTIONS",
    "ErrorCounts",
    "char_counts",
    "corpus_scores",
    "jsonable",
    "normalize_transcript",
    "per_utterance",
    "word_counts",
]

# deepspeech: deepspeech.pytorch validation (CER on strings with spaces removed).
# hf: HF evaluate / jiwer (CER counts spaces as characters).
CONVENTIONS = ("deepspeech", "hf")

# Right single quote, left single quote, modifier apostrophe: all typed for "'".
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# The ASCII punctuation that normalize_transcript deletes, as a translate table: the same rule (category P*,
# apostrophe kept) applied at C speed to ASCII text, which is nearly every transcript.
_ASCII_PUNCTUATION = {c: None for c in range(128) if chr(c) != "'" and unicodedata.category(chr(c)).startswith("P")}


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one alignment, or a sum of them.

    Attributes:
        s: substitutions.
        d: deletions (reference tokens missing from the hypothesis).
        i: insertions (hypothesis tokens not in the reference).
        n: reference length in tokens.
        h: hits, ``n - s - d``; derived when omitted.
    """

    s: int = 0
    d: int = 0
    i: int = 0
    n: int = 0
    h: int | None = None

    def __post_init__(self) -> None:
        hits = self.n - self.s - self.d
        if self.h is None:
            # Frozen dataclass: object.__setattr__ is the sanctioned way to fill a derived field.
            object.__setattr__(self, "h", hits)
        elif self.h != hits:
            raise ValueError(f"h must equal n - s - d = {hits}, got {self.h}")
        if min(self.s, self.d, self.i, self.n, hits) < 0:
            raise ValueError(f"counts must be non-negative: {self}")

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(
            s=self.s + other.s, d=self.d + other.d, i=self.i + other.i, n=self.n + other.n
        )

    def __radd__(self, other: object) -> ErrorCounts:
        # Lets the builtin sum() start from its default 0.
        if other == 0:
            return self
        return NotImplemented

    @property
    def errors(self) -> int:
        """Total edits, ``s + d + i`` (equals the Levenshtein distance)."""
        return self.s + self.d + self.i

    @property
    def rate(self) -> float:
        """Error rate ``errors / n`` as a fraction.

        With ``n == 0`` the ratio is undefined; it is 0.0 when there are no
        errors either (nothing to recognise, nothing produced) and ``inf``
        otherwise (any output is infinitely worse than the empty reference).
        Corpus-level rates sum counts first, so this case only arises there
        when every reference in the corpus is empty.
        """
        if self.n == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.n

    def to_dict(self) -> dict[str, int]:
        """Plain ``{"s", "d", "i", "n", "h"}`` dict, for JSON reports."""
        return {"s": int(self.s), "d": int(self.d), "i": int(self.i), "n": int(self.n), "h": int(self.h)}


def _count_edits(ref: str, hyp: str) -> ErrorCounts:
    """Align two token strings (one character per token) and count edits."""
    s = d = i = 0
    for op, _, _ in Levenshtein.editops(ref, hyp):
        if op == "replace":
            s += 1
        elif op == "delete":
            d += 1
        elif op == "insert":
            i += 1
        else:  # pragma: no cover - editops only emits the three kinds above
            raise AssertionError(f"unexpected edit operation {op!r}")
    return ErrorCounts(s=s, d=d, i=i, n=len(ref))


def _code_point(k: int) -> str:
    # Skip the surrogate block so every token is a valid, encodable character.
    return chr(k if k < 0xD800 else k + 0x800)


def _words_to_chars(ref_words: list[str], hyp_words: list[str]) -> tuple[str, str]:
    """Encode two word lists as strings with one shared character per distinct word."""
    vocab: dict[str, str] = {}
    for word in ref_words + hyp_words:
        if word not in vocab:
            vocab[word] = _code_point(len(vocab))
    return "".join(vocab[w] for w in ref_words), "".join(vocab[w] for w in hyp_words)


def word_counts(ref: str, hyp: str) -> ErrorCounts:
    """Word-level edit counts; words are whitespace-separated and case-sensitive.

    No normalisation is applied here (``corpus_scores`` does that), so the
    counts are exactly those of the strings given.
    """
    ref_chars, hyp_chars = _words_to_chars(ref.split(), hyp.split())
    return _count_edits(ref_chars, hyp_chars)


def char_counts(ref: str, hyp: str, *, ignore_spaces: bool) -> ErrorCounts:
    """Character-level edit counts.

    Args:
        ref: reference text.
        hyp: hypothesis text.
        ignore_spaces: True removes all whitespace from *both* strings before
            aligning (deepspeech.pytorch: N is the reference length without
            spaces); False collapses whitespace runs to one space and strips
            both strings, so spaces between words count as characters
            (HF ``evaluate`` CER).
    """
    if ignore_spaces:
        ref, hyp = "".join(ref.split()), "".join(hyp.split())
    else:
        ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
    return _count_edits(ref, hyp)


def normalize_transcript(text: str) -> str:
    """Normalise a transcript for scoring.

    Uppercases, deletes punctuation (Unicode category P*) except the
    apostrophe, collapses whitespace and strips.  Typographic apostrophes
    (U+2019, U+2018, U+02BC) become ``'`` first so "it’s" and "it's" score as
    the same word.  Punctuation is deleted rather than replaced by a space
    (the usual wav2vec2 evaluation recipe), so "well-known" becomes
    "WELLKNOWN"; LibriSpeech references and both models' vocabularies contain
    no punctuation besides the apostrophe, so this choice only matters for
    other text.
    """
    text = text.translate(_APOSTROPHES).upper()
    if text.isascii():
        text = text.translate(_ASCII_PUNCTUATION)
    else:
        text = "".join(c for c in text if c == "'" or not unicodedata.category(c).startswith("P"))
    return " ".join(text.split())



def _check_inputs(refs: Sequence[str], hyps: Sequence[str], convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")


def _score_pairs(
    refs: Sequence[str], hyps: Sequence[str], convention: str
) -> Iterable[tuple[str, str, ErrorCounts, ErrorCounts]]:
    """Yield (normalised ref, normalised hyp, word counts, char counts) per pair."""
    _check_inputs(refs, hyps, convention)
    ignore_spaces = convention == "deepspeech"
    for ref, hyp in zip(refs, hyps):
        ref_n, hyp_n = normalize_transcript(ref), normalize_transcript(hyp)
        yield (
            ref_n,
            hyp_n,
            word_counts(ref_n, hyp_n),
            char_counts(ref_n, hyp_n, ignore_spaces=ignore_spaces),
        )


def per_utterance(refs: Sequence[str], hyps: Sequence[str], convention: str) -> list[dict[str, Any]]:
    """Per-utterance scores as flat dicts (one row of a details CSV each).

    Keys: ``index``, ``reference`` and ``hypothesis`` (normalised), ``wer``,
    ``cer`` (fractions; ``inf`` for an empty reference with a non-empty
    hypothesis), and ``word_s``/``word_d``/``word_i``/``word_n``/``word_h``
    plus the same ``char_*`` counts.
    """
    rows = []
    for index, (ref_n, hyp_n, words, chars) in enumerate(_score_pairs(refs, hyps, convention)):
        row: dict[str, Any] = {
            "index": index,
            "reference": ref_n,
            "hypothesis": hyp_n,
            "wer": words.rate,
            "cer": chars.rate,
        }
        row.update({f"word_{k}": v for k, v in words.to_dict().items()})
        row.update({f"char_{k}": v for k, v in chars.to_dict().items()})
        rows.append(row)
    return rows


def corpus_scores(refs: Sequence[str], hyps: Sequence[str], *, convention: str) -> dict[str, Any]:
    """Corpus-level WER and CER under a named convention.

    Both sides are passed through :func:`normalize_transcript` first.

    Args:
        refs: reference transcripts.
        hyps: hypotheses, in the same order.
        convention: ``"deepspeech"`` (CER with spaces removed from both
            strings, divided by reference characters without spaces) or
            ``"hf"`` (CER counting spaces, whitespace collapsed).  WER is the
            same under both: summed word edits over summed reference words.

    Returns:
        ``{"convention", "wer", "cer", "word", "char", "utterances",
        "empty_hypotheses", "empty_references", "cer_spaces",
        "wer_utterance_mean"}``.  Rates are fractions, not percent.
        ``word``/``char`` are :meth:`ErrorCounts.to_dict` of the summed counts.
        ``wer_utterance_mean`` averages per-utterance WER over utterances with
        a non-empty normalised reference, and is None when there are none.

    Raises:
        ValueError: if the sequences differ in length or the convention is unknown.
    """
    word_total = ErrorCounts()
    char_total = ErrorCounts()
    utterance_wers: list[float] = []
    utterances = empty_hyps = empty_refs = 0
    for ref_n, hyp_n, words, chars in _score_pairs(refs, hyps, convention):
        utterances += 1
        word_total += words
        char_total += chars
        empty_hyps += not hyp_n
        if ref_n:
            utterance_wers.append(words.rate)
        else:
            empty_refs += 1
    return {
        "convention": convention,
        "wer": word_total.rate,
        "cer": char_total.rate,
        "word": word_total.to_dict(),
        "char": char_total.to_dict(),
        "utterances": utterances,
        "empty_hypotheses": empty_hyps,
        "empty_references": empty_refs,
        "cer_spaces": "removed" if convention == "deepspeech" else "counted",
        "wer_utterance_mean": (
            sum(utterance_wers) / len(utterance_wers) if utterance_wers else None
        ),
    }


def jsonable(obj: Any) -> Any:
    """`obj` with every non-finite float (an undefined rate) replaced by None, so that
    ``json.dumps(..., allow_nan=False)`` writes valid JSON (null) instead of `Infinity`/`NaN`."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
