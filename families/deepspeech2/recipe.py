"""DeepSpeech2 as deepspeech.pytorch V3.0 builds it, written to export correctly.

The module tree and parameter names are those of deepspeech.pytorch V3.0 (``conv.seq_module.*``,
``rnns.<i>.rnn.*``, ``rnns.<i>.batch_norm.module.*``, ``lookahead.0.conv.weight``, ``fc.0.module.*``), so
a real V3.0 state_dict loads with ``strict=True``. Two things differ from the original's code, and neither
changes its numbers:

* MaskConv builds its mask with tensor ops instead of a Python loop over ``length.item()``; the loop is
  baked into a trace as constants, which makes padded batches silently wrong in the exported graph.
* ``pack_padded_sequence`` takes ``enforce_sorted=False`` (any batch order) and ``pad_packed_sequence``
  pads back to the input's frame count, so the output always has ``T'`` frames as the ONNX graph does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.recipe import LoadedModel, TensorSpec, sha256_file
from families.deepspeech2 import FAMILY as _FAMILY
from families.deepspeech2.architecture import CONV_CHANNELS, CONV_LAYERS, DEFAULT_LOOKAHEAD, SPECT_DEFAULTS
from families.deepspeech2.checkpoint_reader import check_deepspeech_state_dict, load_deepspeech_checkpoint
from families.deepspeech2.features import FEATURE_KIND
from families.deepspeech2.guide import GUIDE

# deepspeech.pytorch's English labels: blank first, space last.
DEFAULT_LABELS: list[str] = ["_", "'", *[chr(c) for c in range(ord("A"), ord("Z") + 1)], " "]

RNN_TYPES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class DeepSpeechConfig:
    """Everything that shapes the network; the plain-data view of V3.0's model_cfg + spect_cfg + labels."""

    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    rnn_type: str = "lstm"
    hidden_size: int = 1024
    hidden_layers: int = 5
    bidirectional: bool = True
    lookahead_context: int | None = None
    sample_rate: int = SPECT_DEFAULTS["sample_rate"]
    window_size: float = SPECT_DEFAULTS["window_size"]
    window_stride: float = SPECT_DEFAULTS["window_stride"]
    window: str = SPECT_DEFAULTS["window"]

    @property
    def n_fft(self) -> int:
        return int(self.sample_rate * self.window_size)

    @property
    def hop_length(self) -> int:
        return int(self.sample_rate * self.window_stride)

    @property
    def freq_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def rnn_input_size(self) -> int:
        size = self.freq_bins
        for layer in CONV_LAYERS:
            k, s, p = layer["kernel"][0], layer["stride"][0], layer["padding"][0]
            size = (size + 2 * p - k) // s + 1
        return size * CONV_CHANNELS

    def model_dict(self) -> dict[str, Any]:
        return {
            "rnn_type": self.rnn_type,
            "hidden_size": self.hidden_size,
            "hidden_layers": self.hidden_layers,
            "bidirectional": self.bidirectional,
            "lookahead_context": self.lookahead_context,
        }

    def spect_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "window_size": self.window_size,
            "window_stride": self.window_stride,
            "window": self.window,
        }

    @classmethod
    def from_parts(cls, labels: list[str], model: dict[str, Any], spect: dict[str, Any]) -> "DeepSpeechConfig":
        cfg = cls(
            labels=list(labels),
            rnn_type=str(model["rnn_type"]).lower(),
            hidden_size=int(model["hidden_size"]),
            hidden_layers=int(model["hidden_layers"]),
            bidirectional=bool(model["bidirectional"]),
            lookahead_context=None if model.get("lookahead_context") is None else int(model["lookahead_context"]),
            sample_rate=int(spect.get("sample_rate", SPECT_DEFAULTS["sample_rate"])),
            window_size=float(spect.get("window_size", SPECT_DEFAULTS["window_size"])),
            window_stride=float(spect.get("window_stride", SPECT_DEFAULTS["window_stride"])),
            window=str(spect.get("window", SPECT_DEFAULTS["window"])),
        )
        if cfg.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type {cfg.rnn_type!r} is not one of {sorted(RNN_TYPES)}")
        if not cfg.bidirectional and not cfg.lookahead_context:
            cfg.lookahead_context = DEFAULT_LOOKAHEAD
        return cfg


def conv_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after the conv stack (time axis), the same integer formula as V3.0's get_seq_lens."""
    seq = lengths.to(torch.int32)
    for layer in CONV_LAYERS:
        k, s, p = layer["kernel"][1], layer["stride"][1], layer["padding"][1]
        seq = torch.div(seq + 2 * p - (k - 1) - 1, s, rounding_mode="floor") + 1
    return seq.to(torch.int32)


def output_length_rule() -> dict[str, Any]:
    """The time-axis length rule as data, for the model card (dilation is 1 throughout)."""
    return {
        "kind": "conv",
        "layers": [
            {"kernel": layer["kernel"][1], "stride": layer["stride"][1], "padding": layer["padding"][1], "dilation": 1}
            for layer in CONV_LAYERS
        ],
    }


def time_mask(lengths: torch.Tensor, frames: int | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, T) bool, True where the frame lies past the sequence's end."""
    steps = torch.arange(frames, device=device)
    return steps.unsqueeze(0) >= lengths.to(steps.dtype).unsqueeze(1)


class SequenceWise(nn.Module):
    """Applies a module over (T*N, H), as V3.0 does for its BatchNorm1d and Linear layers."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, n = x.size(0), x.size(1)
        return self.module(x.reshape(t * n, -1)).reshape(t, n, -1)


class MaskConv(nn.Module):
    """Runs the conv stack, zeroing every module's output past each sequence's length."""

    def __init__(self, seq_module: nn.Sequential) -> None:
        super().__init__()
        self.seq_module = seq_module

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for module in self.seq_module:
            x = module(x)
            mask = time_mask(lengths, x.size(3), x.device)[:, None, None, :]
            x = x.masked_fill(mask, 0)
        return x, lengths


class BatchRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, rnn_type: type[nn.RNNBase],
                 bidirectional: bool, batch_norm: bool = True) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
        self.rnn = rnn_type(input_size=input_size, hidden_size=hidden_size, bidirectional=bidirectional, bias=True)

    def forward(self, x: torch.Tensor, output_lengths: torch.Tensor) -> torch.Tensor:
        total = x.size(0)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        # Packing makes the reverse direction start at each sequence's true end, which is what lets a
        # padded batch equal batch size 1.
        packed = nn.utils.rnn.pack_padded_sequence(x, output_lengths.to(torch.int64).cpu(), enforce_sorted=False)
        x, _ = self.rnn(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(x, total_length=total)
        if self.bidirectional:
            x = x.view(x.size(0), x.size(1), 2, -1).sum(2)
        return x


class Lookahead(nn.Module):
    """Row convolution over `context` future frames (Wang et al. 2016), input (T, N, H)."""

    def __init__(self, n_features: int, context: int) -> None:
        super().__init__()
        if context <= 0:
            raise ValueError("lookahead context must be positive")
        self.context = context
        self.n_features = n_features
        self.conv = nn.Conv1d(n_features, n_features, kernel_size=context, stride=1, groups=n_features,
                              padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(1, 2, 0)
        x = F.pad(x, pad=(0, self.context - 1), value=0.0)
        x = self.conv(x)
        return x.permute(2, 0, 1).contiguous()


class DeepSpeech(nn.Module):
    """Input spect (B, 1, F, T) float32 and lengths (B,) int; output (probs (B, T', C), T' lengths int32).

    In eval mode the output is softmax probabilities (as V3.0's InferenceBatchSoftmax); in train mode
    it is the raw linear output, for CTC training with log_softmax.
    """

    def __init__(self, cfg: DeepSpeechConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        in_ch = 1
        for layer in CONV_LAYERS:
            layers += [
                nn.Conv2d(in_ch, CONV_CHANNELS, kernel_size=layer["kernel"], stride=layer["stride"],
                          padding=layer["padding"]),
                nn.BatchNorm2d(CONV_CHANNELS),
                nn.Hardtanh(0, 20, inplace=True),
            ]
            in_ch = CONV_CHANNELS
        self.conv = MaskConv(nn.Sequential(*layers))
        rnn_cls = RNN_TYPES[cfg.rnn_type]
        self.rnns = nn.Sequential(
            BatchRNN(cfg.rnn_input_size, cfg.hidden_size, rnn_cls, cfg.bidirectional, batch_norm=False),
            *(BatchRNN(cfg.hidden_size, cfg.hidden_size, rnn_cls, cfg.bidirectional)
              for _ in range(cfg.hidden_layers - 1)),
        )
        self.lookahead = None
        if not cfg.bidirectional:
            self.lookahead = nn.Sequential(Lookahead(cfg.hidden_size, cfg.lookahead_context or DEFAULT_LOOKAHEAD),
                                           nn.Hardtanh(0, 20, inplace=True))
        self.fc = nn.Sequential(SequenceWise(nn.Sequential(
            nn.BatchNorm1d(cfg.hidden_size),
            nn.Linear(cfg.hidden_size, len(cfg.labels), bias=False),
        )))

    def forward(self, spect: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output_lengths = conv_output_lengths(lengths)
        x, _ = self.conv(spect, output_lengths)
        b, c, d, t = x.shape
        x = x.reshape(b, c * d, t).permute(2, 0, 1).contiguous()  # (T, N, H)
        for rnn in self.rnns:
            x = rnn(x, output_lengths)
        if self.lookahead is not None:
            x = self.lookahead(x)
        x = self.fc(x).transpose(0, 1)
        if not self.training:
            x = F.softmax(x, dim=-1)
        return x, output_lengths


def build_model(cfg: DeepSpeechConfig) -> DeepSpeech:
    return DeepSpeech(cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_frames(num_samples: int, hop_length: int) -> int:
    """Spectrogram frames librosa's centred STFT gives for `num_samples` samples."""
    return 1 + math.floor(num_samples / hop_length)


# ---------------------------------------------------------------------------------------------------
# Recipe: from a V3.0 checkpoint to a LoadedModel the generic export and parity code understand.

INPUT_FREQ_AXIS = 2
INPUT_TIME_AXIS = 3


def feature_config(cfg: DeepSpeechConfig) -> dict[str, Any]:
    """The spectrogram V3.0's loader computes, every parameter spelled out for the card.

    pad_mode is reflect because V3.0 ran on librosa 0.8, whose centred STFT reflect-pads; librosa 0.10
    changed the default to constant padding, which would shift the edge frames.
    """
    return {
        "kind": FEATURE_KIND,
        "sample_rate": cfg.sample_rate,
        "n_fft": cfg.n_fft,
        "win_length": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "window": cfg.window,
        "center": True,
        "pad_mode": "reflect",
        "magnitude": "abs",
        "log1p": True,
        "normalize": "utterance_mean_std",
        "std_ddof": 1,
        "freq_bins": cfg.freq_bins,
    }


def tensor_specs(cfg: DeepSpeechConfig, static_frames: int | None = None,
                 static_batch: int | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    batch: int | str = static_batch if static_batch else "batch"
    time: int | str = static_frames if static_frames else "time"
    frames: int | str = "frames"
    if static_frames:
        frames = int(conv_output_lengths(torch.tensor([static_frames]))[0])
    inputs = [
        TensorSpec("spect", "float32", (batch, 1, cfg.freq_bins, time), "features", time_axis=INPUT_TIME_AXIS),
        TensorSpec("lengths", "int32", (batch,), "lengths"),
    ]
    outputs = [
        TensorSpec("probs", "float32", (batch, frames, len(cfg.labels)), "probabilities", time_axis=1,
                   lengths_from="output_lengths"),
        TensorSpec("output_lengths", "int32", (batch,), "lengths"),
    ]
    return inputs, outputs


def make_example_inputs(cfg: DeepSpeechConfig, lengths: list[int], frames: int | None = None,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """Random spectrogram-like inputs, zero past each row's length exactly as preprocess pads.

    A row's values depend only on its length and the seed, so the parity gate can compare a row of a
    padded batch with the same row run alone.
    """
    total = frames or max(lengths)
    spect = torch.zeros(len(lengths), 1, cfg.freq_bins, total)
    for row, n in enumerate(lengths):
        gen = torch.Generator().manual_seed(seed * 100003 + n)
        spect[row, :, :, :n] = torch.randn(1, cfg.freq_bins, n, generator=gen)
    return {"spect": spect, "lengths": torch.tensor(lengths, dtype=torch.int32)}


def load(checkpoint: str | Path, static_frames: int | None = None, static_batch: int | None = None) -> LoadedModel:
    """Load a deepspeech.pytorch V3.0 checkpoint into an eval-mode reference model."""
    path = Path(checkpoint)
    ckpt = load_deepspeech_checkpoint(path)
    cfg = DeepSpeechConfig.from_parts(ckpt.labels, ckpt.model, ckpt.spect)
    check_deepspeech_state_dict(ckpt.state_dict, cfg.model_dict(), cfg.labels, path)
    model = build_model(cfg)
    model.load_state_dict(ckpt.state_dict, strict=True)
    model.eval()
    inputs, outputs = tensor_specs(cfg, static_frames, static_batch)
    blank = cfg.labels.index("_") if "_" in cfg.labels else 0
    card_facts = {
        "architecture": {**cfg.model_dict(), "conv_layers": len(CONV_LAYERS), "parameters": parameter_count(model)},
        "labels": cfg.labels,
        "blank_index": blank,
        "word_delimiter": " ",
        "feature": feature_config(cfg),
        "output_length_rule": output_length_rule(),
        "metrics_convention": "deepspeech",
        "modelzoo": GUIDE,
        "static_shape": {"frames": static_frames, "batch": static_batch} if static_frames or static_batch else None,
    }
    source = {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "format": "deepspeech.pytorch V3.0 Lightning checkpoint",
        "meta": ckpt.meta,
    }
    if static_frames:
        parity_lengths = [static_frames, max(static_frames * 3 // 4, 2), max(static_frames // 2, 2)]
    else:
        parity_lengths = [37, 120, 300, 621]
    return LoadedModel(
        family=_FAMILY.name,
        module=model,
        inputs=inputs,
        outputs=outputs,
        make_inputs=lambda lengths, frames=None: make_example_inputs(cfg, lengths, frames or static_frames),
        card_facts=card_facts,
        source=source,
        opset=17,
        parity_lengths=parity_lengths,
        atol=1e-5,
        rtol=1e-3,
    )
