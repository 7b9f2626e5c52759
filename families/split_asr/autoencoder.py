"""The activation autoencoder of split-model-inference (model/AutoEncoderDecoder.py).

Four Linear layers ``layer_1..layer_4`` (input -> hidden -> bottleneck -> hidden -> input), each followed
by LeakyReLU(0.2), the last one included: the original's decoder ends in LeakyReLU, so its
reconstruction of negative activations is compressed by the slope; kept because a trained
autoencoder.pth depends on it. The edge runs `encoder` (layers 1-2) on the Head's output, the cloud
runs `decoder` (layers 3-4) before the Tail. The original's sizes are 512 -> 128 -> 32; the repo's demo
uses rnn_dim -> 32 -> 8. Sizes are read from the checkpoint's tensor shapes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class AutoencoderConfig:
    input_size: int
    hidden_size: int
    bottleneck: int
    leaky_relu: float = LEAKY_SLOPE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AutoEncoderDecoder(nn.Module):
    """(..., input_size) -> (..., input_size); `encoder` / `decoder` are its two halves."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.leaky_relu = nn.LeakyReLU(cfg.leaky_relu)
        self.layer_1 = nn.Linear(cfg.input_size, cfg.hidden_size)
        self.layer_2 = nn.Linear(cfg.hidden_size, cfg.bottleneck)
        self.layer_3 = nn.Linear(cfg.bottleneck, cfg.hidden_size)
        self.layer_4 = nn.Linear(cfg.hidden_size, cfg.input_size)
        # The original's initialisation (normal std 0.02, zero bias); matters only for training.
        for layer in (self.layer_1, self.layer_2, self.layer_3, self.layer_4):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self.leaky_relu(self.layer_2(self.leaky_relu(self.layer_1(x))))

    def decoder(self, code: torch.Tensor) -> torch.Tensor:
        return self.leaky_relu(self.layer_4(self.leaky_relu(self.layer_3(code))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class EncoderPart(nn.Module):
    """`encoder` as a module of its own, for export."""

    def __init__(self, ae: AutoEncoderDecoder) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.ae.encoder(features)


class DecoderPart(nn.Module):
    """`decoder` as a module of its own, for export."""

    def __init__(self, ae: AutoEncoderDecoder) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.ae.decoder(code)
