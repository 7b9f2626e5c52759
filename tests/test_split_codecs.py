"""Split boundary codecs: exact round trips, error bounds, sizes, plain parameters, and corrupted input."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from split.codecs import CODECS, CodecError, Learned, codec_names, get_codec, measure
from split.codecs.base import Codec
from split.codecs.entropy import EOF_SYMBOL, Ans, Huffman, Raw, canonical_codes
from split.codecs.quantizers import Int8Linear, LowBit
from split.wire import params_from_proto, params_to_proto
from tests.split_helpers import CHANNELS, LATENT, boundary_example, make_split_pair

PLAIN = codec_names(Learned())


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_split_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return boundary_example(seed=3, frames=80)


def _recrc(params: dict, payload: bytes) -> dict:
    return {**params, "crc32": zlib.crc32(payload)}


@pytest.mark.parametrize("name", PLAIN)
def test_round_trip_shape_and_plain_params(name: str, x: np.ndarray) -> None:
    codec = get_codec(name)
    enc = codec.encode(x)
    y = codec.decode(enc.payload, enc.params, x.shape)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    # Parameters are plain numbers / lists that survive JSON and the protobuf fields unchanged.
    assert json.loads(json.dumps(enc.params)) == enc.params
    # ... exactly: float32 scales in float fields, clip bounds in double fields.
    assert params_from_proto(params_to_proto(enc.params)) == enc.params


def test_fp32_is_exact(x: np.ndarray) -> None:
    codec = get_codec("fp32")
    enc = codec.encode(x)
    assert np.array_equal(codec.decode(enc.payload, enc.params, x.shape), x)
    assert len(enc.payload) == 4 * x.size


@pytest.mark.parametrize("name", ["int8-huffman", "int8-zstd", "int8-lz4"])
def test_entropy_stages_are_lossless_over_int8(name: str, x: np.ndarray) -> None:
    """The entropy stage adds no error: the same tensor as plain int8."""
    plain, coded = get_codec("int8"), get_codec(name)
    a = plain.encode(x)
    b = coded.encode(x)
    assert np.array_equal(plain.decode(a.payload, a.params, x.shape), coded.decode(b.payload, b.params, x.shape))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_ans_is_lossless_over_lowbit_symbols_and_near_entropy(bits: int, x: np.ndarray) -> None:
    q = LowBit(bits)
    symbols, qparams = q.quantize(x)
    ans = Ans(1 << bits)
    payload, params = ans.pack(symbols)
    back = ans.unpack(payload, params, symbols.size, q.symbol_dtype)
    assert np.array_equal(back, symbols.ravel())
    counts = np.bincount(symbols.ravel(), minlength=1 << bits)
    p = counts[counts > 0] / counts.sum()
    entropy_bits = float(-(p * np.log2(p)).sum()) * symbols.size
    assert 8 * len(payload) <= entropy_bits + 64 + 0.02 * symbols.size  # a 32-bit word of slack + model rounding
    assert 8 * len(payload) < bits * symbols.size


def test_int8_error_bounds(x: np.ndarray) -> None:
    codec = get_codec("int8")
    enc = codec.encode(x)
    err = np.abs(codec.decode(enc.payload, enc.params, x.shape) - x)
    assert err.max() <= enc.params["scale"] / 2 * (1 + 1e-5)
    per_channel = get_codec("int8-channel")
    enc_c = per_channel.encode(x)
    err_c = np.abs(per_channel.decode(enc_c.payload, enc_c.params, x.shape) - x).reshape(-1, CHANNELS).max(axis=0)
    assert (err_c <= np.asarray(enc_c.params["scales"]) / 2 * (1 + 1e-5)).all()
    # Channels of very different ranges: per-channel scales lose less in total.
    assert np.sqrt((err_c ** 2).mean()) <= np.sqrt((err.reshape(-1, CHANNELS).max(axis=0) ** 2).mean())


def test_fp16_error_bound_and_saturation() -> None:
    codec = get_codec("fp16")
    x = np.array([[1.0, -3.25, 1e-3, 1e6, -1e6]], dtype=np.float32)
    enc = codec.encode(x)
    y = codec.decode(enc.payload, enc.params, x.shape)
    assert np.isfinite(y).all()
    assert np.allclose(y[0, :3], x[0, :3], rtol=2 ** -10)
    assert y[0, 3] == np.finfo(np.float16).max and y[0, 4] == -np.finfo(np.float16).max


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_lowbit_error_within_half_step_inside_clip_range(bits: int, x: np.ndarray) -> None:
    codec = get_codec(f"q{bits}-ans")
    enc = codec.encode(x)
    y = codec.decode(enc.payload, enc.params, x.shape)
    lo, hi = enc.params["lo"], enc.params["hi"]
    inside = (x >= lo) & (x <= hi)
    step = (hi - lo) / (1 << bits)
    assert inside.mean() > 0.9
    assert np.abs(y - x)[inside].max() <= step / 2 * (1 + 1e-4)


def test_huffman_table_is_canonical_and_compact(x: np.ndarray) -> None:
    enc = get_codec("int8-huffman").encode(x)
    syms, lengths = enc.params["symbols"], enc.params["code_lengths"]
    assert EOF_SYMBOL in syms and all(isinstance(s, int) for s in syms)
    assert len(syms) == len(set(syms)) <= 257
    table = canonical_codes(syms, lengths)
    codes = sorted((format(v, f"0{n}b") for n, v in table.values()), key=len)
    # Prefix-free: no code is the prefix of another.
    assert not any(b.startswith(a) for i, a in enumerate(codes) for b in codes[i + 1:])


def test_canonical_codes_refuse_bad_tables() -> None:
    with pytest.raises(CodecError, match="Kraft"):
        canonical_codes([1, 2, 3], [1, 1, 1])
    with pytest.raises(CodecError, match="twice"):
        canonical_codes([1, 1], [1, 1])
    with pytest.raises(CodecError, match="lengths"):
        canonical_codes([1], [0])


@pytest.mark.parametrize("name", PLAIN)
def test_flipped_byte_is_reported_as_corruption(name: str, x: np.ndarray) -> None:
    codec = get_codec(name)
    enc = codec.encode(x)
    bad = bytearray(enc.payload)
    bad[len(bad) // 2] ^= 0x5A
    with pytest.raises(CodecError, match="checksum"):
        codec.decode(bytes(bad), enc.params, x.shape)


@pytest.mark.parametrize("name", PLAIN)
def test_truncated_payload_with_matching_checksum_is_refused(name: str, x: np.ndarray) -> None:
    """Past the checksum (a sender that truncates and re-checksums): each decoder bounds its own input."""
    codec = get_codec(name)
    enc = codec.encode(x)
    short = enc.payload[: len(enc.payload) // 2]
    with pytest.raises(CodecError):
        codec.decode(short, _recrc(enc.params, short), x.shape)


@pytest.mark.parametrize("name", ["q4-ans", "q3-ans", "q2-ans"])
@pytest.mark.parametrize("cut", ["first word", "last word"])
def test_ans_payload_one_word_short_is_refused(name: str, cut: str, x: np.ndarray) -> None:
    """An ANS decoder reads past a short stream without failing; the end marker is what catches it."""
    codec = get_codec(name)
    enc = codec.encode(x)
    short = enc.payload[4:] if cut == "first word" else enc.payload[:-4]
    with pytest.raises(CodecError, match="ANS payload"):
        codec.decode(short, _recrc(enc.params, short), x.shape)


@pytest.mark.parametrize("name", PLAIN)
def test_shape_that_does_not_match_payload_is_refused(name: str, x: np.ndarray) -> None:
    codec = get_codec(name)
    enc = codec.encode(x)
    with pytest.raises(CodecError):
        codec.decode(enc.payload, enc.params, (1, x.shape[1] + 7, CHANNELS))


def test_bad_parameters_name_the_field(x: np.ndarray) -> None:
    int8 = get_codec("int8")
    enc = int8.encode(x)
    params = {k: v for k, v in enc.params.items() if k != "scale"}
    with pytest.raises(CodecError, match="'scale' is missing"):
        int8.decode(enc.payload, params, x.shape)
    with pytest.raises(CodecError, match="finite and positive"):
        int8.decode(enc.payload, {**enc.params, "scale": -1.0}, x.shape)
    with pytest.raises(CodecError, match="'crc32' is missing"):
        int8.decode(enc.payload, {"scale": 1.0}, x.shape)
    chan = get_codec("int8-channel")
    enc_c = chan.encode(x)
    with pytest.raises(CodecError, match="'scales' has 3 values"):
        chan.decode(enc_c.payload, {**enc_c.params, "scales": [1.0, 1.0, 1.0]}, x.shape)
    q4 = get_codec("q4-ans")
    enc_q = q4.encode(x)
    counts = list(enc_q.params["counts"])
    with pytest.raises(CodecError, match="sums to"):
        q4.decode(enc_q.payload, {**enc_q.params, "counts": [c + 1 for c in counts]}, x.shape)
    with pytest.raises(CodecError, match="'counts' has 3 entries"):
        q4.decode(enc_q.payload, {**enc_q.params, "counts": counts[:3]}, x.shape)
    with pytest.raises(CodecError, match="lo < hi"):
        q4.decode(enc_q.payload, {**enc_q.params, "lo": 1.0, "hi": 0.0}, x.shape)
    huff = get_codec("int8-huffman")
    enc_h = huff.encode(x)
    with pytest.raises(CodecError, match="outside -128..127"):
        huff.decode(enc_h.payload, {**enc_h.params, "symbols": [999] + enc_h.params["symbols"][1:]}, x.shape)


def test_hostile_payload_cannot_expand_past_the_shape() -> None:
    """A zstd bomb (tiny payload, huge content) is stopped at the size the shape allows."""
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(bytes(10_000_000))
    codec = get_codec("int8-zstd")
    with pytest.raises(CodecError, match="zstd"):
        codec.decode(bomb, {"scale": 1.0, "crc32": zlib.crc32(bomb)}, (1, 10, CHANNELS))


def test_unknown_codec_lists_known_ones() -> None:
    with pytest.raises(CodecError, match="unknown codec 'gzip9'.*int8-huffman"):
        get_codec("gzip9")
    with pytest.raises(CodecError, match="needs the autoencoder"):
        get_codec("ae-q4-ans")


def test_nan_input_is_refused_at_encode() -> None:
    x = boundary_example()
    x[0, 0, 0] = np.nan
    with pytest.raises(CodecError, match="NaN"):
        get_codec("int8").encode(x)


def test_measure_reports_sizes(x: np.ndarray) -> None:
    report, y = measure(get_codec("int8"), x)
    assert report["payload_bytes"] == x.size and report["bits_per_element"] == 8.0
    assert report["ratio_vs_fp32"] == 4.0 and y.shape == x.shape
    lossy, _ = measure(get_codec("q2-ans"), x)
    assert lossy["bits_per_element"] < 2.0 and lossy["rmse"] > 0


def test_autoencoder_codecs_round_trip(pair: Path, x: np.ndarray) -> None:
    for name in [n for n, s in CODECS.items() if s.needs == "autoencoder"]:
        codec = get_codec(name, pair)
        enc = codec.encode(x)
        y = codec.decode(enc.payload, enc.params, x.shape)
        assert y.shape == x.shape
        # The latent holds LATENT of CHANNELS channels: at most a third of fp32's bytes, less once quantised.
        latent_fp32 = 4 * x.size * LATENT // CHANNELS
        assert len(enc.payload) == latent_fp32 if name == "ae" else len(enc.payload) < latent_fp32
    fp = get_codec("ae", pair)
    enc = fp.encode(x)
    # fp32 latent decodes to exactly the autoencoder's own reconstruction (nothing lost on the wire).
    reconstruction = fp.transform.inverse(fp.transform.forward(x), CHANNELS)
    assert np.allclose(fp.decode(enc.payload, enc.params, x.shape), reconstruction)


def test_autoencoder_half_missing_is_a_clear_error(pair: Path, tmp_path: Path, x: np.ndarray) -> None:
    (tmp_path / "ae_encoder.onnx").write_bytes((pair / "ae_encoder.onnx").read_bytes())
    codec = get_codec("ae", tmp_path)
    enc = codec.encode(x)
    with pytest.raises(CodecError, match="no ae_decoder.onnx"):
        codec.decode(enc.payload, enc.params, x.shape)


def _ae_dir(pair: Path, out: Path, source_sha: str | None, decoder_sha: str | None = None) -> Path:
    """The pair's AE halves in `out`, with cards naming autoencoder.pth digests as an export writes them."""
    import dataclasses

    from core.card import read_card, write_card
    from core.model_card import Source

    out.mkdir()
    for half, sha in (("ae_encoder", source_sha), ("ae_decoder", decoder_sha or source_sha)):
        (out / f"{half}.onnx").write_bytes((pair / f"{half}.onnx").read_bytes())
        if sha is not None:
            card = dataclasses.replace(read_card(pair / "head.card.json"), onnx=f"{half}.onnx",
                                       source=Source(path="autoencoder.pth", sha256=sha, format="test"))
            write_card(card, out / f"{half}.card.json")
    return out


def test_autoencoders_from_different_checkpoints_refuse_each_other(pair: Path, tmp_path: Path,
                                                                   x: np.ndarray) -> None:
    edge = get_codec("ae-q4-ans", _ae_dir(pair, tmp_path / "a", "a" * 64))
    same = get_codec("ae-q4-ans", _ae_dir(pair, tmp_path / "a2", "a" * 64))
    other = get_codec("ae-q4-ans", _ae_dir(pair, tmp_path / "b", "b" * 64))
    enc = edge.encode(x)
    assert enc.params["transform_crc"] == zlib.crc32(b"a" * 64)
    assert same.decode(enc.payload, enc.params, x.shape).shape == x.shape
    with pytest.raises(CodecError, match="different autoencoders"):
        other.decode(enc.payload, enc.params, x.shape)
    # A bare ONNX pair (no cards) cannot tell: it sends no fingerprint and accepts a payload without one.
    bare = get_codec("ae-q4-ans", _ae_dir(pair, tmp_path / "bare", None))
    plain = bare.encode(x)
    assert "transform_crc" not in plain.params
    assert other.decode(plain.payload, plain.params, x.shape).shape == x.shape
    with pytest.raises(ValueError, match="different autoencoder.pth"):
        get_codec("ae", _ae_dir(pair, tmp_path / "mixed", "a" * 64, "b" * 64))


def test_quantiser_and_stage_units() -> None:
    """Edge cases: an all-zero tensor keeps a positive scale; a raw stage checks its byte count."""
    q = Int8Linear()
    symbols, params = q.quantize(np.zeros((2, 3), np.float32))
    assert params["scale"] > 0 and not symbols.any()
    with pytest.raises(CodecError, match="expected 6"):
        Raw().unpack(b"\0" * 5, {}, 6, np.dtype("i1"))
    codec = Codec("t", q, Huffman((-128, 127)))
    enc = codec.encode(np.full((1, 4, 3), 2.0, np.float32))
    assert np.allclose(codec.decode(enc.payload, enc.params, (1, 4, 3)), 2.0)


def test_codecs_cli_lists_and_measures(pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main
    from tests.split_helpers import make_dataset

    assert main(["codecs"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in CODECS) and "needs the autoencoder in --autoencoder DIR" in listed
    ds = make_dataset(tmp_path / "ds", count=3)
    out = tmp_path / "results"
    assert main(["codecs", "--head", str(pair / "head.onnx"), "--tail", str(pair / "tail.onnx"), "--autoencoder",
                 str(pair), "--dataset", str(ds), "--codecs", "fp32,int8-huffman,q2-ans,ae-q4-ans", "--out", str(out),
                 "--no-progress"]) == 0
    rows = {r["codec"]: r for r in json.loads((out / "split_codecs.json").read_text())["rows"]}
    assert set(rows) == {"fp32", "int8-huffman", "q2-ans", "ae-q4-ans"}
    # fp32 is the unsplit model: same transcripts, no WER change; wire bits include the parameter fields.
    assert rows["fp32"]["delta_wer_points"] == 0 and rows["fp32"]["same_transcripts"] == 1.0
    assert rows["fp32"]["bits_per_element"] == 32.0 and rows["fp32"]["wire_bits_per_element"] > 32.0
    assert rows["q2-ans"]["bits_per_element"] < 2.0 < rows["int8-huffman"]["bits_per_element"]
    assert (out / "split_codecs.png").stat().st_size > 0 and "| q2-ans |" in (out / "split_codecs.md").read_text()
    assert main(["codecs", "--head", str(pair / "head.onnx")]) == 2
    assert "--head needs --dataset" in capsys.readouterr().err


@pytest.mark.parametrize("name", PLAIN)
def test_fuzzed_parameters_and_payloads_only_raise_codec_errors(name: str) -> None:
    """A sender that keeps the checksum right but lies in every other way: decode either returns a finite
    tensor of the right shape or raises CodecError, never anything else (the server maps that to
    INVALID_ARGUMENT)."""
    import random

    rng = random.Random(name)
    x = boundary_example(frames=20)
    codec = get_codec(name)
    enc = codec.encode(x)
    extremes = [0, -1, 1, 2 ** 31, -2 ** 31, 2 ** 40, 3e38, -3e38, 1e30, float("nan"), float("inf"), 0.5, 256, 65536]
    for _ in range(60):
        params = {k: (list(v) if isinstance(v, list) else v) for k, v in enc.params.items()}
        payload = bytearray(enc.payload)
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            keys = [k for k in params if k != "crc32"]
            if r < 0.4 and keys:
                k = rng.choice(keys)
                if isinstance(params[k], list) and params[k]:
                    params[k][rng.randrange(len(params[k]))] = rng.choice(extremes)
                else:
                    params[k] = rng.choice(extremes)
            elif r < 0.7 and payload:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            elif r < 0.85:
                del payload[rng.randrange(len(payload) + 1):]
            else:
                payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        params["crc32"] = zlib.crc32(bytes(payload))
        try:
            y = codec.decode(bytes(payload), params, x.shape)
        except CodecError:
            continue
        assert y.shape == x.shape and np.isfinite(y).all()
