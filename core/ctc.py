"""Greedy (best-path) CTC decoding.

Both acoustic models in this pipeline emit one score vector per output frame:
deepspeech.pytorch (29 single-character labels, blank ``_`` at index 0, space
at index 28) and wav2vec2 CTC heads (a vocabulary with multi-character entries
such as ``<pad>``, ``<s>``, ``</s>``, ``<unk>`` and ``|`` as word delimiter).
Greedy decoding only needs the per-frame argmax, so the scores may be
probabilities, logits or log-probabilities: softmax and log are monotonic and
leave the argmax unchanged.

Decoding steps, in this order:

1. keep the first ``length`` frames (the model's valid output length; padded
   frames past it would otherwise leak tokens into the transcript);
2. argmax per frame (ties go to the lowest index, as ``numpy.argmax`` does);
3. collapse runs of the same index;
4. drop the blank and any ``special_tokens``.  Dropping happens *after*
   collapsing, so ``A <unk> A`` yields ``AA``, exactly as a blank between two
   ``A`` frames does;
5. map indices to label strings (the ``word_delimiter`` label becomes a space)
   and concatenate;
6. normalise whitespace: runs of whitespace become one space and the result is
   stripped.

Step 6 is applied to every hypothesis whatever the model, including
deepspeech.pytorch, whose space is an ordinary label.  Its only effect there is
on leading/trailing spaces and on two space labels separated by a blank
(``" _ "`` decodes to two spaces).  Word error rate splits on whitespace and
``core.metrics.normalize_transcript`` collapses whitespace before any
character error rate is computed, so this step never changes WER or CER; it
only makes the stored transcripts tidy.

Everything up to the final string join is vectorised with numpy; the batch
function runs a single argmax over the whole (B, T, V) array.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

__all__ = ["greedy_decode", "greedy_decode_batch"]


def _validate_vocabulary(
    vocab_size: int,
    labels: Sequence[str],
    blank_index: int,
    word_delimiter: str | None,
    special_tokens: Collection[int],
) -> list[str]:
    """Check the label configuration and return the index -> output string table.

    A labels list whose length differs from the model's output dimension almost
    always means the wrong labels file was paired with the model, which would
    silently produce garbage transcripts, so it is rejected rather than
    tolerated.
    """
    if len(labels) != vocab_size:
        raise ValueError(
            f"scores have {vocab_size} classes but {len(labels)} labels were given"
        )
    if not 0 <= blank_index < vocab_size:
        raise ValueError(f"blank_index {blank_index} outside [0, {vocab_size})")
    for token in special_tokens:
        if not 0 <= int(token) < vocab_size:
            raise ValueError(f"special token {token} outside [0, {vocab_size})")
    table = [str(label) for label in labels]
    if word_delimiter is not None:
        if word_delimiter not in table:
            raise ValueError(f"word_delimiter {word_delimiter!r} is not one of the labels")
        table = [" " if label == word_delimiter else label for label in table]
    return table


def _resolve_lengths(lengths: Sequence[int] | np.ndarray | None, batch: int, frames: int) -> np.ndarray:
    """Turn ``lengths`` into a validated int array of shape (batch,).

    A length beyond the number of frames means the caller's length bookkeeping
    disagrees with the model output, so it is an error rather than clipped.
    """
    if lengths is None:
        return np.full(batch, frames, dtype=np.int64)
    out = np.asarray(lengths).reshape(-1)
    if out.shape[0] != batch:
        raise ValueError(f"got {out.shape[0]} lengths for a batch of {batch}")
    if out.size and not np.issubdtype(out.dtype, np.integer):
        rounded = np.rint(out)
        if not np.array_equal(rounded, out):
            raise ValueError(f"lengths must be whole numbers, got {out.tolist()}")
        out = rounded
    out = out.astype(np.int64)
    if np.any(out < 0) or np.any(out > frames):
        raise ValueError(f"lengths must lie in [0, {frames}], got {out.tolist()}")
    return out


def _decode(
    scores: np.ndarray,
    lengths: np.ndarray,
    table: list[str],
    blank_index: int,
    special_tokens: Collection[int],
) -> list[str]:
    """Decode a validated (B, T, V) array; see the module docstring for the steps."""
    batch, frames, _ = scores.shape
    if frames == 0:
        return [""] * batch
    ids = scores.argmax(axis=-1)  # (B, T)

    # A frame emits a token when it starts a new run and is neither blank,
    # special, nor past the utterance's valid length.  Comparing against the
    # previous frame *before* removing blanks is what lets "A _ A" keep both As.
    keep = np.ones(ids.shape, dtype=bool)
    keep[:, 1:] = ids[:, 1:] != ids[:, :-1]
    keep &= ids != blank_index
    if len(special_tokens):
        keep &= ~np.isin(ids, np.fromiter((int(t) for t in special_tokens), dtype=np.int64))
    keep &= np.arange(frames)[None, :] < lengths[:, None]

    texts = ["".join([table[i] for i in ids[b, keep[b]].tolist()]) for b in range(batch)]
    return [" ".join(text.split()) for text in texts]


def greedy_decode_batch(
    scores: np.ndarray,
    lengths: Sequence[int] | np.ndarray | None,
    labels: Sequence[str],
    blank_index: int,
    word_delimiter: str | None = None,
    special_tokens: Collection[int] = (),
) -> list[str]:
    """Greedy-decode a padded batch of CTC outputs.

    Args:
        scores: array of shape (B, T, V): probabilities, logits or log-probs.
        lengths: number of valid frames per item (B integers in [0, T]), or
            None to decode all T frames of every item.
        labels: the V output strings, indexed like the last axis of ``scores``.
        blank_index: index of the CTC blank.
        word_delimiter: label that stands for a space between words (``"|"``
            for wav2vec2), or None when the space is an ordinary label.
        special_tokens: indices dropped from the output after repeats are
            collapsed (e.g. wav2vec2's ``<s>``, ``</s>``, ``<unk>``).

    Returns:
        One transcript per batch item, whitespace-collapsed and stripped.

    Raises:
        ValueError: on a wrong shape, a labels list not matching V, an index
            out of range, an unknown ``word_delimiter`` or a bad length.
    """
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise ValueError(f"expected scores of shape (B, T, V), got {scores.shape}")
    batch, frames, vocab = scores.shape
    table = _validate_vocabulary(vocab, labels, blank_index, word_delimiter, special_tokens)
    resolved = _resolve_lengths(lengths, batch, frames)
    return _decode(scores, resolved, table, blank_index, special_tokens)


def greedy_decode(
    scores: np.ndarray,
    length: int | None,
    labels: Sequence[str],
    blank_index: int,
    word_delimiter: str | None = None,
    special_tokens: Collection[int] = (),
) -> str:
    """Greedy-decode one utterance.

    Args:
        scores: array of shape (T, V): probabilities, logits or log-probs.
        length: number of valid frames to decode (in [0, T]); None = all T.
        labels, blank_index, word_delimiter, special_tokens: as for
            :func:`greedy_decode_batch`.

    Returns:
        The transcript, whitespace-collapsed and stripped ("" when every kept
        frame is blank or special).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"expected scores of shape (T, V), got {scores.shape}")
    lengths = None if length is None else [length]
    return greedy_decode_batch(
        scores[None], lengths, labels, blank_index, word_delimiter, special_tokens
    )[0]
