#!/usr/bin/env bash
# The Ascend DeepSpeech guide's flow, step by step, with this pipeline (run it by hand on an NPU host, or here
# with onnxruntime): checkpoint -> static 1x1x161x621 ONNX through the parity gate (ckpt2onnx) -> atc OM, or
# the atc script when atc is not installed (ckpt2om.sh) -> the guide's preprocess layout (spect/, sizes/,
# data{i}.bin) -> msame TXT or onnxruntime -> the guide's postprocess (floor(L/2) frames) -> WER/CER.
# Every step is cached; run_all.sh calls this for its ModelZoo rows.
#
#   bash scripts/modelzoo/deepspeech2.sh --checkpoint an4_pretrained_v3.ckpt --an4-root /data/an4 --backend msame
#
# Options:
#   --checkpoint FILE       deepspeech.pytorch V3.0 checkpoint (required)
#   --an4-root DIR | --manifest FILE   AN4 raw release, or a deepspeech.pytorch JSON test manifest (one required)
#   --backend NAME          onnxruntime (default) or msame
#   --if-available          exit 0 with a message when the backend's tool or the OM is missing (for run_all)
#   --soc-version NAME      atc --soc_version (default Ascend310, as the guide)
#   --work DIR              exports, OM, dataset (default work/modelzoo)
#   --run DIR               run dir (default <work>/runs/deepspeech2_<backend>)
#   --threads N             onnxruntime threads (default: all cores)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
CKPT="" SRC=() BACKEND=onnxruntime IF_AVAILABLE=0 SOC=Ascend310 WORK=work/modelzoo RUN="" THREADS="$(nproc)"
while [ $# -gt 0 ]; do
    case "$1" in
        --checkpoint) CKPT="$2"; shift 2 ;;
        --an4-root) SRC=(--an4-root "$2"); shift 2 ;;
        --manifest) SRC=(--manifest "$2"); shift 2 ;;
        --backend) BACKEND="$2"; shift 2 ;;
        --if-available) IF_AVAILABLE=1; shift ;;
        --soc-version) SOC="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --run) RUN="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "deepspeech2.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$CKPT" ] || [ ${#SRC[@]} -eq 0 ]; then
    echo "deepspeech2.sh: give --checkpoint and --an4-root or --manifest (see --help)" >&2; exit 2
fi
case "$BACKEND" in onnxruntime|msame) ;; *) echo "deepspeech2.sh: --backend onnxruntime or msame" >&2; exit 2 ;; esac
NEED_ESPEAK=0 bash scripts/setup_env.sh >/dev/null
source env.sh
PY=.venv/bin/python
EXPORT="$WORK/export/deepspeech2_static621" DATA="$WORK/data/deepspeech2_an4_test_modelzoo" OM="$WORK/om/deepspeech2_bs1.om"
RUN="${RUN:-$WORK/runs/deepspeech2_$BACKEND}"

echo "==> ckpt2onnx: static 1x1x161x621 export + parity gate -> $EXPORT"
$PY -m export deepspeech2 --checkpoint "$CKPT" --out "$EXPORT" --static-shape 1,1,161,621 --threads "$THREADS"
echo "==> ckpt2om: atc ($SOC) -> $OM (or its .atc.sh when atc is not installed)"
$PY -m export atc --model "$EXPORT/model.onnx" --out "$(dirname "$OM")" --name "$(basename "$OM" .om)" \
    --soc-version "$SOC"
echo "==> preprocess: the guide's layout (sorted, padded to 621 frames) -> $DATA"
$PY -m preprocess "${SRC[@]}" --card "$EXPORT/model.card.json" --out "$DATA" --modelzoo --pad-to 621
echo "==> inference: $BACKEND -> $RUN"
if [ "$BACKEND" = msame ]; then
    if [ ! -f "$OM" ] || { [ -z "${MSAME_BIN:-}" ] && ! command -v msame >/dev/null; }; then
        if [ "$IF_AVAILABLE" = 1 ]; then echo "deepspeech2.sh: no $OM or no msame here; skipping msame"; exit 0; fi
    fi
    $PY -m runners --backend msame --model "$OM" --dataset "$DATA" --out "$RUN" --outfmt TXT
else
    $PY -m runners --backend onnxruntime --model "$EXPORT/model.onnx" --dataset "$DATA" --out "$RUN" --keep-order \
        --threads "$THREADS" --no-progress
fi
echo "==> postprocess: the guide's decoding (floor(L/2) frames)"
$PY -m postprocess score --run "$RUN" --dataset "$DATA" --card "$EXPORT/model.card.json" --modelzoo
