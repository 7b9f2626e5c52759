"""results/README.md: the tables run_all.sh produced, with the demo model's training record."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preprocess.dataset_dir import atomic_write_bytes


def training_section(train: dict[str, Any]) -> str:
    cfg = train["config"]
    last = train["history"][-1] if train["history"] else {}
    chosen = next((h for h in train["history"] if h["epoch"] == train["chosen_epoch"]), last)
    lines = [
        "## The demo DeepSpeech2",
        "",
        f"deepspeech.pytorch V3.0 architecture, {cfg['hidden_layers']} x {'bi' if cfg['bidirectional'] else 'uni'}"
        f"directional {cfg['rnn_type'].upper()} of {cfg['hidden_size']} units ({train['parameters']:,} parameters), "
        f"trained by `python -m export train deepspeech2` with seed {train['seed']} on {train['train_utterances']} "
        f"synthetic AN4 training utterances for {train['epochs']} epochs ({train['train_seconds']:.0f} s on "
        f"{train['threads']} threads). The epoch kept ({train['chosen_epoch']}) is the one with the lowest WER on "
        f"{train['val_utterances']} held-out training utterances"
        + (f" (validation WER {100 * chosen['val_wer']:.1f}%, CER {100 * chosen['val_cer']:.1f}%)." if "val_wer" in chosen else ".")
        + " The test speakers are voices the model never heard in training.",
        "",
    ]
    return "\n".join(lines)


def write_results_readme(results: Path, name: str, training: Path | None) -> Path:
    demo = bool(training and training.is_file())
    what = ("on the embedded defaults (synthetic espeak-ng corpus in the AN4 raw layout, the demo model trained "
            "by the repo)" if demo else "with the checkpoint and data named in the JSON files")
    parts = ["# Results", "",
             f"Produced by `bash scripts/run_all.sh` {what}. Every number below comes from the JSON files beside "
             "this README; rerun the script to reproduce them on your machine.", ""]
    if demo:
        parts.append(training_section(json.loads(training.read_text())))
    for stem in (f"{name}_precision", f"{name}_speakers", f"{name}_throughput"):
        md = results / f"{stem}.md"
        if md.is_file():
            parts.append(md.read_text())
    png = results / f"{name}_throughput.png"
    if png.is_file():
        parts += ["", f"![throughput]({png.name})", ""]
    out = results / "README.md"
    atomic_write_bytes(out, "\n".join(parts).encode())
    return out
