"""Train the embedded demo split ASR model, or its activation autoencoder, with a fixed seed.

Model (`python -m demo train split_asr --librispeech SPLIT --out model.pth`): the split-model-inference
network at small width (families/split_asr/model.py, batch_first quirk included), trained as the original
trains it: torchaudio MelSpectrogram() features (no log), CTC with blank 28, AdamW and a linear one-cycle
learning rate; optional SpecAugment masking (the original's is frequency 30 / time 100; off by default
here because the demo utterances are short). Differences, all stated in the summary: CTC input lengths
are the frames the model emits (the original uses frames // 2), gradients are clipped, and the epoch is
picked by validation CER at batch 1 on a held-out slice of the training split (the test split is never
read here). Batches are length-sorted; through the quirk the 2nd+ GRU layers of a training batch mix
its utterances, as in the original's training.

Autoencoder (`... --autoencoder --checkpoint model.pth --out autoencoder.pth`): the original's trainer:
the Head of a trained model.pth (frozen) over the training split, and the autoencoder (rnn_dim -> hidden
-> bottleneck -> hidden -> rnn_dim) fitted to reproduce its activations with MSE, here over valid frames
only (the original also fits the padding frames of its batches).

Both write the original's format (torch.save of a plain state_dict), atomically, with a
`<stem>.train.json` summary beside; an existing output is kept unless --force.
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.audio import load_audio
from core.corpora import read_librispeech, spread_evenly
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
    validation_count,
    write_record,
)
from families.split_asr import ae_task
from families.split_asr import labels as L
from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
from families.split_asr.checkpoint import CheckpointError, load_autoencoder, load_model, save_state_dict
from families.split_asr.features import feature_config
from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel, output_frames, parameter_count

log = logging.getLogger("train")

Item = tuple[np.ndarray, list[int], str]  # (mel (n_feats, T), label ids, normalised text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--librispeech", type=Path, required=True,
                   help="LibriSpeech split folder to train on (the demo corpus's train-demo)")
    p.add_argument("--out", type=Path, required=True, help="model.pth (or autoencoder.pth with --autoencoder) to write")
    p.add_argument("--autoencoder", action="store_true",
                   help="train the activation autoencoder on the Head of --checkpoint instead of the model")
    p.add_argument("--checkpoint", type=Path, help="with --autoencoder: the trained model.pth whose Head feeds it")
    g = p.add_argument_group("model size (the original: 3 CNN, 5 RNN, rnn_dim 512, 128 mels)")
    g.add_argument("--n-cnn", type=int, default=2, help="residual CNN blocks")
    g.add_argument("--n-rnn", type=int, default=2, help="BiGRU blocks")
    g.add_argument("--rnn-dim", type=int, default=96)
    g.add_argument("--n-feats", type=int, default=128, help="mel bands")
    g.add_argument("--dropout", type=float, default=0.1)
    a = p.add_argument_group("autoencoder (the original: 512 -> 128 -> 32, fitted with MSE)")
    a.add_argument("--ae-hidden", type=int, default=32)
    a.add_argument("--ae-bottleneck", type=int, default=8)
    a.add_argument("--ae-loss", choices=("mse", "task"), default="mse",
                   help="mse: the original's (reproduce the Head's activations); task: also match what the frozen "
                        "Tail makes of them, through the low-bit codec's quantiser (families/split_asr/ae_task.py)")
    a.add_argument("--ae-code-bits", type=int, default=4,
                   help="with --ae-loss task: bits per code element the codec sends (0 = train without quantising)")
    a.add_argument("--ae-task-weight", type=float, default=1.0,
                   help="with --ae-loss task: weight of the Tail's KL divergence against the relative MSE")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=3e-3, help="peak of the one-cycle schedule (original: 5e-4)")
    t.add_argument("--max-norm", type=float, default=1.0, help="gradient clipping norm (0 = off, as the original)")
    t.add_argument("--freq-mask", type=int, default=0, help="SpecAugment frequency mask width (original: 30)")
    t.add_argument("--time-mask", type=int, default=0, help="SpecAugment time mask width (original: 100)")
    t.add_argument("--seed", type=int, default=7, help="the original seeds torch with 7")
    t.add_argument("--val-fraction", type=float, default=0.05, help="training utterances held out to pick the epoch")
    t.add_argument("--limit", type=int, help="use only the first N training utterances (tests)")
    t.add_argument("--spread", type=int, metavar="N",
                   help="use N training utterances spread evenly over the split (every speaker, unlike --limit)")
    add_numerics_arguments(t, bf16=False)
    t.add_argument("--force", action="store_true", help="retrain even if --out already holds a usable file")


def load_items(split_dir: Path, n_feats: int, limit: int | None, spread: int | None = None) -> list[Item]:
    cfg = feature_config(n_feats)
    utts = read_librispeech(split_dir)
    if limit:
        utts = utts[:limit]
    if spread:
        utts = spread_evenly(utts, spread)
    items: list[Item] = []
    for u in tqdm(utts, desc="features", unit="utt"):
        text, _ = to_labels(u.transcript, L.LABELS, blank=L.LABELS[L.BLANK_INDEX], word_delimiter=L.WORD_DELIMITER)
        if text:
            items.append((extract(load_audio(u.audio), cfg), L.text_to_ids(text), text))
    if not items:
        raise ValueError(f"{split_dir}: no utterance with a usable transcript")
    return items


def collate(items: list[Item]) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """Zero-padded (B, 1, n_feats, T) spectrograms (as preprocess pads), frames, concatenated targets."""
    spec = pad_last_axis([m for m, _, _ in items]).unsqueeze(1)
    targets, target_lengths = ctc_targets([ids for _, ids, _ in items])
    return spec, [m.shape[1] for m, _, _ in items], targets, target_lengths


def spec_augment(spec: torch.Tensor, freq: int, time_: int, gen: torch.Generator) -> torch.Tensor:
    """One frequency and one time mask per batch (zeros), as torchaudio's FrequencyMasking/TimeMasking
    apply to a batched tensor: width uniform in [0, param), start uniform over what is left."""
    spec = spec.clone()
    for axis, param in ((2, freq), (3, time_)):
        if param <= 0:
            continue
        size = spec.shape[axis]
        width = int(torch.rand((), generator=gen) * param)
        start = int(torch.rand((), generator=gen) * max(size - width, 0))
        spec.narrow(axis, start, min(width, size - start)).zero_()
    return spec


def batches(items: list[Item], batch_size: int, rng: random.Random) -> list[list[Item]]:
    return length_sorted_batches(items, batch_size, rng, lambda it: it[0].shape[1])


def split_validation(items: list[Item], fraction: float, rng: random.Random) -> tuple[list[Item], list[Item]]:
    return hold_out(items, validation_count(len(items), fraction), rng)


def evaluate(model: SpeechRecognitionModel, items: list[Item]) -> dict[str, float]:
    """Greedy CTC per utterance at batch 1 (how the pipeline scores it), corpus-level hf convention."""
    def outputs():
        with torch.inference_mode():
            for mel, _, text in items:
                yield model(torch.from_numpy(mel)[None, None]).numpy(), None, [text]

    return ctc_validation(outputs(), L.LABELS, L.BLANK_INDEX, "hf")


def _one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int, epochs: int) -> torch.optim.lr_scheduler.OneCycleLR:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, steps_per_epoch=max(1, steps), epochs=epochs,
                                               anneal_strategy="linear")


def train_model(args: argparse.Namespace) -> tuple[SpeechRecognitionModel, dict[str, Any]]:
    rng = seed_everything(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    items = load_items(args.librispeech, args.n_feats, args.limit, args.spread)
    train_items, val = split_validation(items, args.val_fraction, rng)
    cfg = SplitASRConfig(n_cnn_layers=args.n_cnn, n_rnn_layers=args.n_rnn, rnn_dim=args.rnn_dim, n_class=L.N_CLASS,
                         n_feats=args.n_feats, dropout=args.dropout)
    model = SpeechRecognitionModel(cfg)
    log.info("split ASR %s: %d parameters; %d train / %d val utterances", cfg.to_dict(), parameter_count(model),
             len(train_items), len(val))
    opt = torch.optim.AdamW(model.parameters(), args.lr)
    sched = _one_cycle(opt, args.lr, math.ceil(len(train_items) / args.batch_size), args.epochs)
    ctc = torch.nn.CTCLoss(blank=L.BLANK_INDEX, zero_infinity=True)

    def loss(batch: list[Item]) -> torch.Tensor:
        spec, frames, targets, target_lengths = collate(batch)
        spec = spec_augment(spec, args.freq_mask, args.time_mask, gen)
        log_probs = F.log_softmax(model(spec), dim=-1).transpose(0, 1)
        out_lens = torch.tensor([output_frames(n) for n in frames], dtype=torch.int64)
        return ctc(log_probs, targets, out_lens, target_lengths)

    result = train_epochs(model, opt, sched, epochs=args.epochs, max_norm=args.max_norm,
                          batches=lambda: batches(train_items, args.batch_size, rng), loss=loss,
                          validate=(lambda: evaluate(model, val)) if val else None,
                          select=lambda scores: (scores["val_cer"], scores["val_wer"]))
    summary = {"family": "split_asr", "config": cfg.to_dict(), "feature": feature_config(args.n_feats),
               "parameters": parameter_count(model), "train_utterances": len(train_items),
               "val_utterances": len(val), "chosen_epoch": result.chosen_epoch,
               "selected_by": "lowest validation CER at batch 1", "history": result.history,
               "ctc_input_lengths": "emitted frames ceil(T/2) (the original: T // 2)",
               "spec_augment": {"freq_mask": args.freq_mask, "time_mask": args.time_mask}}
    return model, summary


def _head_batches(model: SpeechRecognitionModel, items: list[Item], batch_size: int,
                  rng: random.Random) -> list[torch.Tensor]:
    """The frozen Head's valid frames per batch, as (frames, rnn_dim) blocks."""
    out = []
    with torch.no_grad():  # not inference_mode: these tensors feed the autoencoder's autograd graph
        for batch in batches(items, batch_size, rng):
            spec, frames, _, _ = collate(batch)
            feats = model.head(spec)
            out.append(torch.cat([feats[i, : output_frames(n)] for i, n in enumerate(frames)]))
    return out


def train_autoencoder(args: argparse.Namespace) -> tuple[AutoEncoderDecoder, dict[str, Any]]:
    if args.checkpoint is None:
        raise ValueError("--autoencoder needs --checkpoint (the trained model.pth whose Head it compresses)")
    model, cfg = load_model(args.checkpoint)
    rng = seed_everything(args.seed)
    items = load_items(args.librispeech, cfg.n_feats, args.limit, args.spread)
    train_items, val = split_validation(items, args.val_fraction, rng)
    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=cfg.rnn_dim, hidden_size=args.ae_hidden,
                                              bottleneck=args.ae_bottleneck))
    log.info("autoencoder %s on the Head of %s; %d train / %d val utterances", ae.cfg.to_dict(), args.checkpoint,
             len(train_items), len(val))
    # The Head is frozen, so its activations are computed once (the original recomputes them per batch).
    if args.ae_loss == "task":
        return _train_autoencoder_task(args, model, cfg, ae, train_items, val, rng)
    train_feats = _head_batches(model, train_items, args.batch_size, rng)
    val_feats = torch.cat(_head_batches(model, val, args.batch_size, rng)) if val else None
    opt = torch.optim.AdamW(ae.parameters(), args.lr)
    sched = _one_cycle(opt, args.lr, len(train_feats), args.epochs)

    def validate() -> dict[str, float]:
        with torch.inference_mode():
            mse = float(F.mse_loss(ae(val_feats), val_feats))
        return {"val_mse": mse, "val_relative_mse": mse / max(float(val_feats.pow(2).mean()), 1e-12)}

    n = len(train_feats)
    result = train_epochs(ae, opt, sched, epochs=args.epochs, loss_name="train_mse",
                          batches=lambda: [train_feats[i] for i in rng.sample(range(n), n)],
                          loss=lambda x: F.mse_loss(ae(x), x),
                          validate=validate if val_feats is not None else None,
                          select=lambda scores: (scores["val_mse"],))
    summary = {"family": "split_asr", "part": "autoencoder", "config": ae.cfg.to_dict(),
               "checkpoint": str(args.checkpoint), "model_config": cfg.to_dict(),
               "train_utterances": len(train_items), "val_utterances": len(val), "chosen_epoch": result.chosen_epoch,
               "selected_by": "lowest validation MSE", "loss": "MSE over the Head's valid frames",
               "history": result.history}
    return ae, summary


def _train_autoencoder_task(args: argparse.Namespace, model: SpeechRecognitionModel, cfg: SplitASRConfig,
                            ae: AutoEncoderDecoder, train_items: list[Item], val: list[Item],
                            rng: random.Random) -> tuple[AutoEncoderDecoder, dict[str, Any]]:
    """--ae-loss task (families/split_asr/ae_task.py): the frozen model's Tail judges the reconstruction."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    spec_batches = []
    for batch in batches(train_items, args.batch_size, rng):
        spec, frames, _, _ = collate(batch)
        spec_batches.append((spec, frames))
    train_batches = ae_task.task_batches(model, spec_batches)
    opt = torch.optim.AdamW(ae.parameters(), args.lr)
    sched = _one_cycle(opt, args.lr, len(train_batches), args.epochs)
    result = train_epochs(ae, opt, sched, epochs=args.epochs, loss_name="train_loss", max_norm=args.max_norm,
                          batches=ae_task.shuffled(train_batches, rng),
                          loss=lambda b: ae_task.task_loss(model, ae, b, args.ae_code_bits, args.ae_task_weight),
                          validate=(lambda: ae_task.chain_validation(model, ae, val, args.ae_code_bits)) if val else None,
                          select=lambda scores: (scores["val_cer"], scores["val_wer"]))
    summary = {"family": "split_asr", "part": "autoencoder", "config": ae.cfg.to_dict(),
               "checkpoint": str(args.checkpoint), "model_config": cfg.to_dict(),
               "train_utterances": len(train_items), "val_utterances": len(val), "chosen_epoch": result.chosen_epoch,
               **ae_task.describe(args.ae_code_bits, args.ae_task_weight), "history": result.history}
    return ae, summary


def _usable(path: Path, autoencoder: bool) -> bool:
    try:
        load_autoencoder(path) if autoencoder else load_model(path)
    except CheckpointError:
        return False
    return True


def _record_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train.json")


def main(args: argparse.Namespace) -> int:
    out: Path = args.out
    if already_trained(out, out.is_file() and _usable(out, args.autoencoder), _record_path(out), args):
        return 0
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        module, summary = train_autoencoder(args) if args.autoencoder else train_model(args)
    except (ValueError, OSError) as exc:  # CheckpointError, DatasetError, AudioError name the file
        log.error("%s", exc)
        return 2
    summary.update(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                   threads=torch.get_num_threads(), total_seconds=round(time.perf_counter() - t0, 1),
                   librispeech=str(args.librispeech))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_state_dict(module, out)
    summary_path = _record_path(out)
    write_record(summary_path, summary, args)
    log.info("saved %s (epoch %d of %d) and %s", out, summary["chosen_epoch"], args.epochs, summary_path.name)
    return 0
