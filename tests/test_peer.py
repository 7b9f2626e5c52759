"""The benchmark's peer (HF Optimum in its own venv): our wav2vec2 export opens in Optimum's
ORTModelForCTC with the same logits, and the benchmark times Optimum beside ours.

Both need the peer venv (`bash scripts/bench.sh --peer` makes work/peer-venv; or set PEER_PYTHON) and
are skipped without it: Optimum cannot be installed into the project's venv (it pins transformers<4.58).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = Path(os.environ.get("PEER_PYTHON", REPO / "work" / "peer-venv" / "bin" / "python"))
needs_peer = pytest.mark.skipif(not PEER_PYTHON.is_file(),
                                reason=f"no peer venv at {PEER_PYTHON} (bash scripts/bench.sh --peer makes it)")


@needs_peer
def test_optimum_opens_our_export(tmp_path: Path) -> None:
    from export.__main__ import main
    from bench.peer import OptimumPeer, PeerError
    from core.ort_session import create_session
    from tests.test_wav2vec2 import make_tiny_model_dir

    src = make_tiny_model_dir(tmp_path / "w2v")
    out = tmp_path / "export"
    assert main(["wav2vec2", "--model-dir", str(src), "--out", str(out), "--threads", "1"]) == 0
    x = np.random.default_rng(0).standard_normal((2, 6000)).astype(np.float32)
    ours = create_session(out / "model.onnx", threads=1).run(None, {"input_values": x})[0]
    with OptimumPeer(PEER_PYTHON) as peer:
        # The refusal this fixes: without config.json Optimum cannot infer the library.
        bare = tmp_path / "bare"
        bare.mkdir()
        (bare / "model.onnx").write_bytes((out / "model.onnx").read_bytes())
        with pytest.raises(PeerError, match="library name could not be automatically inferred"):
            peer.request("open", dir=str(bare), name="bare", threads=1)
        peer.request("open", dir=str(out), name="ours", threads=1)
        peer.feed(x, tmp_path / "x.npy")
        theirs = peer.logits("ours", tmp_path / "logits.npy")
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)


@needs_peer
@pytest.mark.slow
def test_bench_times_the_peer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from postprocess.__main__ import main
    from tests.test_wav2vec2 import make_tiny_model_dir

    w2v = make_tiny_model_dir(tmp_path / "w2v")
    out = tmp_path / "bench.json"
    assert main(["bench", "--wav2vec2-dir", str(w2v), "--peer-python", str(PEER_PYTHON), "--threads", "1",
                 "--repeats", "2", "--warmup", "1", "--batch-sizes", "1", "2", "--samples", "4000",
                 "--triad-mib", "8", "--out", str(out)]) == 0
    assert "the peer (HF Optimum" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["peer"]["versions"]["optimum-onnx"] and result["peer"]["int8_config"]["operators"] == ["MatMul"]
    for r in result["rows"]:
        assert r["optimum_fp32_ms"]["min"] <= r["optimum_fp32_ms"]["median"] <= r["optimum_fp32_ms"]["max"]
        assert r["ort_over_optimum"] > 0 and r["int8_over_optimum_int8"] > 0
        # Two exporters of one model: the same function up to fp32 rounding.
        assert r["optimum_logits_max_abs_diff"] < 1e-3
        assert {"optimum fp32", "optimum int8"} <= set(r["roofline"])
        assert r["traffic"]["optimum int8"]["weight_bytes"] < r["traffic"]["optimum fp32"]["weight_bytes"]
