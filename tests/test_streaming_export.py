"""`python -m export deepspeech2 --streaming` and `python -m runners stream`: the ONNX chunk graph, its card,
and the rollout of real-format V3.0 unidirectional checkpoints (GRU fixture, LSTM) against the offline forward."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from core.card import load_model_and_card
from families.deepspeech2 import recipe as ds
from core.ctc import greedy_decode
from tests.conftest import make_tiny_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


def export(checkpoint: Path, chunk: int, out: Path) -> Path:
    from export.__main__ import main

    assert main(["deepspeech2", "--checkpoint", str(checkpoint), "--streaming", "--chunk-frames", str(chunk),
                 "--out", str(out), "--threads", "1"]) == 0
    return out / "model.onnx"


@pytest.fixture(scope="module")
def lstm_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("uni") / "uni_lstm.ckpt", bidirectional=False,
                                rnn_type="lstm", hidden=8, layers=2, seed=5)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, lstm_ckpt: Path) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, onnx) for: the GRU fixture at 1 frame and 6 frames a chunk, the LSTM at 5."""
    gru = FIXTURES / "ds2_v3_unidir_gru_tiny.ckpt"
    root = tmp_path_factory.mktemp("stream")
    return {"gru1": (gru, export(gru, 1, root / "gru1")), "gru6": (gru, export(gru, 6, root / "gru6")),
            "lstm5": (lstm_ckpt, export(lstm_ckpt, 5, root / "lstm5"))}


def test_card_records_chunk_states_latency_and_parity(exports: dict) -> None:
    _, onnx_path = exports["gru6"]
    _, model_card = load_model_and_card(onnx_path)  # the card's inputs/outputs match the graph
    card = model_card.to_dict()
    assert model_card.streaming.chunk_frames == 6
    s = card["streaming"]
    assert s["chunk_frames"] == 6 and card["export_options"] == {"streaming": True, "chunk_frames": 6}
    names = [st["name"] for st in s["states"]]
    assert names == ["frames_seen", "conv1_cache", "conv2_cache", "rnn_h", "lookahead_cache"]
    for st in s["states"]:
        assert st["input"] == st["name"] and st["output"] == st["name"] + "_next"
    shapes = {st["name"]: st["shape"] for st in s["states"]}
    assert shapes["conv1_cache"] == ["batch", 1, 161, 10]
    assert shapes["rnn_h"][1] == "batch"
    inputs = [i["name"] for i in card["inputs"]]
    assert inputs == ["chunk", "chunk_lengths", "end", *names]
    assert card["inputs"][0]["shape"] == ["batch", 1, 161, 6]
    lat = s["latency"]
    for key in ("output_delay_frames", "latency_ms", "algorithmic_latency_ms", "lookahead_frames"):
        assert lat[key] > 0
    assert card["parity"]["passed"] is True
    for runner, diff in card["parity"]["max_abs"].items():
        assert diff <= 1e-4, runner
    assert all(case["onnxruntime"]["same_transcript"] for case in card["parity"]["cases"])
    lstm_card = json.loads((exports["lstm5"][1].with_name("model.card.json")).read_text())
    assert "rnn_c" in [st["name"] for st in lstm_card["streaming"]["states"]]


@pytest.mark.parametrize("which", ["gru1", "gru6", "lstm5"])
@pytest.mark.parametrize("frames", [3, 17])
def test_runner_cli_equals_offline(exports: dict, tmp_path: Path, which: str, frames: int) -> None:
    from runners.__main__ import main

    checkpoint, onnx_path = exports[which]
    model = ds.load(checkpoint).module
    x = ds.make_example_inputs(model.cfg, [frames], seed=7)
    with torch.no_grad():
        probs, lengths = model(x["spect"], x["lengths"])
    ref = probs[:, :int(lengths[0])].numpy()
    np.save(tmp_path / "x.npy", x["spect"].numpy())
    assert main(["stream", "--model", str(onnx_path), "--features", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy"), "--threads", "1"]) == 0
    got = np.load(tmp_path / "y.npy")
    assert got.shape == ref.shape == (1, int(lengths[0]), 29)
    assert np.abs(got - ref).max() <= 1e-4
    labels = model.cfg.labels
    assert greedy_decode(got[0], None, labels, 0) == greedy_decode(ref[0], None, labels, 0)


def test_bidirectional_checkpoint_is_refused_by_the_cli(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    bi = make_tiny_checkpoint(tmp_path / "bi.ckpt", bidirectional=True)
    assert main(["deepspeech2", "--checkpoint", str(bi), "--streaming", "--chunk-frames", "8",
                 "--out", str(tmp_path / "out")]) == 2
    assert "bidirectional" in caplog.text
    assert not (tmp_path / "out" / "model.onnx").exists()


@pytest.mark.parametrize("flags,message", [(["--streaming"], "--chunk-frames"),
                                           (["--chunk-frames", "8"], "--streaming"),
                                           (["--streaming", "--chunk-frames", "0"], "positive")])
def test_streaming_flags_are_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture, flags: list, message: str) -> None:
    from export.__main__ import main

    gru = FIXTURES / "ds2_v3_unidir_gru_tiny.ckpt"
    assert main(["deepspeech2", "--checkpoint", str(gru), *flags, "--out", str(tmp_path / "out")]) == 2
    assert message in caplog.text


def test_gate_catches_a_stream_that_is_not_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that ignores the end flag (feeds no zero padding past the last frame) must not be written."""
    from export.__main__ import main
    from families.deepspeech2.streaming import DeepSpeechStreaming

    original = DeepSpeechStreaming.streaming_forward

    def never_flushes(self, chunk, lengths, end, *states):
        return original(self, chunk, lengths, torch.zeros_like(end), *states)

    monkeypatch.setattr(DeepSpeechStreaming, "streaming_forward", never_flushes)
    gru = FIXTURES / "ds2_v3_unidir_gru_tiny.ckpt"
    assert main(["deepspeech2", "--checkpoint", str(gru), "--streaming", "--chunk-frames", "16",
                 "--out", str(tmp_path / "out"), "--threads", "1"]) == 3
    assert not (tmp_path / "out" / "model.onnx").exists()
    assert not (tmp_path / "out" / "model.card.json").exists()
    report = json.loads((tmp_path / "out" / "model.parity_failed.json").read_text())
    assert report["passed"] is False


def test_rerun_skips_an_up_to_date_export(exports: dict, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    caplog.set_level(logging.INFO)
    checkpoint, onnx_path = exports["gru6"]
    before = onnx_path.stat().st_mtime_ns
    assert main(["deepspeech2", "--checkpoint", str(checkpoint), "--streaming", "--chunk-frames", "6",
                 "--out", str(onnx_path.parent)]) == 0
    assert "up to date" in caplog.text and onnx_path.stat().st_mtime_ns == before
