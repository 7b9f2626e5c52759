"""The epoch loop the demo trainers share (families/<name>/train.py), and the small steps around it.

A family's trainer says what is its own (features, collation, the loss of one batch, how it scores a
validation slice, how the result is saved); the seeding, the held-out split, the length-sorted batches, the
optimiser step, the per-epoch validation, keeping the best epoch and the progress bar are here, once.
Every random draw happens in the order the trainers have always made it, so a seed gives the same model.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from core.ctc import greedy_decode_batch
from core.fsio import atomic_write_json, sha256_file
from core.machine import cpu_has_native_bf16
from core.metrics import corpus_scores
from core.numerics import TRAIN_THREADS, numerics_record

log = logging.getLogger("train")

Item = TypeVar("Item")
Batch = TypeVar("Batch")


def use_bf16(choice: str) -> bool:
    """--bf16 on/off/auto; auto autocasts only where the CPU computes bfloat16 natively (elsewhere it is
    emulated, and slower than float32)."""
    return choice == "on" or (choice == "auto" and cpu_has_native_bf16())


def seed_everything(seed: int) -> random.Random:
    """Seed torch's and numpy's global generators (transformers draws SpecAugment masks from numpy's);
    returns the Python generator that orders the data (the held-out split, then each epoch's batches)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return random.Random(seed)


def validation_count(n_items: int, fraction: float) -> int:
    """Items to hold out: a rounded share, at least one, none from a set too small to spare any."""
    return max(1, round(n_items * fraction)) if n_items > 2 and fraction > 0 else 0


def hold_out(items: Sequence[Item], n_val: int, rng: random.Random) -> tuple[list[Item], list[Item]]:
    """(train, validation): a shuffled order whose first n_val items are held out."""
    order = list(range(len(items)))
    rng.shuffle(order)
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


def length_sorted_batches(items: Sequence[Item], batch_size: int, rng: random.Random,
                          length: Callable[[Item], int]) -> list[list[Item]]:
    """Length-sorted batches in shuffled order: little padding, yet a different order every epoch."""
    ordered = sorted(items, key=length)
    batches = [ordered[i: i + batch_size] for i in range(0, len(ordered), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_last_axis(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """(B, *shape[:-1], longest) float32, each array zero-padded at the end of its last axis (as preprocess pads)."""
    longest = max(a.shape[-1] for a in arrays)
    out = torch.zeros(len(arrays), *arrays[0].shape[:-1], longest)
    for i, a in enumerate(arrays):
        out[i, ..., : a.shape[-1]] = torch.from_numpy(a)
    return out


def ctc_targets(id_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated label ids and their lengths, as torch.nn.CTCLoss takes them."""
    targets = torch.tensor([t for ids in id_lists for t in ids], dtype=torch.int64)
    return targets, torch.tensor([len(ids) for ids in id_lists], dtype=torch.int64)


def ctc_validation(outputs: Iterable[tuple[np.ndarray, Sequence[int] | None, Sequence[str]]], labels: Sequence[str],
                   blank: int, convention: str, *, word_delimiter: str | None = None,
                   special_tokens: Collection[int] = ()) -> dict[str, float]:
    """{"val_wer", "val_cer"} of greedy CTC over (scores (B, T, V), valid frames or None, references) batches,
    corpus-level in the family's metrics convention (the pipeline's own scoring)."""
    refs: list[str] = []
    hyps: list[str] = []
    for scores, lengths, texts in outputs:
        hyps += greedy_decode_batch(scores, lengths, labels, blank, word_delimiter, special_tokens)
        refs += texts
    scores_ = corpus_scores(refs, hyps, convention=convention)
    return {"val_wer": scores_["wer"], "val_cer": scores_["cer"]}


@dataclass
class TrainResult:
    """What the loop did: one row per epoch, the epoch whose weights the model now holds, optimiser steps."""

    history: list[dict[str, Any]] = field(default_factory=list)
    chosen_epoch: int = 0
    steps: int = 0
    seconds: float = 0.0


def train_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, *, epochs: int,
                 batches: Callable[[], Sequence[Batch]], loss: Callable[[Batch], torch.Tensor],
                 validate: Callable[[], dict[str, float]] | None = None,
                 select: Callable[[dict[str, float]], tuple[float, ...]] | None = None,
                 max_norm: float = 0.0, loss_name: str = "train_loss") -> TrainResult:
    """Train for `epochs` epochs and leave `model` holding its best epoch, in eval mode.

    Each epoch draws its batches from `batches()`, steps optimizer and scheduler once per batch (gradients
    clipped to `max_norm` when it is > 0) and, with `validate`, scores the model; the epoch with the lowest
    `select(scores)` is kept (a tie goes to the later epoch). Without `validate` the last epoch is kept.
    """
    result = TrainResult(chosen_epoch=epochs)
    best: tuple[tuple[float, ...], dict[str, torch.Tensor], int] | None = None
    t_start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        losses = []
        for batch in tqdm(batches(), desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False):
            value = loss(batch)
            optimizer.zero_grad()
            value.backward()
            if max_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            scheduler.step()
            result.steps += 1
            losses.append(value.item())
        row: dict[str, Any] = {"epoch": epoch, loss_name: float(np.mean(losses)) if losses else math.nan,
                               "seconds": round(time.perf_counter() - t0, 1)}
        if validate is not None:
            model.eval()
            scores = validate()
            row.update(scores)
            key = select(scores) if select is not None else tuple(scores.values())
            if best is None or key <= best[0]:
                best = (key, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch)
        result.history.append(row)
        log.info("epoch %d: %s (%.0f s)", epoch,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds")), row["seconds"])
    if best is not None:
        model.load_state_dict(best[1])
        result.chosen_epoch = best[2]
    result.seconds = time.perf_counter() - t_start
    model.eval()
    return result


def add_numerics_arguments(parser: argparse.ArgumentParser, bf16: bool) -> None:
    """--threads and (where the trainer can autocast) --bf16, with the defaults that make the demo model the same
    on every CPU (core/numerics.py)."""
    parser.add_argument("--threads", type=int, default=TRAIN_THREADS,
                        help=f"torch threads (default {TRAIN_THREADS} on any machine: the thread count changes "
                             "how gradients are summed, so another count trains a slightly different model)")
    if bf16:
        parser.add_argument("--bf16", choices=["auto", "on", "off"], default="off",
                            help="bfloat16 autocast for the forward pass (weights stay fp32): faster on CPUs with "
                                 "native bf16 (avx512_bf16/amx), but the model then depends on the CPU; auto = on "
                                 "where the CPU has it (default off: float32, with the AVX2 caps of core/numerics.py)")


def write_record(path: Path, record: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """The training record (<model>.train.json), written atomically beside the model, with the numerics it was
    trained under (whether the same seed gives the same model on another CPU) and, given `args`, the options
    (`training_options`) that `already_trained` compares on the next run."""
    record = {**record, "cpu_numerics": numerics_record(record.get("autocast", "off"), record.get("threads", 0))}
    if args is not None:
        record["options"] = training_options(args)
    atomic_write_json(path, record)


def training_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options that decide what a trainer makes: its scalar options, and the content (sha256) of each file
    it reads (the checkpoint an autoencoder is trained on: retrained, it makes another autoencoder). Folders
    say where the corpus is, not what is trained (a moved work dir must not retrain an hour-long model);
    --force says whether, not what."""
    options: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key in ("force", "out"):
            continue
        if isinstance(value, Path):
            if value.is_file():
                options[key] = {"sha256": sha256_file(value)}
        elif value is None or isinstance(value, (bool, int, float, str)):
            options[key] = value
    return options


def already_trained(out: Path, holds_model: bool, record: Path, args: argparse.Namespace) -> bool:
    """Whether a trainer may leave the model at `out` as it is: it holds one, --force is not given, and its
    training record says it was made with these options. A changed option (more epochs, another loss, a
    retrained checkpoint under it) trains again, and says which; so does a record without options (from
    before they were recorded: nothing says what it was trained with)."""
    if not holds_model or args.force:
        return False
    try:
        old = json.loads(Path(record).read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        old = None
    if not isinstance(old, dict):
        log.info("%s has no record of the options it was trained with (%s); training it again", out, record)
        return False
    new = training_options(args)
    changed = [f"{k} {_shown(old.get(k))} -> {_shown(new[k])}" for k in new if k in old and old[k] != new[k]]
    if changed:
        log.info("%s was trained with other options (%s); training it again", out, ", ".join(changed))
        return False
    log.info("%s already holds a model trained with these options; not retraining (--force to retrain)", out)
    return True


def _shown(value: Any) -> str:
    """An option as the log shows it: a file by the start of its digest."""
    if isinstance(value, dict) and "sha256" in value:
        return f"file sha256 {str(value['sha256'])[:12]}"
    return repr(value)
