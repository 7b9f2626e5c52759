#!/usr/bin/env bash
# The Ascend wav2vec2 guides' flow, step by step, with this pipeline (run it by hand on an NPU host, or here
# with onnxruntime): HF model dir -> ONNX through the parity gate + TorchScript trace (pth2ts) -> atc OM at
# batch x 100000 samples, or the atc script when atc is not installed -> the guide's preprocess (batch_{k}.bin,
# batch map, ground_truth_texts.txt) -> ais_bench, torch_aie or onnxruntime -> the guide's postprocess ->
# WER/CER (accuracy = 1 - CER). Every step is cached; run_all.sh calls this for its ModelZoo rows.
#
#   bash scripts/modelzoo/wav2vec2.sh --model-dir wav2vec2-base-960h --librispeech LibriSpeech/test-clean --backend ais_bench
#
# Options:
#   --model-dir DIR         Hugging Face wav2vec2 CTC directory (required)
#   --librispeech DIR       LibriSpeech split (required)
#   --batch-size N          batch of the batch files and the OM (default 8)
#   --backend NAME          onnxruntime (default), ais_bench or torch_aie
#   --if-available          exit 0 with a message when the backend's tool or the OM is missing (for run_all)
#   --soc-version NAME      atc / torch_aie SoC (default Ascend310P3, as the guide)
#   --work DIR              export, OM, dataset (default work/modelzoo)
#   --run DIR               run dir (default <work>/runs/wav2vec2_<backend>_bs<N>)
#   --threads N             onnxruntime threads (default: all cores)
#   AIE_DEVICE=cpu          torch_aie device type (default npu)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
MODEL_DIR="" SPLIT="" BS=8 BACKEND=onnxruntime IF_AVAILABLE=0 SOC=Ascend310P3 WORK=work/modelzoo RUN="" THREADS="$(nproc)"
while [ $# -gt 0 ]; do
    case "$1" in
        --model-dir) MODEL_DIR="$2"; shift 2 ;;
        --librispeech) SPLIT="$2"; shift 2 ;;
        --batch-size) BS="$2"; shift 2 ;;
        --backend) BACKEND="$2"; shift 2 ;;
        --if-available) IF_AVAILABLE=1; shift ;;
        --soc-version) SOC="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --run) RUN="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "wav2vec2.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$MODEL_DIR" ] || [ -z "$SPLIT" ]; then
    echo "wav2vec2.sh: give --model-dir and --librispeech (see --help)" >&2; exit 2
fi
case "$BACKEND" in onnxruntime|ais_bench|torch_aie) ;;
    *) echo "wav2vec2.sh: --backend onnxruntime, ais_bench or torch_aie" >&2; exit 2 ;; esac
NEED_ESPEAK=0 bash scripts/setup_env.sh >/dev/null
source env.sh
PY=.venv/bin/python
EXPORT="$WORK/export/wav2vec2" DATA="$WORK/data/wav2vec2_librispeech_test_modelzoo_bs$BS" OM="$WORK/om/wav2vec2_bs$BS.om"
RUN="${RUN:-$WORK/runs/wav2vec2_${BACKEND}_bs$BS}"
skip() { if [ "$IF_AVAILABLE" = 1 ]; then echo "wav2vec2.sh: $1; skipping $BACKEND"; exit 0; fi; }

echo "==> pth2onnx + pth2ts: export with dynamic axes + TorchScript trace, parity gate -> $EXPORT"
$PY -m export wav2vec2 --model-dir "$MODEL_DIR" --out "$EXPORT" --torchscript --threads "$THREADS"
echo "==> atc ($SOC) at $BS x 100000 samples -> $OM (or its .atc.sh when atc is not installed)"
$PY -m export atc --model "$EXPORT/model.onnx" --out "$(dirname "$OM")" --name "$(basename "$OM" .om)" \
    --batch-size "$BS" --length 100000 --soc-version "$SOC"
echo "==> preprocess: the guide's batch files of the OM's batch ($BS) -> $DATA"
$PY -m preprocess --librispeech "$SPLIT" --card "$EXPORT/model.card.json" --out "$DATA" --modelzoo --om "$OM"
echo "==> inference: $BACKEND -> $RUN"
case "$BACKEND" in
    ais_bench)
        [ -f "$OM" ] && $PY -c "import ais_bench" 2>/dev/null || skip "no $OM or no ais_bench here"
        $PY -m runners --backend ais_bench --model "$OM" --dataset "$DATA" --out "$RUN" ;;
    torch_aie)
        $PY -c "import torch_aie" 2>/dev/null || skip "torch_aie is not installed"
        $PY -m runners --backend torch_aie --model "$EXPORT/model.onnx" --dataset "$DATA" --out "$RUN" \
            --batch-size "$BS" --keep-order --soc-version "$SOC" --aie-device "${AIE_DEVICE:-npu}" --no-progress ;;
    *)
        $PY -m runners --backend onnxruntime --model "$EXPORT/model.onnx" --dataset "$DATA" --out "$RUN" \
            --batch-size "$BS" --keep-order --threads "$THREADS" --no-progress ;;
esac
echo "==> postprocess: the guide's decoding (all frames); accuracy = 1 - CER"
$PY -m postprocess score --run "$RUN" --dataset "$DATA" --card "$EXPORT/model.card.json" --modelzoo
