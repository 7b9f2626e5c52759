"""DeepSpeech2's run plan (core/plan.py): AN4 test, the Ascend DeepSpeech guide's flow, precision variants."""
from __future__ import annotations

from core.plan import DemoModel, Export, GuideFlow, GuideRun, Plan, Variants

PLAN = Plan(
    family="deepspeech2",
    report="deepspeech2_an4",
    title="DeepSpeech2 on AN4 test",
    corpus="an4",
    model=DemoModel(option="deepspeech_ckpt", path="models/deepspeech2_demo.ckpt",
                    train_record="models/deepspeech2_demo.train.json",
                    quick_train_args=("--epochs", "2", "--hidden-size", "32", "--hidden-layers", "1")),
    export=Export(command="deepspeech2", model_flag="--checkpoint"),
    test_set="data/deepspeech2_an4_test",
    batch_sizes_option="batch_sizes",
    # The guide's flow on the same data: a static 1x1x161x621 export, its preprocess layout (sorted, padded to
    # 621, data{i}.bin) and its postprocess (floor(L/2) frames decoded); msame when it is installed.
    guide=GuideFlow(
        script="scripts/modelzoo/deepspeech2.sh", dataset="data/deepspeech2_an4_test_modelzoo",
        runs=(GuideRun(run="onnxruntime_static621_modelzoo",
                       label="ONNX Runtime static 1x621, ModelZoo pre/postprocess"),
              GuideRun(run="msame_modelzoo", label="msame, {soc} OM, ModelZoo pre/postprocess", backend="msame",
                       if_available=True))),
    # Calibrated on training utterances: the test set is never calibrated on.
    variants=Variants(calibration="data/deepspeech2_an4_calibration", max_delta_wer=0.5),
    tables=("precision", "throughput"),
)
