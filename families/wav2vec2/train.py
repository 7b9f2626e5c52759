"""Train the embedded demo wav2vec2 (a small, base-like Wav2Vec2ForCTC) from scratch with a fixed seed.

The result is a Hugging Face model directory as `save_pretrained` writes it (config.json,
model.safetensors) with the processor files of wav2vec2-base-960h's layout (vocab.json with `<pad>` = 0
as CTC blank, `<s>`, `</s>`, `<unk>`, `|` as word delimiter, `'`, A..Z; a feature extractor that
normalises each utterance and returns no attention mask), so the pipeline loads it through exactly the
path a real wav2vec2-base-960h directory takes. The config keeps what matters for the pipeline base-like:
group norm in the feature encoder, post-layer-norm transformer, no attention mask (zero padding changes
the outputs). A validation slice of the training split picks the best epoch; the test split is never
looked at here. Training happens in a temporary folder beside --out, renamed into place at the end.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.audio import load_audio
from core.corpora import read_librispeech
from families.wav2vec2.features import wav2vec2_waveform
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
    validation_count,
    write_record,
)
from families.wav2vec2.recipe import ModelDirError, check_model_dir, frames_for, output_length_rule

log = logging.getLogger("train")

# wav2vec2-base-960h's vocabulary layout: pad (= CTC blank) first, then the specials, word delimiter, letters.
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "'", *(chr(ord("A") + i) for i in range(26))]
BLANK = 0
WORD_DELIMITER = "|"
SPECIAL_TOKENS = (1, 2, 3)
FEATURE_CFG = {"kind": "wav2vec2_waveform", "do_normalize": True, "norm_eps": 1e-7}
# The feature encoder of wav2vec2-base: 7 convs, 320 samples per frame (20 ms at 16 kHz).
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--librispeech", type=Path, required=True,
                   help="LibriSpeech split folder to train on (the demo corpus's train-demo)")
    p.add_argument("--out", type=Path, required=True,
                   help="model directory to write (save_pretrained layout + processor files)")
    p.add_argument("--conv-dim", type=int, default=64, help="channels of each of the 7 feature-encoder convs")
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--layers", type=int, default=3, help="transformer layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate-size", type=int, default=512)
    p.add_argument("--pos-conv-kernel", type=int, default=32, help="num_conv_pos_embeddings (base: 128)")
    p.add_argument("--pos-conv-groups", type=int, default=8, help="num_conv_pos_embedding_groups (base: 16)")
    p.add_argument("--dropout", type=float, default=0.0, help="hidden/attention/activation/final dropout")
    p.add_argument("--mask-time-prob", type=float, default=0.0, help="SpecAugment time masking (0 = off)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps spent warming up the LR")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-norm", type=float, default=1.0, help="gradient clipping norm")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--val-fraction", type=float, default=0.05, help="training utterances held out to pick the epoch")
    p.add_argument("--limit", type=int, help="use only the first N training utterances (tests)")
    add_numerics_arguments(p, bf16=True)
    p.add_argument("--force", action="store_true", help="retrain even if --out already holds a model")


def encode_transcript(text: str) -> tuple[str, list[int]]:
    """Upper-case, drop what the vocabulary cannot spell; ids with spaces as the word delimiter."""
    text, _ = to_labels(text, VOCAB, blank=VOCAB[BLANK], word_delimiter=WORD_DELIMITER)
    index = {c: i for i, c in enumerate(VOCAB)}
    return text, [index[WORD_DELIMITER if c == " " else c] for c in text]


def build_config(args: argparse.Namespace) -> Any:
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        vocab_size=len(VOCAB), pad_token_id=BLANK, bos_token_id=1, eos_token_id=2,
        hidden_size=args.hidden_size, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.intermediate_size, hidden_act="gelu",
        conv_dim=(args.conv_dim,) * len(CONV_KERNEL), conv_kernel=CONV_KERNEL, conv_stride=CONV_STRIDE,
        conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False,
        num_conv_pos_embeddings=args.pos_conv_kernel, num_conv_pos_embedding_groups=args.pos_conv_groups,
        hidden_dropout=args.dropout, attention_dropout=args.dropout, activation_dropout=args.dropout,
        final_dropout=args.dropout, feat_proj_dropout=0.0, layerdrop=0.0,
        apply_spec_augment=args.mask_time_prob > 0, mask_time_prob=args.mask_time_prob, mask_time_length=5,
        mask_feature_prob=0.0, ctc_loss_reduction="mean", ctc_zero_infinity=True,
        architectures=["Wav2Vec2ForCTC"],
    )


def save_processor(out: Path) -> None:
    """vocab.json + tokenizer and feature-extractor files, as wav2vec2-base-960h has them."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2Processor

    vocab = out / "vocab.json"
    vocab.write_text(json.dumps({tok: i for i, tok in enumerate(VOCAB)}) + "\n")
    tok = Wav2Vec2CTCTokenizer(str(vocab), bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                               pad_token="<pad>", word_delimiter_token=WORD_DELIMITER, do_lower_case=False)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(out))


Item = tuple[np.ndarray, list[int], str]  # (normalised waveform, label ids, normalised text)


def evaluate(model: torch.nn.Module, items: list[Item]) -> dict[str, float]:
    """Greedy CTC over each utterance alone (batch 1, no padding: how the pipeline scores the model)."""
    def outputs():
        with torch.inference_mode():
            for wave, _, text in items:
                yield model(torch.from_numpy(wave)[None]).logits.float().numpy(), None, [text]

    return ctc_validation(outputs(), VOCAB, BLANK, "hf", word_delimiter=WORD_DELIMITER,
                          special_tokens=SPECIAL_TOKENS)


def train(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train and write the model directory into `out` (a fresh folder); returns the train.json summary."""
    from transformers import Wav2Vec2ForCTC

    t_total = time.perf_counter()
    rng = seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    utts = read_librispeech(args.librispeech)
    if args.limit:
        utts = utts[: args.limit]
    items: list[Item] = []
    for u in tqdm(utts, desc="audio", unit="utt"):
        text, ids = encode_transcript(u.transcript)
        if ids:
            items.append((wav2vec2_waveform(load_audio(u.audio), FEATURE_CFG), ids, text))
    train_items, val = hold_out(items, validation_count(len(items), args.val_fraction), rng)

    cfg = build_config(args)
    model = Wav2Vec2ForCTC(cfg)
    # Plain matmul attention trains faster than SDPA on CPU at these sizes; the choice is not saved
    # in config.json (loading picks the default) and both compute the same function.
    model.set_attn_implementation("eager")
    rule = output_length_rule(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    hours = sum(w.shape[0] for w, _, _ in train_items) / 16000 / 3600
    log.info("wav2vec2 conv %d x7, %d layers x %d hidden: %d parameters; %d train (%.2f h) / %d val utterances",
             args.conv_dim, args.layers, args.hidden_size, n_params, len(train_items), hours, len(val))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    total = max(1, math.ceil(len(train_items) / args.batch_size) * args.epochs)
    warm = max(1, round(total * args.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    ctc = torch.nn.CTCLoss(blank=BLANK, reduction="mean", zero_infinity=True)
    bf16 = use_bf16(args.bf16)

    def loss(batch: list[Item]) -> torch.Tensor:
        x = pad_last_axis([w for w, _, _ in batch])  # zero-padded, as the runners pad
        targets, target_lengths = ctc_targets([ids for _, ids, _ in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).logits
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
        out_lens = torch.tensor([frames_for(rule, w.shape[0]) for w, _, _ in batch], dtype=torch.int64)
        return ctc(log_probs, targets, out_lens, target_lengths)

    # Lowest CER, then WER: from scratch, WER stays near 1 for a while when CER already moves.
    result = train_epochs(model, opt, sched, epochs=args.epochs, max_norm=args.max_norm,
                          batches=lambda: length_sorted_batches(train_items, args.batch_size, rng,
                                                                lambda it: it[0].shape[0]),
                          loss=loss, validate=(lambda: evaluate(model, val)) if val else None,
                          select=lambda scores: (scores["val_cer"], scores["val_wer"]))
    model.save_pretrained(str(out))
    save_processor(out)
    summary = {
        "family": "wav2vec2",
        "model_dir": str(args.out),
        "config": {"conv_dim": list(cfg.conv_dim), "conv_kernel": list(cfg.conv_kernel),
                   "conv_stride": list(cfg.conv_stride), "hidden_size": cfg.hidden_size,
                   "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
                   "intermediate_size": cfg.intermediate_size, "num_conv_pos_embeddings": cfg.num_conv_pos_embeddings,
                   "num_conv_pos_embedding_groups": cfg.num_conv_pos_embedding_groups,
                   "feat_extract_norm": cfg.feat_extract_norm, "do_stable_layer_norm": cfg.do_stable_layer_norm,
                   "dropout": args.dropout, "mask_time_prob": cfg.mask_time_prob, "vocab": VOCAB},
        "feature": FEATURE_CFG,
        "parameters": n_params,
        "seed": args.seed,
        "train_utterances": len(train_items),
        "train_hours": round(hours, 3),
        "val_utterances": len(val),
        "epochs": args.epochs,
        "chosen_epoch": result.chosen_epoch,
        "selected_by": "lowest validation CER, then WER",
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - t_total, 1),
        "threads": torch.get_num_threads(),
        "autocast": "bfloat16" if bf16 else "off",
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "max_norm": args.max_norm,
        "batch_size": args.batch_size,
        "steps": result.steps,
    }
    write_record(out / "train.json", summary, args)
    return summary


def _holds_model(path: Path) -> bool:
    try:
        check_model_dir(path)
    except ModelDirError:
        return False
    return True


def main(args: argparse.Namespace) -> int:
    out: Path = args.out
    if already_trained(out, _holds_model(out), out / "train.json", args):
        return 0
    if out.exists() and not out.is_dir():
        log.error("--out %s exists and is not a directory", out)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial"  # the same name every run: a leftover is cleared here
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        summary = train(args, partial)
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old)
        else:
            partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("saved %s (epoch %d of %d, %.0f s training)", out, summary["chosen_epoch"], summary["epochs"],
             summary["train_seconds"])
    return 0
