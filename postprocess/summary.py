"""results/README.md: the tables run_all.sh produced, with the demo models' training records."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.dataset_dir import atomic_write_bytes
from core.fsio import atomic_write_json, read_json_file

# What the README gathers, kept beside it: a run of some of the families adds its reports to those of the
# runs before it, instead of leaving a README with only its own tables while the others' files stay in results/.
INDEX = "readme.json"


def _numerics(train: dict[str, Any]) -> str:
    numerics = train.get("cpu_numerics")
    if numerics is None:  # a record from before the trainers capped their numerics
        return f"autocast {train.get('autocast', 'off')}"
    if numerics.get("portable"):
        return "float32 with the instruction-set caps meant to give the same model on any x86-64 CPU (docs/demo.md)"
    return f"{numerics.get('precision', 'float32')}, not capped: another CPU may train another model"


def training_section(train: dict[str, Any]) -> str:
    """One paragraph per demo model, from its training record (whatever family wrote it)."""
    family = train.get("family", "model")
    cfg = train.get("config", {})
    history = train.get("history", [])
    chosen = next((h for h in history if h.get("epoch") == train.get("chosen_epoch")), history[-1] if history else {})
    shape = ", ".join(f"{k} {v}" for k, v in cfg.items() if isinstance(v, (int, float, str, bool)) and v is not None)
    text = (f"**{family}** ({shape}; {train.get('parameters', 0):,} parameters): trained from scratch by "
            f"`python -m demo train {family}` with seed {train.get('seed')} on {train.get('train_utterances')} "
            f"synthetic training utterances for {train.get('epochs')} epochs ({train.get('train_seconds', train.get('total_seconds', 0)):.0f} s on "
            f"{train.get('threads')} threads, {_numerics(train)}). The epoch kept "
            f"({train.get('chosen_epoch')}) has the lowest WER on {train.get('val_utterances')} held-out training "
            "utterances")
    if "val_wer" in chosen:
        text += f" (validation WER {100 * chosen['val_wer']:.1f}%, CER {100 * chosen['val_cer']:.1f}%)"
    return text + ". The test speakers never appear in training.\n"


def remembered(results: Path, names: list[str], trainings: list[Path],
               replace: bool = False) -> tuple[list[str], list[Path]]:
    """`names` and `trainings` after those results/readme.json already lists (in their order, each once), and
    the index rewritten with them; `replace` forgets what it listed."""
    path = results / INDEX
    old: dict[str, Any] = {"names": [], "trainings": []}
    if path.is_file() and not replace:
        try:
            old = read_json_file(path, "results README index", required=("names", "trainings"))
        except ValueError as exc:
            raise ValueError(f"{exc} (or gather anew: postprocess readme --replace --names ...)") from None
    merged_names = list(dict.fromkeys([*old["names"], *names]))
    merged_trainings = list(dict.fromkeys([*old["trainings"], *(_index_entry(results, t) for t in trainings)]))
    atomic_write_json(path, {"names": merged_names, "trainings": merged_trainings,
                             "note": "what README.md gathers; `python -m postprocess readme` adds to it, "
                                     "--replace starts it again"})
    return merged_names, [results / t if not Path(t).is_absolute() else Path(t) for t in merged_trainings]


def _index_entry(results: Path, path: Path) -> str:
    """A path inside results/ relative to it (the folder may move with the repo), anything else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path(results).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def write_results_readme(results: Path, names: list[str], trainings: list[Path], replace: bool = False) -> Path:
    """results/README.md with the reports of `names` and of every earlier call (results/readme.json)."""
    Path(results).mkdir(parents=True, exist_ok=True)
    names, trainings = remembered(results, names, trainings, replace)
    demo = [t for t in trainings if t.is_file()]
    what = ("on the embedded defaults (synthetic espeak-ng corpus in the real AN4 and LibriSpeech layouts, demo "
            "models trained by the repo)" if demo else "with the checkpoints and data named in the JSON files")
    parts = ["# Results", "",
             f"Produced by `bash scripts/run_all.sh` {what}. Every number below comes from the JSON files beside "
             "this README; rerun the script to reproduce them on your machine.", ""]
    if demo:
        parts += ["## The demo models", ""] + [training_section(json.loads(t.read_text())) for t in demo]
    for name in names:
        # A name is a report's prefix (NAME_precision.md, ...) or a table of its own (NAME.md, e.g. split_asr_codecs).
        for stem in (name, f"{name}_precision", f"{name}_speakers", f"{name}_throughput", f"{name}_variants"):
            md = results / f"{stem}.md"
            if md.is_file():
                parts.append(md.read_text())
            png = results / f"{stem}.png"
            if png.is_file():
                parts += ["", f"![{stem.replace('_', ' ')}]({png.name})", ""]
    # Sections made by their own scripts (scripts/streaming.sh, python -m bench scale), not by every run:
    # whatever of them is in the folder is gathered.
    for md in sorted(results.glob("*_streaming.md")):
        parts.append(md.read_text())
        record = md.with_name(md.stem + "_training.json")  # the section's own demo model, when it trained one
        if record.is_file():
            parts += ["", "The model: " + training_section(json.loads(record.read_text()))]
        if md.with_suffix(".png").is_file():
            parts += ["", f"![{md.stem.replace('_', ' ')}]({md.stem}.png)", ""]
    scale = sorted(results.glob("bench_scale_*.md"))
    if scale:
        parts += ["## Scaling over Ray", "", "`python -m bench scale` (the single-process runner against the Ray runner "
                  "at equal total threads, alternating; see docs/ray.md):", ""]
        parts += [md.read_text() for md in scale]
    bench = results / "bench.json"
    if bench.is_file():
        parts += ["## Benchmark", "", "`bash scripts/bench.sh` (contenders timed side by side in one run; see "
                  "docs/benchmark.md): `bench.json`.", ""]
        if (results / "bench.md").is_file():
            parts += [(results / "bench.md").read_text()]
        for png, alt in (("bench_roofline.png", "roofline"), ("bench_pipeline.png", "pipeline time per stage")):
            if (results / png).is_file():
                parts += [f"![{alt}]({png})", ""]
    out = results / "README.md"
    atomic_write_bytes(out, "\n".join(parts).encode())
    return out
