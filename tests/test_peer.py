"""The benchmark's peer (HF Optimum in its own venv): the benchmark times Optimum beside ours.

It needs the peer venv (`bash scripts/bench.sh --peer` makes work/peer-venv; or set PEER_PYTHON) and
is skipped without it: Optimum cannot be installed into the project's venv (it pins transformers<4.58).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = Path(os.environ.get("PEER_PYTHON", REPO / "work" / "peer-venv" / "bin" / "python"))
needs_peer = pytest.mark.skipif(not PEER_PYTHON.is_file(),
                                reason=f"no peer venv at {PEER_PYTHON} (bash scripts/bench.sh --peer makes it)")


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
