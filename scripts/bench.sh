#!/usr/bin/env bash
# The benchmark (not a test): torch eager, onnxruntime fp32 and int8, OpenVINO, measured side by side in one
# run; plus preprocessing speed and the share of a whole pipeline run that is not model execution.
#   bash scripts/bench.sh                 # demo DeepSpeech2 (if trained) + an4-size DeepSpeech2 + wav2vec2-base arch
#   bash scripts/bench.sh --threads 2 --repeats 20 --batch-sizes 1 8
#   bash scripts/bench.sh --peer          # also HF Optimum's export of the same wav2vec2, fp32 and int8, alternating
# --peer makes (once, then reuses) a venv of its own for Optimum in $PEER_VENV (default work/peer-venv):
# optimum-onnx pins transformers<4.58, which cannot share our venv. Its pins: requirements-peer.txt.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
NEED_ESPEAK=0 bash scripts/setup_env.sh
source env.sh
extra=()
args=()
peer=0
for a in "$@"; do
    if [ "$a" = "--peer" ]; then peer=1; else args+=("$a"); fi
done
if [ "$peer" = "1" ]; then
    venv="${PEER_VENV:-work/peer-venv}"
    stamp="$venv/.requirements-peer.sha256"
    want="$(sha256sum requirements-peer.txt | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "bench: making the peer venv $venv (HF Optimum; first time: a few minutes)"
        [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/python" -m pip install -q -r requirements-peer.txt
        echo "$want" > "$stamp"
    fi
    extra+=(--peer-python "$venv/bin/python")
fi
ckpt="${DEEPSPEECH_CKPT:-work/models/deepspeech2_demo.ckpt}"
if [ -f "$ckpt" ]; then extra+=(--deepspeech2-ckpt "$ckpt"); fi
if [ -d "${WAV2VEC2_DIR:-work/models/wav2vec2_demo}" ]; then extra+=(--wav2vec2-dir "${WAV2VEC2_DIR:-work/models/wav2vec2_demo}"); fi
# The stages around the model (preprocessing speed, pipeline share), on the run_all exports and demo corpus.
if [ -f work/export/deepspeech2/model.onnx ] && [ -d work/corpus/an4 ]; then
    extra+=(--pipeline "work/export/deepspeech2/model.onnx=work/corpus/an4"); fi
if [ -f work/export/wav2vec2/model.onnx ] && [ -d work/corpus/LibriSpeech/test-demo ]; then
    extra+=(--pipeline "work/export/wav2vec2/model.onnx=work/corpus/LibriSpeech/test-demo"); fi
exec .venv/bin/python -m bench --wav2vec2-base --deepspeech2-real --out results/bench.json "${extra[@]}" "${args[@]}"
