"""python -m demo: the trainers are found by convention (families/<name>/train.py), and the old entry points
(python -m preprocess synth, python -m export train) answer with a one-line pointer and exit code 2."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_family_with_a_train_module_is_trainable() -> None:
    from demo.__main__ import build_parser, train_parser, trainable_families

    on_disk = sorted(p.parent.name for p in (REPO / "families").glob("*/train.py"))
    assert trainable_families() == on_disk and {"deepspeech2", "wav2vec2", "split_asr"} <= set(on_disk)
    for family in on_disk:
        parser = train_parser(family)
        assert parser.prog == f"python -m demo train {family}"
        assert "--out" in parser.format_help() and "--seed" in parser.format_help()
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(["train", "no_such_family"])
    assert err.value.code == 2


def test_demo_synth_takes_the_generator_options() -> None:
    from demo.__main__ import build_parser

    args = build_parser().parse_args(["synth", "--out", "x", "--an4-train", "6", "--datasets", "an4"])
    assert (args.command, args.an4_train, args.datasets) == ("synth", 6, ["an4"])


def test_old_synth_entry_point_points_to_demo(capsys: pytest.CaptureFixture[str]) -> None:
    from preprocess.__main__ import main

    assert main(["synth", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python -m demo synth" in err[0]
    assert not Path("x").exists()


def test_old_train_entry_point_points_to_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from export.__main__ import main

    out = tmp_path / "m.ckpt"
    assert main(["train", "deepspeech2", "--an4-root", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python -m demo train" in err[0]
    assert not out.exists()
