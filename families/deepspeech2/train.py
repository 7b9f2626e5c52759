"""Train the embedded demo DeepSpeech2 (V3.0 architecture, small RNN width) with a fixed seed.

The result is saved as a deepspeech.pytorch V3.0 checkpoint, so the pipeline loads it through exactly
the path a real `an4_pretrained_v3.ckpt` takes. A validation slice of the training speakers picks the
best epoch; the test split is never looked at here.
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.audio import load_audio
from core.corpora import read_an4_raw
from families.registry import extract
from core.text import to_labels
from core.training import (
    add_numerics_arguments,
    already_trained,
    ctc_targets,
    ctc_validation,
    hold_out,
    length_sorted_batches,
    pad_last_axis,
    seed_everything,
    train_epochs,
    use_bf16,
    write_record,
)
from families.deepspeech2.checkpoint_writer import save_deepspeech_checkpoint
from families.deepspeech2.recipe import DeepSpeechConfig, build_model, feature_config, parameter_count

log = logging.getLogger("train")

Item = tuple[np.ndarray, list[int], str]  # (spectrogram (freq, frames), label ids, normalised text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--an4-root", type=Path, required=True, help="AN4 raw layout with an4_train.* (the demo corpus)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.ckpt, V3.0 structure)")
    p.add_argument("--rnn-type", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--hidden-layers", type=int, default=2)
    p.add_argument("--unidirectional", action="store_true", help="unidirectional RNNs + lookahead (streamable)")
    p.add_argument("--lookahead-context", type=int, default=20)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--val-fraction", type=float, default=0.05, help="training utterances held out to pick the epoch")
    p.add_argument("--limit", type=int, help="use only the first N training utterances (tests)")
    p.add_argument("--spec-augment", type=int, default=0, help="1: mask a few time/freq bands per utterance")
    add_numerics_arguments(p, bf16=True)
    p.add_argument("--force", action="store_true", help="retrain even if --out exists")


def _encode(text: str, labels: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(labels)}
    return [index[c] for c in text if c in index and index[c] != 0]


def _spec_augment(x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Zero one frequency band and one time band per utterance (cheap robustness to unseen voices)."""
    x = x.clone()
    b, _, f, _ = x.shape
    for i in range(b):
        fw = int(torch.randint(0, 16, (1,), generator=gen))
        f0 = int(torch.randint(0, max(1, f - fw), (1,), generator=gen))
        x[i, :, f0:f0 + fw, :] = 0
        n = int(lengths[i])
        tw = int(torch.randint(0, max(1, min(12, n // 8)), (1,), generator=gen))
        t0 = int(torch.randint(0, max(1, n - tw), (1,), generator=gen))
        x[i, :, :, t0:t0 + tw] = 0
    return x


def _collate(items: list[Item]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, 1, freq, frames) spectrograms and their true frame counts (int32, as the model takes)."""
    spect = pad_last_axis([s for s, _, _ in items]).unsqueeze(1)
    return spect, torch.tensor([s.shape[1] for s, _, _ in items], dtype=torch.int32)


def _validation_count(n_items: int, fraction: float) -> int:
    # This trainer's own rounding (truncation, none below five utterances), kept so that a seed still gives
    # the same split, hence the same model, as before the trainers shared a loop.
    return max(1, int(n_items * fraction)) if n_items > 4 else 0


def evaluate(model: torch.nn.Module, items: list[Item], labels: list[str], batch_size: int = 32) -> dict[str, float]:
    """Greedy CTC over padded batches with their true lengths, deepspeech.pytorch's WER/CER convention."""
    def outputs():
        with torch.inference_mode():
            for i in range(0, len(items), batch_size):
                chunk = items[i: i + batch_size]
                probs, out_lens = model(*_collate(chunk))
                yield probs.numpy(), out_lens.numpy(), [text for _, _, text in chunk]

    return ctc_validation(outputs(), labels, 0, "deepspeech")


def train(args: argparse.Namespace) -> dict[str, Any]:
    rng = seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    cfg = DeepSpeechConfig(rnn_type=args.rnn_type, hidden_size=args.hidden_size, hidden_layers=args.hidden_layers,
                           bidirectional=not args.unidirectional,
                           lookahead_context=args.lookahead_context if args.unidirectional else None)
    feat_cfg = feature_config(cfg)
    utts = read_an4_raw(args.an4_root, "train")
    if args.limit:
        utts = utts[: args.limit]
    items: list[Item] = []
    for u in tqdm(utts, desc="features", unit="utt"):
        text, _ = to_labels(u.transcript, cfg.labels, blank="_")
        items.append((extract(load_audio(u.audio), feat_cfg), _encode(text, cfg.labels), text))
    train_items, val = hold_out(items, _validation_count(len(items), args.val_fraction), rng)

    model = build_model(cfg)
    log.info("DeepSpeech2 %s x%d hidden %d: %d parameters; %d train / %d val utterances", cfg.rnn_type,
             cfg.hidden_layers, cfg.hidden_size, parameter_count(model), len(train_items), len(val))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    steps_per_epoch = math.ceil(len(train_items) / args.batch_size)
    total = max(1, steps_per_epoch * args.epochs)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    bf16 = use_bf16(args.bf16)
    gen = torch.Generator().manual_seed(args.seed)

    def loss(batch: list[Item]) -> torch.Tensor:
        spect, lengths = _collate(batch)
        targets, target_lengths = ctc_targets([ids for _, ids, _ in batch])
        if args.spec_augment:
            spect = _spec_augment(spect, lengths, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, out_lens = model(spect, lengths)
        log_probs = F.log_softmax(out.float(), dim=-1).transpose(0, 1)
        return ctc(log_probs, targets, out_lens.to(torch.int64), target_lengths)

    result = train_epochs(model, opt, sched, epochs=args.epochs, max_norm=10.0,
                          batches=lambda: length_sorted_batches(train_items, args.batch_size, rng,
                                                                lambda it: it[0].shape[1]),
                          loss=loss, validate=(lambda: evaluate(model, val, cfg.labels)) if val else None,
                          select=lambda scores: (scores["val_wer"],))
    optim = {"learning_rate": args.lr, "learning_anneal": 1.0, "weight_decay": 1e-5, "max_norm": 10.0,
             "eps": 1e-8, "betas": [0.9, 0.999]}
    save_deepspeech_checkpoint(args.out, model.state_dict(), cfg.labels, cfg.model_dict(), cfg.spect_dict(),
                               optim=optim, epoch=result.chosen_epoch, global_step=result.steps)
    summary = {
        "family": "deepspeech2",
        "checkpoint": str(args.out),
        "config": cfg.model_dict(),
        "parameters": parameter_count(model),
        "seed": args.seed,
        "train_utterances": len(train_items),
        "val_utterances": len(val),
        "epochs": args.epochs,
        "chosen_epoch": result.chosen_epoch,
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "threads": torch.get_num_threads(),
        "autocast": "bfloat16" if bf16 else "off",
        "spec_augment": bool(args.spec_augment),
        "lr": args.lr,
        "batch_size": args.batch_size,
    }
    write_record(args.out.with_suffix(".train.json"), summary, args)
    return summary


def main(args: argparse.Namespace) -> int:
    if already_trained(args.out, args.out.is_file(), args.out.with_suffix(".train.json"), args):
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = train(args)
    log.info("saved %s (epoch %d of %d, %.0f s)", args.out, summary["chosen_epoch"], summary["epochs"],
             summary["train_seconds"])
    return 0
