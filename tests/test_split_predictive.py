"""klt-lp codecs (split/codecs/predictive.py): the same symbols as klt-ans, predicted Laplace means, fewer bits
on slowly moving frames; exact round trips; the predictor's place in klt.json and its refusals."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from split.codecs import CodecError, Learned, codec_names, get_codec, measure
from split.codecs.klt import KLT_FILE, fit_klt, load_klt, with_predictors
from split.codecs.predictive import ORDER, PredictiveLaplaceAns, Predictor, history_rows


def _slow(frames: int, channels: int = 8, seed: int = 0) -> np.ndarray:
    """Frames of a slowly moving (AR(1)) process, mixed over the channels."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((channels, channels))
    z = np.zeros((frames, channels))
    for t in range(1, frames):
        z[t] = 0.9 * z[t - 1] + rng.standard_normal(channels) * np.linspace(2, 0.2, channels)
    return (z @ mix).astype(np.float32)


@pytest.fixture(scope="module")
def lp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lp")
    train = [_slow(120, seed=s) for s in range(8)]
    fit = fit_klt(np.concatenate(train), relative_step=0.05)
    with_predictors(fit, train).save(d / KLT_FILE)
    return d


def test_same_symbols_as_klt_ans_fewer_bits(lp_dir: Path) -> None:
    learned = Learned.from_dir(lp_dir)
    assert {"klt-lp-2x", "klt-lp-3x"} <= set(codec_names(learned))
    assert "klt-lp-3x-pf" not in codec_names(learned)  # no post-filter trained here
    assert set(learned.klt.predictors) == {"2x", "3x", "4x"}
    x = _slow(200, seed=42)[None]
    lp, ans = get_codec("klt-lp-2x", learned), get_codec("klt-ans-2x", learned)
    e_lp, e_ans = lp.encode(x), ans.encode(x)
    assert set(e_lp.params) == {"scale", "transform_crc", "crc32"}
    # Lossless against klt-ans: the decoded tensors are identical; only the entropy model differs.
    assert np.array_equal(lp.decode(e_lp.payload, e_lp.params, x.shape), ans.decode(e_ans.payload, e_ans.params, x.shape))
    r_lp, _ = measure(lp, x)
    r_ans, _ = measure(ans, x)
    assert r_lp["bits_per_element"] < 0.9 * r_ans["bits_per_element"]


def test_batches_and_empty_tensors_round_trip(lp_dir: Path) -> None:
    codec = get_codec("klt-lp-3x", lp_dir)
    quantizer, transform = codec.quantizer, codec.transform
    x = np.stack([_slow(50, seed=7), _slow(50, seed=8)])
    enc = codec.encode(x)
    y = codec.decode(enc.payload, enc.params, x.shape)
    q, params = quantizer.quantize(transform.forward(x))
    assert np.array_equal(y, transform.inverse(quantizer.dequantize(q, params, q.shape), 8))
    empty = np.zeros((1, 0, 8), np.float32)
    e = codec.encode(empty)
    assert codec.decode(e.payload, e.params, empty.shape).shape == empty.shape


def test_integer_prediction_is_the_same_frame_by_frame_as_all_at_once(lp_dir: Path) -> None:
    """The encoder predicts every frame in one product, the decoder one frame at a time: exact integers."""
    pred = load_klt(lp_dir / KLT_FILE).predictors["3x"]
    rng = np.random.default_rng(0)
    q = rng.integers(-40, 40, size=(30, pred.channels))
    rows = history_rows(q)
    all_at_once = pred.means(rows)
    one_by_one = np.vstack([pred.means(rows[t:t + 1]) for t in range(len(q))])
    assert np.array_equal(all_at_once, one_by_one)
    assert np.array_equal(rows[0], np.zeros(ORDER * pred.channels)) and np.array_equal(rows[2, :pred.channels], q[1])


def test_bad_payloads_are_refused(lp_dir: Path) -> None:
    codec = get_codec("klt-lp-3x", lp_dir)
    x = _slow(40, seed=3)[None]
    enc = codec.encode(x)
    short = enc.payload[:-4]
    params = dict(enc.params, crc32=zlib.crc32(short))
    with pytest.raises(CodecError):
        codec.decode(short, params, x.shape)
    with pytest.raises(CodecError, match="whole frames"):
        PredictiveLaplaceAns(load_klt(lp_dir / KLT_FILE).predictors["3x"], 2047).unpack(enc.payload, {}, 13, np.int16)


def test_predictors_in_klt_json_are_checked(lp_dir: Path, tmp_path: Path) -> None:
    doc = json.loads((lp_dir / KLT_FILE).read_text())
    assert load_klt(lp_dir / KLT_FILE).predictors["2x"].matrix.dtype == np.int64
    for bad, match in ((lambda d: d["predictors"]["3x"].update(order=3), "order"),
                       (lambda d: d["predictors"]["3x"].update(scales=[1.0]), "scales"),
                       (lambda d: d["predictors"]["3x"]["matrix"][0].__setitem__(0, 0.5), "integers"),
                       (lambda d: d["predictors"]["3x"].update(scales=[0.0] * 8), "positive"),
                       (lambda d: d.update(predictors=[1]), "object")):
        broken = json.loads(json.dumps(doc))
        bad(broken)
        path = tmp_path / KLT_FILE
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=match):
            load_klt(path)


def test_a_fit_without_predictors_serves_no_lp_codec(tmp_path: Path) -> None:
    fit_klt(_slow(100), relative_step=0.05).save(tmp_path / KLT_FILE)
    learned = Learned.from_dir(tmp_path)
    assert "klt-ans-2x" in codec_names(learned) and not [n for n in codec_names(learned) if n.startswith("klt-lp")]
    with pytest.raises(CodecError, match="predictor for 3x"):
        get_codec("klt-lp-3x", learned)


def test_predictor_json_round_trip() -> None:
    p = Predictor(np.arange((ORDER * 2 + 1) * 2, dtype=np.int64).reshape(ORDER * 2 + 1, 2) - 3, np.array([0.5, 0.25]))
    doc = json.loads(json.dumps(p.to_json()))
    back = Predictor.from_json(doc, 2, "x")
    assert np.array_equal(back.matrix, p.matrix) and np.array_equal(back.scales, p.scales)
    with pytest.raises(ValueError, match="expected"):
        Predictor.from_json(doc, 3, "x")
