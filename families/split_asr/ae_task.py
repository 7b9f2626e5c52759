"""Task-aware training of the activation autoencoder: fit what the Tail makes of the Head's activations.

The original trainer fits the autoencoder to the Head's activations with MSE alone, and the split section
then quantises the autoencoder's code to a few bits before sending it. Both steps lose what MSE does not
weigh: small errors in the directions the Tail is sensitive to. Here the loss is the relative MSE plus the
KL divergence between the frozen Tail's output distribution on the true activations (the teacher) and on
the reconstruction from the *quantised* code (the student), and the epoch is picked by the greedy-CTC
error rates of that whole chain at batch 1, the way the edge and the server run it. The quantiser is the
low-bit codec's (split/codecs/quantizers.py LowBit: one range per utterance, mean -/+ 3 std within min..max,
2**bits bins, bin centres), applied with a straight-through gradient.

The result is the same autoencoder.pth (a plain state_dict of layer_1..layer_4), so nothing downstream
changes.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.training import ctc_validation
from families.split_asr import labels as L
from families.split_asr.autoencoder import AutoEncoderDecoder
from families.split_asr.model import SpeechRecognitionModel, output_frames

CLIP_SIGMAS = 3.0  # the low-bit codec's default range (split/codecs/quantizers.py LowBit)


def fake_quantize(code: torch.Tensor, valid: torch.Tensor, bits: int, clip_sigmas: float = CLIP_SIGMAS) -> torch.Tensor:
    """`code` as the low-bit codec would return it, its range taken from the `valid` frames; the gradient
    passes straight through."""
    if bits <= 0:
        return code
    with torch.no_grad():
        mean, std = valid.mean(), valid.std(unbiased=False)
        lo = torch.maximum(valid.min(), mean - clip_sigmas * std)
        hi = torch.minimum(valid.max(), mean + clip_sigmas * std)
        if not bool(hi > lo):  # a constant code: any positive width reproduces it
            lo, hi = lo - 1e-6, lo + 1e-6
        levels = 1 << bits
        step = (hi - lo) / levels
        symbols = torch.clamp(torch.floor((code - lo) / step), 0, levels - 1)
        decoded = lo + (symbols + 0.5) * step
    return code + (decoded - code).detach()


def quantized_chain(ae: AutoEncoderDecoder, feats: torch.Tensor, frames: Sequence[int], bits: int) -> torch.Tensor:
    """decoder(quantise(encoder(feats))), each utterance's code quantised over its own valid frames."""
    code = ae.encoder(feats)
    rows = [fake_quantize(code[i], code[i, :n], bits) for i, n in enumerate(frames)]
    return ae.decoder(torch.stack(rows))


@dataclass
class TaskBatch:
    feats: torch.Tensor  # (B, T, rnn_dim) the frozen Head's output, zero beyond each row's frames
    frames: list[int]  # valid output frames per row
    teacher: torch.Tensor  # (B, T, n_class) log-probabilities of the Tail on `feats`
    mask: torch.Tensor  # (B, T) 1.0 on valid frames


def task_batches(model: SpeechRecognitionModel, spec_batches: Sequence[tuple[torch.Tensor, list[int]]]) -> list[TaskBatch]:
    """The frozen model's Head activations and Tail log-probabilities per batch, computed once."""
    out = []
    with torch.no_grad():
        for spec, input_frames in spec_batches:
            feats = model.head(spec)
            frames = [output_frames(n) for n in input_frames]
            mask = torch.zeros(feats.shape[:2])
            for i, n in enumerate(frames):
                mask[i, :n] = 1.0
            feats = feats * mask[..., None]
            out.append(TaskBatch(feats, frames, F.log_softmax(model.tail(feats), dim=-1), mask))
    return out


def task_loss(model: SpeechRecognitionModel, ae: AutoEncoderDecoder, batch: TaskBatch, bits: int,
              weight: float) -> torch.Tensor:
    """Relative MSE of the reconstruction + weight x KL(Tail(true) || Tail(reconstructed from the quantised
    code)), both over valid frames."""
    recon = quantized_chain(ae, batch.feats, batch.frames, bits) * batch.mask[..., None]
    n_valid = batch.mask.sum()
    mse = ((recon - batch.feats) ** 2).sum() / (n_valid * batch.feats.shape[-1])
    power = (batch.feats ** 2).sum() / (n_valid * batch.feats.shape[-1])
    student = F.log_softmax(model.tail(recon), dim=-1)
    kl = (F.kl_div(student, batch.teacher, reduction="none", log_target=True).sum(-1) * batch.mask).sum() / n_valid
    return mse / power.clamp_min(1e-12) + weight * kl


def chain_validation(model: SpeechRecognitionModel, ae: AutoEncoderDecoder,
                     items: Sequence[tuple[np.ndarray, list[int], str]], bits: int) -> dict[str, float]:
    """Greedy-CTC WER/CER of Head -> quantised autoencoder -> Tail per utterance at batch 1 (as the split
    edge and server run it), plus the reconstruction's relative MSE."""
    errors, power = [], []

    def outputs():
        with torch.inference_mode():
            for mel, _, text in items:
                feats = model.head(torch.from_numpy(mel)[None, None])
                recon = quantized_chain(ae, feats, [feats.shape[1]], bits)
                errors.append(float(((recon - feats) ** 2).mean()))
                power.append(float((feats ** 2).mean()))
                yield model.tail(recon).numpy(), None, [text]

    scores = ctc_validation(outputs(), L.LABELS, L.BLANK_INDEX, "hf")
    scores["val_relative_mse"] = float(np.mean(errors) / max(np.mean(power), 1e-12))
    return scores


def shuffled(batches: Sequence[TaskBatch], rng: random.Random) -> Callable[[], list[TaskBatch]]:
    return lambda: [batches[i] for i in rng.sample(range(len(batches)), len(batches))]


def describe(bits: int, weight: float) -> dict[str, Any]:
    return {"loss": f"relative MSE + {weight} x KL(Tail(Head) || Tail(decoder({bits}-bit quantised code))) over "
                    "valid frames" if bits > 0 else
                    f"relative MSE + {weight} x KL(Tail(Head) || Tail(decoder(code))) over valid frames",
            "selected_by": "lowest validation CER, then WER, of the quantised chain at batch 1",
            "code_bits": bits, "task_weight": weight}
