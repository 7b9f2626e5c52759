"""Tiny Head/Tail ONNX pairs (a conv + BiGRU CTC model cut in two), an autoencoder pair, and a dataset dir.

Shaped like the split ASR family (spec (batch, 1, feats, time) -> boundary (batch, frames, channels) ->
logits (batch, frames, 29)) but a few hundred parameters, so every split test runs in seconds. Cards
carry only what the split stage reads (names, dtypes, shapes, labels, blank, the output-length rule).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

LABELS = list("_'ABCDEFGHIJKLMNOPQRSTUVWXYZ ")
FEATS = 16
CHANNELS = 12
LATENT = 4


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * (FEATS // 2), CHANNELS)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.gelu(self.conv(spec))          # (B, 4, F/2, T/2)
        b, c, f, t = x.shape
        return self.fc(x.permute(0, 3, 1, 2).reshape(b, t, c * f))  # (B, T/2, CHANNELS)


class Tail(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(CHANNELS, 8, batch_first=True, bidirectional=True)
        self.out = nn.Linear(16, len(LABELS))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.gru(features)[0])


class AeEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(CHANNELS, LATENT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class AeDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(LATENT, CHANNELS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z)


def _export(module: nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str,
            in_axes: dict[int, str], out_axes: dict[int, str]) -> None:
    # dynamo=False: the TorchScript exporter handles GRU with dynamic axes (the repo's choice everywhere).
    torch.onnx.export(module.eval(), (example,), str(path), input_names=[in_name], output_names=[out_name],
                      dynamic_axes={in_name: in_axes, out_name: out_axes}, opset_version=17, dynamo=False)


def _card(path: Path, inputs: list[dict], outputs: list[dict], **extra: object) -> None:
    card = {"family": "tiny_split", "onnx": path.name, "inputs": inputs, "outputs": outputs, **extra}
    path.with_name(path.stem + ".card.json").write_text(json.dumps(card, indent=2))


def make_split_pair(out: Path, seed: int = 0, autoencoder: bool = True) -> Path:
    """DIR/head.onnx, DIR/tail.onnx (+ cards), the unsplit DIR/model.onnx, and DIR/ae_encoder.onnx,
    DIR/ae_decoder.onnx."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    head, tail = Head(), Tail()
    spec = torch.randn(1, 1, FEATS, 20)
    boundary = head(spec)
    _export(head, spec, out / "head.onnx", "spec", "features", {0: "batch", 3: "time"}, {0: "batch", 1: "frames"})
    _export(tail, boundary, out / "tail.onnx", "features", "logits", {0: "batch", 1: "frames"},
            {0: "batch", 1: "frames"})
    _export(nn.Sequential(head, tail), spec, out / "model.onnx", "spec", "logits", {0: "batch", 3: "time"},
            {0: "batch", 1: "frames"})
    rule = {"kind": "conv", "layers": [{"kernel": 3, "stride": 2, "padding": 1}]}
    spec = {"name": "spec", "dtype": "float32", "shape": ["batch", 1, FEATS, "time"], "role": "features",
            "time_axis": 3}
    logits = {"name": "logits", "dtype": "float32", "shape": ["batch", "frames", len(LABELS)], "role": "logits"}
    features = {"name": "features", "dtype": "float32", "shape": ["batch", "frames", CHANNELS], "role": "features"}
    facts = {"labels": LABELS, "blank_index": 0, "metrics_convention": "deepspeech",
             "feature": {"kind": "random_spectrogram", "sample_rate": 16000}}
    _card(out / "model.onnx", [spec], [logits], output_length_rule=rule, **facts)
    _card(out / "head.onnx", [spec], [features], output_length_rule=rule, **facts)
    _card(out / "tail.onnx", [features], [logits], **{**facts, "feature": {"kind": "split_activations"}})
    if autoencoder:
        z = AeEncoder()(boundary)
        _export(AeEncoder(), boundary, out / "ae_encoder.onnx", "x", "z", {0: "batch", 1: "frames"},
                {0: "batch", 1: "frames"})
        _export(AeDecoder(), z, out / "ae_decoder.onnx", "z", "x_hat", {0: "batch", 1: "frames"},
                {0: "batch", 1: "frames"})
    return out


def make_dataset(out: Path, count: int = 4, seed: int = 0, feats: int = FEATS) -> Path:
    """A finished dataset dir with `spec` inputs of varying lengths, in the preprocess stage's format."""
    from core.dataset_dir import HEADER, MANIFEST, Sample, atomic_write_json, write_bin

    rng = np.random.default_rng(seed)
    (out / "spec").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        key = f"{i:06d}"
        length = int(rng.integers(16, 40))
        ref = write_bin(out / "spec" / f"{key}.bin", rng.standard_normal((1, 1, feats, length)), "float32")
        lines.append(Sample(key=key, uid=f"utt{i}", audio="", transcript_raw="HELLO", transcript="HELLO",
                            num_samples=length * 200, length=length, padded_length=length,
                            inputs={"spec": ref}).to_json())
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    atomic_write_json(out / HEADER, {"complete": True, "num_samples": count,
                                     "inputs": [{"name": "spec", "folder": "spec"}]})
    return out


def boundary_example(seed: int = 0, frames: int = 50) -> np.ndarray:
    """A boundary-like tensor: channels with different scales and offsets."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 3.0, CHANNELS)
    return (rng.standard_normal((1, frames, CHANNELS)) * scale + rng.uniform(-1, 1, CHANNELS)).astype(np.float32)
