"""run-all's options: flags, or the environment variables of the same meaning, with run_all.sh's defaults.

Imports nothing beyond the standard library, so `--help` works before the virtual environment exists.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

HELP = """\
One command from a fresh clone to every table: set-up, demo corpus, demo model, export + parity gate,
preprocess, PyTorch and ONNX Runtime runs, postprocess tables in results/.

  bash scripts/run_all.sh                      # embedded defaults (synthetic corpus, demo model)
  bash scripts/run_all.sh --an4-root /data/an4 --deepspeech-ckpt an4_pretrained_v3.ckpt

Options (or environment variables):
  --an4-root DIR          AN4 raw release (AN4_ROOT); default: the synthesised demo corpus
  --an4-manifest FILE     deepspeech.pytorch JSON test manifest instead of --an4-root (AN4_MANIFEST)
  --deepspeech-ckpt FILE  deepspeech.pytorch V3.0 checkpoint (DEEPSPEECH_CKPT); default: train the demo model
  --librispeech DIR       a LibriSpeech split to test wav2vec2 on, e.g. LibriSpeech/test-clean (LIBRISPEECH_TEST);
                          default: the synthesised demo split
  LIBRISPEECH_CALIB=DIR   a LibriSpeech split to calibrate wav2vec2 int8-static on (default: the demo train split
                          with the demo corpus; the test split when --librispeech is given without it)
  --wav2vec2-dir DIR      Hugging Face wav2vec2 CTC model directory (WAV2VEC2_DIR); default: train the demo model
  --split-asr-ckpt FILE   split-model-inference model.pth (SPLIT_ASR_CKPT); default: train the demo model
  --split-asr-autoencoder FILE  its autoencoder.pth (SPLIT_ASR_AE); default: train one on the demo train split
  --split-codec NAME      the low-bit codec of the split precision/timing rows (SPLIT_CODEC, default klt-ans;
                          q4-ans where no training split is there to fit the KLT on)
  SPLIT_ASR_TRAIN_OPTS="--epochs 15 --spread 600" options of the demo split ASR model's training
  --families "a b"        which families to run (FAMILIES, default "deepspeech2 wav2vec2 split_asr")
  --work DIR              caches and intermediate files (WORK_DIR, default: work/)
  --results DIR           where the tables go (RESULTS_DIR, default: results/)
  --threads N             threads for every runtime (THREADS, default: all cores)
  --batch-sizes "1 4 8"   DeepSpeech2 throughput batch sizes (BATCH_SIZES, default "1 4 8 16")
  --w2v-batch-sizes "..." wav2vec2 throughput batch sizes (W2V_BATCH_SIZES, default "1 4 8 16 32 64")
  --soc-version NAME      Ascend SoC for atc/torch_aie (ASCEND_SOC, default Ascend310P3); the Ascend rows
                          (atc + msame, ais_bench, torch_aie) are added when those tools are installed
  --quick                 tiny corpus and model, a smoke test of the whole chain (results in work-quick/)
  --streaming             also the streaming section (STREAMING=1): scripts/streaming.sh trains a unidirectional
                          demo DeepSpeech2 with Lookahead and writes results/deepspeech2_uni_an4_streaming.*
  --ray                   preprocess the test sets and run torch/onnxruntime/openvino over Ray (off by default:
                          one machine needs no cluster); each command starts a local Ray instance unless
                          --ray-address is given; workers = the cluster's CPUs / --threads (docs/ray.md)
  --ray-address ADDR      join this Ray cluster (HOST:PORT of `ray start --head`); WORK_DIR must be shared storage
  --dry-run               print the commands the run would make, in order, without running them

Each step is one `python -m <stage> ...` command, printed before it runs, so any step can be rerun by hand.
The stages skip work that is already up to date, so a rerun resumes where the last one stopped.
"""

# flag -> (environment variable, default); an empty variable counts as unset, as ${VAR:-default} does.
_VALUED = {
    "--an4-root": ("AN4_ROOT", ""),
    "--an4-manifest": ("AN4_MANIFEST", ""),
    "--deepspeech-ckpt": ("DEEPSPEECH_CKPT", ""),
    "--librispeech": ("LIBRISPEECH_TEST", ""),
    "--wav2vec2-dir": ("WAV2VEC2_DIR", ""),
    "--split-asr-ckpt": ("SPLIT_ASR_CKPT", ""),
    "--split-asr-autoencoder": ("SPLIT_ASR_AE", ""),
    "--split-codec": ("SPLIT_CODEC", "klt-ans"),
    "--families": ("FAMILIES", "deepspeech2 wav2vec2 split_asr"),
    "--work": ("WORK_DIR", "work"),
    "--results": ("RESULTS_DIR", ""),
    "--threads": ("THREADS", ""),
    "--batch-sizes": ("BATCH_SIZES", "1 4 8 16"),
    "--w2v-batch-sizes": ("W2V_BATCH_SIZES", "1 4 8 16 32 64"),
    "--soc-version": ("ASCEND_SOC", "Ascend310P3"),
    "--ray-address": ("", ""),
}


class OptionError(ValueError):
    """A bad option value: one line naming the option and what was expected (exit code 2)."""


@dataclass(frozen=True)
class Options:
    an4_root: str
    an4_manifest: str
    deepspeech_ckpt: str
    librispeech: str
    librispeech_calib: str
    wav2vec2_dir: str
    split_asr_ckpt: str
    split_asr_autoencoder: str
    split_codec: str
    families: tuple[str, ...]
    work: Path
    results: Path
    threads: int
    batch_sizes: tuple[int, ...]
    w2v_batch_sizes: tuple[int, ...]
    soc_version: str
    quick: bool
    streaming: bool
    ray: bool
    ray_address: str
    dry_run: bool

    def ray_args(self) -> list[str]:
        """--ray-address implies --ray."""
        if not (self.ray or self.ray_address):
            return []
        return ["--ray", *(["--ray-address", self.ray_address] if self.ray_address else [])]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _positive_ints(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise OptionError(f"{flag} {text!r}: expected positive whole numbers separated by spaces, e.g. \"1 8\"")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_all.sh", add_help=False, allow_abbrev=False)
    for flag in _VALUED:
        p.add_argument(flag, dest=flag[2:].replace("-", "_"), default=None)
    for flag in ("--quick", "--streaming", "--ray", "--dry-run"):
        p.add_argument(flag, action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def parse(argv: list[str], env: dict[str, str] | None = None) -> Options | None:
    """Options from argv over the environment; None when --help was asked (and printed)."""
    env = dict(os.environ if env is None else env)
    args, unknown = _parser().parse_known_args(argv)
    if args.help:
        sys.stdout.write(HELP)
        return None
    if unknown:
        raise OptionError(f"unknown option {unknown[0]} (see --help)")
    value = {}
    for flag, (var, default) in _VALUED.items():
        given = getattr(args, flag[2:].replace("-", "_"))
        value[flag] = given if given is not None else (env.get(var) or default if var else default)
    try:
        threads = int(value["--threads"]) if value["--threads"] else _cores()
    except ValueError:
        raise OptionError(f"--threads {value['--threads']!r}: expected a whole number") from None
    if threads < 1:
        raise OptionError(f"--threads {threads}: expected at least 1")
    work = Path(value["--work"])
    if args.quick:
        work = Path(str(value["--work"]).rstrip("/") + "-quick")
    results = Path(value["--results"]) if value["--results"] else (work / "results" if args.quick else Path("results"))
    families = tuple(value["--families"].split())
    if not families:
        raise OptionError("--families: expected at least one family name")
    return Options(
        an4_root=value["--an4-root"], an4_manifest=value["--an4-manifest"],
        deepspeech_ckpt=value["--deepspeech-ckpt"], librispeech=value["--librispeech"],
        librispeech_calib=env.get("LIBRISPEECH_CALIB", ""), wav2vec2_dir=value["--wav2vec2-dir"],
        split_asr_ckpt=value["--split-asr-ckpt"], split_asr_autoencoder=value["--split-asr-autoencoder"],
        split_codec=value["--split-codec"], families=families, work=work, results=results, threads=threads,
        batch_sizes=_positive_ints("--batch-sizes", value["--batch-sizes"]),
        w2v_batch_sizes=_positive_ints("--w2v-batch-sizes", value["--w2v-batch-sizes"]),
        soc_version=value["--soc-version"], quick=args.quick,
        streaming=args.streaming or env.get("STREAMING", "0") == "1",
        ray=args.ray, ray_address=value["--ray-address"] or "", dry_run=args.dry_run)


def env_args(env: dict[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Options given as one environment variable (e.g. SPLIT_ASR_TRAIN_OPTS), split as the shell would."""
    text = env.get(name, "")
    return tuple(shlex.split(text)) if text else default
