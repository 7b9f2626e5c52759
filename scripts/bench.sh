#!/usr/bin/env bash
# The benchmark (not a test): torch eager, onnxruntime fp32 and int8, OpenVINO, measured side by side in one
# run; plus preprocessing speed and the share of a whole pipeline run that is not model execution.
#   bash scripts/bench.sh                 # demo DeepSpeech2 (if trained) + an4-size DeepSpeech2 + wav2vec2-base arch
#   bash scripts/bench.sh --threads 2 --repeats 20 --batch-sizes 1 8
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
NEED_ESPEAK=0 bash scripts/setup_env.sh
source env.sh
extra=()
ckpt="${DEEPSPEECH_CKPT:-work/models/deepspeech2_demo.ckpt}"
if [ -f "$ckpt" ]; then extra+=(--deepspeech2-ckpt "$ckpt"); fi
if [ -d "${WAV2VEC2_DIR:-work/models/wav2vec2_demo}" ]; then extra+=(--wav2vec2-dir "${WAV2VEC2_DIR:-work/models/wav2vec2_demo}"); fi
# The stages around the model (preprocessing speed, pipeline share), on the run_all exports and demo corpus.
if [ -f work/export/deepspeech2/model.onnx ] && [ -d work/corpus/an4 ]; then
    extra+=(--pipeline "work/export/deepspeech2/model.onnx=work/corpus/an4"); fi
if [ -f work/export/wav2vec2/model.onnx ] && [ -d work/corpus/LibriSpeech/test-demo ]; then
    extra+=(--pipeline "work/export/wav2vec2/model.onnx=work/corpus/LibriSpeech/test-demo"); fi
exec .venv/bin/python -m postprocess bench --wav2vec2-base --deepspeech2-real --out results/bench.json "${extra[@]}" "$@"
