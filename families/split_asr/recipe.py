"""Export recipes of the split ASR model: the whole model, its Head and Tail, and the autoencoder halves.

Each builder returns the export stage's `LoadedModel` (names, dtypes, symbolic shapes, example inputs,
card facts), so the generic export pipeline (ONNX export, onnxoptimizer, parity gate, card) handles
them like every other family.

Padding: the original has no lengths input and masks nothing, so frames past an utterance's end (zero
spectrogram columns) reach its last valid frames through the 3x3 convolutions and both GRU directions,
and the 2nd and later GRUs recur across the batch axis (model.py). A padded batch therefore does not
give each row its batch-1 result; the parity gate compares ONNX with PyTorch at the same batch, and
records padded-batch-vs-batch-1 differences without failing on them (padding_invariant=False).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from core.recipe import LoadedModel, SplitRecipe, TensorSpec, sha256_file
from families.split_asr import FAMILY as _FAMILY
from families.split_asr import labels as L
from families.split_asr.autoencoder import AutoEncoderDecoder, DecoderPart, EncoderPart
from families.split_asr.checkpoint import load_autoencoder, load_model
from families.split_asr.features import FRAMES_PER_SECOND, feature_config
from families.split_asr.model import (Head, SplitASRConfig, SpeechRecognitionModel, Tail, gru_batch_first,
                                      output_frames, output_length_rule, parameter_count)

OPSET = 17
# Spectrogram frames the parity gate sweeps (80 frames per second: 0.5 s to 5 s).
PARITY_FRAMES = [41, 160, 400]
BOUNDARY = "features"  # the Head's output / the Tail's input
CODE = "code"  # the autoencoder's bottleneck
QUIRK = ("the 2nd and later BiGRU layers are built with batch_first=False but fed batch-first tensors, as in "
         "the original: they recur over the batch axis (each frame index is a sequence whose steps are the "
         "batch's utterances). Kept because a trained model.pth depends on it; at batch > 1 rows influence "
         "each other, so transcripts depend on the batch (score at batch 1 to compare with the original's "
         "per-utterance numbers only when it also ran at batch 1)")
OUTPUT_SEMANTICS = ("logits: the classifier's raw output, as the original's forward returns it; the original "
                    "applies log_softmax only for its CTC loss and greedy decoding, which argmax leaves unchanged")
ORIGINAL_NOTES = {
    "ctc_input_lengths": "the original trains with CTC input lengths = spectrogram frames // 2, one less than "
                         "the ceil(frames / 2) frames the model emits for odd lengths; this card's "
                         "output_length_rule gives the emitted frames",
    "greedy_decoder": "the original's GreedyDecoder reads every output frame of the padded batch (no lengths)",
    "metrics": "the original averages per-utterance WER/CER; the tables here use corpus-level rates (hf "
               "convention: CER counts spaces, as its char_errors with remove_space=False)",
}


def _random_rows(shape_tail: tuple[int, ...], lengths: list[int], total: int | None, seed: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 time_axis: int = -1) -> torch.Tensor:
    """One batch of random rows, zero past each row's length; a row depends only on its length and seed."""
    total = total or max(lengths)
    if time_axis == -1:
        x = torch.zeros(len(lengths), *shape_tail, total)
    else:
        x = torch.zeros(len(lengths), total, *shape_tail)
    for row, n in enumerate(lengths):
        gen = torch.Generator().manual_seed(seed * 100003 + n)
        values = torch.randn(*shape_tail, n, generator=gen) if time_axis == -1 else \
            torch.randn(n, *shape_tail, generator=gen)
        if transform is not None:
            values = transform(values)
        if time_axis == -1:
            x[row, ..., :n] = values
        else:
            x[row, :n] = values
    return x


def make_spec_inputs(cfg: SplitASRConfig, lengths: list[int], frames: int | None = None,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Mel-power-like (non-negative, heavy-tailed) spectrograms (batch, 1, n_feats, time)."""
    spec = _random_rows((1, cfg.n_feats), lengths, frames, seed, transform=lambda v: v.exp())
    return {"spec": spec}


def _common_facts(cfg: SplitASRConfig, model: torch.nn.Module) -> dict[str, Any]:
    return {
        "architecture": {**cfg.to_dict(), "stem": "Conv2d(1, channels, 3, stride 2, padding 1)",
                         "gru_batch_first": gru_batch_first(cfg.n_rnn_layers), "parameters": parameter_count(model)},
        "labels": L.LABELS if cfg.n_class == L.N_CLASS else [str(i) for i in range(cfg.n_class)],
        "blank_index": L.BLANK_INDEX if cfg.n_class == L.N_CLASS else cfg.n_class - 1,
        "word_delimiter": L.WORD_DELIMITER,
        "metrics_convention": "hf",
        "quirks": {"gru_batch_first": QUIRK},
        "original": ORIGINAL_NOTES,
        "padding": "not padding-invariant: no lengths input, no masking, and the batch_first quirk (see quirks)",
    }


def _source(path: Path, what: str, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(Path(path)), "format": what,
            "inferred_config": cfg}


def whole_model(model: SpeechRecognitionModel, cfg: SplitASRConfig, source: dict[str, Any]) -> LoadedModel:
    inputs = [TensorSpec("spec", "float32", ("batch", 1, cfg.n_feats, "time"), "features", time_axis=3)]
    outputs = [TensorSpec("logits", "float32", ("batch", "frames", cfg.n_class), "logits", time_axis=1)]
    facts = {**_common_facts(cfg, model), "feature": feature_config(cfg.n_feats),
             "output_length_rule": output_length_rule(), "output_semantics": OUTPUT_SEMANTICS}
    return LoadedModel(family=_FAMILY.name, module=model.eval(), inputs=inputs, outputs=outputs,
                       make_inputs=lambda ls, frames=None: make_spec_inputs(cfg, ls, frames),
                       card_facts=facts, source=source, opset=OPSET, parity_lengths=list(PARITY_FRAMES),
                       atol=1e-4, rtol=1e-3, frames_for=output_frames, padding_invariant=False)


def boundary_spec(cfg: SplitASRConfig) -> dict[str, Any]:
    """What crosses the network: the Head's per-frame features, with the rule for their valid lengths."""
    return {"name": BOUNDARY, "dtype": "float32", "shape": ["batch", "frames", cfg.rnn_dim], "time_axis": 1,
            "after": "fully_connected", "before": "birnn_layers.0",
            "lengths": {"rule": output_length_rule(), "of": "the spectrogram's valid frames",
                        "frames_per_second": FRAMES_PER_SECOND / 2}}


def head_model(model: SpeechRecognitionModel, cfg: SplitASRConfig, source: dict[str, Any]) -> LoadedModel:
    inputs = [TensorSpec("spec", "float32", ("batch", 1, cfg.n_feats, "time"), "features", time_axis=3)]
    outputs = [TensorSpec(BOUNDARY, "float32", ("batch", "frames", cfg.rnn_dim), "features", time_axis=1)]
    facts = {**_common_facts(cfg, model), "feature": feature_config(cfg.n_feats),
             "output_length_rule": output_length_rule(),
             "split": {"part": "head", "modules": ["cnn", "rescnn_layers", "fully_connected"],
                       "boundary": boundary_spec(cfg), "peer": "tail.onnx"}}
    return LoadedModel(family=_FAMILY.name, module=Head(model).eval(), inputs=inputs, outputs=outputs,
                       make_inputs=lambda ls, frames=None: make_spec_inputs(cfg, ls, frames),
                       card_facts=facts, source=source, opset=OPSET, parity_lengths=list(PARITY_FRAMES),
                       atol=1e-4, rtol=1e-3, frames_for=output_frames, padding_invariant=False)


def _frames_input(name: str, width: int, lengths: list[int], frames: int | None, seed: int) -> dict[str, torch.Tensor]:
    return {name: _random_rows((width,), lengths, frames, seed, time_axis=1)}


def boundary_feature(cfg: SplitASRConfig, producer: str) -> dict[str, Any]:
    """The `feature` entry of a model whose input is an activation tensor, not audio features."""
    return {"kind": "split_activations", "producer": producer, "tensor": BOUNDARY, "width": cfg.rnn_dim}


def tail_model(model: SpeechRecognitionModel, cfg: SplitASRConfig, source: dict[str, Any]) -> LoadedModel:
    inputs = [TensorSpec(BOUNDARY, "float32", ("batch", "frames", cfg.rnn_dim), "features", time_axis=1)]
    outputs = [TensorSpec("logits", "float32", ("batch", "frames", cfg.n_class), "logits", time_axis=1)]
    facts = {**_common_facts(cfg, model), "feature": boundary_feature(cfg, "head.onnx"),
             "output_length_rule": {"kind": "conv", "layers": []}, "output_semantics": OUTPUT_SEMANTICS,
             "split": {"part": "tail", "modules": ["birnn_layers", "classifier"], "boundary": boundary_spec(cfg),
                       "peer": "head.onnx"}}
    frames = [output_frames(n) for n in PARITY_FRAMES]
    return LoadedModel(family=_FAMILY.name, module=Tail(model).eval(), inputs=inputs, outputs=outputs,
                       make_inputs=lambda ls, total=None: _frames_input(BOUNDARY, cfg.rnn_dim, ls, total, 1),
                       card_facts=facts, source=source, opset=OPSET, parity_lengths=frames,
                       atol=1e-4, rtol=1e-3, frames_for=lambda n: n, padding_invariant=False)


def autoencoder_models(ae: AutoEncoderDecoder, cfg: SplitASRConfig, source: dict[str, Any]
                       ) -> tuple[LoadedModel, LoadedModel]:
    """(encoder, decoder): features (batch, frames, rnn_dim) <-> code (batch, frames, bottleneck)."""
    a = ae.cfg
    feat = TensorSpec(BOUNDARY, "float32", ("batch", "frames", a.input_size), "features", time_axis=1)
    code = TensorSpec(CODE, "float32", ("batch", "frames", a.bottleneck), "features", time_axis=1)
    base = {**_common_facts(cfg, ae), "autoencoder": a.to_dict(), "output_length_rule": {"kind": "conv", "layers": []},
            "quirks": {"final_leaky_relu": "the decoder ends in LeakyReLU(0.2) as in the original"}}
    frames = [output_frames(n) for n in PARITY_FRAMES]
    # Per-frame Linear layers: every frame is independent, so padding cannot leak into valid frames.
    enc = LoadedModel(family=_FAMILY.name, module=EncoderPart(ae).eval(), inputs=[feat], outputs=[code],
                      make_inputs=lambda ls, total=None: _frames_input(BOUNDARY, a.input_size, ls, total, 2),
                      card_facts={**base, "feature": boundary_feature(cfg, "head.onnx"),
                                  "split": {"part": "ae_encoder", "runs_on": "edge, after head.onnx"}},
                      source=source, opset=OPSET, parity_lengths=frames, atol=1e-5, rtol=1e-4, frames_for=lambda n: n)
    dec = LoadedModel(family=_FAMILY.name, module=DecoderPart(ae).eval(), inputs=[code], outputs=[feat],
                      make_inputs=lambda ls, total=None: _frames_input(CODE, a.bottleneck, ls, total, 3),
                      card_facts={**base, "feature": {"kind": "split_activations", "producer": "ae_encoder.onnx",
                                                      "tensor": CODE, "width": a.bottleneck},
                                  "split": {"part": "ae_decoder", "runs_on": "cloud, before tail.onnx"}},
                      source=source, opset=OPSET, parity_lengths=frames, atol=1e-5, rtol=1e-4, frames_for=lambda n: n)
    return enc, dec


def load_checkpoint(checkpoint: str | Path, **overrides: int | None) -> tuple[SpeechRecognitionModel, SplitASRConfig,
                                                                             dict[str, Any]]:
    """model.pth -> (model, config, the card's source entry)."""
    model, cfg = load_model(Path(checkpoint), **overrides)
    return model, cfg, _source(Path(checkpoint), "split-model-inference model.pth (plain state_dict)", cfg.to_dict())


def load(checkpoint: str | Path, **overrides: int | None) -> LoadedModel:
    """The export stage's entry point: model.pth -> the whole model's LoadedModel."""
    model, cfg, source = load_checkpoint(checkpoint, **overrides)
    return whole_model(model, cfg, source)


def load_autoencoder_checkpoint(path: str | Path, cfg: SplitASRConfig) -> tuple[AutoEncoderDecoder, dict[str, Any]]:
    ae = load_autoencoder(Path(path), rnn_dim=cfg.rnn_dim)
    return ae, _source(Path(path), "split-model-inference autoencoder.pth (plain state_dict)", ae.cfg.to_dict())


def split_recipe(checkpoint: str | Path, *, autoencoder: str | Path | None = None,
                 **overrides: int | None) -> SplitRecipe:
    """The split stage's Head/Tail cut after fully_connected (and, with autoencoder.pth, its encoder and
    decoder halves between them), with the chains that must reproduce the whole model."""
    model, cfg, source = load_checkpoint(checkpoint, **overrides)
    parts = {"head": head_model(model, cfg, source), "tail": tail_model(model, cfg, source)}
    chains: dict[str, tuple[list[str], Callable[..., torch.Tensor]]] = {"head+tail": (["head", "tail"], model)}
    if autoencoder is not None:
        ae, ae_source = load_autoencoder_checkpoint(autoencoder, cfg)
        parts["ae_encoder"], parts["ae_decoder"] = autoencoder_models(ae, cfg, ae_source)
        chains["head+ae+tail"] = (["head", "ae_encoder", "ae_decoder", "tail"],
                                  lambda spec: model.tail(ae(model.head(spec))))
    return SplitRecipe(parts=parts, chains=chains, make_inputs=lambda lens: make_spec_inputs(cfg, lens),
                       parity_lengths=list(PARITY_FRAMES), frames_for=output_frames, atol=1e-4, rtol=1e-3)
