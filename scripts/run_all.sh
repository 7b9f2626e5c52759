#!/usr/bin/env bash
# One command from a fresh clone to every table: set-up, demo corpus, demo model, export + parity gate,
# preprocess, PyTorch and ONNX Runtime runs, postprocess tables in results/.
#
#   bash scripts/run_all.sh                      # embedded defaults (synthetic corpus, demo model)
#   bash scripts/run_all.sh --an4-root /data/an4 --deepspeech-ckpt an4_pretrained_v3.ckpt
#   bash scripts/run_all.sh --help               # every option (flags or environment variables)
#   bash scripts/run_all.sh --quick --dry-run    # the commands it would run, without running them
#
# This script only sets up (.venv with requirements.txt, env.sh); the run matrix is the Python driver
# `python -m pipeline run-all` (pipeline/), which walks each family's plan (families/<name>/plan.py).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# --help needs only the standard library: answer it before any set-up.
for arg in "$@"; do
    case "$arg" in -h|--help) exec "${PYTHON:-python3}" -m pipeline run-all --help ;; esac
done
# espeak-ng is installed later, by the driver, only when it synthesises the demo corpus.
NEED_ESPEAK=0 bash scripts/setup_env.sh
source env.sh
exec .venv/bin/python -m pipeline run-all "$@"
