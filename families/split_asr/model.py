"""The conv + BiGRU CTC network of split-model-inference, with its Head/Tail cut.

Module tree and parameter names follow the original's `SpeechRecognitionModel` (``cnn``,
``rescnn_layers.<i>.{cnn1,cnn2,layer_norm1.layer_norm,layer_norm2.layer_norm}``, ``fully_connected``,
``birnn_layers.<i>.{BiGRU,layer_norm}``, ``classifier.{0,3}``), so its `model.pth` loads with
``strict=True``. Head = stem conv + residual CNNs + the Linear to rnn_dim (per-frame features);
Tail = the BiGRU blocks + classifier; ``forward(x) == tail(head(x))`` exactly.

The original's quirk is kept on purpose: only the first GRU is built with ``batch_first=True``; the 2nd
and later GRUs get ``batch_first=False`` but are fed the same batch-first ``(batch, frames, 2*rnn_dim)``
tensor. Those layers therefore recur over the *batch* axis, treating each frame index as a separate
sequence whose steps are the utterances of the batch. A trained model.pth was trained that way, so a
"corrected" model would compute something else; at batch 1 each of those GRUs sees one-step sequences,
at batch > 1 the utterances of a batch influence each other.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Fixed by the original's code: a 3x3 stem with stride 2 and padding 1 (its `n_feats // 2` only
# matches the stem's output for stride 2), 3x3 stride-1 residual convolutions.
STEM_KERNEL = 3
STEM_STRIDE = 2
STEM_PADDING = STEM_KERNEL // 2
RES_KERNEL = 3


@dataclass(frozen=True)
class SplitASRConfig:
    """Hyper-parameters of the network; defaults are the original's main.py hparams."""

    n_cnn_layers: int = 3
    n_rnn_layers: int = 5
    rnn_dim: int = 512
    n_class: int = 29
    n_feats: int = 128
    channels: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.n_feats % 2:
            raise ValueError(f"n_feats must be even (the model's LayerNorm is over n_feats // 2), got {self.n_feats}")
        for name in ("n_rnn_layers", "rnn_dim", "n_class", "n_feats", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_cnn_layers < 0:
            raise ValueError(f"n_cnn_layers must be >= 0, got {self.n_cnn_layers}")

    @property
    def conv_feats(self) -> int:
        """Feature rows after the stride-2 stem (the LayerNorm width of the residual blocks)."""
        return self.n_feats // 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CNNLayerNorm(nn.Module):
    """LayerNorm over the feature axis of a (batch, channel, feature, time) tensor."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(2, 3).contiguous()
        x = self.layer_norm(x)
        return x.transpose(2, 3).contiguous()


class ResidualCNN(nn.Module):
    """Pre-norm residual block: (LayerNorm, GELU, dropout, conv) twice, plus the input."""

    def __init__(self, channels: int, n_feats: int, dropout: float) -> None:
        super().__init__()
        self.cnn1 = nn.Conv2d(channels, channels, RES_KERNEL, 1, padding=RES_KERNEL // 2)
        self.cnn2 = nn.Conv2d(channels, channels, RES_KERNEL, 1, padding=RES_KERNEL // 2)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.layer_norm1 = CNNLayerNorm(n_feats)
        self.layer_norm2 = CNNLayerNorm(n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cnn1(self.dropout1(F.gelu(self.layer_norm1(x))))
        y = self.cnn2(self.dropout2(F.gelu(self.layer_norm2(y))))
        return y + x


class BidirectionalGRU(nn.Module):
    """LayerNorm, GELU, one bidirectional GRU layer, dropout; output width 2 * hidden_size."""

    def __init__(self, rnn_dim: int, hidden_size: int, dropout: float, batch_first: bool) -> None:
        super().__init__()
        self.BiGRU = nn.GRU(input_size=rnn_dim, hidden_size=hidden_size, num_layers=1,
                            batch_first=batch_first, bidirectional=True)
        self.layer_norm = nn.LayerNorm(rnn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.BiGRU(F.gelu(self.layer_norm(x)))
        return self.dropout(x)


def gru_batch_first(n_rnn_layers: int) -> list[bool]:
    """The original's `batch_first=i == 0`: only the first GRU reads its (batch-first) input as such."""
    return [i == 0 for i in range(n_rnn_layers)]


class SpeechRecognitionModel(nn.Module):
    """Input spec (batch, 1, n_feats, time) float32; output logits (batch, ceil(time / 2), n_class)."""

    def __init__(self, cfg: SplitASRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.cnn = nn.Conv2d(1, cfg.channels, STEM_KERNEL, stride=STEM_STRIDE, padding=STEM_PADDING)
        self.rescnn_layers = nn.Sequential(*[ResidualCNN(cfg.channels, cfg.conv_feats, cfg.dropout)
                                             for _ in range(cfg.n_cnn_layers)])
        self.fully_connected = nn.Linear(cfg.conv_feats * cfg.channels, cfg.rnn_dim)
        # Keep the quirk (see the module docstring): layers 2.. are batch_first=False on batch-first input.
        self.birnn_layers = nn.Sequential(*[
            BidirectionalGRU(cfg.rnn_dim if i == 0 else cfg.rnn_dim * 2, cfg.rnn_dim, cfg.dropout, batch_first=bf)
            for i, bf in enumerate(gru_batch_first(cfg.n_rnn_layers))])
        self.classifier = nn.Sequential(
            nn.Linear(cfg.rnn_dim * 2, cfg.rnn_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.rnn_dim, cfg.n_class),
        )

    def head(self, spec: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_feats, time) -> per-frame features (batch, frames, rnn_dim): the edge's part."""
        x = self.rescnn_layers(self.cnn(spec))
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(1, 2)
        return self.fully_connected(x)

    def tail(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, rnn_dim) -> logits (batch, frames, n_class): the cloud's part."""
        return self.classifier(self.birnn_layers(features))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(spec))


class Head(nn.Module):
    """The Head as its own module (shares the parameters of `model`), for export."""

    def __init__(self, model: SpeechRecognitionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model.head(spec)


class Tail(nn.Module):
    """The Tail as its own module (shares the parameters of `model`), for export."""

    def __init__(self, model: SpeechRecognitionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.tail(features)


def output_frames(time: int) -> int:
    """Frames after the stem (k3, s2, p1): ceil(time / 2); the residual convs keep the length."""
    return (time + 2 * STEM_PADDING - STEM_KERNEL) // STEM_STRIDE + 1


def output_length_rule() -> dict[str, Any]:
    """The time-axis length rule as card data."""
    return {"kind": "conv", "layers": [{"kernel": STEM_KERNEL, "stride": STEM_STRIDE, "padding": STEM_PADDING,
                                        "dilation": 1}]}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
