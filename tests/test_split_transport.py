"""Split transport: the gRPC server and edge client, good and bad requests, many clients, shutdown, TLS."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from split.codecs import get_codec
from split.edge import EdgeClient, EdgeError, HeadModel, Utterance, outputs_of, run_one
from split.proto import split_pb2 as pb
from split.server import ServerConfig, build_server
from split.tail import TailModel
from split.wire import INFER_METHOD, PROTOCOL_VERSION, RequestError, build_request, parse_request
from tests.split_helpers import CHANNELS, FEATS, LABELS, make_dataset, make_split_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from split.codecs.klt import KLT_FILE, fit_klt, with_predictors
    from tests.split_helpers import boundary_example

    out = make_split_pair(tmp_path_factory.mktemp("pair"))
    train = [boundary_example(seed=s, frames=100)[0] for s in (7, 8)]
    with_predictors(fit_klt(np.concatenate(train), relative_step=0.05), train).save(out / KLT_FILE)
    return out


def _start(pair: Path, **overrides: object) -> tuple[grpc.Server, int, object]:
    config = ServerConfig(tail=pair / "tail.onnx", autoencoder_dir=pair, port=0, **overrides)
    server, port, service = build_server(config)
    server.start()
    return server, port, service


@pytest.fixture(scope="module")
def server(pair: Path):
    srv, port, service = _start(pair, workers=4, max_message_bytes=1024 * 1024)
    yield f"127.0.0.1:{port}", service
    srv.stop(grace=None)


@pytest.fixture(scope="module")
def slow_server(pair: Path):
    srv, port, service = _start(pair, workers=2, added_delay_ms=400.0)
    yield f"127.0.0.1:{port}", service
    srv.stop(grace=None)


@pytest.fixture(scope="module")
def head(pair: Path) -> HeadModel:
    return HeadModel(pair / "head.onnx")


@pytest.fixture(scope="module")
def tail(pair: Path) -> TailModel:
    return TailModel(pair / "tail.onnx")


def _utt(seed: int, length: int = 30) -> Utterance:
    rng = np.random.default_rng(seed)
    return Utterance(f"u{seed}", rng.standard_normal((1, 1, FEATS, length)).astype(np.float32), length, "HELLO")


def _request(head: HeadModel, utt: Utterance, encode_with: str = "fp32", **fields: object) -> pb.InferRequest:
    """A good request, then `fields` overwritten (to make it bad in one named way)."""
    boundary, lengths = head.run(utt.features, utt.length)
    req = build_request(get_codec(encode_with).encode(boundary), codec=encode_with, shape=boundary.shape,
                        lengths=lengths, request_id=utt.key, return_output=True, send_time=time.time())
    for key, value in fields.items():
        if isinstance(value, list):
            del getattr(req, key)[:]
            getattr(req, key).extend(value)
        else:
            setattr(req, key, value)
    return req


def _raw_call(target: str, payload: bytes, timeout: float = 10.0) -> bytes:
    with grpc.insecure_channel(target) as channel:
        return channel.unary_unary(INFER_METHOD)(payload, timeout=timeout)


def _status(target: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        _raw_call(target, payload)
    return info.value.code(), info.value.details()


def _expected(head: HeadModel, tail: TailModel, utt: Utterance) -> tuple[str, np.ndarray]:
    boundary, lengths = head.run(utt.features, utt.length)
    outputs = tail.run(boundary, lengths)
    return tail.transcripts(outputs, lengths)[0], outputs["logits"]


# --- good requests -----------------------------------------------------------------------------------


def test_infer_matches_local_tail_of_head(server, head: HeadModel, tail: TailModel) -> None:
    target, _ = server
    client = EdgeClient(target)
    utt = _utt(1)
    row, reply = run_one(head, get_codec("fp32"), client, utt, return_output=True)
    text, logits = _expected(head, tail, utt)
    assert reply.version == PROTOCOL_VERSION and reply.request_id.startswith(utt.key)
    assert row["transcript"] == text
    np.testing.assert_allclose(outputs_of(reply)["logits"], logits, atol=1e-6)
    stages = ["edge", "encode", "send", "network", "decode", "cloud", "reply"]
    assert all(row[s] >= 0 for s in stages if s != "network")
    # The stages account for the end-to-end time (an identity of the bookkeeping, not a speed check).
    assert abs(sum(row[s] for s in stages) - row["e2e"]) <= 0.05 * row["e2e"] + 0.5
    health = client.health()
    assert health.status == "SERVING" and "q4-ans" in health.codecs and "ae-q4-ans" in health.codecs
    assert "klt-ans" in health.codecs and "klt-lp-3x" in health.codecs
    assert health.tail_input == "features" and list(health.tail_input_shape) == [-1, -1, CHANNELS]
    client.close()


@pytest.mark.parametrize("codec", ["int8-huffman", "q4-ans", "ae-q4-ans", "klt-ans", "klt-lp-3x"])
def test_lossy_codecs_reach_the_tail(server, head: HeadModel, pair: Path, codec: str) -> None:
    target, _ = server
    client = EdgeClient(target)
    row, reply = run_one(head, get_codec(codec, pair), client, _utt(2), return_output=True)
    assert outputs_of(reply)["logits"].shape[1] == 15 and np.isfinite(outputs_of(reply)["logits"]).all()
    assert row["payload_bytes"] < 4 * row["elements"]
    client.close()


# --- bad requests: answered with a status naming the problem, the server keeps serving ---------------


def test_bad_requests_get_invalid_argument_naming_the_field(server, head: HeadModel, tail: TailModel) -> None:
    target, service = server
    utt = _utt(3)
    good = _request(head, utt)
    cases = {
        "version": _request(head, utt, version=7).SerializeToString(),
        "codec": _request(head, utt, codec="gzip9").SerializeToString(),
        "dtype": _request(head, utt, dtype="float64").SerializeToString(),
        "shape": _request(head, utt, shape=[1, 15, CHANNELS, 1, 1]).SerializeToString(),
        "channels": _request(head, utt, shape=[1, 20, 9]).SerializeToString(),
        "lengths": _request(head, utt, lengths=[1, 2]).SerializeToString(),
        "payload": _request(head, utt, shape=[1, 16, CHANNELS]).SerializeToString(),
        "checksum": _request(head, utt, payload=b"\0" * len(good.payload)).SerializeToString(),
        "not a valid": good.SerializeToString()[:-3],  # truncated inside the last field
        "garbage": os.urandom(64) + b"\xff\xff\xff\xff",
    }
    expect = {"version": "version: 7", "codec": "codec: 'gzip9' is unknown", "dtype": "dtype: 'float64'",
              "shape": "shape: rank 5", "channels": "takes 12 channels", "lengths": "lengths: 2 values",
              "payload": "payload (fp32): payload is", "checksum": "checksum", "not a valid": "not a valid",
              "garbage": "not a valid"}
    refused_before = service.refused
    for name, payload in cases.items():
        code, details = _status(target, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert expect[name] in details, (name, details)
    assert service.refused - refused_before == len(cases)
    reply = pb.InferReply.FromString(_raw_call(target, good.SerializeToString()))
    assert reply.transcripts[0] == _expected(head, tail, utt)[0]


def test_oversized_message_is_refused_by_size_limit(server, head: HeadModel) -> None:
    target, _ = server
    big = _request(head, _utt(4), payload=os.urandom(2 * 1024 * 1024))
    code, _ = _status(target, big.SerializeToString())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert EdgeClient(target).health().status == "SERVING"


def test_garbage_bytes_and_stalled_connections_do_not_stop_the_server(server, head: HeadModel,
                                                                     tail: TailModel) -> None:
    target, _ = server
    host, port = target.rsplit(":", 1)
    socks = []
    garbage = socket.create_connection((host, int(port)))
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4096))
    socks.append(garbage)
    stalled = socket.create_connection((host, int(port)))
    # An HTTP/2 preface and the first bytes of a frame header, then nothing: a client that never finishes.
    stalled.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
    socks.append(stalled)
    silent = socket.create_connection((host, int(port)))
    socks.append(silent)
    try:
        utt = _utt(5)
        reply = pb.InferReply.FromString(_raw_call(target, _request(head, utt).SerializeToString()))
        assert reply.transcripts[0] == _expected(head, tail, utt)[0]
    finally:
        for s in socks:
            s.close()


def test_client_disconnecting_mid_call_and_deadlines(slow_server, head: HeadModel, tail: TailModel) -> None:
    target, _ = slow_server
    utt = _utt(6)
    payload = _request(head, utt).SerializeToString()
    with grpc.insecure_channel(target) as channel:
        future = channel.unary_unary(INFER_METHOD).future(payload, timeout=10)
        time.sleep(0.1)
        future.cancel()
        assert future.cancelled()
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(INFER_METHOD)(payload, timeout=0.05)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    reply = pb.InferReply.FromString(_raw_call(target, payload))
    assert reply.transcripts[0] == _expected(head, tail, utt)[0]
    assert reply.times.added_delay_ms >= 400.0  # the sleep as measured (never shorter than asked)


def test_sixteen_concurrent_clients_with_bad_ones_mixed_in(server, head: HeadModel, tail: TailModel) -> None:
    """16 edges at once, 4 requests each, every 4th a bad one: the good ones all get the right answer.

    Also the load figures (requests/s, p99) are printed: informational, never asserted."""
    target, _ = server
    utts = [_utt(100 + i, 20 + i) for i in range(16)]
    expected = {u.key: _expected(head, tail, u)[0] for u in utts}
    requests = {u.key: _request(head, u, encode_with="int8-zstd").SerializeToString() for u in utts}

    def client(i: int) -> list[tuple[str, float]]:
        u = utts[i]
        results = []
        with grpc.insecure_channel(target) as channel:
            stub = channel.unary_unary(INFER_METHOD)
            for k in range(4):
                t0 = time.perf_counter()
                if (i + k) % 4 == 0:
                    with pytest.raises(grpc.RpcError) as info:
                        stub(requests[u.key][:-3], timeout=30)
                    results.append((info.value.code().name, time.perf_counter() - t0))
                else:
                    reply = pb.InferReply.FromString(stub(requests[u.key], timeout=30))
                    results.append(("ok" if reply.transcripts[0] == expected[u.key] else "WRONG",
                                    time.perf_counter() - t0))
        return results

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = [r for rs in pool.map(client, range(16)) for r in rs]
    wall = time.perf_counter() - t0
    kinds = [k for k, _ in results]
    assert kinds.count("ok") == 48 and kinds.count("INVALID_ARGUMENT") == 16
    lat = np.array([t for k, t in results if k == "ok"]) * 1e3
    print(f"\nload: 16 clients, {len(results)} requests in {wall:.2f} s = {len(results) / wall:.1f} req/s; "
          f"latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")


# --- the edge's errors ------------------------------------------------------------------------------


def test_edge_reports_unreachable_server_and_error_status(server, head: HeadModel) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(EdgeError, match="unreachable"):
        EdgeClient(f"127.0.0.1:{free_port}", timeout_s=5).health()
    target, _ = server
    client = EdgeClient(target)
    with pytest.raises(EdgeError, match="INVALID_ARGUMENT: codec: 'gzip9'"):
        client.infer_raw(_request(head, _utt(7), codec="gzip9").SerializeToString())
    client.close()


def test_parse_request_unit_checks() -> None:
    with pytest.raises(RequestError, match="not a valid"):
        parse_request(b"\x0a\xff", ["fp32"])
    req = pb.InferRequest(version=PROTOCOL_VERSION, codec="fp32", dtype="float32", shape=[1, 0, 3])
    with pytest.raises(RequestError, match="dimension outside"):
        parse_request(req.SerializeToString(), ["fp32"])
    req = pb.InferRequest(version=PROTOCOL_VERSION, codec="fp32", dtype="float32", shape=[1, 4, 3],
                          payload=b"\0" * 100_000)
    with pytest.raises(RequestError, match="far more than 12"):
        parse_request(req.SerializeToString(), ["fp32"])
    req = pb.InferRequest(version=PROTOCOL_VERSION, codec="fp32", dtype="float32", shape=[4096, 4096, 4096])
    with pytest.raises(RequestError, match="over this server's limit"):
        parse_request(req.SerializeToString(), ["fp32"])


# --- CLI, shutdown, TLS -----------------------------------------------------------------------------


def test_edge_cli_writes_timing_tables(server, pair: Path, tmp_path: Path) -> None:
    from split.__main__ import main

    target, _ = server
    ds = make_dataset(tmp_path / "ds", count=3)
    out = tmp_path / "run"
    assert main(["edge", "--head", str(pair / "head.onnx"), "--server", target, "--dataset", str(ds),
                 "--codec", "q4-ans", "--out", str(out), "--no-progress", "--return-output"]) == 0
    import json

    timing = json.loads((out / "timing.json").read_text())
    assert [r["stage"] for r in timing["rows"]] == ["edge", "encode", "send", "network", "decode", "cloud",
                                                    "reply", "e2e"]
    assert all(r["count"] == 3 and r["p90_ms"] >= r["median_ms"] for r in timing["rows"])
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all((out / "logits" / f"{r['key']}.bin").is_file() for r in rows)
    assert "| edge |" in (out / "timing.md").read_text() and timing["payload_bits_per_element"] < 4
    # The same as a load test: 4 concurrent clients share the utterances; every one still answered once.
    load = tmp_path / "load"
    assert main(["edge", "--head", str(pair / "head.onnx"), "--server", target, "--dataset", str(ds),
                 "--codec", "int8", "--clients", "4", "--out", str(load), "--no-progress"]) == 0
    timing = json.loads((load / "timing.json").read_text())
    assert timing["clients"] == 4 and timing["requests_per_s"] > 0 and timing["utterances"] == 3
    assert sorted(json.loads(line)["key"] for line in (load / "utterances.jsonl").read_text().splitlines()) == \
        sorted(r["key"] for r in rows)
    paced = tmp_path / "paced"
    assert main(["edge", "--head", str(pair / "head.onnx"), "--server", target, "--dataset", str(ds),
                 "--codec", "fp32", "--pace", "200kbit", "--out", str(paced), "--no-progress"]) == 0
    for row in (json.loads(line) for line in (paced / "utterances.jsonl").read_text().splitlines()):
        assert row["network"] >= 8e3 * row["request_bytes"] / 2e5  # the emulated uplink's transmission time


def test_edge_cli_tail_card_makes_a_run_dir_that_postprocess_scores(server, pair: Path, tmp_path: Path) -> None:
    """With --tail-card the edge's output folder is a runner-style run dir: per-sample rows and run.json, scored
    by postprocess to the transcripts the server sent back."""
    import json

    from core.model_card import ModelCard
    from postprocess.score import score_run
    from core.dataset_dir import HEADER, DatasetDir
    from split.__main__ import main

    target, _ = server
    ds = make_dataset(tmp_path / "ds", count=3)
    header = json.loads((ds / HEADER).read_text())
    (ds / HEADER).write_text(json.dumps({**header, "feature": {"sample_rate": 16000}}))
    card = {**json.loads((pair / "model.card.json").read_text()), "onnx": "tail.onnx"}
    card["outputs"] = [{**o, "role": "logits", "time_axis": 1} for o in card["outputs"]]
    (tmp_path / "tail.card.json").write_text(json.dumps(card))
    out = tmp_path / "run"
    args = ["edge", "--head", str(pair / "head.onnx"), "--server", target, "--dataset", str(ds), "--codec", "fp32",
            "--out", str(out), "--no-progress", "--tail-card", str(tmp_path / "tail.card.json")]
    assert main(args) == 2  # a run dir needs the outputs back
    assert main(args + ["--return-output"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "split-edge" and len(run["samples"]) == 3
    rows = {json.loads(line)["key"]: json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()}
    for sample in run["samples"]:  # rows without the batch axis, as the runners write them
        shape = sample["shapes"]["logits"]
        assert shape == rows[sample["key"]]["output_shapes"]["logits"] and len(shape) == 2 and shape[1] == len(LABELS)
        assert (out / "logits" / f"{sample['key']}.bin").stat().st_size == 4 * shape[0] * shape[1]
    scores = score_run(out, DatasetDir.open(ds), ModelCard.from_dict(card), write=False)
    assert scores["utterances"] == 3
    assert list(scores["hypotheses"].values()) == [rows[k]["transcript"] for k in sorted(rows)]
    (tmp_path / "bad.card.json").write_text(json.dumps({"outputs": [{"name": "logits"}]}))
    bad = args[:-1] + [str(tmp_path / "bad.card.json"), "--return-output"]
    assert main(bad) == 2 and json.loads((out / "run.json").read_text()) == run  # refused before anything is sent


def test_edge_cli_unreachable_exits_2(pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["edge", "--head", str(pair / "head.onnx"), "--server", f"127.0.0.1:{port}", "--features",
               str(tmp_path / "none.npy"), "--timeout", "3"])
    assert rc == 2 and "unreachable" in capsys.readouterr().err


def _serve_subprocess(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "split", "serve", "--port", "0", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line} {proc.stderr.read()}")
    return proc, line.split("listening on ")[1].split(" ")[0]


def test_sigterm_finishes_in_flight_request(pair: Path, head: HeadModel, tail: TailModel) -> None:
    proc, target = _serve_subprocess(["--tail", str(pair / "tail.onnx"), "--added-delay-ms", "1500"])
    try:
        utt = _utt(8)
        payload = _request(head, utt).SerializeToString()
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(reply=_raw_call(target, payload, timeout=20)))
        worker.start()
        time.sleep(0.7)
        proc.send_signal(signal.SIGTERM)
        worker.join(20)
        assert pb.InferReply.FromString(result["reply"]).transcripts[0] == _expected(head, tail, utt)[0]
        assert proc.wait(20) == 0
        assert "finishing those in flight" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed (needed to make a test cert)")
def test_tls_server_and_edge(pair: Path, head: HeadModel, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    srv, port, _ = _start(pair, tls_cert=cert, tls_key=key)
    try:
        client = EdgeClient(f"localhost:{port}", tls_ca=cert)
        row, _ = run_one(head, get_codec("int8"), client, _utt(9))
        assert row["transcript"] is not None and client.health().status == "SERVING"
        client.close()
        with pytest.raises(EdgeError):
            EdgeClient(f"localhost:{port}", timeout_s=3).health()  # plaintext to a TLS port
    finally:
        srv.stop(grace=None)


def test_committed_split_pb2_matches_regeneration() -> None:
    """split_pb2.py is committed (serve/edge need only the protobuf runtime); it must be what protoc makes."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed")
    from split.proto.generate import GENERATED, generate

    assert generate() == GENERATED.read_text(), "run `python -m split.proto.generate` after editing split.proto"


def _tail_with_lengths_input(path: Path) -> Path:
    """A Tail that also takes the model's lengths input (as a DeepSpeech2 cut does): y = x + lengths."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["lengths"], ["lf"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["lf", "axes"], ["l3"]),
         helper.make_node("Add", ["features", "l3"], ["logits"])],
        "tail_with_lengths",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "frames", 29]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "frames", 29])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_tail_lengths_input_gets_the_model_input_lengths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tail_path = _tail_with_lengths_input(tmp_path / "tail.onnx")
    srv, port, service = build_server(ServerConfig(tail=tail_path, port=0))
    srv.start()
    try:
        x = np.zeros((1, 7, 29), np.float32)
        enc = get_codec("fp32").encode(x)
        req = build_request(enc, codec="fp32", shape=x.shape, lengths=[5], input_lengths=[15], return_output=True)
        reply = pb.InferReply.FromString(_raw_call(f"127.0.0.1:{port}", req.SerializeToString()))
        assert np.all(outputs_of(reply)["logits"] == 15.0)  # the model input's length, not the boundary's 5
        no_input = build_request(enc, codec="fp32", shape=x.shape, lengths=[5], return_output=True)
        reply = pb.InferReply.FromString(_raw_call(f"127.0.0.1:{port}", no_input.SerializeToString()))
        assert np.all(outputs_of(reply)["logits"] == 5.0)
        bad = build_request(enc, codec="fp32", shape=x.shape, input_lengths=[15, 3])
        with caplog.at_level("WARNING", logger="split.server"):
            code, details = _status(f"127.0.0.1:{port}", bad.SerializeToString())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "input_lengths: 2 values for a batch of 1" in details
        # Every refused request is logged with the peer and the reason.
        assert any("refused request from" in r.message and "input_lengths" in r.message for r in caplog.records)
    finally:
        srv.stop(grace=None)


def test_serve_cli_refuses_a_corrupt_tail(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from split.__main__ import main

    bad = tmp_path / "tail.onnx"
    bad.write_bytes(b"not an onnx file")
    assert main(["serve", "--tail", str(bad), "--port", "0"]) == 2
    assert "onnxruntime cannot load it" in capsys.readouterr().err
    assert main(["serve", "--tail", str(tmp_path / "missing.onnx"), "--port", "0"]) == 2
    assert "--tail: file not found" in capsys.readouterr().err
