"""The split ASR model of split-model-inference (rawahars): a conv + BiGRU CTC model cut into Head and Tail.

Modules: `model` (the network, Head/Tail views), `autoencoder` (the activation autoencoder),
`checkpoint` (model.pth / autoencoder.pth readers), `labels` (the original's character map),
`features` (its torchaudio MelSpectrogram() defaults as a feature config), `recipe` (export).
"""
