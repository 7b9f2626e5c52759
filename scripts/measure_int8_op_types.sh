#!/usr/bin/env bash
# The measurement behind each family's default int8-dynamic op types (VARIANT_DEFAULTS in
# families/<family>.py): the same fp32 export quantised with different op-type sets, run at batch 1
# on the test set, in one table per family (results/<name>_int8_op_types.*). Run after scripts/run_all.sh
# (it reuses its exports, datasets and fp32 runs); the gate is opened so that costly choices show.
#   bash scripts/measure_int8_op_types.sh [--threads N]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source env.sh
WORK_DIR="${WORK_DIR:-work}"
RESULTS_DIR="${RESULTS_DIR:-results}"
THREADS="${THREADS:-$(nproc)}"
if [ "${1:-}" = "--threads" ]; then THREADS="$2"; fi
PY=.venv/bin/python

measure() {
    local name="$1" model="$2" data="$3" runs="$4"; shift 4
    local dir stem rows=(--row "ONNX Runtime fp32=$runs/onnxruntime_bs1")
    dir="$(dirname "$model")"
    for set in "$@"; do
        stem="model.int8-dynamic-$(echo "$set" | tr ',' '-' | tr '[:upper:]' '[:lower:]')"
        $PY -m export variant --model "$model" --kind int8-dynamic --op-types "$set" --name "$stem" \
            --dataset "$data" --min-argmax-agreement 0 --max-text-cer 100 --threads "$THREADS"
        $PY -m runners --backend onnxruntime --model "$dir/$stem.onnx" --dataset "$data" \
            --out "$runs/op_types/$stem" --threads "$THREADS" --no-progress
        rows+=(--row "int8 dynamic: $set=$runs/op_types/$stem")
    done
    $PY -m postprocess variants --dataset "$data" --card "$dir/model.card.json" "${rows[@]}" \
        --out "$RESULTS_DIR" --name "${name}_int8_op_types" --title "$name: which op types to quantise (int8 dynamic)"
}

if [ -f "$WORK_DIR/export/deepspeech2/model.onnx" ]; then
    measure deepspeech2_an4 "$WORK_DIR/export/deepspeech2/model.onnx" "$WORK_DIR/data/deepspeech2_an4_test" \
        "$WORK_DIR/runs/deepspeech2" "LSTM,MatMul,Gemm" "LSTM" "MatMul,Gemm" "LSTM,MatMul,Gemm,Conv"
fi
if [ -f "$WORK_DIR/export/wav2vec2/model.onnx" ]; then
    measure wav2vec2_librispeech "$WORK_DIR/export/wav2vec2/model.onnx" "$WORK_DIR/data/wav2vec2_librispeech_test" \
        "$WORK_DIR/runs/wav2vec2" "MatMul" "MatMul,Conv" "Conv"
fi
