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
#   --librispeech DIR       a LibriSpeech split to test wav2vec2 on, e.g. LibriSpeech/test-clean (LIBRISPEECH_TEST);
#                           default: the synthesised demo split
#   LIBRISPEECH_CALIB=DIR   a LibriSpeech split to calibrate wav2vec2 int8-static on (default: the demo train split
#                           with the demo corpus; the test split when --librispeech is given without it)
#   --wav2vec2-dir DIR      Hugging Face wav2vec2 CTC model directory (WAV2VEC2_DIR); default: train the demo model
#   --split-asr-ckpt FILE   split-model-inference model.pth (SPLIT_ASR_CKPT); default: train the demo model
#   --split-asr-autoencoder FILE  its autoencoder.pth (SPLIT_ASR_AE); default: train one on the demo train split
#   --split-codec NAME      the low-bit codec of the split precision/timing rows (SPLIT_CODEC, default ae-q4-ans)
#   SPLIT_ASR_TRAIN_OPTS="--epochs 15 --limit 600"  options of the demo split ASR model's training
#   --families "a b"        which families to run (FAMILIES, default "deepspeech2 wav2vec2 split_asr")
#   --work DIR              caches and intermediate files (WORK_DIR, default: work/)
#   --results DIR           where the tables go (RESULTS_DIR, default: results/)
#   --threads N             threads for every runtime (THREADS, default: all cores)
#   --batch-sizes "1 4 8"   DeepSpeech2 throughput batch sizes (BATCH_SIZES, default "1 4 8 16")
#   --w2v-batch-sizes "..." wav2vec2 throughput batch sizes (W2V_BATCH_SIZES, default "1 4 8 16 32 64")
#   --soc-version NAME      Ascend SoC for atc/torch_aie (ASCEND_SOC, default Ascend310P3); the Ascend rows
#                           (atc + msame, ais_bench, torch_aie) are added when those tools are installed
#   --quick                 tiny corpus and model, a smoke test of the whole chain (results in work-quick/)
#   --streaming             also the streaming section (STREAMING=1): scripts/streaming.sh trains a unidirectional
#                           demo DeepSpeech2 with Lookahead and writes results/deepspeech2_uni_an4_streaming.*
#   --ray                   preprocess the test sets and run torch/onnxruntime/openvino over Ray (off by default:
#                           one machine needs no cluster); each command starts a local Ray instance unless
#                           --ray-address is given; workers = the cluster's CPUs / --threads (docs/ray.md)
#   --ray-address ADDR      join this Ray cluster (HOST:PORT of `ray start --head`); WORK_DIR must be shared storage
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
W2V_BATCH_SIZES="${W2V_BATCH_SIZES:-1 4 8 16 32 64}"
LIBRISPEECH_TEST="${LIBRISPEECH_TEST:-}"
WAV2VEC2_DIR="${WAV2VEC2_DIR:-}"
SPLIT_ASR_CKPT="${SPLIT_ASR_CKPT:-}"
SPLIT_ASR_AE="${SPLIT_ASR_AE:-}"
SPLIT_CODEC="${SPLIT_CODEC:-ae-q4-ans}"
FAMILIES="${FAMILIES:-deepspeech2 wav2vec2 split_asr}"
ASCEND_SOC="${ASCEND_SOC:-Ascend310P3}"
QUICK=0
STREAMING="${STREAMING:-0}"
RAY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --an4-root) AN4_ROOT="$2"; shift 2 ;;
        --an4-manifest) AN4_MANIFEST="$2"; shift 2 ;;
        --deepspeech-ckpt) DEEPSPEECH_CKPT="$2"; shift 2 ;;
        --work) WORK_DIR="$2"; shift 2 ;;
        --results) RESULTS_DIR="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --batch-sizes) BATCH_SIZES="$2"; shift 2 ;;
        --w2v-batch-sizes) W2V_BATCH_SIZES="$2"; shift 2 ;;
        --librispeech) LIBRISPEECH_TEST="$2"; shift 2 ;;
        --wav2vec2-dir) WAV2VEC2_DIR="$2"; shift 2 ;;
        --split-asr-ckpt) SPLIT_ASR_CKPT="$2"; shift 2 ;;
        --split-asr-autoencoder) SPLIT_ASR_AE="$2"; shift 2 ;;
        --split-codec) SPLIT_CODEC="$2"; shift 2 ;;
        --families) FAMILIES="$2"; shift 2 ;;
        --soc-version) ASCEND_SOC="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --streaming) STREAMING=1; shift ;;
        --ray) RAY+=(--ray); shift ;;
        --ray-address) RAY+=(--ray-address "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

has() { case " $FAMILIES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
need_corpus=0
if has deepspeech2; then
    if [ -z "$AN4_ROOT" ] && [ -z "$AN4_MANIFEST" ]; then need_corpus=1; fi
    if [ -z "$DEEPSPEECH_CKPT" ] && [ -z "$AN4_ROOT" ]; then need_corpus=1; fi
fi
if has wav2vec2 && { [ -z "$LIBRISPEECH_TEST" ] || [ -z "$WAV2VEC2_DIR" ]; }; then need_corpus=1; fi
if has split_asr && { [ -z "$LIBRISPEECH_TEST" ] || [ -z "$SPLIT_ASR_CKPT" ] || [ -z "$SPLIT_ASR_AE" ]; }; then
    need_corpus=1
fi
NEED_ESPEAK=$need_corpus bash scripts/setup_env.sh
source env.sh
PY=.venv/bin/python
if [ ${#RAY[@]} -gt 0 ] && [ "${RAY[0]}" != "--ray" ]; then RAY=(--ray "${RAY[@]}"); fi  # --ray-address implies --ray
start=$(date +%s)
step() { echo; echo "==> [$(( $(date +%s) - start ))s] $*"; }

if [ "$QUICK" = "1" ]; then
    WORK_DIR="${WORK_DIR%/}-quick"
    RESULTS_DIR="${RESULTS_DIR:-$WORK_DIR/results}"
    synth_sizes=(--an4-train 120 --an4-test 24 --libri-train 24 --libri-test 8)
    train_opts=(--epochs 2 --hidden-size 32 --hidden-layers 1)
    w2v_train_opts=(--epochs 1 --limit 24)
    # A model trained for two epochs is a plumbing check: how far int8 moves its near-random outputs
    # depends on the CPU's int8 kernels, so the lossy gate is opened (the full run keeps the defaults).
    variant_gate=(--min-argmax-agreement 0 --max-text-cer 1)
    split_train_opts=(--epochs 2 --n-cnn 1 --n-rnn 1 --rnn-dim 32 --limit 24)
    split_ae_opts=(--epochs 2 --limit 24)
    split_limit=(--limit 4)  # utterances per point for the planner's profile and measured check
    split_bandwidths="1mbit,100mbit"
    resnet_opts=(--width 8 --images 8 --repeats 1)
else
    synth_sizes=()
    train_opts=()
    w2v_train_opts=()
    variant_gate=()
    # lr 3e-3 (the trainer's default) leaves the CTC blank plateau in a few epochs; 600 utterances x 15
    # epochs at the trainer's default size keep the demo model's training to minutes on a small CPU.
    read -r -a split_train_opts <<< "${SPLIT_ASR_TRAIN_OPTS:---epochs 15 --limit 600}"
    split_ae_opts=(--epochs 10 --limit 600)
    split_limit=(--limit 40)
    split_bandwidths="1mbit,10mbit,100mbit"
    resnet_opts=()
fi
RESULTS_DIR="${RESULTS_DIR:-results}"
mkdir -p "$WORK_DIR" "$RESULTS_DIR"

if [ "$need_corpus" = "1" ]; then
    step "demo corpus (espeak-ng, AN4 + LibriSpeech layouts) -> $WORK_DIR/corpus"
    $PY -m demo synth --out "$WORK_DIR/corpus" "${synth_sizes[@]}"
    DEMO_AN4="$WORK_DIR/corpus/an4"
fi

training=()
# Precision variants of one exported model: fp16, int8 dynamic, int8 static (calibrated on CALIB), each
# gated against fp32; onnxruntime and OpenVINO runs at batch 1 and 8; the per-variant table and plot.
#   run_variants NAME TITLE MODEL DATA CALIB RUNS TORCH_ARGS...
run_variants() {
    local name="$1" title="$2" model="$3" data="$4" calib="$5" runs="$6"; shift 6
    local torch_args=("$@") stem="${model%.onnx}" rows=()
    step "$title: fp16 / int8 variants (each gated against fp32 on $(basename "$data"))"
    $PY -m export variant --model "$model" --kind fp16 --dataset "$data" --threads "$THREADS" "${variant_gate[@]}"
    $PY -m export variant --model "$model" --kind int8-dynamic --dataset "$data" --threads "$THREADS" "${variant_gate[@]}"
    $PY -m export variant --model "$model" --kind int8-static --dataset "$calib" --threads "$THREADS" "${variant_gate[@]}"
    # onnxruntime's offline transformer fusions, where the family declares them (wav2vec2).
    local kinds=("" .fp16 .int8-dynamic .int8-static)
    if $PY -c "import sys; from families.registry import get_family; sys.exit(not get_family('${name%%_*}').variant_defaults.get('fused'))"; then
        $PY -m export variant --model "$model" --kind fused --dataset "$data" --threads "$THREADS" "${variant_gate[@]}"
        kinds+=(.fused)
    fi
    for bs in 1 8; do
        $PY -m runners "${RAY[@]}" --backend torch "${torch_args[@]}" --dataset "$data" --out "$runs/torch_bs$bs" \
            --batch-size "$bs" --threads "$THREADS" --no-progress
        for v in "${kinds[@]}"; do
            step "$title: onnxruntime${v:-.fp32} batch $bs"
            $PY -m runners "${RAY[@]}" --backend onnxruntime --model "$stem$v.onnx" --dataset "$data" \
                --out "$runs/onnxruntime${v}_bs$bs" --batch-size "$bs" --threads "$THREADS" --no-progress
        done
        for v in "" .int8-static; do
            step "$title: openvino${v:-.fp32} batch $bs"
            $PY -m runners "${RAY[@]}" --backend openvino --model "$stem$v.onnx" --dataset "$data" \
                --out "$runs/openvino${v}_bs$bs" --batch-size "$bs" --threads "$THREADS" --no-progress
        done
    done
    rows=(--row "PyTorch fp32 (reference)=$runs/torch_bs1,$runs/torch_bs8"
          --row "ONNX Runtime fp32=$runs/onnxruntime_bs1,$runs/onnxruntime_bs8"
          --row "ONNX Runtime fp16=$runs/onnxruntime.fp16_bs1,$runs/onnxruntime.fp16_bs8"
          --row "ONNX Runtime int8 dynamic=$runs/onnxruntime.int8-dynamic_bs1,$runs/onnxruntime.int8-dynamic_bs8"
          --row "ONNX Runtime int8 static (QDQ)=$runs/onnxruntime.int8-static_bs1,$runs/onnxruntime.int8-static_bs8"
          --row "OpenVINO fp32=$runs/openvino_bs1,$runs/openvino_bs8"
          --row "OpenVINO int8 static (QDQ)=$runs/openvino.int8-static_bs1,$runs/openvino.int8-static_bs8")
    if [ -f "$stem.fused.onnx" ]; then
        rows+=(--row "ONNX Runtime fp32 + transformer fusions=$runs/onnxruntime.fused_bs1,$runs/onnxruntime.fused_bs8")
    fi
    $PY -m postprocess variants --dataset "$data" --card "${stem}.card.json" "${rows[@]}" --out "$RESULTS_DIR" \
        --name "$name" --title "$title"
}

run_deepspeech2() {
    if [ -z "$DEEPSPEECH_CKPT" ]; then
        DEEPSPEECH_CKPT="$WORK_DIR/models/deepspeech2_demo.ckpt"
        step "demo DeepSpeech2 (fixed seed; cached) -> $DEEPSPEECH_CKPT"
        $PY -m demo train deepspeech2 --an4-root "${AN4_ROOT:-$DEMO_AN4}" --out "$DEEPSPEECH_CKPT" \
            --threads "$THREADS" "${train_opts[@]}"
        cp "${DEEPSPEECH_CKPT%.ckpt}.train.json" "$RESULTS_DIR/deepspeech2_demo_training.json"
        training+=(--training "$RESULTS_DIR/deepspeech2_demo_training.json")
    fi

    EXPORT_DIR="$WORK_DIR/export/deepspeech2"
    step "export DeepSpeech2 to ONNX + parity gate -> $EXPORT_DIR"
    $PY -m export deepspeech2 --checkpoint "$DEEPSPEECH_CKPT" --out "$EXPORT_DIR" --threads "$THREADS"
    MODEL="$EXPORT_DIR/model.onnx"
    CARD="$EXPORT_DIR/model.card.json"

    DATA="$WORK_DIR/data/deepspeech2_an4_test"
    step "preprocess AN4 test -> $DATA"
    if [ -n "$AN4_MANIFEST" ]; then
        $PY -m preprocess "${RAY[@]}" --manifest "$AN4_MANIFEST" --card "$CARD" --out "$DATA"
    else
        $PY -m preprocess "${RAY[@]}" --an4-root "${AN4_ROOT:-$DEMO_AN4}" --split test --card "$CARD" --out "$DATA"
    fi

    RUNS="$WORK_DIR/runs/deepspeech2"
    throughput=()
    for bs in $BATCH_SIZES; do
        for backend in torch onnxruntime; do
            step "run $backend batch $bs"
            model_args=(--model "$MODEL")
            if [ "$backend" = "torch" ]; then model_args=(--card "$CARD" --checkpoint "$DEEPSPEECH_CKPT"); fi
            $PY -m runners "${RAY[@]}" --backend "$backend" "${model_args[@]}" --dataset "$DATA" \
                --out "$RUNS/${backend}_bs${bs}" --batch-size "$bs" --threads "$THREADS" --no-progress
            throughput+=("$RUNS/${backend}_bs${bs}")
        done
    done

    # The Ascend ModelZoo flow on the same data: a static 1x1x161x621 export, the guide's preprocess layout
    # (sorted, padded to 621, data{i}.bin), and its postprocess (floor(L/2) frames decoded).
    # The Ascend guide's flow (scripts/modelzoo/deepspeech2.sh): static export, atc (its script when atc is
    # not here), the guide's preprocess layout, onnxruntime, and msame when it is installed.
    MZ_DATA="$WORK_DIR/data/deepspeech2_an4_test_modelzoo"
    if [ -n "$AN4_MANIFEST" ]; then mz_src=(--manifest "$AN4_MANIFEST"); else mz_src=(--an4-root "${AN4_ROOT:-$DEMO_AN4}"); fi
    local mz=(--checkpoint "$DEEPSPEECH_CKPT" "${mz_src[@]}" --soc-version "$ASCEND_SOC" --work "$WORK_DIR" --threads "$THREADS")
    step "ModelZoo flow (scripts/modelzoo/deepspeech2.sh): onnxruntime"
    bash scripts/modelzoo/deepspeech2.sh "${mz[@]}" --run "$RUNS/onnxruntime_static621_modelzoo"
    local mz_rows=(--modelzoo "ONNX Runtime static 1x621, ModelZoo pre/postprocess=$RUNS/onnxruntime_static621_modelzoo")
    step "ModelZoo flow (scripts/modelzoo/deepspeech2.sh): msame, if installed"
    bash scripts/modelzoo/deepspeech2.sh "${mz[@]}" --backend msame --if-available --run "$RUNS/msame_modelzoo"
    if [ -f "$RUNS/msame_modelzoo/run.json" ]; then
        mz_rows+=(--modelzoo "msame, $ASCEND_SOC OM, ModelZoo pre/postprocess=$RUNS/msame_modelzoo")
    fi

    first_bs="${BATCH_SIZES%% *}"
    step "postprocess: precision and throughput tables -> $RESULTS_DIR"
    candidates=(--candidate "ONNX Runtime fp32 (bs $first_bs)=$RUNS/onnxruntime_bs${first_bs}")
    for bs in $BATCH_SIZES; do
        if [ "$bs" != "$first_bs" ]; then
            candidates+=(--candidate "ONNX Runtime fp32 (padded bs $bs)=$RUNS/onnxruntime_bs${bs}")
            candidates+=(--candidate "PyTorch (padded bs $bs)=$RUNS/torch_bs${bs}")
        fi
    done
    $PY -m postprocess report --dataset "$DATA" --card "$CARD" \
        --reference "PyTorch fp32 (reference, bs $first_bs)=$RUNS/torch_bs${first_bs}" "${candidates[@]}" \
        "${mz_rows[@]}" --modelzoo-dataset "$MZ_DATA" \
        --throughput "${throughput[@]}" --out "$RESULTS_DIR" --name deepspeech2_an4 --title "DeepSpeech2 on AN4 test"


    # Precision variants, calibrated on 100 training utterances (the test set is never calibrated on).
    local calib="$WORK_DIR/data/deepspeech2_an4_calibration"
    if [ -n "$AN4_MANIFEST" ]; then
        echo "run_all: a manifest gives no training split; calibrating int8-static on the test data"
        calib="$DATA"
    else
        $PY -m preprocess "${RAY[@]}" --an4-root "${AN4_ROOT:-$DEMO_AN4}" --split train --card "$CARD" --out "$calib" --spread 100
    fi
    run_variants deepspeech2_an4 "DeepSpeech2 on AN4 test" "$MODEL" "$DATA" "$calib" "$RUNS" \
        --card "$CARD" --checkpoint "$DEEPSPEECH_CKPT"
}

run_wav2vec2() {
    if [ -z "$WAV2VEC2_DIR" ]; then
        WAV2VEC2_DIR="$WORK_DIR/models/wav2vec2_demo"
        step "demo wav2vec2 (fixed seed; cached) -> $WAV2VEC2_DIR"
        $PY -m demo train wav2vec2 --librispeech "$WORK_DIR/corpus/LibriSpeech/train-demo" --out "$WAV2VEC2_DIR" \
            --threads "$THREADS" "${w2v_train_opts[@]}"
        cp "$WAV2VEC2_DIR/train.json" "$RESULTS_DIR/wav2vec2_demo_training.json"
        training+=(--training "$RESULTS_DIR/wav2vec2_demo_training.json")
    fi
    local test_split="${LIBRISPEECH_TEST:-$WORK_DIR/corpus/LibriSpeech/test-demo}"
    local export_dir="$WORK_DIR/export/wav2vec2" data="$WORK_DIR/data/wav2vec2_librispeech_test"
    local mz_data="$WORK_DIR/data/wav2vec2_librispeech_test_modelzoo_bs8" runs="$WORK_DIR/runs/wav2vec2"
    step "export wav2vec2 to ONNX (+ TorchScript) + parity gate -> $export_dir"
    $PY -m export wav2vec2 --model-dir "$WAV2VEC2_DIR" --out "$export_dir" --torchscript --threads "$THREADS"
    step "preprocess LibriSpeech $(basename "$test_split") -> $data"
    $PY -m preprocess "${RAY[@]}" --librispeech "$test_split" --card "$export_dir/model.card.json" --out "$data"
    local w2v_throughput=() first_bs="${W2V_BATCH_SIZES%% *}" candidates=()
    for bs in $W2V_BATCH_SIZES; do
        for backend in torch onnxruntime; do
            step "wav2vec2: run $backend batch $bs"
            local model_args=(--model "$export_dir/model.onnx")
            if [ "$backend" = "torch" ]; then
                model_args=(--card "$export_dir/model.card.json" --checkpoint "$WAV2VEC2_DIR")
            fi
            $PY -m runners "${RAY[@]}" --backend "$backend" "${model_args[@]}" --dataset "$data" \
                --out "$runs/${backend}_bs${bs}" --batch-size "$bs" --threads "$THREADS" --no-progress
            w2v_throughput+=("$runs/${backend}_bs${bs}")
        done
        if [ "$bs" = "$first_bs" ]; then
            candidates+=(--candidate "ONNX Runtime fp32 (bs $bs)=$runs/onnxruntime_bs${bs}")
        else
            candidates+=(--candidate "ONNX Runtime fp32 (padded bs $bs)=$runs/onnxruntime_bs${bs}")
            candidates+=(--candidate "PyTorch (padded bs $bs)=$runs/torch_bs${bs}")
        fi
    done
    # The Ascend guides' flow (scripts/modelzoo/wav2vec2.sh): batch files of 8 x 100000 samples, atc (its
    # script when atc is not here), onnxruntime, and ais_bench / torch_aie when they are installed.
    local mz=(--model-dir "$WAV2VEC2_DIR" --librispeech "$test_split" --batch-size 8 --soc-version "$ASCEND_SOC"
              --work "$WORK_DIR" --threads "$THREADS")
    local mz_rows=() backend label
    for backend in onnxruntime ais_bench torch_aie; do
        step "wav2vec2 ModelZoo flow (scripts/modelzoo/wav2vec2.sh): $backend"
        bash scripts/modelzoo/wav2vec2.sh "${mz[@]}" --backend "$backend" --if-available \
            --run "$runs/${backend}_modelzoo_bs8"
        case "$backend" in
            onnxruntime) label="ONNX Runtime, ModelZoo pre/postprocess (bs 8, 100000 samples)" ;;
            ais_bench) label="ais_bench, $ASCEND_SOC OM, ModelZoo pre/postprocess (bs 8)" ;;
            torch_aie) label="torch_aie FP16, $ASCEND_SOC, ModelZoo pre/postprocess (bs 8)" ;;
        esac
        if [ -f "$runs/${backend}_modelzoo_bs8/run.json" ]; then mz_rows+=(--modelzoo "$label=$runs/${backend}_modelzoo_bs8"); fi
    done
    step "wav2vec2 postprocess -> $RESULTS_DIR"
    $PY -m postprocess report --dataset "$data" --card "$export_dir/model.card.json" \
        --reference "PyTorch fp32 (reference, bs $first_bs)=$runs/torch_bs${first_bs}" "${candidates[@]}" \
        "${mz_rows[@]}" --modelzoo-dataset "$mz_data" --throughput "${w2v_throughput[@]}" --out "$RESULTS_DIR" \
        --name wav2vec2_librispeech --title "wav2vec2 on LibriSpeech $(basename "$test_split")"
    local calib="$WORK_DIR/data/wav2vec2_librispeech_calibration" train_split="${LIBRISPEECH_CALIB:-}"
    if [ -z "$train_split" ] && [ -z "$LIBRISPEECH_TEST" ]; then train_split="$WORK_DIR/corpus/LibriSpeech/train-demo"; fi
    if [ -n "$train_split" ]; then
        $PY -m preprocess "${RAY[@]}" --librispeech "$train_split" --card "$export_dir/model.card.json" --out "$calib" --spread 100
    else
        echo "run_all: no LIBRISPEECH_CALIB split given; calibrating int8-static on the test data"
        calib="$data"
    fi
    run_variants wav2vec2_librispeech "wav2vec2 on LibriSpeech $(basename "$test_split")" "$export_dir/model.onnx" \
        "$data" "$calib" "$runs" --card "$export_dir/model.card.json" --checkpoint "$WAV2VEC2_DIR"
}

# fresh OUT DEP...: OUT exists and is newer than every DEP, so the stage that writes OUT can be skipped.
fresh() {
    local out="$1"; shift
    [ -e "$out" ] || return 1
    local dep
    for dep in "$@"; do [ "$out" -nt "$dep" ] || return 1; done
}

# The split ASR family (split-model-inference): the whole model through the usual runners, Head on the
# edge and Tail in the cloud over gRPC on loopback, the codecs, per-stage times, and the planner; the
# cloud-edge seed's ResNet-50 partition table beside it.
run_split_asr() {
    local models="$WORK_DIR/models/split_asr" export_dir="$WORK_DIR/export/split_asr"
    local split_dir="$WORK_DIR/split/split_asr" data="$WORK_DIR/data/split_asr_librispeech_test"
    local runs="$WORK_DIR/runs/split_asr" train_split="$WORK_DIR/corpus/LibriSpeech/train-demo"
    local test_split="${LIBRISPEECH_TEST:-$WORK_DIR/corpus/LibriSpeech/test-demo}"
    local ckpt="$SPLIT_ASR_CKPT" ae="$SPLIT_ASR_AE"
    if [ -z "$ckpt" ]; then
        ckpt="$models/model.pth"
        step "demo split ASR model (fixed seed; cached) -> $ckpt"
        $PY -m demo train split_asr --librispeech "$train_split" --out "$ckpt" --threads "$THREADS" \
            "${split_train_opts[@]}"
        cp "$models/model.train.json" "$RESULTS_DIR/split_asr_demo_training.json"
        training+=(--training "$RESULTS_DIR/split_asr_demo_training.json")
    fi
    if [ -z "$ae" ]; then
        ae="$models/autoencoder.pth"
        step "its activation autoencoder (the Head's outputs on the train split; cached) -> $ae"
        $PY -m demo train split_asr --autoencoder --checkpoint "$ckpt" --librispeech "$train_split" --out "$ae" \
            --threads "$THREADS" "${split_ae_opts[@]}"
    fi

    step "export the whole split ASR model + parity gate -> $export_dir"
    $PY -m export split-asr --checkpoint "$ckpt" --out "$export_dir" --threads "$THREADS"
    local model="$export_dir/model.onnx" card="$export_dir/model.card.json"
    # Split points for the planner: the model's own Head/Tail (after the Linear, with the autoencoder),
    # and cuts after the residual CNNs and after the first BiGRU.
    local point after
    for point in linear rescnn birnn0; do
        case "$point" in linear) after="" ;; rescnn) after=rescnn_layers ;; birnn0) after=birnn_layers.0 ;; esac
        if fresh "$split_dir/$point/tail.onnx" "$ckpt" "$ae"; then continue; fi
        step "split export ${after:-Head/Tail + autoencoder} -> $split_dir/$point"
        if [ -z "$after" ]; then
            $PY -m split export --checkpoint "$ckpt" --autoencoder "$ae" --out "$split_dir/$point" --threads "$THREADS"
        else
            $PY -m split export --family split_asr --checkpoint "$ckpt" --after "$after" --out "$split_dir/$point" \
                --threads "$THREADS"
        fi
    done
    local head="$split_dir/linear/head.onnx" tail="$split_dir/linear/tail.onnx"

    step "preprocess LibriSpeech $(basename "$test_split") -> $data"
    $PY -m preprocess --librispeech "$test_split" --card "$card" --out "$data"

    local bs throughput=() candidates=()
    for bs in 1 8; do
        step "split ASR whole model: torch and onnxruntime batch $bs"
        $PY -m runners --backend torch --card "$card" --checkpoint "$ckpt" --dataset "$data" \
            --out "$runs/torch_bs$bs" --batch-size "$bs" --threads "$THREADS" --no-progress
        $PY -m runners --backend onnxruntime --model "$model" --dataset "$data" \
            --out "$runs/onnxruntime_bs$bs" --batch-size "$bs" --threads "$THREADS" --no-progress
        throughput+=("$runs/torch_bs$bs" "$runs/onnxruntime_bs$bs")
    done
    candidates=(--candidate "ONNX Runtime fp32 (bs 1)=$runs/onnxruntime_bs1"
                --candidate "ONNX Runtime fp32 (padded bs 8)=$runs/onnxruntime_bs8"
                --candidate "PyTorch (padded bs 8)=$runs/torch_bs8")

    # The cloud: split serve on loopback (only when an edge run is due), stopped when the edge runs are done.
    local codec todo=()
    for codec in fp32 "$SPLIT_CODEC"; do
        fresh "$runs/edge_${codec}_outputs/run.json" "$tail" "$data/manifest.jsonl" || todo+=("$codec/outputs")
        fresh "$RESULTS_DIR/split_asr_timing_$codec.json" "$tail" "$data/manifest.jsonl" || todo+=("$codec/timing")
        candidates+=(--candidate "Split Head -> gRPC -> Tail, $codec boundary=$runs/edge_${codec}_outputs")
        split_tables+=("split_asr_timing_$codec")
    done
    if [ "${#todo[@]}" -gt 0 ]; then
        local port log="$runs/serve.log" tries=0 job what edge_out
        port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        mkdir -p "$runs"
        : > "$log"  # emptied here, not by the child's redirection, which may come after the first grep
        $PY -m split serve --tail "$tail" --autoencoder "$split_dir/linear" --port "$port" --threads 1 >"$log" 2>&1 &
        SPLIT_SERVER_PID=$!
        trap 'kill "$SPLIT_SERVER_PID" 2>/dev/null || true' EXIT
        until grep -q "listening on" "$log"; do
            if ! kill -0 "$SPLIT_SERVER_PID" 2>/dev/null || [ "$tries" -ge 120 ]; then
                cat "$log" >&2; echo "run_all: split serve did not start" >&2; return 1
            fi
            sleep 0.5; tries=$((tries + 1))
        done
        for job in "${todo[@]}"; do
            codec="${job%/*}" what="${job#*/}" edge_out="$runs/edge_${codec}_${job#*/}"
            if [ "$what" = outputs ]; then
                # Tail outputs returned: a run dir postprocess scores beside the whole model's runs.
                step "split edge -> server ($codec boundary, outputs returned) -> $edge_out"
                $PY -m split edge --head "$head" --server "127.0.0.1:$port" --dataset "$data" --codec "$codec" \
                    --autoencoder "$split_dir/linear" --return-output --tail-card "$split_dir/linear/tail.card.json" \
                    --out "$edge_out" --no-progress
            else
                # Per-stage times without the returned tensors (transcripts only, as a deployed edge asks).
                step "split edge per-stage timing ($codec boundary) -> $RESULTS_DIR/split_asr_timing_$codec.*"
                $PY -m split edge --head "$head" --server "127.0.0.1:$port" --dataset "$data" --codec "$codec" \
                    --autoencoder "$split_dir/linear" --out "$edge_out" --no-progress
                for ext in md csv json; do cp "$edge_out/timing.$ext" "$RESULTS_DIR/split_asr_timing_$codec.$ext"; done
            fi
        done
        kill "$SPLIT_SERVER_PID" && wait "$SPLIT_SERVER_PID" || true
        trap - EXIT
    fi

    step "split ASR postprocess: whole model vs split -> $RESULTS_DIR"
    $PY -m postprocess report --dataset "$data" --card "$card" \
        --reference "PyTorch fp32 (reference, bs 1)=$runs/torch_bs1" "${candidates[@]}" \
        --throughput "${throughput[@]}" --out "$RESULTS_DIR" --name split_asr_librispeech \
        --title "Split ASR on LibriSpeech $(basename "$test_split")"

    if ! fresh "$RESULTS_DIR/split_asr_codecs.json" "$tail" "$data/manifest.jsonl"; then
        step "split codecs: bits per element vs dWER -> $RESULTS_DIR/split_asr_codecs.*"
        $PY -m split codecs --head "$head" --tail "$tail" --dataset "$data" --autoencoder "$split_dir/linear" \
            --out "$RESULTS_DIR" --name split_asr_codecs --no-progress
    fi
    split_tables+=(split_asr_codecs)

    local points=(--point "rescnn=$split_dir/rescnn" --point "linear=$split_dir/linear" --point "birnn0=$split_dir/birnn0")
    local profile="$WORK_DIR/split/split_asr_profile.json"
    if ! fresh "$profile" "$tail" "$split_dir/rescnn/tail.onnx" "$split_dir/birnn0/tail.onnx" "$data/manifest.jsonl"; then
        step "split profile: every point's edge/cloud latency and bytes per codec -> $profile"
        $PY -m split profile "${points[@]}" --autoencoder "linear=$split_dir/linear" --full "$model" \
            --dataset "$data" "${split_limit[@]}" --out "$profile"
    fi
    if ! fresh "$RESULTS_DIR/split_asr_plan_check.json" "$profile"; then
        step "split plan: sweep over $split_bandwidths, choice checked on a shaped link -> $RESULTS_DIR/split_asr_plan*"
        $PY -m split plan --profile "$profile" --bandwidth "$split_bandwidths" --rtt 20ms --out "$RESULTS_DIR" \
            --name split_asr_plan --measure "${points[@]}" --autoencoder "linear=$split_dir/linear" --full "$model" \
            --dataset "$data" "${split_limit[@]}"
    fi
    split_tables+=(split_asr_plan split_asr_plan_chosen split_asr_plan_measured split_asr_plan_check)

    if ! fresh "$RESULTS_DIR/split_resnet50_partitions.json" split/resnet_table.py families/resnet/model.py; then
        step "the cloud-edge seed's ResNet-50 partition table (a bare ONNX graph cut by split cut)"
        $PY -m split resnet-table --out "$RESULTS_DIR" --work "$WORK_DIR/split/resnet50" --threads 1 --no-progress \
            "${resnet_opts[@]}"
    fi
    split_tables+=(split_resnet50_partitions)
}

names=()
split_tables=()  # the split section's own tables (NAME.md), gathered into results/README.md after the reports
if has deepspeech2; then run_deepspeech2; names+=(deepspeech2_an4); fi
if has wav2vec2; then run_wav2vec2; names+=(wav2vec2_librispeech); fi
if has split_asr; then run_split_asr; names+=(split_asr_librispeech); fi
if [ "$STREAMING" = "1" ]; then
    step "streaming section (scripts/streaming.sh) -> $RESULTS_DIR/deepspeech2_uni_an4_streaming.*"
    stream_args=(--work "$WORK_DIR" --results "$RESULTS_DIR" --threads "$THREADS")
    if [ -n "$AN4_ROOT" ] || [ -n "${DEMO_AN4:-}" ]; then stream_args+=(--an4-root "${AN4_ROOT:-$DEMO_AN4}"); fi
    if [ "$QUICK" = "1" ]; then stream_args+=(--quick); fi
    bash scripts/streaming.sh "${stream_args[@]}"
fi
$PY -m postprocess readme --out "$RESULTS_DIR" --names "${names[@]}" "${split_tables[@]}" "${training[@]}"

step "done in $(( $(date +%s) - start ))s"
for name in "${names[@]}"; do cat "$RESULTS_DIR/${name}_precision.md" "$RESULTS_DIR/${name}_throughput.md"; done
