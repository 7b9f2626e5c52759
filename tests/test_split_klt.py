"""The KLT transform codec (split/codecs/klt.py): the fit, its file, exact symbol round trips, and refusals."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from split.codecs import CodecError, Learned, codec_names, get_codec, measure
from split.codecs.klt import KLT_FILE, fit_klt, load_klt


def _correlated(frames: int = 400, channels: int = 12, rank: int = 3, seed: int = 0) -> np.ndarray:
    """Frames that live near one fixed `rank`-dimensional subspace (`seed` draws other frames in it)."""
    fixed = np.random.default_rng(1234)
    basis, offset = fixed.standard_normal((rank, channels)), fixed.uniform(-3, 3, channels)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames, rank)) @ basis * 5 + 0.05 * rng.standard_normal((frames, channels))
    return (x + offset).astype(np.float32)


@pytest.fixture()
def klt_dir(tmp_path: Path) -> Path:
    fit_klt(_correlated(), relative_step=0.05).save(tmp_path / KLT_FILE)
    return tmp_path


def test_fit_is_an_invertible_decorrelating_rotation() -> None:
    x = _correlated().astype(np.float64)
    fit = fit_klt(x, relative_step=0.05)
    assert np.allclose(fit.forward @ fit.inverse, np.eye(12), atol=1e-8)
    z = (x - fit.mean) @ fit.forward
    cov = np.cov(z.T)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-6 * cov.max())
    # Components come strongest first; three carry nearly all the energy.
    var = np.diag(cov)
    assert (np.diff(var) <= 1e-9).all() and var[:3].sum() > 0.999 * var.sum()
    assert fit.step == pytest.approx(0.05 * z[:, 0].std(), rel=1e-6) and fit.weighting == "none"


def test_fisher_weighting_gives_no_bits_to_what_the_tail_ignores() -> None:
    """Channel 0 is loud but the 'Tail' does not look at it; channel 1 is quiet but all that matters."""
    rng = np.random.default_rng(1)
    x = np.stack([100 * rng.standard_normal(500), rng.standard_normal(500)], axis=1)
    plain = fit_klt(x, relative_step=0.1)
    weighted = fit_klt(x, relative_step=0.1, fisher=np.diag([1e-9, 1.0]))
    assert abs(plain.forward[0, 0]) > 0.99  # plain: the loud channel is the first component
    assert abs(weighted.forward[1, 0]) > abs(weighted.forward[0, 0]) and weighted.weighting == "fisher"
    # The weighted step is fine enough for channel 1 and leaves channel 0 to round away.
    z = (x - weighted.mean) @ weighted.forward
    back = np.rint(z / weighted.step) * weighted.step @ weighted.inverse + weighted.mean
    assert np.abs(back[:, 1] - x[:, 1]).max() < 0.2 < np.abs(back[:, 0] - x[:, 0]).max()


def test_codec_round_trip_and_size(klt_dir: Path) -> None:
    x = _correlated(frames=60, seed=5)[None]
    learned = Learned.from_dir(klt_dir)
    assert learned.autoencoder is None and learned.klt is not None
    assert {"klt-ans", "klt-ans-2x", "klt-ans-4x"} <= set(codec_names(learned)) and "ae" not in codec_names(learned)
    fit = learned.klt
    for name, coarse in (("klt-ans", 1.0), ("klt-ans-2x", 2.0)):
        codec = get_codec(name, klt_dir)
        enc = codec.encode(x)
        assert set(enc.params) == {"scale", "transform_crc", "crc32"} and enc.params["transform_crc"] == fit.crc
        y = codec.decode(enc.payload, enc.params, x.shape)
        assert y.shape == x.shape and y.dtype == np.float32
        # Exactly the transform's dequantised symbols: the error is the rounding in the rotated space, each
        # nonzero symbol decoded to its Laplace bin mean (offset from the bin centre towards zero).
        z = (x[0].astype(np.float64) - fit.mean) @ fit.forward
        step = fit.step * coarse
        q = np.rint(z / step)
        b = np.maximum(fit.scales / step, 0.15)
        offset = b - 1 / np.expm1(1 / b) - 0.5
        assert (offset <= 0).all() and (offset > -0.5).all()
        expect = (q + np.sign(q) * offset) * step @ fit.inverse + fit.mean
        assert np.allclose(y[0], expect, atol=1e-3)
    r1, _ = measure(get_codec("klt-ans", klt_dir), x)
    r2, _ = measure(get_codec("klt-ans-2x", klt_dir), x)
    q4, _ = measure(get_codec("q4-ans"), x)
    # Near-rank-3 frames: far fewer bits than a per-value 4-bit code, and coarser is smaller.
    assert r2["bits_per_element"] < r1["bits_per_element"] < q4["bits_per_element"]


def test_bin_means_decode_closer_than_bin_centres() -> None:
    """Independent Laplace channels, some weak against the step: decoding to the bin mean lowers the error."""
    rng = np.random.default_rng(3)
    x = rng.laplace(size=(4000, 4)) * np.array([8.0, 1.0, 0.5, 0.25])
    fit = fit_klt(x, relative_step=0.25)
    codec = get_codec("klt-ans-2x", Learned(klt=fit))
    enc = codec.encode(x[None].astype(np.float32))
    y = codec.decode(enc.payload, enc.params, (1, *x.shape))[0]
    z = (x - fit.mean) @ fit.forward
    step = codec.quantizer.step
    centres = np.rint(z / step) * step @ fit.inverse + fit.mean
    assert np.mean((y - x) ** 2) < 0.95 * np.mean((centres - x) ** 2)


def test_decoder_refuses_another_fit_a_wrong_step_and_bad_payloads(klt_dir: Path, tmp_path: Path) -> None:
    x = _correlated(frames=30, seed=2)[None]
    codec = get_codec("klt-ans", klt_dir)
    enc = codec.encode(x)
    other = tmp_path / "other"
    other.mkdir()
    fit_klt(_correlated(seed=9), relative_step=0.04).save(other / KLT_FILE)
    with pytest.raises(CodecError, match="different KLT fits"):
        get_codec("klt-ans", other).decode(enc.payload, enc.params, x.shape)
    with pytest.raises(CodecError, match="'scale'"):
        codec.decode(enc.payload, {**enc.params, "scale": enc.params["scale"] * 2}, x.shape)
    truncated = enc.payload[: len(enc.payload) // 2]
    with pytest.raises(CodecError, match="ANS payload"):
        codec.decode(truncated, {**enc.params, "crc32": zlib.crc32(truncated)}, x.shape)
    padded = enc.payload + enc.payload[:8]
    with pytest.raises(CodecError, match="ANS payload"):
        codec.decode(padded, {**enc.params, "crc32": zlib.crc32(padded)}, x.shape)
    with pytest.raises(CodecError, match="ANS payload"):  # more frames than were sent
        codec.decode(enc.payload, enc.params, (1, 40, 12))
    with pytest.raises(CodecError, match="channels"):
        codec.decode(enc.payload, enc.params, (1, 30, 11))
    with pytest.raises(CodecError, match="channels"):
        codec.encode(x[..., :5])


def test_klt_file_is_checked_field_by_field(klt_dir: Path, tmp_path: Path) -> None:
    good = json.loads((klt_dir / KLT_FILE).read_text())
    cases = {"format": ({**good, "format": "pickle"}, "not a KLT fit"),
             "version": ({**good, "version": 7}, "version 7"),
             "shape": ({**good, "mean": good["mean"][:-1]}, "'mean' has shape"),
             "nan": ({**good, "inverse": [[float("nan")] * 12] * 12}, "'inverse' holds NaN"),
             "step": ({**good, "step": 0}, "'step' must be a positive number")}
    for name, (doc, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=message):
            load_klt(path)
    (tmp_path / "junk.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_klt(tmp_path / "junk.json")
    with pytest.raises(FileNotFoundError, match="split fit-klt"):
        load_klt(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match="needs the klt"):
        get_codec("klt-ans", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="learned codec folder not found"):
        get_codec("klt-ans", tmp_path / "nowhere")


def test_fit_klt_cli_plain(tmp_path: Path) -> None:
    from split.__main__ import main
    from tests.split_helpers import make_dataset, make_split_pair

    pair = make_split_pair(tmp_path / "pair", autoencoder=False)
    ds = make_dataset(tmp_path / "ds", count=6)
    assert main(["fit-klt", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--out",
                 str(pair / KLT_FILE), "--no-progress"]) == 0
    fit = load_klt(pair / KLT_FILE)
    assert fit.weighting == "none" and fit.meta["utterances"] == 6 and fit.channels == 12
    codec = get_codec("klt-ans", pair)
    x = np.zeros((1, 5, 12), np.float32)
    assert codec.decode(*(lambda e: (e.payload, e.params))(codec.encode(x)), x.shape).shape == x.shape
    assert main(["fit-klt", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--out",
                 str(tmp_path / "k.json"), "--relative-step", "0"]) == 2


def test_frame_normalisation_codes_what_a_layer_norm_tail_sees(tmp_path: Path) -> None:
    """Frames that differ only in shift and scale code to the same symbols; the decoded frames are the
    standardised ones, which a LayerNorm maps to the same output."""
    from split.codecs.klt import standardize_frames

    x = _correlated(frames=300)
    fit = fit_klt(x, relative_step=0.05, frame_normalize=True)
    fit = fit.save(tmp_path / KLT_FILE)
    assert load_klt(tmp_path / KLT_FILE).frame_normalize
    codec = get_codec("klt-ans", tmp_path)
    frames = x[None, :40]
    moved = frames * np.linspace(0.5, 3, 40, dtype=np.float32)[None, :, None] + 7
    a, b = codec.encode(frames), codec.encode(moved)
    assert a.payload == b.payload
    y = codec.decode(a.payload, a.params, frames.shape)
    target = standardize_frames(frames.astype(np.float64))
    assert np.abs(y - target).max() < 0.5 and np.abs(y - target).mean() < np.abs(y - frames).mean()


def test_layer_norm_tail_is_detected_from_the_graph(tmp_path: Path) -> None:
    import torch

    from split.fit_klt_cmd import opens_with_layer_norm

    class LnTail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm, self.out = torch.nn.LayerNorm(6), torch.nn.Linear(6, 3)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.out(self.norm(features))

    class SkipTail(LnTail):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.out(self.norm(features) + features)  # sees the raw frame too

    for cls, expected in ((LnTail, True), (SkipTail, False)):
        path = tmp_path / f"{cls.__name__}.onnx"
        torch.onnx.export(cls().eval(), (torch.randn(1, 5, 6),), str(path), input_names=["features"],
                          output_names=["logits"], opset_version=17, dynamo=False)
        assert opens_with_layer_norm(path, "features") is expected


def test_laplace_tables_are_exact_and_the_same_on_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # Edge and cloud build the ANS tables apart: a last-bit difference (a SIMD exp on one CPU, libm's on the
    # other) could change constriction's quantised table and make the cloud decode garbage.
    import hashlib
    import math

    from split.codecs.klt import LIMIT, _exp_basic, laplace_pmf

    for b in (0.15, 0.7049418757576238, 17.5):
        pmf = laplace_pmf(b)
        k = np.arange(-LIMIT, LIMIT + 1)
        exact = np.where(k == 0, 1 - np.exp(-0.5 / b), np.exp(-(np.abs(k) - 0.5) / b) * -np.expm1(-1 / b) / 2)
        assert np.array_equal(pmf, pmf[::-1])  # both tails alike: no 1 - tail rounding on the right
        assert abs(pmf.sum() - 1) < 1e-12 and np.allclose(pmf, exact, rtol=1e-10, atol=1e-300)
    for x in (-6.7, -1.0, -1e-3, 0.0):
        assert abs(_exp_basic(x) - math.exp(x)) <= 1e-13 * math.exp(x)
    # from + - * / alone (IEEE rounds those alike everywhere): no library exp is called ...
    monkeypatch.setattr(np, "exp", None)
    monkeypatch.setattr(math, "exp", None)
    digests = {b: hashlib.sha256(laplace_pmf(b).tobytes()).hexdigest()[:16] for b in (0.15, 0.7049418757576238, 17.5)}
    # ... so the tables are these bits on any CPU (a change here breaks decoding between old and new versions)
    assert digests == {0.15: "e61b48a76f2e331d", 0.7049418757576238: "185861ad2d6f8d1b", 17.5: "28200b187890cb67"}
