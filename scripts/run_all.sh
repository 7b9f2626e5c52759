#!/usr/bin/env bash
# One command from a fresh clone to every table: set-up, demo corpus, demo model, export + parity gate,
# preprocess, PyTorch and ONNX Runtime runs, postprocess tables in results/.
#
#   bash scripts/run_all.sh                      # embedded defaults (synthetic corpus, demo model)
#   bash scripts/run_all.sh --an4-root /data/an4 --deepspeech-ckpt an4_pretrained_v3.ckpt
#
# Options (or environment variables):
#   --an4-root DIR          AN4 raw release (AN4_ROOT); default: the synthesised demo corpus
#   --an4-manifest FILE     deepspeech.pytorch JSON test manifest instead of --an4-root (AN4_MANIFEST)
#   --deepspeech-ckpt FILE  deepspeech.pytorch V3.0 checkpoint (DEEPSPEECH_CKPT); default: train the demo model
#   --work DIR              caches and intermediate files (WORK_DIR, default: work/)
#   --results DIR           where the tables go (RESULTS_DIR, default: results/)
#   --threads N             threads for every runtime (THREADS, default: all cores)
#   --batch-sizes "1 4 8"   batch sizes of the throughput table (BATCH_SIZES, default "1 4 8 16")
#   --quick                 tiny corpus and model, a smoke test of the whole chain (results in work-quick/)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

AN4_ROOT="${AN4_ROOT:-}"
AN4_MANIFEST="${AN4_MANIFEST:-}"
DEEPSPEECH_CKPT="${DEEPSPEECH_CKPT:-}"
WORK_DIR="${WORK_DIR:-work}"
RESULTS_DIR="${RESULTS_DIR:-}"
THREADS="${THREADS:-$(nproc)}"
BATCH_SIZES="${BATCH_SIZES:-1 4 8 16}"
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --an4-root) AN4_ROOT="$2"; shift 2 ;;
        --an4-manifest) AN4_MANIFEST="$2"; shift 2 ;;
        --deepspeech-ckpt) DEEPSPEECH_CKPT="$2"; shift 2 ;;
        --work) WORK_DIR="$2"; shift 2 ;;
        --results) RESULTS_DIR="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --batch-sizes) BATCH_SIZES="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

need_corpus=0
if [ -z "$AN4_ROOT" ] && [ -z "$AN4_MANIFEST" ]; then need_corpus=1; fi
if [ -z "$DEEPSPEECH_CKPT" ] && [ -z "$AN4_ROOT" ]; then need_corpus=1; fi
NEED_ESPEAK=$need_corpus bash scripts/setup_env.sh
source env.sh
PY=.venv/bin/python
start=$(date +%s)
step() { echo; echo "==> [$(( $(date +%s) - start ))s] $*"; }

if [ "$QUICK" = "1" ]; then
    WORK_DIR="${WORK_DIR%/}-quick"
    RESULTS_DIR="${RESULTS_DIR:-$WORK_DIR/results}"
    synth_sizes=(--an4-train 120 --an4-test 24 --libri-train 8 --libri-test 4)
    train_opts=(--epochs 2 --hidden-size 32 --hidden-layers 1)
else
    synth_sizes=()
    train_opts=()
fi
RESULTS_DIR="${RESULTS_DIR:-results}"
mkdir -p "$WORK_DIR" "$RESULTS_DIR"

if [ "$need_corpus" = "1" ]; then
    step "demo corpus (espeak-ng, AN4 + LibriSpeech layouts) -> $WORK_DIR/corpus"
    $PY -m preprocess synth --out "$WORK_DIR/corpus" "${synth_sizes[@]}"
    DEMO_AN4="$WORK_DIR/corpus/an4"
fi

training=()
if [ -z "$DEEPSPEECH_CKPT" ]; then
    DEEPSPEECH_CKPT="$WORK_DIR/models/deepspeech2_demo.ckpt"
    step "demo DeepSpeech2 (fixed seed; cached) -> $DEEPSPEECH_CKPT"
    $PY -m export train deepspeech2 --an4-root "${AN4_ROOT:-$DEMO_AN4}" --out "$DEEPSPEECH_CKPT" \
        --threads "$THREADS" "${train_opts[@]}"
    cp "${DEEPSPEECH_CKPT%.ckpt}.train.json" "$RESULTS_DIR/deepspeech2_demo_training.json"
    training=(--training "$RESULTS_DIR/deepspeech2_demo_training.json")
fi

EXPORT_DIR="$WORK_DIR/export/deepspeech2"
step "export DeepSpeech2 to ONNX + parity gate -> $EXPORT_DIR"
$PY -m export deepspeech2 --checkpoint "$DEEPSPEECH_CKPT" --out "$EXPORT_DIR" --threads "$THREADS"
MODEL="$EXPORT_DIR/model.onnx"
CARD="$EXPORT_DIR/model.card.json"

DATA="$WORK_DIR/data/deepspeech2_an4_test"
step "preprocess AN4 test -> $DATA"
if [ -n "$AN4_MANIFEST" ]; then
    $PY -m preprocess --manifest "$AN4_MANIFEST" --card "$CARD" --out "$DATA"
else
    $PY -m preprocess --an4-root "${AN4_ROOT:-$DEMO_AN4}" --split test --card "$CARD" --out "$DATA"
fi

RUNS="$WORK_DIR/runs/deepspeech2"
throughput=()
for bs in $BATCH_SIZES; do
    for backend in torch onnxruntime; do
        step "run $backend batch $bs"
        model_args=(--model "$MODEL")
        if [ "$backend" = "torch" ]; then model_args=(--card "$CARD" --checkpoint "$DEEPSPEECH_CKPT"); fi
        $PY -m runners --backend "$backend" "${model_args[@]}" --dataset "$DATA" \
            --out "$RUNS/${backend}_bs${bs}" --batch-size "$bs" --threads "$THREADS" --no-progress
        throughput+=("$RUNS/${backend}_bs${bs}")
    done
done

# The Ascend ModelZoo flow on the same data: a static 1x1x161x621 export, the guide's preprocess layout
# (sorted, padded to 621, data{i}.bin), and its postprocess (floor(L/2) frames decoded).
MZ_EXPORT="$WORK_DIR/export/deepspeech2_static621"
MZ_DATA="$WORK_DIR/data/deepspeech2_an4_test_modelzoo"
step "ModelZoo flow: static export, --modelzoo preprocess, onnxruntime run"
$PY -m export deepspeech2 --checkpoint "$DEEPSPEECH_CKPT" --out "$MZ_EXPORT" --static-shape 1,1,161,621 \
    --threads "$THREADS"
if [ -n "$AN4_MANIFEST" ]; then mz_src=(--manifest "$AN4_MANIFEST"); else mz_src=(--an4-root "${AN4_ROOT:-$DEMO_AN4}"); fi
$PY -m preprocess "${mz_src[@]}" --card "$MZ_EXPORT/model.card.json" --out "$MZ_DATA" --modelzoo --pad-to 621
$PY -m runners --backend onnxruntime --model "$MZ_EXPORT/model.onnx" --dataset "$MZ_DATA" \
    --out "$RUNS/onnxruntime_static621_modelzoo" --keep-order --threads "$THREADS" --no-progress

first_bs="${BATCH_SIZES%% *}"
step "postprocess: precision and throughput tables -> $RESULTS_DIR"
candidates=(--candidate "ONNX Runtime fp32 (bs $first_bs)=$RUNS/onnxruntime_bs${first_bs}")
for bs in $BATCH_SIZES; do
    if [ "$bs" != "$first_bs" ]; then
        candidates+=(--candidate "ONNX Runtime fp32 (padded bs $bs)=$RUNS/onnxruntime_bs${bs}")
        candidates+=(--candidate "PyTorch (padded bs $bs)=$RUNS/torch_bs${bs}")
    fi
done
name="deepspeech2_an4"
$PY -m postprocess report --dataset "$DATA" --card "$CARD" \
    --reference "PyTorch fp32 (reference, bs $first_bs)=$RUNS/torch_bs${first_bs}" "${candidates[@]}" \
    --modelzoo "ONNX Runtime static 1x621, ModelZoo pre/postprocess=$RUNS/onnxruntime_static621_modelzoo" \
    --modelzoo-dataset "$MZ_DATA" \
    --throughput "${throughput[@]}" --out "$RESULTS_DIR" --name "$name" --title "DeepSpeech2 on AN4 test" \
    --readme "${training[@]}"

step "done in $(( $(date +%s) - start ))s"
cat "$RESULTS_DIR/${name}_precision.md" "$RESULTS_DIR/${name}_throughput.md"
