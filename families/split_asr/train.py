"""Train the embedded demo split ASR model, or its activation autoencoder, with a fixed seed.

Model (`python -m export train split_asr --librispeech SPLIT --out model.pth`): the split-model-inference
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
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from families.split_asr import labels as L
from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
from families.split_asr.checkpoint import CheckpointError, load_autoencoder, load_model, save_state_dict
from families.split_asr.features import feature_config
from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel, output_frames, parameter_count
from core.ctc import greedy_decode_batch
from core.metrics import corpus_scores
from core.audio import load_audio
from core.corpora import read_librispeech
from core.features import extract
from core.text import to_labels

log = logging.getLogger("train")

Item = tuple[np.ndarray, list[int], str]  # (mel (n_feats, T), label ids, normalised text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=["split_asr"], help="model family to train")
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
    a = p.add_argument_group("autoencoder size (the original: 512 -> 128 -> 32)")
    a.add_argument("--ae-hidden", type=int, default=32)
    a.add_argument("--ae-bottleneck", type=int, default=8)
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
    t.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    t.add_argument("--force", action="store_true", help="retrain even if --out already holds a usable file")


def load_items(split_dir: Path, n_feats: int, limit: int | None) -> list[Item]:
    cfg = feature_config(n_feats)
    utts = read_librispeech(split_dir)
    if limit:
        utts = utts[:limit]
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
    t_max = max(m.shape[1] for m, _, _ in items)
    spec = torch.zeros(len(items), 1, items[0][0].shape[0], t_max)
    for i, (m, _, _) in enumerate(items):
        spec[i, 0, :, : m.shape[1]] = torch.from_numpy(m)
    targets = torch.tensor([t for _, ids, _ in items for t in ids], dtype=torch.int64)
    target_lengths = torch.tensor([len(ids) for _, ids, _ in items], dtype=torch.int64)
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
    """Length-sorted batches in shuffled order: little padding, a different order every epoch."""
    ordered = sorted(items, key=lambda it: it[0].shape[1])
    out = [ordered[i: i + batch_size] for i in range(0, len(ordered), batch_size)]
    rng.shuffle(out)
    return out


def split_validation(items: list[Item], fraction: float, rng: random.Random) -> tuple[list[Item], list[Item]]:
    order = list(range(len(items)))
    rng.shuffle(order)
    n_val = max(1, round(len(items) * fraction)) if len(items) > 2 and fraction > 0 else 0
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


def evaluate(model: SpeechRecognitionModel, items: list[Item]) -> dict[str, Any]:
    """Greedy CTC per utterance at batch 1 (how the pipeline scores it), corpus-level hf convention."""
    model.eval()
    hyps, refs = [], []
    with torch.inference_mode():
        for mel, _, text in items:
            logits = model(torch.from_numpy(mel)[None, None])
            hyps += greedy_decode_batch(logits.numpy(), None, L.LABELS, L.BLANK_INDEX)
            refs.append(text)
    return corpus_scores(refs, hyps, convention="hf")


def _one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int, epochs: int) -> torch.optim.lr_scheduler.OneCycleLR:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, steps_per_epoch=max(1, steps), epochs=epochs,
                                               anneal_strategy="linear")


def train_model(args: argparse.Namespace) -> tuple[SpeechRecognitionModel, dict[str, Any]]:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_items, val = split_validation(load_items(args.librispeech, args.n_feats, args.limit), args.val_fraction, rng)
    cfg = SplitASRConfig(n_cnn_layers=args.n_cnn, n_rnn_layers=args.n_rnn, rnn_dim=args.rnn_dim, n_class=L.N_CLASS,
                         n_feats=args.n_feats, dropout=args.dropout)
    model = SpeechRecognitionModel(cfg)
    log.info("split ASR %s: %d parameters; %d train / %d val utterances", cfg.to_dict(), parameter_count(model),
             len(train_items), len(val))
    opt = torch.optim.AdamW(model.parameters(), args.lr)
    n_batches = len(batches(train_items, args.batch_size, random.Random(0)))
    sched = _one_cycle(opt, args.lr, n_batches, args.epochs)
    ctc = torch.nn.CTCLoss(blank=L.BLANK_INDEX, zero_infinity=True)
    history: list[dict[str, Any]] = []
    best: tuple[float, float, dict[str, torch.Tensor], int] | None = None
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        losses = []
        for batch in tqdm(batches(train_items, args.batch_size, rng), desc=f"epoch {epoch}/{args.epochs}",
                          unit="batch", leave=False):
            spec, frames, targets, target_lengths = collate(batch)
            spec = spec_augment(spec, args.freq_mask, args.time_mask, gen)
            log_probs = F.log_softmax(model(spec), dim=-1).transpose(0, 1)
            out_lens = torch.tensor([output_frames(n) for n in frames], dtype=torch.int64)
            loss = ctc(log_probs, targets, out_lens, target_lengths)
            opt.zero_grad()
            loss.backward()
            if args.max_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_norm)
            opt.step()
            sched.step()
            losses.append(loss.item())
        row: dict[str, Any] = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                               "seconds": round(time.perf_counter() - t0, 1)}
        if val:
            scores = evaluate(model, val)
            row.update(val_wer=scores["wer"], val_cer=scores["cer"])
            key = (scores["cer"], scores["wer"])
            if best is None or key <= best[:2]:
                best = (*key, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch)
        history.append(row)
        log.info("epoch %d: loss %.3f%s", epoch, row["train_loss"],
                 f", val WER {row['val_wer']:.3f} CER {row['val_cer']:.3f}" if val else "")
    chosen = args.epochs
    if best is not None:
        model.load_state_dict(best[2])
        chosen = best[3]
    summary = {"family": "split_asr", "config": cfg.to_dict(), "feature": feature_config(args.n_feats),
               "parameters": parameter_count(model), "train_utterances": len(train_items),
               "val_utterances": len(val), "chosen_epoch": chosen, "selected_by": "lowest validation CER at batch 1",
               "history": history, "ctc_input_lengths": "emitted frames ceil(T/2) (the original: T // 2)",
               "spec_augment": {"freq_mask": args.freq_mask, "time_mask": args.time_mask}}
    return model.eval(), summary


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
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_items, val = split_validation(load_items(args.librispeech, cfg.n_feats, args.limit), args.val_fraction, rng)
    ae = AutoEncoderDecoder(AutoencoderConfig(input_size=cfg.rnn_dim, hidden_size=args.ae_hidden,
                                              bottleneck=args.ae_bottleneck))
    log.info("autoencoder %s on the Head of %s; %d train / %d val utterances", ae.cfg.to_dict(), args.checkpoint,
             len(train_items), len(val))
    # The Head is frozen, so its activations are computed once (the original recomputes them per batch).
    train_feats = _head_batches(model, train_items, args.batch_size, rng)
    val_feats = torch.cat(_head_batches(model, val, args.batch_size, rng)) if val else None
    opt = torch.optim.AdamW(ae.parameters(), args.lr)
    sched = _one_cycle(opt, args.lr, len(train_feats), args.epochs)
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, torch.Tensor], int] | None = None
    for epoch in range(1, args.epochs + 1):
        ae.train()
        losses = []
        for i in rng.sample(range(len(train_feats)), len(train_feats)):
            loss = F.mse_loss(ae(train_feats[i]), train_feats[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        row: dict[str, Any] = {"epoch": epoch, "train_mse": float(np.mean(losses))}
        if val_feats is not None:
            ae.eval()
            with torch.inference_mode():
                mse = float(F.mse_loss(ae(val_feats), val_feats))
            row.update(val_mse=mse, val_relative_mse=mse / max(float(val_feats.pow(2).mean()), 1e-12))
            if best is None or mse <= best[0]:
                best = (mse, {k: v.detach().clone() for k, v in ae.state_dict().items()}, epoch)
        history.append(row)
        log.info("epoch %d: train MSE %.4g%s", epoch, row["train_mse"],
                 f", val MSE {row['val_mse']:.4g}" if "val_mse" in row else "")
    chosen = args.epochs
    if best is not None:
        ae.load_state_dict(best[1])
        chosen = best[2]
    summary = {"family": "split_asr", "part": "autoencoder", "config": ae.cfg.to_dict(),
               "checkpoint": str(args.checkpoint), "model_config": cfg.to_dict(),
               "train_utterances": len(train_items), "val_utterances": len(val), "chosen_epoch": chosen,
               "selected_by": "lowest validation MSE", "loss": "MSE over the Head's valid frames", "history": history}
    return ae.eval(), summary


def _usable(path: Path, autoencoder: bool) -> bool:
    try:
        load_autoencoder(path) if autoencoder else load_model(path)
    except CheckpointError:
        return False
    return True


def main(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.is_file() and _usable(out, args.autoencoder) and not args.force:
        log.info("%s already holds a usable file; not retraining (--force to retrain)", out)
        return 0
    if args.threads:
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
    summary_path = out.with_name(out.stem + ".train.json")
    tmp = summary_path.with_name(summary_path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(summary_path)
    log.info("saved %s (epoch %d of %d) and %s", out, summary["chosen_epoch"], args.epochs, summary_path.name)
    return 0
