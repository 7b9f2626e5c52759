"""DeepSpeech2 as deepspeech.pytorch V3.0 builds and saves it.

Modules: `architecture` (V3.0's fixed facts), `checkpoint` (the V3.0 Lightning checkpoint, read without
deepspeech.pytorch), `recipe` (the PyTorch module and its export recipe), `features` (the spectrogram),
`streaming` (the chunk-by-chunk form with explicit caches), `bench` (random-weight benchmark models).
"""
from core.family import BenchDefaults, BenchModel, ExportCommand, Family
from core.features import FeatureKind
from families.deepspeech2.guide import GUIDE
from families.deepspeech2.features import FEATURE_KIND, deepspeech_frames, deepspeech_spectrogram

FAMILY = Family(
    name="deepspeech2",
    recipe="families.deepspeech2.recipe",
    streaming="families.deepspeech2.streaming",
    features={FEATURE_KIND: FeatureKind(deepspeech_spectrogram, deepspeech_frames)},
    export=ExportCommand(
        command="deepspeech2", help="a deepspeech.pytorch V3.0 checkpoint (.ckpt)",
        description="Export a deepspeech.pytorch V3.0 Lightning checkpoint. Inputs: spect (B,1,161,T) float32 and "
                    "lengths (B,) int32; outputs: probs (B,T',29) and output_lengths.",
        artifact_option="checkpoint", artifact_help="path of the V3.0 .ckpt file",
        artifact_what="checkpoint (a deepspeech.pytorch V3.0 .ckpt)",
        options="families.deepspeech2.export_options",
    ),
    # Conv stays fp32: quantised, onnxruntime runs the two front convolutions slower for no accuracy gain
    # (results/deepspeech2_an4_int8_op_types_variants.md); the LSTMs carry the int8 speed-up.
    guide=GUIDE,
    variant_defaults={
        "int8-dynamic": {"op_types": ["LSTM", "MatMul", "Gemm"]},
        "int8-static": {"op_types": ["MatMul", "Gemm"]},
        "expected_fusions": {"FusedConv": "Conv + BatchNorm + Hardtanh(Clip) folded into one kernel"},
    },
    bench=BenchDefaults(
        length_option="frames", length=621, length_help="DeepSpeech2 input frames (the Ascend guide's)",
        models=(
            BenchModel("deepspeech2-ckpt", "DeepSpeech2 (demo)", "a deepspeech.pytorch V3.0 checkpoint"),
            BenchModel("deepspeech2-real", "DeepSpeech2 (an4 size)",
                       "also the an4-size DeepSpeech2 (5x1024 BiLSTM, 86.6 M parameters) with random weights, "
                       "written as a V3.0 checkpoint: the memory-bound case (recurrent weights re-read every "
                       "frame)",
                       make="families.deepspeech2.bench:random_an4_size_checkpoint"),
        ),
        corpus="an4_raw",
    ),
)
