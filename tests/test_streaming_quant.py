"""Static int8 (QDQ) of a streaming graph, calibrated chunk by chunk with the fp32 graph's own caches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from core.card import card_path_for, load_model_and_card
from export.streaming_quant import ChunkCalibrationReader, chunk_feeds
from core.dataset_dir import DatasetDir
from core.stream_runner import StreamRunner, ort_step, spec_from_card
from tests.card_checks import assert_card_round_trips



@pytest.fixture
def stream_export(uni_stream_export: Path) -> Path:
    return uni_stream_export


def test_calibration_feeds_carry_the_fp32_caches(stream_export: Path, tiny_an4_test: Path) -> None:
    _, card = load_model_and_card(stream_export)
    runner = StreamRunner(spec_from_card(card), ort_step(stream_export, threads=1))
    dataset = DatasetDir.open(tiny_an4_test)
    sample = dataset.samples[0]
    x = dataset.load(sample, "spect")[..., :sample.length].astype(np.float32)
    feeds = chunk_feeds(runner, x)
    assert len(feeds) == -(-sample.length // 16)
    assert all(not f["rnn_h"].any() for f in feeds[:1])  # a stream starts from zeros
    # Each later chunk is fed exactly what the fp32 graph returned for the chunk before.
    for before, after in zip(feeds, feeds[1:]):
        _, _, nxt = runner.step(before["chunk"], before["chunk_lengths"], before["end"],
                                {k: before[k] for k in nxt_names(card)})
        for name in nxt_names(card):
            np.testing.assert_array_equal(after[name], nxt[name])
    assert feeds[-1]["end"][0] and not feeds[0]["end"][0]
    assert int(feeds[-1]["frames_seen"][0]) == 16 * (len(feeds) - 1)
    reader = ChunkCalibrationReader(feeds)
    assert sum(1 for _ in iter(reader.get_next, None)) == len(feeds)


def nxt_names(card: dict) -> list[str]:
    return [s.name for s in card.streaming.states]


def test_int8_variant_of_a_streaming_graph(stream_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    from export.__main__ import main

    # A random tiny model's int8 agreement depends on the CPU's int8 kernels: open the gate for the plumbing.
    assert main(["variant", "--kind", "int8-static", "--model", str(stream_export), "--dataset", str(tiny_an4_test),
                 "--out", str(tmp_path), "--calibration-samples", "3", "--parity-samples", "3",
                 "--min-argmax-agreement", "0", "--max-text-cer", "1", "--threads", "1"]) == 0
    int8 = tmp_path / "model.int8-static.onnx"
    _, card = load_model_and_card(int8)
    assert_card_round_trips(card_path_for(int8), tmp_path)
    assert card.precision == "int8" and card.streaming.chunk_frames == 16
    calib = card.variant["calibration"]
    assert calib["samples"] == 3 and calib["chunks"] > calib["samples"]
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    par = card.parity.to_dict()
    assert 0.0 <= par["argmax_agreement"] <= 1.0 and par["samples"] == 3
    assert set(par["wer"]) >= {"int8_streaming", "fp32_streaming", "offline"}
    # The int8 graph streams through the same runner.
    from core.stream_runner import rollout

    runner = StreamRunner(spec_from_card(card), ort_step(int8, threads=1))
    probs = rollout(runner, np.zeros((1, 1, 161, 21), np.float32))
    assert probs.shape == (1, 11, 29) and np.isfinite(probs).all()


def test_gate_refuses_an_int8_graph_that_drifts(stream_export: Path, tiny_an4_test: Path, tmp_path: Path) -> None:
    from export.__main__ import main

    # Agreement can never exceed 1: a threshold above it must fail the gate, and nothing is written.
    assert main(["variant", "--kind", "int8-static", "--model", str(stream_export), "--dataset", str(tiny_an4_test),
                 "--out", str(tmp_path), "--calibration-samples", "2", "--parity-samples", "2",
                 "--min-argmax-agreement", "1.01", "--threads", "1"]) == 3
    assert not (tmp_path / "model.int8-static.onnx").exists()


def test_other_variant_kinds_are_refused_for_streaming(stream_export: Path, tiny_an4_test: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    assert main(["variant", "--kind", "fp16", "--model", str(stream_export), "--dataset", str(tiny_an4_test),
                 "--out", str(tmp_path)]) == 2
    assert "int8-static" in caplog.text
    json.loads(card_path_for(stream_export).read_text())  # the fp32 card is untouched
