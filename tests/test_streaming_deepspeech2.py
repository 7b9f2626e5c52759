"""Streaming DeepSpeech2 (V3.0 unidirectional + Lookahead) in PyTorch: the chunk-by-chunk rollout equals
the offline forward of the same checkpoint, for chunk sizes that do and do not divide the utterance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from families.deepspeech2 import recipe as ds
from families.deepspeech2.streaming import DeepSpeechStreaming, StreamingRefused, streaming_model
from core.streaming import torch_step
from core.ctc import greedy_decode
from core.stream_runner import StreamRunner, rollout
from tests.conftest import make_tiny_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
GRU_FIXTURE = FIXTURES / "ds2_v3_unidir_gru_tiny.ckpt"


@pytest.fixture(scope="module")
def gru() -> ds.DeepSpeech:
    return ds.load(GRU_FIXTURE).module


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> ds.DeepSpeech:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("uni") / "uni_lstm.ckpt", bidirectional=False,
                                rnn_type="lstm", hidden=8, layers=2, seed=3)
    return ds.load(path).module


def offline(model: ds.DeepSpeech, frames: int) -> tuple[np.ndarray, np.ndarray]:
    x = ds.make_example_inputs(model.cfg, [frames], seed=1)
    with torch.no_grad():
        probs, lengths = model(x["spect"], x["lengths"])
    return x["spect"].numpy(), probs[:, :int(lengths[0])].numpy()


def check_rollout(model: ds.DeepSpeech, chunk: int, frames: int, push: int | None = None) -> None:
    streaming = streaming_model(model, chunk)
    features, ref = offline(model, frames)
    got = rollout(StreamRunner(streaming.streaming_spec, torch_step(streaming)), features, push)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4
    labels = model.cfg.labels
    assert greedy_decode(got[0], None, labels, 0) == greedy_decode(ref[0], None, labels, 0)


@pytest.mark.parametrize("chunk", [1, 2, 5, 16])
@pytest.mark.parametrize("frames", [1, 6, 23])
def test_gru_fixture_rollout_equals_offline(gru: ds.DeepSpeech, chunk: int, frames: int) -> None:
    check_rollout(gru, chunk, frames)


@pytest.mark.parametrize("chunk,frames", [(1, 9), (3, 20), (7, 30)])
def test_lstm_rollout_equals_offline(lstm: ds.DeepSpeech, chunk: int, frames: int) -> None:
    check_rollout(lstm, chunk, frames)


def test_pushing_in_uneven_pieces_changes_nothing(gru: ds.DeepSpeech) -> None:
    check_rollout(gru, 4, 27, push=3)


def test_streams_batched_one_state_row_each_match_alone(gru: ds.DeepSpeech) -> None:
    """Two streams of different lengths in one batch: each row gets what it gets alone (incl. its own flush)."""
    chunk = 4
    streaming = streaming_model(gru, chunk)
    spec = streaming.streaming_spec
    step = torch_step(streaming)
    feats = [offline(gru, n)[0] for n in (13, 6)]
    refs = [offline(gru, n)[1][0] for n in (13, 6)]
    state = {s.name: s.zeros(2) for s in spec.states}
    outs: list[list[np.ndarray]] = [[], []]
    done = [False, False]
    t = 0
    while not all(done):
        chunk_in = np.zeros((2, 1, 161, chunk), np.float32)
        lengths, end = np.zeros(2, np.int64), np.zeros(2, bool)
        for row, f in enumerate(feats):
            n = max(0, min(chunk, f.shape[-1] - t))
            chunk_in[row, :, :, :n] = f[0, :, :, t:t + n]
            lengths[row], end[row] = n, t + chunk >= f.shape[-1]
        out = step({"chunk": chunk_in, "chunk_lengths": lengths, "end": end, **state})
        for row in range(2):
            if not done[row]:
                outs[row].append(out["probs"][row, :out["probs_lengths"][row]])
                done[row] = bool(end[row])
        # A finished row keeps receiving (ignored) empty chunks while the other stream goes on.
        state = {s.name: out[s.name + "_next"] for s in spec.states}
        t += chunk
    for row in range(2):
        np.testing.assert_allclose(np.concatenate(outs[row]), refs[row], atol=1e-5)


def test_streaming_shares_the_offline_parameters(gru: ds.DeepSpeech) -> None:
    streaming = streaming_model(gru, 8)
    offline_ids = {id(p) for p in gru.parameters()} | {id(b) for b in gru.buffers()}
    assert {id(p) for p in streaming.parameters()} | {id(b) for b in streaming.buffers()} == offline_ids


def test_bidirectional_checkpoint_is_refused(tmp_path: Path) -> None:
    model = ds.load(make_tiny_checkpoint(tmp_path / "bi.ckpt", bidirectional=True)).module
    with pytest.raises(StreamingRefused, match="bidirectional"):
        DeepSpeechStreaming(model, 8)


def test_chunk_frames_must_be_positive(gru: ds.DeepSpeech) -> None:
    with pytest.raises(StreamingRefused, match="positive"):
        DeepSpeechStreaming(gru, 0)


def test_recorded_lookahead_is_the_true_future_context(gru: ds.DeepSpeech) -> None:
    """Changing feature frame F changes output t exactly when 2t + lookahead_frames >= F (offline model)."""
    lookahead = streaming_model(gru, 4).streaming_spec.latency["lookahead_frames"]
    frames, changed_frame = 80, 60
    x = ds.make_example_inputs(gru.cfg, [frames], seed=2)
    y = x["spect"].clone()
    y[..., changed_frame] += 3.0
    with torch.no_grad():
        a = gru(x["spect"], x["lengths"])[0][0]
        b = gru(y, x["lengths"])[0][0]
    differs = (a - b).abs().amax(dim=-1) > 0
    first = int(np.ceil((changed_frame - lookahead) / 2))
    assert not differs[:first].any()
    assert differs[first]


def test_latency_facts_are_consistent(gru: ds.DeepSpeech) -> None:
    lat = streaming_model(gru, 10).streaming_spec.latency
    context = gru.lookahead[0].context
    assert lat["lookahead_frames"] == 2 * (context - 1) + 15
    assert lat["algorithmic_latency_ms"] == lat["lookahead_frames"] * lat["frame_ms"]
    assert lat["latency_ms"] == lat["algorithmic_latency_ms"] + lat["chunk_wait_ms"]
    assert lat["output_delay_frames"] >= (context - 1) + 5
