"""Split planner: unit parsing, the prediction formula, profile + plan CLIs, and the shaped-link check."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from split.planner import (FRAMING_DOWN_BYTES, FRAMING_UP_BYTES, candidates, check_profile, format_bandwidth,
                           parse_bandwidth, parse_duration_ms, plan)
from tests.split_helpers import FEATS, make_dataset, make_split_pair


def test_parse_units() -> None:
    assert parse_bandwidth("1mbit") == 1e6
    assert parse_bandwidth("10Mbit/s") == 1e7
    assert parse_bandwidth("500kbit") == 5e5
    assert parse_bandwidth("2gbit") == 2e9
    assert parse_duration_ms("20ms") == 20.0 and parse_duration_ms("0.5s") == 500.0
    assert parse_duration_ms("300us") == pytest.approx(0.3)
    assert format_bandwidth(1e7) == "10mbit"
    for bad in ("fast", "-1mbit", "0mbit", "1 tbit"):
        with pytest.raises(ValueError, match="bandwidth"):
            parse_bandwidth(bad)
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms("soon")


def _profile() -> dict:
    """Three points: big input sent (cloud-only), a compressible middle, everything on the edge."""
    return {"version": 1, "rpc_overhead_ms": 1.0, "points": [
        {"name": "cloud-only", "edge_ms": 0.0, "cloud_ms": 10.0, "reply_bytes": 50,
         "codecs": {"fp32": {"bytes": 400_000, "encode_ms": 0.1, "decode_ms": 0.1, "wer": 10.0}}},
        {"name": "mid", "edge_ms": 20.0, "cloud_ms": 5.0, "reply_bytes": 50,
         "codecs": {"fp32": {"bytes": 100_000, "encode_ms": 0.1, "decode_ms": 0.1, "wer": 10.0},
                    "q2-ans": {"bytes": 5_000, "encode_ms": 1.0, "decode_ms": 1.0, "wer": 12.0}}},
        {"name": "edge-only", "edge_ms": 200.0, "cloud_ms": 0.0, "codecs": {}, "local": True, "wer": 10.0},
    ]}


def _expected(point: dict, codec: str | None, bw: float, rtt: float) -> float:
    if point.get("local"):
        return point["edge_ms"]
    m = point["codecs"][codec]
    wire = m["bytes"] + FRAMING_UP_BYTES + point["reply_bytes"] + FRAMING_DOWN_BYTES
    return point["edge_ms"] + m["encode_ms"] + 8e3 * wire / bw + rtt + 1.0 + m["decode_ms"] + point["cloud_ms"]


def test_prediction_formula_and_choice_per_bandwidth() -> None:
    profile = _profile()
    for bw in (1e5, 1e6, 1e8, 1e10):
        cands = candidates(profile, bw, 20.0)
        assert len(cands) == 4
        for c in cands:
            point = next(p for p in profile["points"] if p["name"] == c.point)
            assert c.predicted_ms == pytest.approx(_expected(point, None if c.codec == "-" else c.codec, bw, 20.0))
    sweep, chosen = plan(profile, [1e5, 1e6, 1e10], 20.0)
    # Slow link: the local point (nothing sent) wins; moderate: the compressed middle; very fast: cloud-only.
    assert [(c["point"], c["codec"]) for c in chosen] == [("edge-only", "-"), ("mid", "q2-ans"), ("cloud-only", "fp32")]
    assert len(sweep) == 12 and sum(r["chosen"] for r in sweep) == 3
    for c in chosen:
        same_bw = [r for r in sweep if r["bandwidth"] == c["bandwidth"]]
        assert c["predicted_ms"] == min(r["predicted_ms"] for r in same_bw)


def test_plan_options() -> None:
    profile = _profile()
    _, chosen = plan(profile, [1e6], 20.0, codecs=["fp32"])
    assert chosen[0]["codec"] in ("fp32", "-")
    _, chosen = plan(profile, [1e6], 20.0, max_wer=11.0)
    assert chosen[0]["codec"] != "q2-ans"
    # A 100x faster edge makes running everything locally the best choice at any bandwidth.
    _, chosen = plan(profile, [1e10], 20.0, edge_scale=0.01)
    assert chosen[0]["point"] == "edge-only"
    with pytest.raises(ValueError, match="WER limit"):
        plan(profile, [1e6], 20.0, max_wer=1.0)


def test_wer_budget_is_relative_to_the_unsplit_model() -> None:
    from split.planner import reference_wer, wer_limit

    profile = _profile()
    assert reference_wer(profile) == 10.0  # edge-only: the whole model
    assert wer_limit(profile) is None
    assert wer_limit(profile, max_delta_wer=1.0) == 11.0
    assert wer_limit(profile, max_wer=10.5, max_delta_wer=1.0) == 10.5
    # At 10 Mbit/s the 2-bit middle is fastest (see above) but costs 2 points: a one-point budget forbids it,
    # and the sweep keeps it, marked excluded.
    sweep, chosen = plan(profile, [1e7], 20.0, max_delta_wer=1.0)
    assert chosen[0]["codec"] != "q2-ans"
    assert [r["excluded"] for r in sweep if r["codec"] == "q2-ans"] == [True]
    _, chosen = plan(profile, [1e7], 20.0, max_delta_wer=2.0)
    assert chosen[0]["codec"] == "q2-ans"
    # Without the edge-only point the reference is the best unencoded boundary.
    no_local = {**profile, "points": [dict(p, wer_unencoded=9.5) for p in profile["points"] if not p.get("local")]}
    assert reference_wer(no_local) == 9.5
    with pytest.raises(ValueError, match="needs WERs"):
        wer_limit({"version": 1, "points": [{"name": "a", "edge_ms": 1, "cloud_ms": 1, "codecs": {}}]},
                  max_delta_wer=1.0)


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="version"):
        check_profile({"version": 9, "points": []})
    with pytest.raises(ValueError, match="no 'cloud_ms'"):
        check_profile({"version": 1, "points": [{"name": "a", "edge_ms": 1, "codecs": {}}]})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("plan")
    return make_split_pair(root / "pair"), make_dataset(root / "ds", count=4)


def test_profile_and_plan_cli(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main

    pair, ds = files
    profile_path = tmp_path / "profile.json"
    assert main(["profile", "--point", f"mid={pair}", "--full", str(pair / "model.onnx"), "--autoencoder",
                 f"mid={pair}", "--dataset", str(ds), "--codecs", "fp32,int8,q4-ans", "--out", str(profile_path)]) == 0
    profile = json.loads(profile_path.read_text())
    assert [p["name"] for p in profile["points"]] == ["cloud-only", "mid", "edge-only"]
    mid = profile["points"][1]
    assert set(mid["codecs"]) == {"fp32", "int8", "q4-ans", "ae", "ae-int8-zstd", "ae-q4-ans"}
    assert mid["codecs"]["int8"]["bytes"] < mid["codecs"]["fp32"]["bytes"]
    assert profile["points"][2]["local"] and profile["rpc_overhead_ms"] > 0
    # The unencoded split and the whole model give the same transcripts, so the same WER.
    assert mid["wer_unencoded"] == profile["points"][0]["wer_unencoded"]
    out = tmp_path / "plan"
    assert main(["plan", "--profile", str(profile_path), "--bandwidth", "1mbit,100mbit", "--rtt", "20ms",
                 "--edge-scale", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1mbit: split at" in printed and "100mbit: split at" in printed
    chosen = json.loads((out / "split_plan_chosen.json").read_text())["rows"]
    assert len(chosen) == 2 and all(r["chosen"] for r in chosen)
    # cloud-only x 3 codecs + mid x 6 codecs + edge-only
    assert (out / "split_plan.md").read_text().count("| 1mbit |") == 3 + 6 + 1
    # A zero-point budget: only candidates as accurate as the whole model, and the tables say the limit.
    assert main(["plan", "--profile", str(profile_path), "--bandwidth", "1mbit", "--max-delta-wer", "0",
                 "--out", str(out), "--name", "budget"]) == 0
    budget = json.loads((out / "budget_chosen.json").read_text())
    ref = profile["points"][-1]["wer"]
    assert budget["wer_limit"] == pytest.approx(ref) and budget["rows"][0]["wer"] <= ref + 1e-9
    assert "WER limit" in (out / "budget.md").read_text()
    assert "WER limit" in capsys.readouterr().out


def test_plan_cli_bad_input_exits_2(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main

    assert main(["plan", "--profile", str(tmp_path / "missing.json")]) == 2
    assert "profile not found" in capsys.readouterr().err
    p = tmp_path / "p.json"
    p.write_text(json.dumps(_profile()))
    assert main(["plan", "--profile", str(p), "--max-delta-wer", "-1"]) == 2
    assert "--max-delta-wer -1" in capsys.readouterr().err
    assert main(["plan", "--profile", str(p), "--bandwidth", "fast"]) == 2
    assert "bandwidth 'fast'" in capsys.readouterr().err
    assert main(["plan", "--profile", str(p), "--codec", "gzip9"]) == 2
    assert "not in the profile" in capsys.readouterr().err


def test_shaped_link_paces_large_transfers() -> None:
    """The veth + tbf link itself (skipped where namespaces are refused): a transfer cannot beat its rate."""
    import socket
    import subprocess
    import sys

    from split.netshape import ShapedLink, ShapingUnavailable

    link = ShapedLink(8e6)
    try:
        link.__enter__()
    except ShapingUnavailable as exc:
        pytest.skip(f"no shaped link here: {exc}")
    try:
        size = 400_000  # 0.4 s at 8 Mbit/s
        server = subprocess.Popen(link.exec_prefix + [sys.executable, "-c", (
            "import socket\n"
            f"s = socket.create_server(('{link.server_ip}', 9777))\n"
            "c, _ = s.accept()\nn = 0\n"
            f"while n < {size}:\n    n += len(c.recv(65536))\n"
            "c.sendall(b'k')\n")])
        for _ in range(50):
            try:
                conn = socket.create_connection((link.server_ip, 9777), timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        t0 = time.perf_counter()
        conn.sendall(b"x" * size)
        assert conn.recv(1) == b"k"
        elapsed = time.perf_counter() - t0
        conn.close()
        server.wait(10)
        up, _ = link.sent_bytes()
        assert up >= size
        # A lower bound only (the shaping works); never an upper bound on speed.
        assert elapsed >= 0.8 * 8 * size / 8e6
    finally:
        link.close()
    assert link.namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _mid_and_edge_only(pair: Path) -> tuple[dict, dict]:
    """A profile of one split point and edge-only, and the files to measure them with."""
    from split.plan_check import PointFiles

    profile = {"version": 1, "rpc_overhead_ms": 1.0, "points": [
        {"name": "mid", "edge_ms": 0.2, "cloud_ms": 0.2, "reply_bytes": 60,
         "codecs": {"int8": {"bytes": 400, "encode_ms": 0.1, "decode_ms": 0.1}}},
        {"name": "edge-only", "edge_ms": 0.3, "cloud_ms": 0.0, "codecs": {}, "local": True}]}
    return profile, {"mid": PointFiles(pair / "head.onnx", pair / "tail.onnx"),
                     "edge-only": PointFiles(pair / "model.onnx", None)}


def test_measured_check_runs_every_point(files: tuple[Path, Path], tmp_path: Path) -> None:
    """predicted vs measured over the shaped link (or pacing where namespaces are refused); numbers are
    reported, never asserted."""
    from split.edge import utterances_from_dataset
    from split.plan_check import measure_plan

    pair, ds = files
    utts = list(utterances_from_dataset(ds, "spec", 3))
    profile, files_by_point = _mid_and_edge_only(pair)
    result = measure_plan(profile, files_by_point, utts, [1e6], 2.0)
    assert result["link"] in ("netns", "pacing")
    assert [r["point"] for r in result["rows"]] == ["mid", "edge-only"]
    mid = result["rows"][0]
    # The server's emulated RTT sleep is part of every remote measurement.
    assert mid["measured_ms"] >= 2.0 and mid["codec"] == "int8"
    assert len(result["summary"]) == 1 and result["summary"][0]["chosen"] == "edge-only"
    print(f"\nlink {result['link']}: " + "; ".join(f"{r['point']} predicted {r['predicted_ms']:.2f} ms, measured "
                                                 f"{r['measured_ms']:.2f} ms" for r in result["rows"]))


def test_measured_check_keeps_to_the_wer_limit(files: tuple[Path, Path]) -> None:
    """A point whose only codec is over the limit is not run; the others are, with their codec's WER."""
    from split.edge import utterances_from_dataset
    from split.plan_check import measure_plan

    pair, ds = files
    utts = list(utterances_from_dataset(ds, "spec", 2))
    profile, files_by_point = _mid_and_edge_only(pair)
    profile["points"][0]["codecs"]["int8"]["wer"] = 30.0
    profile["points"][1]["wer"] = 20.0
    result = measure_plan(profile, files_by_point, utts, [1e6], 0.0, mode="pacing", wer_limit=21.0)
    assert [r["point"] for r in result["rows"]] == ["edge-only"] and result["wer_limit"] == 21.0
    assert result["summary"][0]["chosen"] == "edge-only"


def test_pacing_fallback_counts_transfer_time(files: tuple[Path, Path]) -> None:
    """Loopback with edge-side pacing: each request waits its bytes / rate (here bytes * 8 / 100 kbit/s)."""
    from split.edge import utterances_from_dataset
    from split.plan_check import PointFiles, measure_plan

    pair, ds = files
    profile = {"version": 1, "points": [
        {"name": "mid", "edge_ms": 0.2, "cloud_ms": 0.2,
         "codecs": {"fp32": {"bytes": 800, "encode_ms": 0.1, "decode_ms": 0.1}}}]}
    utts = list(utterances_from_dataset(ds, "spec", 2))
    result = measure_plan(profile, {"mid": PointFiles(pair / "head.onnx", pair / "tail.onnx")}, utts, [1e5], 0.0,
                          mode="pacing")
    row = result["rows"][0]
    assert result["link"] == "pacing" and "wire_up_bytes" not in row
    assert row["measured_ms"] >= 8e3 * row["request_bytes"] / 1e5


def test_slower_edge_is_emulated_by_a_sleep_after_each_head_inference(files: tuple[Path, Path],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import split.edge as edge

    pair, _ = files
    slept: list[float] = []
    monkeypatch.setattr(edge.time, "sleep", slept.append)
    x = np.zeros((1, 1, FEATS, 40), np.float32)
    edge.HeadModel(pair / "head.onnx").run(x, 40)
    assert slept == []
    edge.HeadModel(pair / "head.onnx", slowdown=4.0).run(x, 40)
    assert len(slept) == 1 and slept[0] > 0
    with pytest.raises(ValueError, match="slowdown 0.5"):
        edge.HeadModel(pair / "head.onnx", slowdown=0.5)


def test_measured_check_of_a_slower_edge(files: tuple[Path, Path]) -> None:
    from split.edge import utterances_from_dataset
    from split.plan_check import measure_plan

    pair, ds = files
    utts = list(utterances_from_dataset(ds, "spec", 2))
    profile, files_by_point = _mid_and_edge_only(pair)
    result = measure_plan(profile, files_by_point, utts, [1e6], 0.0, mode="pacing", edge_scale=40.0)
    assert result["edge_scale"] == 40.0
    rows = {r["point"]: r for r in result["rows"]}
    assert rows["edge-only"]["predicted_ms"] == pytest.approx(0.3 * 40)


def test_plan_measure_refuses_scales_it_cannot_emulate(files: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main

    p = tmp_path / "p.json"
    p.write_text(json.dumps(_profile()))
    for scale in (["--cloud-scale", "2"], ["--edge-scale", "0.5"]):
        assert main(["plan", "--profile", str(p), "--measure", *scale]) == 2
        assert "--measure runs Head and Tail on this machine" in capsys.readouterr().err
    assert main(["plan", "--profile", str(p), "--edge-scale", "0"]) == 2
    assert "expected positive" in capsys.readouterr().err
