"""results/README.md gathers report tables (NAME_precision.md, ...) and tables of their own (NAME.md)."""
from __future__ import annotations

import json
from pathlib import Path

from postprocess.summary import write_results_readme


def test_readme_gathers_reports_and_own_tables(tmp_path: Path) -> None:
    (tmp_path / "fam_precision.md").write_text("PRECISION TABLE\n")
    (tmp_path / "split_asr_codecs.md").write_text("CODEC TABLE\n")
    (tmp_path / "split_asr_codecs.png").write_bytes(b"\x89PNG")
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"family": "split_asr", "config": {"rnn_dim": 32}, "total_seconds": 42.0,
                                 "history": [{"epoch": 1}], "chosen_epoch": 1, "seed": 7}))
    text = write_results_readme(tmp_path, ["fam", "split_asr_codecs", "missing_table"], [train]).read_text()
    assert text.index("PRECISION TABLE") < text.index("CODEC TABLE")
    assert "](split_asr_codecs.png)" in text and "missing_table" not in text
    assert "42 s on" in text  # the split trainer records total_seconds


def test_readme_gathers_the_sections_other_scripts_wrote(tmp_path: Path) -> None:
    (tmp_path / "fam_precision.md").write_text("PRECISION TABLE\n")
    (tmp_path / "fam_uni_streaming.md").write_text("STREAMING TABLE\n")
    (tmp_path / "fam_uni_streaming.png").write_bytes(b"\x89PNG")
    (tmp_path / "bench_scale_fam_bs1.md").write_text("SCALE TABLE\n")
    (tmp_path / "fam_uni_streaming_training.json").write_text(json.dumps(
        {"family": "fam", "config": {"bidirectional": False}, "history": [], "seed": 5}))
    text = write_results_readme(tmp_path, ["fam"], []).read_text()
    assert text.index("STREAMING TABLE") < text.index("bidirectional False") < text.index("SCALE TABLE")
    assert text.index("PRECISION TABLE") < text.index("STREAMING TABLE") < text.index("SCALE TABLE")
    assert "](fam_uni_streaming.png)" in text and "## Scaling over Ray" in text


def test_readme_includes_the_benchmark_tables(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text("{}")
    (tmp_path / "bench.md").write_text("BENCH TABLES\n")
    (tmp_path / "bench_roofline.png").write_bytes(b"\x89PNG")
    text = write_results_readme(tmp_path, [], []).read_text()
    assert text.index("## Benchmark") < text.index("BENCH TABLES") < text.index("](bench_roofline.png)")


def test_training_paragraph_says_whether_the_model_is_cpu_portable() -> None:
    from postprocess.summary import training_section

    base = {"family": "fam", "history": [], "threads": 2}
    portable = {**base, "cpu_numerics": {"portable": True, "precision": "float32", "env": {}}}
    native = {**base, "cpu_numerics": {"portable": False, "precision": "bfloat16 autocast", "env": {}}}
    assert "meant to give the same model on any x86-64 CPU" in training_section(portable)
    assert "bfloat16 autocast, not capped: another CPU may train another model" in training_section(native)
    assert "autocast bfloat16" in training_section({**base, "autocast": "bfloat16"})  # an older record


def test_readme_adds_to_what_earlier_calls_gathered(tmp_path: Path) -> None:
    # run_all --families X writes only X's names: the other families' tables must stay in the README.
    (tmp_path / "one_precision.md").write_text("ONE TABLE\n")
    (tmp_path / "two_precision.md").write_text("TWO TABLE\n")
    train = tmp_path / "one_demo_training.json"
    train.write_text(json.dumps({"family": "one", "config": {"layers": 3}, "history": [], "seed": 5}))
    write_results_readme(tmp_path, ["one"], [train])
    text = write_results_readme(tmp_path, ["two"], []).read_text()
    assert text.index("ONE TABLE") < text.index("TWO TABLE") and "layers 3" in text
    index = json.loads((tmp_path / "readme.json").read_text())
    assert index["names"] == ["one", "two"] and index["trainings"] == ["one_demo_training.json"]
    assert write_results_readme(tmp_path, ["one"], []).read_text() == text  # named again: same place, once
    text = write_results_readme(tmp_path, ["two"], [], replace=True).read_text()
    assert "ONE TABLE" not in text and "TWO TABLE" in text and "layers 3" not in text


def test_readme_refuses_a_corrupt_index_naming_it(tmp_path: Path) -> None:
    from postprocess.__main__ import main

    (tmp_path / "readme.json").write_text("{not json")
    assert main(["readme", "--out", str(tmp_path), "--names", "t"]) == 2
    assert not (tmp_path / "README.md").exists()
    (tmp_path / "t_precision.md").write_text("T TABLE\n")
    assert main(["readme", "--out", str(tmp_path), "--names", "t", "--replace"]) == 0
    assert "T TABLE" in (tmp_path / "README.md").read_text()
