"""The split ASR model of split-model-inference (rawahars): a conv + BiGRU CTC model cut into Head and Tail.

Modules: `model` (the network, Head/Tail views), `autoencoder` (the activation autoencoder),
`checkpoint` (model.pth / autoencoder.pth readers), `labels` (the original's character map),
`features` (its torchaudio MelSpectrogram() defaults as a feature config), `recipe` (export),
`options` (command-line overrides of the inferred hyper-parameters).
"""
from core.family import BenchDefaults, ExportCommand, Family
from core.features import FeatureKind
from core.mel import mel_frames, mel_spectrogram
from families.split_asr.features import MEL_KIND

FAMILY = Family(
    name="split_asr",
    recipe="families.split_asr.recipe",
    split="families.split_asr.recipe",
    features={MEL_KIND: FeatureKind(mel_spectrogram, mel_frames)},
    export=ExportCommand(
        command="split-asr", help="a split-model-inference model.pth (conv + BiGRU CTC)",
        description="Export the split-model-inference ASR model from its model.pth (a plain state_dict, read "
                    "with weights_only=True; sizes inferred from the tensor shapes). Input: spec (B,1,n_feats,T) "
                    "float32, torchaudio MelSpectrogram() defaults; output: logits (B,ceil(T/2),29), the "
                    "classifier's raw output. The original's batch_first quirk of the 2nd+ GRU layers is "
                    "reproduced (see the card).",
        artifact_option="checkpoint", artifact_help="path of model.pth",
        artifact_what="checkpoint (a split-model-inference model.pth)",
        options="families.split_asr.options",
    ),
    # No benchmark models of its own; the stages-around-the-model rows read AN4 (raw) for it.
    bench=BenchDefaults(corpus="an4_raw"),
)
