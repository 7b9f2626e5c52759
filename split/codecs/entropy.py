"""Entropy stages: symbol array -> bytes (+ parameters) and back, each bounded by the expected count.

- `Raw`: the symbols' little-endian bytes; the payload size must equal count x itemsize.
- `Huffman`: dahuffman's Huffman code over the integer symbols. The table travels as two integer lists
  (symbols and code lengths; codes are rebuilt canonically from the lengths on both sides), never as a
  pickled object as dahuffman's own `save` would do.
- `Zstd`, `Lz4`: general-purpose compressors over the symbol bytes, decompressed with the expected size
  as the hard output limit (a decompression bomb stops there).
- `Ans`: constriction's ANS coder with a categorical model whose symbol counts travel as parameters;
  within a fraction of a bit of the histogram's entropy, where Huffman needs >= 1 bit per symbol.

An ANS decoder reading past the end of its stream does not fail, it decodes noise; so every ANS stream here
ends in a 32-bit marker (two uniform 16-bit symbols, decoded after the data), and a truncated or padded
payload is refused instead of decoded.
"""
from __future__ import annotations

import itertools
from typing import Any

import constriction
import lz4.block
import numpy as np
import zstandard
from dahuffman import HuffmanCodec

from split.codecs.base import CodecError, require

# Longest Huffman code we accept from the wire (a 2^16-symbol alphabet never needs more; a hostile table
# with absurd lengths would otherwise make the canonical code build huge integers).
MAX_CODE_LENGTH = 48
# The end-of-stream symbol dahuffman needs to pad the last byte; outside every symbol alphabet used here.
EOF_SYMBOL = 1 << 16


def _expected_bytes(count: int, dtype: np.dtype) -> int:
    return count * np.dtype(dtype).itemsize


class Raw:
    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        return np.ascontiguousarray(symbols).tobytes(), {}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        expected = _expected_bytes(count, dtype)
        if len(payload) != expected:
            raise CodecError(f"payload is {len(payload)} bytes, expected {expected} ({count} values of {dtype.name})")
        return np.frombuffer(payload, dtype=dtype)


def canonical_codes(symbols: list[int], lengths: list[int]) -> dict[int, tuple[int, int]]:
    """Canonical prefix code {symbol: (length, value)} from code lengths (refused if not a prefix code)."""
    if len(symbols) != len(lengths):
        raise CodecError(f"Huffman table has {len(symbols)} symbols but {len(lengths)} code lengths")
    if len(set(symbols)) != len(symbols):
        raise CodecError("Huffman table lists a symbol twice")
    if any(not 1 <= n <= MAX_CODE_LENGTH for n in lengths):
        raise CodecError(f"Huffman code lengths must be 1..{MAX_CODE_LENGTH}")
    # Kraft's inequality: the lengths admit a prefix code iff sum 2^-len <= 1.
    if sum(1 << (MAX_CODE_LENGTH - n) for n in lengths) > 1 << MAX_CODE_LENGTH:
        raise CodecError("Huffman code lengths violate Kraft's inequality (not a prefix code)")
    table: dict[int, tuple[int, int]] = {}
    code, prev = 0, 0
    for length, symbol in sorted(zip(lengths, symbols)):
        code <<= length - prev
        table[symbol] = (length, code)
        code += 1
        prev = length
    return table


class Huffman:
    def __init__(self, alphabet: tuple[int, int]) -> None:
        self.alphabet = alphabet  # inclusive symbol range, e.g. (-128, 127) for int8

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        values, counts = np.unique(symbols, return_counts=True)
        freqs = {int(v): int(c) for v, c in zip(values, counts)}
        lengths = {s: n for s, (n, _) in HuffmanCodec.from_frequencies(freqs, eof=EOF_SYMBOL).get_code_table().items()}
        syms = sorted(lengths)
        table = canonical_codes(syms, [lengths[s] for s in syms])
        payload = HuffmanCodec(table, check=False, eof=EOF_SYMBOL).encode(symbols.ravel().tolist())
        return payload, {"symbols": syms, "code_lengths": [lengths[s] for s in syms]}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        syms = require(params, "symbols", int)
        lengths = require(params, "code_lengths", int)
        if not isinstance(syms, list) or not isinstance(lengths, list):
            raise CodecError("Huffman parameters 'symbols' and 'code_lengths' must be lists")
        lo, hi = self.alphabet
        bad = [s for s in syms if s != EOF_SYMBOL and not lo <= s <= hi]
        if bad:
            raise CodecError(f"Huffman table symbol {bad[0]} is outside {lo}..{hi}")
        if EOF_SYMBOL not in syms:
            raise CodecError("Huffman table has no end-of-stream symbol")
        codec = HuffmanCodec(canonical_codes(syms, lengths), check=False, eof=EOF_SYMBOL)
        # Never decode more than count + 1 symbols, whatever the payload holds.
        decoded = list(itertools.islice(codec.decode_streaming(payload), count + 1))
        if len(decoded) != count:
            raise CodecError(f"Huffman payload decodes to {'more than ' if len(decoded) > count else ''}"
                             f"{min(len(decoded), count)} values, expected {count} (corrupted or wrong shape)")
        return np.asarray(decoded, dtype=dtype)


class Zstd:
    def __init__(self, level: int = 3) -> None:
        self.level = level

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        return zstandard.ZstdCompressor(level=self.level).compress(np.ascontiguousarray(symbols).tobytes()), {}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        expected = _expected_bytes(count, dtype)
        try:
            raw = zstandard.ZstdDecompressor().decompress(payload, max_output_size=expected)
        except zstandard.ZstdError as exc:
            raise CodecError(f"zstd payload does not decompress: {exc}") from None
        if len(raw) != expected:
            raise CodecError(f"zstd payload holds {len(raw)} bytes, expected {expected} ({count} values)")
        return np.frombuffer(raw, dtype=dtype)


class Lz4:
    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        # Block format without the size prefix: the receiver knows the size from the shape.
        return lz4.block.compress(np.ascontiguousarray(symbols).tobytes(), store_size=False), {}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        expected = _expected_bytes(count, dtype)
        if expected == 0:
            return np.zeros(0, dtype=dtype)
        try:
            raw = lz4.block.decompress(payload, uncompressed_size=expected)
        except lz4.block.LZ4BlockError as exc:
            raise CodecError(f"lz4 payload does not decompress: {exc}") from None
        if len(raw) != expected:
            raise CodecError(f"lz4 payload holds {len(raw)} bytes, expected {expected} ({count} values)")
        return np.frombuffer(raw, dtype=dtype)


ANS_END_MARKER = np.array([0x5350, 0x4B4C], dtype=np.int32)
_MARKER_MODEL = constriction.stream.model.Uniform(1 << 16)


def ans_encoder() -> Any:
    """An AnsCoder holding only the end marker (a stack: the marker is decoded after everything encoded later)."""
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(ANS_END_MARKER, _MARKER_MODEL)
    return coder


def ans_payload(coder: Any) -> bytes:
    """The coder's stream as payload bytes (little-endian 32-bit words)."""
    return coder.get_compressed().astype("<u4").tobytes()


def ans_decoder(payload: bytes) -> Any:
    """An AnsCoder over a payload of `ans_payload`'s form, refused unless it is whole 32-bit words."""
    if len(payload) % 4:
        raise CodecError(f"ANS payload is {len(payload)} bytes, not a whole number of 32-bit words")
    return constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))


def ans_check_end_marker(coder: Any) -> None:
    """After the data: the marker must come next and then nothing."""
    try:
        marker = coder.decode(_MARKER_MODEL, 2)
    except Exception as exc:  # constriction raises plain exceptions on an invalid stream
        raise CodecError(f"ANS payload does not decode: {exc}") from None
    if not np.array_equal(marker, ANS_END_MARKER):
        raise CodecError("ANS payload does not end where the shape says (truncated, padded or wrong shape)")
    if not coder.is_empty():
        raise CodecError("ANS payload holds more data than the shape needs (corrupted or wrong shape)")


class Ans:
    """ANS over an alphabet of `levels` unsigned symbols with an empirical (transmitted) histogram."""

    def __init__(self, levels: int) -> None:
        self.levels = levels

    def _model(self, counts: np.ndarray) -> Any:
        return constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)

    def pack(self, symbols: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        flat = symbols.ravel().astype(np.int32)
        counts = np.bincount(flat, minlength=self.levels)
        if flat.size == 0:
            return b"", {"counts": counts.tolist()}
        coder = ans_encoder()
        coder.encode_reverse(flat, self._model(counts))
        return ans_payload(coder), {"counts": counts.tolist()}

    def unpack(self, payload: bytes, params: dict[str, Any], count: int, dtype: np.dtype) -> np.ndarray:
        counts = np.asarray(require(params, "counts", int), dtype=np.int64)
        if counts.size != self.levels:
            raise CodecError(f"codec parameter 'counts' has {counts.size} entries, expected {self.levels}")
        if (counts < 0).any():
            raise CodecError("codec parameter 'counts' holds a negative count")
        if int(counts.sum()) != count:
            raise CodecError(f"codec parameter 'counts' sums to {int(counts.sum())}, the shape holds {count} values")
        if count == 0:
            return np.zeros(0, dtype=dtype)
        coder = ans_decoder(payload)
        try:
            out = coder.decode(self._model(counts), count)
        except Exception as exc:  # constriction raises plain exceptions on an exhausted or invalid stream
            raise CodecError(f"ANS payload does not decode: {exc}") from None
        ans_check_end_marker(coder)
        return np.asarray(out).astype(dtype)
