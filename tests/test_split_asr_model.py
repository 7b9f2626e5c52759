"""The split ASR network and its checkpoints: the original's parameter names, its forward (with the
batch_first quirk) against a functional reference written from the GRU equations, shape inference and
the errors for wrong files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
from families.split_asr.checkpoint import CheckpointError, load_autoencoder, load_model
from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel, output_frames

TINY = SplitASRConfig(n_cnn_layers=1, n_rnn_layers=3, rnn_dim=8, n_feats=16, channels=4)

# The names torch gives the original's SpeechRecognitionModel(n_cnn_layers=1, n_rnn_layers=2, ...),
# spelled out by hand from its model/base_model.py.
ORIGINAL_KEYS_1CNN_2RNN = [
    "cnn.weight", "cnn.bias",
    *(f"rescnn_layers.0.{m}.{p}" for m in ("cnn1", "cnn2") for p in ("weight", "bias")),
    *(f"rescnn_layers.0.{m}.layer_norm.{p}" for m in ("layer_norm1", "layer_norm2") for p in ("weight", "bias")),
    "fully_connected.weight", "fully_connected.bias",
    *(k for i in range(2) for k in (
        *(f"birnn_layers.{i}.BiGRU.{w}_l0{s}" for s in ("", "_reverse") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        f"birnn_layers.{i}.layer_norm.weight", f"birnn_layers.{i}.layer_norm.bias")),
    "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
]


def _model(cfg: SplitASRConfig = TINY, seed: int = 0) -> SpeechRecognitionModel:
    torch.manual_seed(seed)
    model = SpeechRecognitionModel(cfg)
    with torch.no_grad():  # LayerNorm affine params away from (1, 0) so a mix-up of them shows
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def test_parameter_names_are_the_originals() -> None:
    model = SpeechRecognitionModel(SplitASRConfig(n_cnn_layers=1, n_rnn_layers=2, rnn_dim=8, n_feats=16))
    assert sorted(model.state_dict()) == sorted(ORIGINAL_KEYS_1CNN_2RNN)
    assert model.birnn_layers[1].BiGRU.input_size == 16 and model.birnn_layers[1].BiGRU.hidden_size == 8
    assert model.fully_connected.in_features == 8 * 32  # n_feats // 2 rows x 32 channels


def _gru_direction(x: torch.Tensor, gru: torch.nn.GRU, suffix: str) -> torch.Tensor:
    """One direction of a GRU over axis 0 of x (S, N, F), from the equations in torch.nn.GRU's docs."""
    w_ih, w_hh = getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"weight_hh_l0{suffix}")
    b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
    steps = range(x.shape[0] - 1, -1, -1) if suffix else range(x.shape[0])
    h = torch.zeros(x.shape[1], gru.hidden_size)
    out = [None] * x.shape[0]
    for t in steps:
        gi, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = torch.sigmoid(gi[:, :gru.hidden_size] + gh[:, :gru.hidden_size])
        z = torch.sigmoid(gi[:, gru.hidden_size:2 * gru.hidden_size] + gh[:, gru.hidden_size:2 * gru.hidden_size])
        n = torch.tanh(gi[:, 2 * gru.hidden_size:] + r * gh[:, 2 * gru.hidden_size:])
        h = (1 - z) * n + z * h
        out[t] = h
    return torch.stack(out)


def reference_forward(model: SpeechRecognitionModel, spec: torch.Tensor) -> torch.Tensor:
    """The original forward, functionally: layer 0's GRU runs over time, later ones over the batch axis."""
    x = F.conv2d(spec, model.cnn.weight, model.cnn.bias, stride=2, padding=1)
    for block in model.rescnn_layers:
        res = x
        for ln, conv in ((block.layer_norm1.layer_norm, block.cnn1), (block.layer_norm2.layer_norm, block.cnn2)):
            x = F.layer_norm(x.transpose(2, 3), ln.normalized_shape, ln.weight, ln.bias).transpose(2, 3)
            x = F.conv2d(F.gelu(x), conv.weight, conv.bias, padding=1)
        x = x + res
    b, c, f, t = x.shape
    x = F.linear(x.reshape(b, c * f, t).transpose(1, 2), model.fully_connected.weight, model.fully_connected.bias)
    for i, layer in enumerate(model.birnn_layers):
        x = F.gelu(F.layer_norm(x, layer.layer_norm.normalized_shape, layer.layer_norm.weight, layer.layer_norm.bias))
        seq = x.transpose(0, 1) if i == 0 else x  # i > 0: the batch axis is read as time
        y = torch.cat([_gru_direction(seq, layer.BiGRU, ""), _gru_direction(seq, layer.BiGRU, "_reverse")], dim=-1)
        x = y.transpose(0, 1) if i == 0 else y
    fc1, fc2 = model.classifier[0], model.classifier[3]
    return F.linear(F.gelu(F.linear(x, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_matches_the_functional_reference(batch: int) -> None:
    model = _model()
    spec = torch.rand(batch, 1, TINY.n_feats, 23) * 5
    with torch.no_grad():
        got, ref = model(spec), reference_forward(model, spec)
    assert got.shape == (batch, output_frames(23), TINY.n_class) == (batch, 12, 29)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.tail(model.head(spec)), got, atol=0, rtol=0)


def test_the_quirk_couples_the_rows_of_a_batch() -> None:
    spec = torch.rand(2, 1, TINY.n_feats, 20)
    other = spec.clone()
    other[1] = torch.rand(1, TINY.n_feats, 20)
    with torch.no_grad():
        quirky = _model()
        assert not torch.allclose(quirky(spec)[0], quirky(other)[0], atol=1e-4)  # row 1 leaks into row 0
        assert not torch.allclose(quirky(spec)[:1], quirky(spec[:1]), atol=1e-4)  # batch 1 differs from batch 2
        single = _model(SplitASRConfig(n_cnn_layers=1, n_rnn_layers=1, rnn_dim=8, n_feats=16, channels=4))
        torch.testing.assert_close(single(spec)[0], single(other)[0])  # one GRU layer: rows stay apart


@pytest.mark.parametrize("time", [1, 2, 7, 8, 41])
def test_output_frames_rule(time: int) -> None:
    with torch.no_grad():
        assert _model()(torch.rand(1, 1, TINY.n_feats, time)).shape[1] == output_frames(time) == -(-time // 2)


def test_load_infers_sizes_from_shapes(tmp_path: Path) -> None:
    cfg = SplitASRConfig(n_cnn_layers=2, n_rnn_layers=3, rnn_dim=12, n_feats=20, channels=16, n_class=29)
    model = _model(cfg)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded, got = load_model(tmp_path / "model.pth")
    assert got == SplitASRConfig(n_cnn_layers=2, n_rnn_layers=3, rnn_dim=12, n_feats=20, channels=16, n_class=29,
                                 dropout=got.dropout)
    spec = torch.rand(2, 1, 20, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(spec), model(spec), atol=0, rtol=0)
    assert not loaded.training


def test_load_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    sd = _model().state_dict()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pth")
    bad = tmp_path / "extra.pth"
    torch.save({**sd, "bogus.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match=r"extra\.pth.*\n.*unexpected 1 tensor.*bogus\.weight"):
        load_model(bad)
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in sd.items() if k != "birnn_layers.1.layer_norm.bias"}, missing)
    with pytest.raises(CheckpointError, match=r"missing 1 tensor.*birnn_layers\.1\.layer_norm\.bias"):
        load_model(missing)
    good = tmp_path / "model.pth"
    torch.save(sd, good)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fully_connected\.weight"):
        load_model(good, rnn_dim=9)
    with pytest.raises(CheckpointError, match="n_feats must be even"):
        load_model(good, n_feats=15)
    not_sd = tmp_path / "list.pth"
    torch.save([1, 2], not_sd)
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        load_model(not_sd)
    nan = tmp_path / "nan.pth"
    torch.save({**sd, "cnn.bias": torch.full_like(sd["cnn.bias"], float("nan"))}, nan)
    with pytest.raises(CheckpointError, match=r"non-finite.*cnn\.bias"):
        load_model(nan)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_model(garbage)


class _Payload:
    """Anything that is not a tensor: weights_only=True must refuse to unpickle it."""


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"cnn.weight": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_model(path)


def test_autoencoder_load_and_forward(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=8, hidden_size=6, bottleneck=3))
    for p in ae.parameters():
        torch.nn.init.normal_(p, std=0.5)
    torch.save(ae.state_dict(), tmp_path / "autoencoder.pth")
    assert sorted(ae.state_dict()) == sorted(f"layer_{i}.{p}" for i in range(1, 5) for p in ("weight", "bias"))
    loaded = load_autoencoder(tmp_path / "autoencoder.pth", rnn_dim=8)
    assert (loaded.cfg.hidden_size, loaded.cfg.bottleneck) == (6, 3)
    x = torch.randn(2, 5, 8)
    leaky = lambda v: F.leaky_relu(v, 0.2)  # noqa: E731  after every layer, the last one included
    sd = ae.state_dict()
    h = x
    for i in range(1, 5):
        h = leaky(F.linear(h, sd[f"layer_{i}.weight"], sd[f"layer_{i}.bias"]))
        if i == 2:
            torch.testing.assert_close(loaded.encoder(x), h)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), h)
    with pytest.raises(CheckpointError, match="rnn_dim = 16"):
        load_autoencoder(tmp_path / "autoencoder.pth", rnn_dim=16)
    torch.save({"layer_1.weight": torch.zeros(6, 8)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="layer_2.weight"):
        load_autoencoder(tmp_path / "partial.pth")
