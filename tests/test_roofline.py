"""The roofline model on synthetic numbers and a hand-countable graph (no timing involved)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.roofline import attainable_gflops, graph_traffic, ridge_intensity, roofline_point

H = 8  # hidden size of the synthetic graph


def _graph(path: Path, *, int8_weight: bool = False) -> Path:
    """x (time, batch, H) -> MatMul(w) -> Relu -> LSTM(hidden H): every byte countable by hand."""
    rng = np.random.default_rng(0)
    dtype = np.int8 if int8_weight else np.float32
    w = numpy_helper.from_array((rng.standard_normal((H, H)) * 10).astype(dtype), "w")
    lstm_w = numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32), "lstm_w")
    lstm_r = numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32), "lstm_r")
    nodes = [helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT)] if int8_weight else []
    nodes += [helper.make_node("MatMul", ["x", "wf" if int8_weight else "w"], ["h"]),
              helper.make_node("Relu", ["h"], ["a"]),
              helper.make_node("LSTM", ["a", "lstm_w", "lstm_r"], ["y", "y_h"], hidden_size=H)]
    graph = helper.make_graph(nodes, "synthetic",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["time", "batch", H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("y_h", TensorProto.FLOAT, None)],
                              [w, lstm_w, lstm_r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("time,batch", [(5, 1), (7, 3)])
def test_graph_traffic_counts_by_hand(tmp_path: Path, time: int, batch: int) -> None:
    t = graph_traffic(_graph(tmp_path / "g.onnx"), {"x": [time, batch, H]})
    r_bytes = 4 * H * H * 4
    assert t.weight_bytes == H * H * 4 + 2 * r_bytes
    assert t.recurrent_bytes == r_bytes * (time - 1)  # R re-read on every step after the first
    act = time * batch * H * 4  # one (time, batch, H) fp32 tensor
    # MatMul reads x writes h; Relu reads h writes a; LSTM reads a, writes y (time,1,batch,H) and y_h (1,batch,H).
    assert t.activation_bytes == 2 * act + 2 * act + act + act + batch * H * 4
    assert t.unknown_tensors == 0
    assert t.to_dict()["total_bytes"] == t.weight_bytes + t.recurrent_bytes + t.activation_bytes


def test_graph_traffic_counts_stored_dtype(tmp_path: Path) -> None:
    fp32 = graph_traffic(_graph(tmp_path / "f.onnx"), {"x": [4, 1, H]})
    int8 = graph_traffic(_graph(tmp_path / "q.onnx", int8_weight=True), {"x": [4, 1, H]})
    assert fp32.weight_bytes - int8.weight_bytes == H * H * 3
    # The Cast writes an fp32 copy of the weight that the MatMul reads: activation traffic both ways.
    assert int8.activation_bytes - fp32.activation_bytes == 2 * H * H * 4


def test_graph_traffic_refuses_unknown_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="graph's inputs"):
        graph_traffic(_graph(tmp_path / "g.onnx"), {"spect": [1, 1, H]})
    with pytest.raises(ValueError, match="rank"):
        graph_traffic(_graph(tmp_path / "g.onnx"), {"x": [1, H]})


def test_roofline_memory_and_compute_bound() -> None:
    peak, bw = 200.0, 20.0  # GFLOP/s, GB/s: ridge at 10 FLOP/byte
    assert ridge_intensity(peak, bw) == pytest.approx(10.0)
    # 1 GFLOP over 1 GB (intensity 1) in 0.1 s: 10 GFLOP/s against a 20 GFLOP/s bandwidth roof.
    mem = roofline_point(1e9, 1e9, 0.1, peak, bw)
    assert mem["bound"] == "memory" and mem["roof_gflops"] == pytest.approx(20.0)
    assert mem["fraction_of_roof"] == pytest.approx(0.5) and mem["attained_gbs"] == pytest.approx(10.0)
    # The memory-bound fraction is the attained share of the bandwidth.
    assert mem["fraction_of_roof"] == pytest.approx(mem["attained_gbs"] / bw)
    # 100 GFLOP over 1 GB (intensity 100) in 1 s: 100 GFLOP/s against the 200 GFLOP/s compute roof.
    comp = roofline_point(100e9, 1e9, 1.0, peak, bw)
    assert comp["bound"] == "compute" and comp["fraction_of_roof"] == pytest.approx(0.5)
    assert attainable_gflops(10.0, peak, bw) == pytest.approx(peak)
    with pytest.raises(ValueError, match="positive"):
        roofline_point(1e9, 0, 0.1, peak, bw)


def test_roofline_point_past_the_memory_roof_is_judged_against_the_cache() -> None:
    peak, bw, cache = 200.0, 20.0, 80.0
    # Intensity 1 at 40 GB/s: twice what memory allows, so part of the bytes came from cache.
    fast = roofline_point(1e9, 1e9, 0.025, peak, bw, cache)
    assert fast["bound"] == "cache" and fast["roof_gflops"] == pytest.approx(80.0)
    assert fast["fraction_of_roof"] == pytest.approx(0.5) and fast["cache_bandwidth_gbs"] == cache
    # Within the memory roof the cache changes nothing; without a cache triad the old reading stands (> 100%).
    slow = roofline_point(1e9, 1e9, 0.1, peak, bw, cache)
    assert slow["bound"] == "memory" and slow["fraction_of_roof"] == pytest.approx(0.5)
    assert roofline_point(1e9, 1e9, 0.025, peak, bw)["fraction_of_roof"] == pytest.approx(2.0)
    # A cache roof above the compute peak at this intensity: compute binds.
    assert roofline_point(1e9, 1e8, 0.025, peak, bw, 5000.0)["bound"] == "compute"
    with pytest.raises(ValueError, match="positive"):
        roofline_point(1e9, 1e9, 0.1, peak, bw, 0.0)


def test_last_level_cache_from_sysfs_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.machine as machine

    monkeypatch.setattr(machine, "cache_sizes", lambda cpu=0: {"L1d": "32K", "L1i": "32K", "L2": "512K", "L3": "32768K"})
    assert machine.last_level_cache_bytes() == 32 << 20
    monkeypatch.setattr(machine, "cache_sizes", lambda cpu=0: {"L1d": "48K", "L2": "2M"})
    assert machine.last_level_cache_bytes() == 2 << 20
    monkeypatch.setattr(machine, "cache_sizes", lambda cpu=0: {})
    assert machine.last_level_cache_bytes() is None


def test_graph_traffic_falls_back_to_onnx_inference(tmp_path: Path) -> None:
    """An opset-18 ReduceL2 whose axes come from a Constant node (as in Optimum's wav2vec2 export) stops
    onnxruntime's symbolic inference; onnx's own inference still sizes every tensor."""
    nodes = [helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64))),
             helper.make_node("ReduceL2", ["x", "axes"], ["n"], keepdims=1),
             helper.make_node("Mul", ["x", "n"], ["y"])]
    graph = helper.make_graph(nodes, "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "r.onnx"))
    t = graph_traffic(tmp_path / "r.onnx", {"x": [3, 4]})
    # ReduceL2 reads x (48 B) and axes (8 B), writes n (12 B); Mul reads x and n, writes y (48 B).
    assert (t.weight_bytes, t.unknown_tensors) == (0, 0)
    assert t.activation_bytes == 48 + 8 + 12 + 48 + 12 + 48
