#!/usr/bin/env bash
# Streaming DeepSpeech2 (docs/streaming.md): a unidirectional model with Lookahead (the demo one, trained
# here with a fixed seed, or yours), its chunk graphs at several chunk sizes, chunk-by-chunk runs (fp32,
# and int8 calibrated with the fp32 caches) beside the offline run, and the streaming table + plot.
#
#   bash scripts/streaming.sh                               # demo corpus and demo unidirectional model
#   bash scripts/streaming.sh --checkpoint uni.ckpt --an4-root /data/an4
#
# Options (or environment variables):
#   --checkpoint FILE     a deepspeech.pytorch V3.0 unidirectional checkpoint (STREAM_CKPT); default: train the demo
#   --an4-root DIR        AN4 raw release (AN4_ROOT); default: the synthesised demo corpus
#   --chunks "8 16 32"    chunk sizes in feature frames (CHUNKS, default "8 16 32 64")
#   --int8-chunk N        chunk size of the int8 graph (INT8_CHUNK, default 32)
#   --lookahead N         demo model's Lookahead context (LOOKAHEAD, default 20 as V3.0)
#   --work DIR            intermediate files (WORK_DIR, default work/)
#   --results DIR         where the table goes (RESULTS_DIR, default results/)
#   --threads N           threads (THREADS, default: all cores)
#   --quick               tiny corpus and model, a smoke test (work-quick/)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

STREAM_CKPT="${STREAM_CKPT:-}"
AN4_ROOT="${AN4_ROOT:-}"
CHUNKS="${CHUNKS:-}"
INT8_CHUNK="${INT8_CHUNK:-32}"
LOOKAHEAD="${LOOKAHEAD:-20}"
WORK_DIR="${WORK_DIR:-work}"
RESULTS_DIR="${RESULTS_DIR:-}"
THREADS="${THREADS:-$(nproc)}"
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --checkpoint) STREAM_CKPT="$2"; shift 2 ;;
        --an4-root) AN4_ROOT="$2"; shift 2 ;;
        --chunks) CHUNKS="$2"; shift 2 ;;
        --int8-chunk) INT8_CHUNK="$2"; shift 2 ;;
        --lookahead) LOOKAHEAD="$2"; shift 2 ;;
        --work) WORK_DIR="$2"; shift 2 ;;
        --results) RESULTS_DIR="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "streaming.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$QUICK" = "1" ]; then
    case "${WORK_DIR%/}" in *-quick) ;; *) WORK_DIR="${WORK_DIR%/}-quick" ;; esac  # run_all --quick passes its own
    RESULTS_DIR="${RESULTS_DIR:-$WORK_DIR/results}"
    synth_sizes=(--an4-train 40 --an4-test 8 --libri-train 1 --libri-test 1)
    train_opts=(--epochs 1 --hidden-size 32 --hidden-layers 1)
    calib_spread=8
    CHUNKS="${CHUNKS:-8 32}"
    # A model trained for one epoch is a plumbing check: its int8 gate is opened.
    int8_gate=(--min-argmax-agreement 0 --max-text-cer 1)
else
    synth_sizes=()
    train_opts=()
    calib_spread=100
    CHUNKS="${CHUNKS:-8 16 32 64}"
    int8_gate=()
fi
RESULTS_DIR="${RESULTS_DIR:-results}"
NEED_ESPEAK=$([ -z "$AN4_ROOT" ] && echo 1 || echo 0) bash scripts/setup_env.sh
source env.sh
PY=.venv/bin/python
start=$(date +%s)
step() { echo; echo "==> [$(( $(date +%s) - start ))s] $*"; }
mkdir -p "$WORK_DIR" "$RESULTS_DIR"

if [ -z "$AN4_ROOT" ]; then
    step "demo corpus (espeak-ng) -> $WORK_DIR/corpus"
    $PY -m demo synth --out "$WORK_DIR/corpus" "${synth_sizes[@]}"
    AN4_ROOT="$WORK_DIR/corpus/an4"
fi
if [ -z "$STREAM_CKPT" ]; then
    STREAM_CKPT="$WORK_DIR/models/deepspeech2_uni_demo.ckpt"
    step "demo unidirectional DeepSpeech2 with Lookahead $LOOKAHEAD (fixed seed; cached) -> $STREAM_CKPT"
    $PY -m demo train deepspeech2 --an4-root "$AN4_ROOT" --out "$STREAM_CKPT" --unidirectional \
        --lookahead-context "$LOOKAHEAD" "${train_opts[@]}"
    # The training record beside the table (results/README.md shows it with the table).
    cp "${STREAM_CKPT%.ckpt}.train.json" "$RESULTS_DIR/deepspeech2_uni_an4_streaming_training.json"
fi

EXPORT="$WORK_DIR/export/deepspeech2_uni"
step "offline export of the same checkpoint (the reference) -> $EXPORT/offline"
$PY -m export deepspeech2 --checkpoint "$STREAM_CKPT" --out "$EXPORT/offline" --threads "$THREADS"
CARD="$EXPORT/offline/model.card.json"
DATA="$WORK_DIR/data/deepspeech2_uni_an4_test"
CALIB="$WORK_DIR/data/deepspeech2_uni_an4_calibration"
step "preprocess AN4 test -> $DATA, calibration utterances from train -> $CALIB"
$PY -m preprocess --an4-root "$AN4_ROOT" --split test --card "$CARD" --out "$DATA" --no-progress
$PY -m preprocess --an4-root "$AN4_ROOT" --split train --card "$CARD" --out "$CALIB" --spread "$calib_spread" \
    --no-progress

RUNS="$WORK_DIR/runs/deepspeech2_uni"
$PY -m runners --backend onnxruntime --model "$EXPORT/offline/model.onnx" --dataset "$DATA" \
    --out "$RUNS/offline" --threads "$THREADS" --no-progress
rows=(--row "offline fp32 (whole utterance)=$RUNS/offline")
for chunk in $CHUNKS; do
    step "streaming export, chunk $chunk frames (gated against offline), and its chunk-by-chunk run"
    $PY -m export deepspeech2 --checkpoint "$STREAM_CKPT" --streaming --chunk-frames "$chunk" \
        --out "$EXPORT/chunk$chunk" --threads "$THREADS"
    $PY -m runners --backend onnxruntime --streaming --model "$EXPORT/chunk$chunk/model.onnx" --dataset "$DATA" \
        --out "$RUNS/stream$chunk" --threads "$THREADS" --no-progress
    rows+=(--row "streaming fp32, chunk $chunk=$RUNS/stream$chunk")
done
step "streaming int8 (QDQ), chunk $INT8_CHUNK, calibrated chunk by chunk with the fp32 caches"
if [ ! -f "$EXPORT/chunk$INT8_CHUNK/model.onnx" ]; then
    $PY -m export deepspeech2 --checkpoint "$STREAM_CKPT" --streaming --chunk-frames "$INT8_CHUNK" \
        --out "$EXPORT/chunk$INT8_CHUNK" --threads "$THREADS"
fi
$PY -m export variant --kind int8-static --model "$EXPORT/chunk$INT8_CHUNK/model.onnx" --dataset "$CALIB" \
    --calibration-samples "$calib_spread" --threads "$THREADS" "${int8_gate[@]}"
$PY -m runners --backend onnxruntime --streaming --model "$EXPORT/chunk$INT8_CHUNK/model.int8-static.onnx" \
    --dataset "$DATA" --out "$RUNS/stream${INT8_CHUNK}_int8" --threads "$THREADS" --no-progress
rows+=(--row "streaming int8, chunk $INT8_CHUNK=$RUNS/stream${INT8_CHUNK}_int8")

step "streaming table -> $RESULTS_DIR"
$PY -m postprocess streaming --dataset "$DATA" --card "$CARD" "${rows[@]}" --out "$RESULTS_DIR" \
    --name deepspeech2_uni_an4 --title "DeepSpeech2 unidirectional (Lookahead) on AN4 test"
step "done in $(( $(date +%s) - start ))s"
