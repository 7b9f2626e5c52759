"""Hand-worked tests for core.ctc greedy decoding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.ctc import greedy_decode, greedy_decode_batch

# deepspeech.pytorch labels: blank "_" (0), apostrophe, A-Z, space (28).
DS_LABELS = ["_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " "]
DS_BLANK = 0

# A small wav2vec2-style vocabulary with multi-character entries.
W2V_LABELS = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "H", "C", "TH"]
W2V_BLANK = 0
W2V_SPECIAL = (1, 2, 3)


def one_hot(tokens: list[str], labels: list[str], *, log: bool = False) -> np.ndarray:
    """(T, V) scores whose per-frame argmax is the given label."""
    index = {label: i for i, label in enumerate(labels)}
    scores = np.full((len(tokens), len(labels)), 0.01, dtype=np.float32)
    for t, tok in enumerate(tokens):
        scores[t, index[tok]] = 0.9
    return np.log(scores) if log else scores


def ds(frames: str) -> np.ndarray:
    return one_hot(list(frames), DS_LABELS)


def test_repeats_collapse_but_blank_separates():
    # A A _ A -> runs [A][_][A] -> drop blank -> "AA"
    assert greedy_decode(ds("AA_A"), None, DS_LABELS, DS_BLANK) == "AA"
    # C C A A T -> runs [C][A][T] -> "CAT"
    assert greedy_decode(ds("CCAAT"), None, DS_LABELS, DS_BLANK) == "CAT"


def test_blank_removal():
    # _ C _ A _ T _ -> blanks dropped -> "CAT"
    assert greedy_decode(ds("_C_A_T_"), None, DS_LABELS, DS_BLANK) == "CAT"


def test_log_probabilities_decode_the_same():
    # log is monotonic, so argmax (and the transcript) is unchanged.
    frames = list("__HH_EL_LLO")
    probs = one_hot(frames, DS_LABELS)
    logp = one_hot(frames, DS_LABELS, log=True)
    assert greedy_decode(probs, None, DS_LABELS, DS_BLANK) == "HELLO"
    assert greedy_decode(logp, None, DS_LABELS, DS_BLANK) == "HELLO"


def test_length_truncation():
    scores = ds("CAT_S")
    # frames 0..2 = C A T -> "CAT"; the S at frame 4 is beyond the valid length
    assert greedy_decode(scores, 3, DS_LABELS, DS_BLANK) == "CAT"
    assert greedy_decode(scores, 5, DS_LABELS, DS_BLANK) == "CATS"
    assert greedy_decode(scores, None, DS_LABELS, DS_BLANK) == "CATS"
    assert greedy_decode(scores, 0, DS_LABELS, DS_BLANK) == ""


def test_length_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        greedy_decode(ds("CAT"), 4, DS_LABELS, DS_BLANK)
    with pytest.raises(ValueError):
        greedy_decode(ds("CAT"), -1, DS_LABELS, DS_BLANK)


def test_all_blank_gives_empty_string():
    assert greedy_decode(ds("______"), None, DS_LABELS, DS_BLANK) == ""
    # zero frames at all
    assert greedy_decode(np.zeros((0, len(DS_LABELS))), None, DS_LABELS, DS_BLANK) == ""


def test_deepspeech_spaces_are_collapsed_and_stripped():
    # " THE _ CAT " with a blank between two spaces: raw decode " THE  CAT "
    # (the blank keeps both spaces) -> collapse runs, strip -> "THE CAT"
    assert greedy_decode(ds(" THE _ CAT "), None, DS_LABELS, DS_BLANK) == "THE CAT"
    # repeated space frames without a blank collapse as any repeat does
    assert greedy_decode(ds("A   B"), None, DS_LABELS, DS_BLANK) == "A B"
    # apostrophe is an ordinary label
    assert greedy_decode(ds("IT'_S"), None, DS_LABELS, DS_BLANK) == "IT'S"


def test_word_delimiter():
    # <pad> T T H E | | C A T | -> runs [<pad>][T][H][E][|][C][A][T][|]
    # -> drop blank, "|" -> " " -> "THE CAT " -> strip -> "THE CAT"
    frames = ["<pad>", "T", "T", "H", "E", "|", "|", "C", "A", "T", "|"]
    scores = one_hot(frames, W2V_LABELS)
    assert greedy_decode(scores, None, W2V_LABELS, W2V_BLANK, word_delimiter="|") == "THE CAT"
    # | _ | gives two delimiters (blank separates them) -> collapsed to one space
    frames = ["A", "|", "<pad>", "|", "N"]
    assert (
        greedy_decode(one_hot(frames, W2V_LABELS), None, W2V_LABELS, W2V_BLANK, word_delimiter="|")
        == "A N"
    )
    # without word_delimiter the "|" label is emitted literally
    assert greedy_decode(one_hot(["A", "|", "N"], W2V_LABELS), None, W2V_LABELS, W2V_BLANK) == "A|N"


def test_unknown_word_delimiter_is_rejected():
    with pytest.raises(ValueError):
        greedy_decode(ds("A"), None, DS_LABELS, DS_BLANK, word_delimiter="|")


def test_multi_char_tokens():
    # TH TH <pad> E | C A T -> "TH" "E" " " "C" "A" "T" -> "THE CAT"
    frames = ["TH", "TH", "<pad>", "E", "|", "C", "A", "T"]
    assert (
        greedy_decode(one_hot(frames, W2V_LABELS), None, W2V_LABELS, W2V_BLANK, word_delimiter="|")
        == "THE CAT"
    )


def test_special_tokens_dropped_after_collapse():
    # <s> T H E </s> -> specials dropped -> "THE"
    frames = ["<s>", "T", "H", "E", "</s>"]
    scores = one_hot(frames, W2V_LABELS)
    assert greedy_decode(scores, None, W2V_LABELS, W2V_BLANK, "|", W2V_SPECIAL) == "THE"
    # Without special_tokens they come out verbatim.
    assert greedy_decode(scores, None, W2V_LABELS, W2V_BLANK, "|") == "<s>THE</s>"
    # A <unk> A: collapsing happens first, so the <unk> run separates the two
    # A runs ([A][<unk>][A]); dropping <unk> afterwards leaves "AA", just as a
    # blank would.
    frames = ["A", "<unk>", "A"]
    assert greedy_decode(one_hot(frames, W2V_LABELS), None, W2V_LABELS, W2V_BLANK, "|", W2V_SPECIAL) == "AA"


def test_label_count_must_match_scores():
    with pytest.raises(ValueError):
        greedy_decode(np.zeros((3, 5)), None, DS_LABELS, DS_BLANK)
    with pytest.raises(ValueError):
        greedy_decode(np.zeros((3, 29, 1)), None, DS_LABELS, DS_BLANK)


def test_batch_decode_with_different_lengths():
    # Padded batch, T = 6.
    #   item 0: "CAT___" length 6 -> "CAT"
    #   item 1: "DOGSXX" length 3 -> frames D O G -> "DOG" (S, X, X are padding)
    #   item 2: "AA_A__" length 0 -> ""
    batch = np.stack([ds("CAT___"), ds("DOGSXX"), ds("AA_A__")])
    assert greedy_decode_batch(batch, [6, 3, 0], DS_LABELS, DS_BLANK) == ["CAT", "DOG", ""]
    assert greedy_decode_batch(batch, np.array([6, 4, 4]), DS_LABELS, DS_BLANK) == ["CAT", "DOGS", "AA"]
    assert greedy_decode_batch(batch, None, DS_LABELS, DS_BLANK) == ["CAT", "DOGSX", "AA"]
    with pytest.raises(ValueError):
        greedy_decode_batch(batch, [6, 3], DS_LABELS, DS_BLANK)


def _reference_decode(scores, length, labels, blank, delim=None, special=()):
    """Frame-by-frame decode written independently of the vectorised code."""
    ids = [int(np.argmax(row)) for row in scores[: len(scores) if length is None else length]]
    out = []
    for tok, _ in itertools.groupby(ids):
        if tok == blank or tok in special:
            continue
        out.append(" " if labels[tok] == delim else labels[tok])
    return " ".join("".join(out).split())


def test_vectorised_matches_loop_on_random_logits():
    rng = np.random.default_rng(1234)
    for _ in range(50):
        b, t = rng.integers(1, 5), rng.integers(0, 40)
        # Few classes so repeats and blanks are frequent.
        logits = rng.normal(size=(b, t, len(W2V_LABELS))).astype(np.float32)
        logits[..., 0] += 1.0
        lengths = rng.integers(0, t + 1, size=b)
        got = greedy_decode_batch(logits, lengths, W2V_LABELS, W2V_BLANK, "|", W2V_SPECIAL)
        want = [
            _reference_decode(logits[k], lengths[k], W2V_LABELS, W2V_BLANK, "|", W2V_SPECIAL)
            for k in range(b)
        ]
        assert got == want
        for k in range(b):
            assert greedy_decode(logits[k], int(lengths[k]), W2V_LABELS, W2V_BLANK, "|", W2V_SPECIAL) == want[k]
