"""python -m runners: each backend adds its own options from the registry (runners/backend_cli.py)."""
from __future__ import annotations

import pytest

from runners.__main__ import build_parser
from runners.backend_cli import BACKENDS, OPTION_GROUPS


def test_every_option_group_belongs_to_a_backend_and_every_backend_runs_somehow() -> None:
    used = {key for entry in BACKENDS.values() for key in entry.options}
    assert used == set(OPTION_GROUPS)
    for name, entry in BACKENDS.items():
        assert (entry.build is None) != (entry.run_tool is None), name


def test_help_shows_each_backends_options_under_its_heading(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "onnxruntime options (--backend onnxruntime)" in text
    assert "Ascend device options (--backend msame, ais_bench, torch_aie)" in text
    assert text.index("\n  --profile") > text.index("onnxruntime options")


def test_the_flat_flags_still_parse() -> None:
    args = build_parser().parse_args([
        "--backend", "onnxruntime", "--dataset", "d", "--out", "o", "--threads", "2", "--inter-threads", "1",
        "--providers", "CPUExecutionProvider", "--graph-level", "basic", "--execution-mode", "parallel", "--profile",
        "--ov-precision", "bf16", "--ov-hint", "THROUGHPUT", "--checkpoint", "c", "--outfmt", "BIN", "--device", "1",
        "--ais-bench-python", "p", "--soc-version", "Ascend310", "--aie-device", "cpu", "--length", "9",
        "--aie-loops", "3"])
    assert (args.graph_level, args.ov_hint, args.device, args.length, args.aie_loops) == ("basic", "THROUGHPUT", 1, 9, 3)


def test_ray_refuses_a_backend_the_registry_does_not_mark(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    from runners.__main__ import main

    assert main(["--backend", "msame", "--ray", "--dataset", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 2
    assert "--ray runs onnxruntime, openvino or torch, not msame" in caplog.text
