"""core/training.py: the loop the demo trainers share keeps the best epoch and draws its randomness in order."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from core.training import (
    already_trained,
    ctc_targets,
    ctc_validation,
    hold_out,
    length_sorted_batches,
    pad_last_axis,
    seed_everything,
    train_epochs,
    training_options,
    validation_count,
    write_record,
)


def test_hold_out_and_batches_are_seeded_and_cover_every_item() -> None:
    items = [np.zeros(n) for n in (5, 3, 9, 1, 7, 2, 8)]
    rng_a, rng_b = random.Random(3), random.Random(3)
    train_a, val_a = hold_out(items, 2, rng_a)
    train_b, val_b = hold_out(items, 2, rng_b)
    assert [len(x) for x in train_a + val_a] == [len(x) for x in train_b + val_b]  # the same seed, the same split
    assert len(val_a) == 2 and sorted(len(x) for x in train_a + val_a) == sorted(len(x) for x in items)
    batches = length_sorted_batches(train_a, 2, rng_a, len)
    # Neighbours by length share a batch, whatever order the batches come in.
    sizes = sorted(len(x) for x in train_a)
    assert sorted(sorted(len(x) for x in b) for b in batches) == sorted(
        [sizes[i: i + 2] for i in range(0, len(sizes), 2)])


@pytest.mark.parametrize("n, fraction, expected", [(0, 0.05, 0), (2, 0.5, 0), (3, 0.05, 1), (150, 0.05, 8),
                                                   (100, 0.0, 0)])
def test_validation_count(n: int, fraction: float, expected: int) -> None:
    assert validation_count(n, fraction) == expected


def test_pad_last_axis_and_ctc_targets() -> None:
    out = pad_last_axis([np.ones((2, 3), np.float32), np.full((2, 5), 2, np.float32)])
    assert out.shape == (2, 2, 5) and out.dtype == torch.float32
    assert out[0, :, 3:].abs().sum() == 0 and out[0, :, :3].eq(1).all() and out[1].eq(2).all()
    targets, lengths = ctc_targets([[1, 2], [], [3]])
    assert targets.tolist() == [1, 2, 3] and lengths.tolist() == [2, 0, 1] and targets.dtype == torch.int64


def test_ctc_validation_scores_greedy_transcripts() -> None:
    labels = ["_", "A", "B", " "]
    perfect = np.eye(4, dtype=np.float32)[[1, 0, 2, 3, 1]][None]  # "AB A"
    scores = ctc_validation([(perfect, [5], ["AB A"])], labels, 0, "hf")
    assert scores == {"val_wer": 0.0, "val_cer": 0.0}
    wrong = ctc_validation([(perfect, [2], ["AB A"])], labels, 0, "hf")  # only "A" decoded
    assert wrong["val_wer"] > 0 and wrong["val_cer"] > 0


def _toy(epochs: int, val_scores: list[float] | None):
    seed_everything(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = [torch.randn(4, 2) for _ in range(3)]
    snapshots = []
    scores = iter(val_scores or [])

    def validate() -> dict[str, float]:
        snapshots.append(model.weight.detach().clone())
        return {"val_wer": next(scores)}

    result = train_epochs(model, opt, sched, epochs=epochs, batches=lambda: data,
                          loss=lambda x: model(x).pow(2).mean(), validate=validate if val_scores else None,
                          select=lambda s: (s["val_wer"],), max_norm=1.0)
    return model, result, snapshots


def test_train_epochs_keeps_the_best_epoch_and_counts_steps() -> None:
    model, result, snapshots = _toy(4, [0.5, 0.2, 0.2, 0.9])
    assert result.chosen_epoch == 3  # a tie goes to the later epoch
    assert torch.equal(model.weight, snapshots[2]) and not model.training
    assert result.steps == 12 and [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert all(r["train_loss"] > 0 and "val_wer" in r for r in result.history)


def test_train_epochs_without_validation_keeps_the_last_epoch_and_is_reproducible() -> None:
    model_a, result, _ = _toy(2, None)
    model_b, _, _ = _toy(2, None)
    assert result.chosen_epoch == 2 and "val_wer" not in result.history[0]
    assert torch.equal(model_a.weight, model_b.weight)  # the same seed, the same model


def test_a_model_is_kept_only_when_trained_with_the_same_options(tmp_path) -> None:
    import argparse
    from pathlib import Path

    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"first")
    args = argparse.Namespace(corpus=tmp_path, checkpoint=checkpoint, out=tmp_path / "m.pt", epochs=3, lr=1e-3,
                              limit=None, force=False)
    record = tmp_path / "m.train.json"
    options = training_options(args)
    # a folder (the corpus) and --out/--force are not options; a file it reads counts by its content
    assert options == {"checkpoint": {"sha256": options["checkpoint"]["sha256"]}, "epochs": 3, "limit": None, "lr": 1e-3}
    assert not already_trained(args.out, False, record, args)  # nothing there yet
    write_record(record, {"threads": 1}, args)
    assert already_trained(args.out, True, record, args)
    moved = argparse.Namespace(**{**vars(args), "corpus": Path("elsewhere")})
    assert already_trained(args.out, True, record, moved)  # a moved corpus is the same training
    assert not already_trained(args.out, True, record, argparse.Namespace(**{**vars(args), "epochs": 4}))
    assert not already_trained(args.out, True, record, argparse.Namespace(**{**vars(args), "force": True}))
    checkpoint.write_bytes(b"retrained")  # the model under an autoencoder was trained again
    assert not already_trained(args.out, True, record, args)
    record.write_text('{"threads": 1}')  # a record from before options were recorded says nothing: train again
    assert not already_trained(args.out, True, record, args)
