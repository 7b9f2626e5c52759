"""wav2vec2 CTC from a Hugging Face model directory.

Modules: `recipe` (loading the directory with transformers, offline, and its export recipe), `features`
(the normalised waveform), `bench` (random-weight benchmark models).
"""
from core.family import BenchDefaults, BenchModel, ExportCommand, Family
from core.features import FeatureKind, samples_as_frames
from families.wav2vec2.features import FEATURE_KIND, wav2vec2_waveform
from families.wav2vec2.guide import GUIDE

FAMILY = Family(
    name="wav2vec2",
    recipe="families.wav2vec2.recipe",
    features={FEATURE_KIND: FeatureKind(wav2vec2_waveform, samples_as_frames)},
    export=ExportCommand(
        command="wav2vec2", help="a Hugging Face wav2vec2 CTC model directory",
        description="Export a Hugging Face Wav2Vec2ForCTC directory (config.json, model.safetensors or "
                    "pytorch_model.bin, vocab.json, preprocessor_config.json), read from local files only. "
                    "Input: input_values (B,samples) float32; output: logits (B,frames,vocab).",
        artifact_option="model-dir", artifact_help="the model directory",
        artifact_what="model directory (Hugging Face wav2vec2 CTC)",
        options="families.wav2vec2.export_options",
    ),
    # The transformer's MatMuls carry the time; the conv feature encoder stays fp32 (quantising Conv costs
    # accuracy and speed: results/wav2vec2_librispeech_int8_op_types_variants.md). Attention is expected to
    # fuse into one kernel, and the graph report says when onnxruntime's optimiser does not manage it.
    guide=GUIDE,
    variant_defaults={
        "int8-dynamic": {"op_types": ["MatMul"]},
        "int8-static": {"op_types": ["MatMul"]},
        # onnxruntime.transformers' BERT fusions match the encoder's layer norms and GELUs (not its attention).
        "fused": {"model_type": "bert"},
        "expected_fusions": {"Attention": "multi-head self-attention as one kernel",
                             "SkipLayerNormalization": "residual add + layer norm",
                             "BiasGelu": "bias add + GELU"},
    },
    bench=BenchDefaults(
        length_option="samples", length=100000, length_help="wav2vec2 input length (the Ascend guide's)",
        models=(
            BenchModel("wav2vec2-dir", "wav2vec2 (given dir)", "a Hugging Face wav2vec2 CTC directory"),
            BenchModel("wav2vec2-base", "wav2vec2-base arch (random)",
                       "wav2vec2-base architecture with random weights",
                       make="families.wav2vec2.bench:random_wav2vec2_base"),
        ),
        corpus="librispeech",
        optimum_peer=True,
    ),
)
