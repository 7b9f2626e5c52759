"""Hand-worked tests for core.metrics (WER/CER with S/D/I)."""

from __future__ import annotations

import math
import random

import Levenshtein
import pytest

from core.metrics import (
    ErrorCounts,
    char_counts,
    corpus_scores,
    normalize_transcript,
    per_utterance,
    word_counts,
)


def sdi(c: ErrorCounts) -> tuple[int, int, int, int, int]:
    return (c.s, c.d, c.i, c.n, c.h)


# ---------------------------------------------------------------- word level


def test_identical_strings():
    c = word_counts("THE CAT SAT", "THE CAT SAT")
    assert sdi(c) == (0, 0, 0, 3, 3)
    assert c.errors == 0 and c.rate == 0.0


def test_one_substitution():
    # THE CAT SAT / THE BAT SAT: CAT->BAT. S=1, N=3, H=3-1=2, WER 1/3
    c = word_counts("THE CAT SAT", "THE BAT SAT")
    assert sdi(c) == (1, 0, 0, 3, 2)
    assert c.rate == pytest.approx(1 / 3)


def test_one_deletion():
    # THE CAT SAT / THE SAT: CAT missing. D=1, N=3, H=2, WER 1/3
    c = word_counts("THE CAT SAT", "THE SAT")
    assert sdi(c) == (0, 1, 0, 3, 2)
    assert c.rate == pytest.approx(1 / 3)


def test_one_insertion():
    # THE CAT / THE BIG CAT: BIG extra. I=1, N=2, H=2, WER 1/2
    c = word_counts("THE CAT", "THE BIG CAT")
    assert sdi(c) == (0, 0, 1, 2, 2)
    assert c.rate == 0.5


def test_substitution_and_insertion():
    # THE CAT SAT / THE BAT SAT ON: CAT->BAT (S), ON extra (I).
    # S=1, I=1, N=3, H=3-1-0=2, WER (1+0+1)/3 = 2/3
    c = word_counts("THE CAT SAT", "THE BAT SAT ON")
    assert sdi(c) == (1, 0, 1, 3, 2)
    assert c.rate == pytest.approx(2 / 3)


def test_words_are_tokens_not_characters():
    # CAT vs CATS differ by one letter but are one whole-word substitution.
    assert sdi(word_counts("CAT", "CATS")) == (1, 0, 0, 1, 0)


def test_empty_hypothesis_is_all_deletions():
    # every reference word deleted: D=N=3, H=0, WER 3/3 = 1.0
    c = word_counts("THE CAT SAT", "")
    assert sdi(c) == (0, 3, 0, 3, 0)
    assert c.rate == 1.0


def test_empty_reference_is_all_insertions():
    # N=0 and I=2: rate undefined; documented as inf (errors > 0, n == 0).
    c = word_counts("", "HELLO THERE")
    assert sdi(c) == (0, 0, 2, 0, 0)
    assert c.rate == math.inf


def test_both_empty():
    c = word_counts("", "")
    assert sdi(c) == (0, 0, 0, 0, 0)
    assert c.rate == 0.0  # documented: no errors and nothing to recognise -> 0.0


# ---------------------------------------------------------------- char level


def test_cer_spaces_removed_vs_counted_unambiguous():
    # ref "AB CD", hyp "AB XD":
    #   removed: "ABCD" vs "ABXD" -> C->X, S=1, N=4, CER 1/4
    #   counted: "AB CD" vs "AB XD" -> C->X, S=1, N=5 (space counts), CER 1/5
    removed = char_counts("AB CD", "AB XD", ignore_spaces=True)
    counted = char_counts("AB CD", "AB XD", ignore_spaces=False)
    assert sdi(removed) == (1, 0, 0, 4, 3)
    assert sdi(counted) == (1, 0, 0, 5, 4)
    assert removed.rate == 0.25
    assert counted.rate == 0.2


def test_cer_misplaced_space():
    # ref "THE CAT SAT", hyp "THE CATS AT":
    #   removed: "THECATSAT" vs "THECATSAT" -> 0 edits, N=9, CER 0
    #   counted: "THE CAT SAT" vs "THE CATS AT" -> ref " S" vs hyp "S " needs
    #   2 edits (two substitutions, or delete + insert: equally short, so only
    #   the total is fixed), N=11, CER 2/11
    removed = char_counts("THE CAT SAT", "THE CATS AT", ignore_spaces=True)
    counted = char_counts("THE CAT SAT", "THE CATS AT", ignore_spaces=False)
    assert removed.errors == 0 and removed.n == 9
    assert counted.errors == 2 and counted.n == 11
    assert counted.h == counted.n - counted.s - counted.d
    assert counted.rate == pytest.approx(2 / 11)


def test_cer_counted_collapses_whitespace():
    # "A  B " -> "A B" before aligning, so it matches "A B" exactly.
    assert sdi(char_counts("A  B ", "A B", ignore_spaces=False)) == (0, 0, 0, 3, 3)


def test_char_empty_reference():
    c = char_counts("", "AB", ignore_spaces=False)
    assert sdi(c) == (0, 0, 2, 0, 0)
    assert c.rate == math.inf


# ---------------------------------------------------------------- ErrorCounts


def test_error_counts_sum_and_dict():
    a = ErrorCounts(s=1, d=0, i=1, n=3)  # h derived: 3-1-0 = 2
    b = ErrorCounts(s=0, d=2, i=0, n=4)  # h = 4-0-2 = 2
    total = a + b
    assert total.to_dict() == {"s": 1, "d": 2, "i": 1, "n": 7, "h": 4}
    assert total.errors == 4
    assert total.rate == pytest.approx(4 / 7)
    assert sum([a, b]) == total  # builtin sum starts from 0
    with pytest.raises(ValueError):
        ErrorCounts(s=1, d=0, i=0, n=3, h=3)  # h must be n - s - d = 2


# ---------------------------------------------------------------- normaliser


def test_normalize_transcript():
    assert normalize_transcript("  Hello,   World!  It's ") == "HELLO WORLD IT'S"
    # typographic apostrophe is the same word as the ASCII one
    assert normalize_transcript("it\u2019s") == "IT'S"
    # punctuation is deleted, not replaced by a space (documented choice)
    assert normalize_transcript("well-known \"quote\".") == "WELLKNOWN QUOTE"
    assert normalize_transcript("\tA\nB ") == "A B"
    assert normalize_transcript(" ... ") == ""


# ---------------------------------------------------------------- corpus level


def test_corpus_conventions_differ_only_in_cer():
    refs, hyps = ["the cat sat"], ["The cats at."]
    # After normalisation: "THE CAT SAT" vs "THE CATS AT".
    # Words: CAT->CATS, SAT->AT -> S=2, N=3 -> WER 2/3 under both conventions.
    # CER: deepspeech 0/9 (spaces removed), hf 2/11 (see test_cer_misplaced_space).
    ds = corpus_scores(refs, hyps, convention="deepspeech")
    hf = corpus_scores(refs, hyps, convention="hf")
    assert ds["wer"] == hf["wer"] == pytest.approx(2 / 3)
    assert ds["word"] == {"s": 2, "d": 0, "i": 0, "n": 3, "h": 1}
    assert ds["cer"] == 0.0 and ds["char"]["n"] == 9 and ds["cer_spaces"] == "removed"
    assert hf["cer"] == pytest.approx(2 / 11) and hf["char"]["n"] == 11 and hf["cer_spaces"] == "counted"
    assert ds["convention"] == "deepspeech" and hf["convention"] == "hf"


def test_corpus_vs_mean_of_utterances():
    # utt 0: "A B C D" exact -> 0 errors / 4 words (WER 0)
    # utt 1: "E" vs "F"      -> 1 error  / 1 word  (WER 1)
    # corpus WER = (0+1)/(4+1) = 0.2; mean of utterance WERs = (0+1)/2 = 0.5
    r = corpus_scores(["A B C D", "E"], ["A B C D", "F"], convention="deepspeech")
    assert r["wer"] == pytest.approx(0.2)
    assert r["wer_utterance_mean"] == pytest.approx(0.5)
    # CER (spaces removed): "ABCD"/"ABCD" 0 of 4, "E"/"F" 1 of 1 -> 1/5
    assert r["cer"] == pytest.approx(0.2)
    assert r["utterances"] == 2 and r["empty_hypotheses"] == 0


def test_corpus_empty_hypothesis():
    # "THE CAT SAT" vs "": D=3, N=3 -> WER 1.0; CER: 9 of 9 chars deleted -> 1.0
    r = corpus_scores(["THE CAT SAT"], [""], convention="deepspeech")
    assert r["word"] == {"s": 0, "d": 3, "i": 0, "n": 3, "h": 0}
    assert r["wer"] == 1.0 and r["cer"] == 1.0
    assert r["empty_hypotheses"] == 1


def test_corpus_empty_reference_mixed_with_non_empty():
    # utt 0: "THE CAT" exact: 0 errors, N=2
    # utt 1: "" vs "HELLO THERE": I=2, N=0
    # corpus WER = (0+2)/(2+0) = 1.0; the empty reference adds insertions
    # but no reference words.  Mean of utterance WERs skips utt 1 -> 0.0.
    # CER deepspeech: I=10 ("HELLOTHERE") over N=6 ("THECAT") -> 10/6
    # CER hf:        I=11 ("HELLO THERE") over N=7 ("THE CAT") -> 11/7
    refs, hyps = ["THE CAT", ""], ["THE CAT", "HELLO THERE"]
    ds = corpus_scores(refs, hyps, convention="deepspeech")
    hf = corpus_scores(refs, hyps, convention="hf")
    assert ds["word"] == {"s": 0, "d": 0, "i": 2, "n": 2, "h": 2}
    assert ds["wer"] == 1.0
    assert ds["wer_utterance_mean"] == 0.0
    assert ds["empty_references"] == 1
    assert ds["cer"] == pytest.approx(10 / 6)
    assert hf["cer"] == pytest.approx(11 / 7)


def test_corpus_all_references_empty():
    # N=0 at corpus level: rate is 0.0 without errors, inf with any; no
    # utterance has a defined WER, so the mean is None.
    both_empty = corpus_scores([""], [""], convention="hf")
    assert both_empty["wer"] == 0.0 and both_empty["cer"] == 0.0
    assert both_empty["wer_utterance_mean"] is None
    assert both_empty["empty_hypotheses"] == 1 and both_empty["empty_references"] == 1
    assert corpus_scores([""], ["A"], convention="hf")["wer"] == math.inf


def test_corpus_normalises_both_sides():
    r = corpus_scores(["Hello, world!"], ["HELLO   WORLD"], convention="hf")
    assert r["wer"] == 0.0 and r["cer"] == 0.0


def test_corpus_input_errors():
    with pytest.raises(ValueError):
        corpus_scores(["A"], ["A", "B"], convention="hf")
    with pytest.raises(ValueError):
        corpus_scores(["A"], ["A"], convention="jiwer")
    with pytest.raises(ValueError):
        per_utterance(["A", "B"], ["A"], "deepspeech")


def test_per_utterance_rows():
    rows = per_utterance(["the cat sat", ""], ["THE BAT SAT ON", "UH"], "deepspeech")
    assert len(rows) == 2
    r0, r1 = rows
    # utt 0: S=1, I=1, N=3 (see test_substitution_and_insertion).
    # chars: "THECATSAT" vs "THEBATSATON": C->B (S), +O +N (I=2), N=9, H=8
    assert r0["index"] == 0
    assert r0["reference"] == "THE CAT SAT" and r0["hypothesis"] == "THE BAT SAT ON"
    assert (r0["word_s"], r0["word_d"], r0["word_i"], r0["word_n"], r0["word_h"]) == (1, 0, 1, 3, 2)
    assert (r0["char_s"], r0["char_d"], r0["char_i"], r0["char_n"], r0["char_h"]) == (1, 0, 2, 9, 8)
    assert r0["wer"] == pytest.approx(2 / 3) and r0["cer"] == pytest.approx(3 / 9)
    # utt 1: empty reference, I=1 word / 2 chars -> rates inf
    assert r1["word_i"] == 1 and r1["word_n"] == 0 and r1["wer"] == math.inf
    assert r1["char_i"] == 2 and r1["cer"] == math.inf


# ---------------------------------------------------------------- S+D+I == distance


def _word_distance(a: list[str], b: list[str]) -> int:
    """Plain dynamic-programming edit distance, independent of the library."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def test_sdi_total_equals_levenshtein_distance_random():
    rng = random.Random(20240611)
    vocab = ["A", "B", "C", "THE", "CAT", "IT'S", "AB"]
    for _ in range(200):
        # characters (no whitespace, so both CER modes see the raw strings)
        ref = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        hyp = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        for ignore in (True, False):
            c = char_counts(ref, hyp, ignore_spaces=ignore)
            assert c.errors == Levenshtein.distance(ref, hyp)
            assert c.n == len(ref)
            assert c.h + c.s + c.i == len(hyp)  # every hypothesis char is a hit, sub or ins

        # words
        ref_w = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        hyp_w = [rng.choice(vocab) for _ in range(rng.randint(0, 10))]
        w = word_counts(" ".join(ref_w), " ".join(hyp_w))
        assert w.errors == _word_distance(ref_w, hyp_w) == Levenshtein.distance(ref_w, hyp_w)
        assert w.n == len(ref_w)
        assert w.h + w.s + w.i == len(hyp_w)


def test_ascii_fast_path_deletes_what_the_unicode_rule_deletes() -> None:
    """normalize_transcript takes a translate table for ASCII text; every ASCII character must come out as the
    general rule (delete category P* except the apostrophe) has it, symbols such as $ + < = > kept."""
    import unicodedata

    from core.metrics import normalize_transcript

    for code in range(33, 128):
        c = chr(code)
        kept = c == "'" or not unicodedata.category(c).startswith("P")
        assert normalize_transcript(f"a{c}b") == ("A" + c.upper() + "B" if kept else "AB"), repr(c)
    assert normalize_transcript("it\u2019s \u00abnaïve\u00bb") == "IT'S NAÏVE"  # the non-ASCII path
