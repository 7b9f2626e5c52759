"""Bad input to a streaming graph: refused with a message naming the tensor and what was expected, never a
crash inside the runtime or a silently wrong output; a stream that ends mid-chunk is padded and flushed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from families.deepspeech2 import recipe as ds
from families.deepspeech2.streaming import streaming_model
from core.streaming import torch_step
from core.stream_runner import Stream, StreamError, StreamRunner, rollout

GRU_FIXTURE = Path(__file__).parent / "fixtures" / "ds2_v3_unidir_gru_tiny.ckpt"
CHUNK = 4


@pytest.fixture(scope="module")
def model() -> ds.DeepSpeech:
    return ds.load(GRU_FIXTURE).module


@pytest.fixture(scope="module")
def runner(model: ds.DeepSpeech) -> StreamRunner:
    streaming = streaming_model(model, CHUNK)
    return StreamRunner(streaming.streaming_spec, torch_step(streaming))


def zeros_state(runner: StreamRunner, batch: int = 1) -> dict[str, np.ndarray]:
    return {s.name: s.zeros(batch) for s in runner.spec.states}


def chunk(frames: int = CHUNK, dtype=np.float32) -> np.ndarray:
    return np.zeros((1, 1, 161, frames), dtype=dtype)


def step(runner: StreamRunner, **changes):
    args = {"chunk": chunk(), "lengths": np.array([CHUNK]), "end": np.array([False]), "tensors": zeros_state(runner)}
    args.update(changes)
    return runner.step(args["chunk"], args["lengths"], args["end"], args["tensors"])


def test_state_of_wrong_shape_is_refused(runner: StreamRunner) -> None:
    state = zeros_state(runner)
    state["conv1_cache"] = np.zeros((1, 1, 161, 9), np.float32)
    with pytest.raises(StreamError, match=r"state conv1_cache: expected shape \(1, 1, 161, 10\)"):
        step(runner, tensors=state)


@pytest.mark.parametrize("name,bad", [("rnn_h", np.float64), ("frames_seen", np.int32)])
def test_state_of_wrong_dtype_is_refused(runner: StreamRunner, name: str, bad) -> None:
    state = zeros_state(runner)
    state[name] = state[name].astype(bad)
    with pytest.raises(StreamError, match=f"state {name}: expected dtype"):
        step(runner, tensors=state)


def test_missing_unknown_and_nan_states_are_refused(runner: StreamRunner) -> None:
    state = zeros_state(runner)
    del state["lookahead_cache"]
    state["hidden"] = np.zeros(1, np.float32)
    with pytest.raises(StreamError, match=r"missing \['lookahead_cache'\], unknown \['hidden'\]"):
        step(runner, tensors=state)
    state = zeros_state(runner)
    state["conv2_cache"][0, 0, 0, 0] = np.nan
    with pytest.raises(StreamError, match="conv2_cache: holds NaN"):
        step(runner, tensors=state)


@pytest.mark.parametrize("bad,message", [(chunk(CHUNK + 1), "exactly 4 frames"),
                                         (chunk(CHUNK, np.float64), "float32"),
                                         (np.zeros((1, 161, CHUNK), np.float32), "expected shape")])
def test_chunk_of_wrong_size_or_dtype_is_refused(runner: StreamRunner, bad: np.ndarray, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        step(runner, chunk=bad)


def test_short_chunk_must_be_the_last_one(runner: StreamRunner) -> None:
    with pytest.raises(StreamError, match="only a stream's last chunk"):
        step(runner, lengths=np.array([2]))
    with pytest.raises(StreamError, match=r"0..4 real frames"):
        step(runner, lengths=np.array([5]), end=np.array([True]))
    probs, lengths, _ = step(runner, lengths=np.array([2]), end=np.array([True]))
    assert int(lengths[0]) == 1  # two frames: one output frame, flushed at once


def test_stream_ending_mid_chunk_is_padded_and_flushed(model: ds.DeepSpeech, runner: StreamRunner) -> None:
    frames = 3 * CHUNK + 2
    x = ds.make_example_inputs(model.cfg, [frames], seed=4)
    with torch.no_grad():
        probs, lengths = model(x["spect"], x["lengths"])
    stream = runner.start()
    got = [stream.push(x["spect"].numpy())]
    assert stream._pending.shape[-1] == 2  # the partial chunk waits for more frames or the end
    got.append(stream.finish())
    np.testing.assert_allclose(np.concatenate(got), probs[0, :int(lengths[0])].numpy(), atol=1e-5)


def test_pushing_after_the_end_is_refused(runner: StreamRunner) -> None:
    stream = runner.start()
    stream.push(chunk(6))
    stream.finish()
    with pytest.raises(StreamError, match="already ended"):
        stream.push(chunk(CHUNK))


def test_features_of_wrong_layout_are_refused(runner: StreamRunner) -> None:
    with pytest.raises(StreamError, match=r"features: expected float32 \(1, 1, 161, frames\)"):
        runner.start().push(np.zeros((1, 1, 160, 8), np.float32))


def test_resuming_with_another_streams_state_is_refused(runner: StreamRunner) -> None:
    a, b = runner.start(), runner.start()
    a.push(chunk(2 * CHUNK))
    b.push(chunk(CHUNK))
    with pytest.raises(StreamError, match=f"belongs to {a.stream_id}, not to {b.stream_id}"):
        b.resume(a.state)
    # The same tensors passed off under b's name and count are caught by the graph's own frame counter.
    forged = type(a.state)(b.stream_id, b.state.frames_seen, a.state.tensors)
    with pytest.raises(StreamError, match="frames_seen tensor says 8 frames, the stream consumed 4"):
        b.resume(forged)
    b.resume(b.state)  # its own state is fine
    assert isinstance(b, Stream)


def test_rollout_result_does_not_depend_on_how_frames_arrive(model: ds.DeepSpeech, runner: StreamRunner) -> None:
    x = ds.make_example_inputs(model.cfg, [11], seed=5)["spect"].numpy()
    np.testing.assert_array_equal(rollout(runner, x, 1), rollout(runner, x))


# -- the CLI -------------------------------------------------------------------------------------------------

@pytest.fixture
def exported(uni_stream_export: Path) -> Path:
    return uni_stream_export


@pytest.mark.parametrize("features,message", [
    (np.zeros((1, 161, 20), np.float32), "expected float32 (1, 1, 161, frames)"),
    (np.zeros((1, 1, 161, 20), np.float64), "expected float32"),
    (np.zeros((1, 1, 161, 0), np.float32), "no frames"),
])
def test_cli_refuses_bad_features(exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  features: np.ndarray, message: str) -> None:
    from runners.__main__ import main

    np.save(tmp_path / "x.npy", features)
    assert main(["stream", "--model", str(exported), "--features", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 2
    assert message in caplog.text and "x.npy" in caplog.text
    assert not (tmp_path / "y.npy").exists()


def test_cli_refuses_missing_or_unreadable_features(exported: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from runners.__main__ import main

    (tmp_path / "bad.npy").write_bytes(b"not an array")
    for path, message in ((tmp_path / "none.npy", "not found"), (tmp_path / "bad.npy", "not a readable .npy")):
        assert main(["stream", "--model", str(exported), "--features", str(path), "--out", str(tmp_path / "y.npy")]) == 2
        assert message in caplog.text
    assert not (tmp_path / "y.npy").exists()


def test_cli_refuses_an_offline_export(tiny_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from runners.__main__ import main

    np.save(tmp_path / "x.npy", np.zeros((1, 1, 161, 20), np.float32))
    assert main(["stream", "--model", str(tiny_export), "--features", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 2
    assert "not a streaming export" in caplog.text
