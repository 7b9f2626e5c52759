"""wav2vec2's run plan (core/plan.py): LibriSpeech test, the Ascend wav2vec2 guide's flow, precision variants."""
from __future__ import annotations

from core.plan import DemoModel, Export, GuideFlow, GuideRun, Plan, Variants

PLAN = Plan(
    family="wav2vec2",
    report="wav2vec2_librispeech",
    title="wav2vec2 on LibriSpeech {test_name}",
    corpus="librispeech",
    model=DemoModel(option="wav2vec2_dir", path="models/wav2vec2_demo", train_record="models/wav2vec2_demo/train.json",
                    quick_train_args=("--epochs", "1", "--limit", "24")),
    export=Export(command="wav2vec2", model_flag="--model-dir", extra=("--torchscript",)),
    test_set="data/wav2vec2_librispeech_test",
    batch_sizes_option="w2v_batch_sizes",
    # The guides' flow: batch files of 8 x 100000 samples, atc, onnxruntime, and ais_bench / torch_aie when
    # they are installed.
    guide=GuideFlow(
        script="scripts/modelzoo/wav2vec2.sh", dataset="data/wav2vec2_librispeech_test_modelzoo_bs8",
        extra=("--batch-size", "8"),
        runs=(GuideRun(run="onnxruntime_modelzoo_bs8", backend="onnxruntime", if_available=True,
                       label="ONNX Runtime, ModelZoo pre/postprocess (bs 8, 100000 samples)"),
              GuideRun(run="ais_bench_modelzoo_bs8", backend="ais_bench", if_available=True,
                       label="ais_bench, {soc} OM, ModelZoo pre/postprocess (bs 8)"),
              GuideRun(run="torch_aie_modelzoo_bs8", backend="torch_aie", if_available=True,
                       label="torch_aie FP16, {soc}, ModelZoo pre/postprocess (bs 8)"))),
    # No "fused" (onnxruntime's offline transformer fusions): on the CPUs measured it ran no faster than the fp32
    # graph, whose session already fuses the layer norms and GELUs (docs/export.md); `export variant --kind
    # fused` and the benchmark's contender stay, to check it on another machine.
    variants=Variants(kinds=("fp16", "int8-dynamic", "int8-static"),
                      calibration="data/wav2vec2_librispeech_calibration", max_delta_wer=0.5),
    tables=("precision", "throughput"),
)
