"""The streaming contract is generic: a second family (a causal TCN like the ESP-DL guide's example) plugs
into the same export wrapper and runner with no new runner code, and its rollout equals its forward."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.streaming import StateSpec, StreamingSpec, export_streaming_onnx, torch_step
from core.stream_runner import StreamRunner, ort_step, rollout


class CausalTCN(nn.Module):
    """Two causal dilated convolutions and a classifier; offline forward pads on the left only."""

    def __init__(self, features: int = 6, hidden: int = 8, classes: int = 5, chunk_frames: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv1d(features, hidden, 3)
        self.conv2 = nn.Conv1d(hidden, hidden, 3, dilation=2)
        self.fc = nn.Linear(hidden, classes)
        self.streaming_spec = StreamingSpec(
            chunk_frames=chunk_frames, feature_shape=(features,), classes=classes, max_output_frames=chunk_frames,
            states=(StateSpec("cache1", "float32", ("batch", features, 2), "last 2 input frames"),
                    StateSpec("cache2", "float32", ("batch", hidden, 4), "last 4 conv1 outputs")))

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.fc(torch.relu(h).transpose(1, 2)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(F.pad(x, (2, 0))))
        return self._head(self.conv2(F.pad(h, (4, 0))))

    def streaming_forward(self, chunk, chunk_lengths, end, cache1, cache2):
        # Causal: every real frame's output is due at once, nothing waits for the end.
        b1 = torch.cat([cache1, chunk], dim=-1)
        h = torch.relu(self.conv1(b1))
        b2 = torch.cat([cache2, h], dim=-1)
        probs = self._head(self.conv2(b2))
        return probs, chunk_lengths.to(torch.int64), b1[..., -2:], b2[..., -4:]


@pytest.mark.parametrize("frames", [1, 4, 11])
def test_second_family_rolls_out_through_the_generic_runner(tmp_path: Path, frames: int) -> None:
    model = CausalTCN().eval()
    x = torch.randn(1, 6, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        ref = model(x).numpy()
    torch_runner = StreamRunner(model.streaming_spec, torch_step(model))
    proto = export_streaming_onnx(model, tmp_path / "tcn.onnx")
    import onnx

    onnx.save(proto, str(tmp_path / "tcn.onnx"))
    ort_runner = StreamRunner(model.streaming_spec, ort_step(tmp_path / "tcn.onnx", threads=1))
    for runner in (torch_runner, ort_runner):
        got = rollout(runner, x.numpy())
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_export_names_every_state_input_and_output(tmp_path: Path) -> None:
    model = CausalTCN().eval()
    proto = export_streaming_onnx(model, tmp_path / "tcn.onnx")
    spec = model.streaming_spec
    assert [i.name for i in proto.graph.input] == ["chunk", "chunk_lengths", "end", "cache1", "cache2"]
    assert [o.name for o in proto.graph.output] == spec.output_names()
    assert spec.output_names()[-2:] == ["cache1_next", "cache2_next"]
    # The stream axis is symbolic; the chunk's time axis is the fixed chunk size.
    chunk = proto.graph.input[0].type.tensor_type.shape.dim
    assert chunk[0].dim_param == "batch" and chunk[2].dim_value == spec.chunk_frames


def test_spec_survives_the_card_round_trip() -> None:
    spec = CausalTCN().streaming_spec
    back = StreamingSpec.from_dict(spec.to_dict())
    assert back == spec
    assert back.states[1].batch_axis == 0 and back.states[1].zeros(3).shape == (3, 8, 4)
