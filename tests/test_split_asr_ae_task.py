"""The task-aware autoencoder trainer (--ae-loss task): its quantiser is the codec's, its loss sees the Tail,
and it writes the same autoencoder.pth format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_split_asr_train import TINY, trained  # noqa: F401  (the module-scoped tiny model + autoencoder)


def test_fake_quantize_matches_the_low_bit_codec() -> None:
    from families.split_asr.ae_task import fake_quantize
    from split.codecs.quantizers import LowBit

    rng = np.random.default_rng(0)
    code = rng.normal(size=(37, 4)).astype(np.float32)
    code[3, 1] = 9.0  # an outlier beyond mean + 3 std: clipped by both
    codec = LowBit(4)
    symbols, params = codec.quantize(code)
    expected = codec.dequantize(symbols, params, code.shape)
    x = torch.from_numpy(code)
    got = fake_quantize(x, x, 4).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_fake_quantize_passes_the_gradient_straight_through() -> None:
    from families.split_asr.ae_task import fake_quantize

    x = torch.linspace(-1, 1, 20, requires_grad=True)
    y = fake_quantize(x, x.detach(), 2)
    assert len(torch.unique(y.detach())) <= 4  # 2 bits: at most four values
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert torch.equal(fake_quantize(x, x.detach(), 0), x)  # 0 bits: no quantisation


def test_task_loss_is_zero_for_a_perfect_chain_and_grows_with_the_error() -> None:
    from families.split_asr.ae_task import TaskBatch, task_loss
    from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
    from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel

    torch.manual_seed(0)
    model = SpeechRecognitionModel(SplitASRConfig(n_cnn_layers=1, n_rnn_layers=1, rnn_dim=8, n_class=29,
                                                  n_feats=32, dropout=0.0)).eval()
    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=8, hidden_size=8, bottleneck=8))
    feats = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    feats = feats * mask[..., None]
    teacher = torch.log_softmax(model.tail(feats), dim=-1).detach()
    batch = TaskBatch(feats, [5, 3], teacher, mask)

    class Identity(torch.nn.Module):
        def encoder(self, x):  # noqa: ANN001, ANN202
            return x

        def decoder(self, x):  # noqa: ANN001, ANN202
            return x

    assert float(task_loss(model, Identity(), batch, bits=0, weight=1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(task_loss(model, ae, batch, bits=0, weight=1.0)) > 0
    assert float(task_loss(model, Identity(), batch, bits=1, weight=1.0)) > 0


def test_task_trainer_writes_the_same_format(trained: tuple[Path, Path], tiny_corpus: Path,  # noqa: F811
                                             tmp_path: Path) -> None:
    from demo.__main__ import main
    from families.split_asr.checkpoint import load_autoencoder

    out = tmp_path / "autoencoder.pth"
    assert main(["train", "split_asr", "--autoencoder", "--checkpoint", str(trained[0]), "--librispeech",
                 str(tiny_corpus / "LibriSpeech" / "train-demo"), "--out", str(out), "--ae-hidden", "6",
                 "--ae-bottleneck", "2", "--ae-loss", "task", "--ae-code-bits", "3", *TINY]) == 0
    ae = load_autoencoder(out, rnn_dim=8)
    assert (ae.cfg.hidden_size, ae.cfg.bottleneck) == (6, 2)
    assert sorted(torch.load(out, weights_only=True)) == sorted(torch.load(trained[1], weights_only=True))
    info = json.loads(out.with_name("autoencoder.train.json").read_text())
    assert info["code_bits"] == 3 and "KL" in info["loss"]
    row = info["history"][0]
    assert row["train_loss"] > 0 and 0 <= row["val_cer"] and "val_relative_mse" in row
