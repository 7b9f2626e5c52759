"""The Ascend wav2vec2 guide's preprocessing, reproduced: fixed-length batch files and a batch map.

What the wav2vec2 guide's wav2vec2_preprocess.py does, and so what this writes on `--modelzoo` for a card
whose guide profile (core/guide.py) has the layout `batch_files`:

* clips longer than `skip_longer_than` samples are skipped (not truncated);
* each clip is normalised with the guide's epsilon (population variance + 1e-5, not HF's 1e-7), then
  zero-padded to `pad_to` samples;
* every full batch of `batch_size` clips (the OM's batch: core/guide.py guide_batch_size) becomes one
  raw float32 file `batch_{k}.bin` (k from 0; the profile's `batch_files`), laid out (bs, 1, pad_to) as
  the guide writes it (the same bytes as the model's (bs, pad_to) input);
* the final partial batch is listed in `batch_i_filename_map_bs{bs}.json` but gets no file, so its
  clips are never scored (as in the guide);
* `ground_truth_texts.txt` holds every `*.trans.txt` line of the split.

One difference on purpose: the guide takes files in glob order, which depends on the file system; this
takes them in utterance-id order, so runs are reproducible.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.audio import decode_audio, num_samples
from core.corpora import Utterance
from core.dataset_dir import (HEADER, MANIFEST, BinRef, Sample, atomic_write_bytes, atomic_write_json,
                                    read_manifest, write_bin)
from core.guide import guide_feature, guide_profile
from core.model_card import ModelCard
from core.text import log_dropped, to_labels
from families.registry import extract

log = logging.getLogger("preprocess")


def build_batched(utts: list[Utterance], out: Path, card: ModelCard, header: dict[str, Any],
                  batch_size: int, *, sample_rate: int, raw_rate: int | None, resample: bool,
                  progress: bool) -> Path:
    """Write the guide's layout into `out` (whose header the caller has prepared, complete=False)."""
    mz = guide_profile(card)
    limit, pad_to = int(mz["skip_longer_than"]), int(mz["pad_to"])
    feature = guide_feature(card)
    spec = card.inputs[0]
    folder = spec.name
    kept = [u for u in utts if num_samples(u.audio, sample_rate=sample_rate, raw_rate=raw_rate) <= limit]
    skipped = len(utts) - len(kept)
    batches = [kept[i: i + batch_size] for i in range(0, len(kept), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    batch_map = {f"batch_{k}": [u.uid for u in b] for k, b in enumerate(batches)}
    header.update({"pad_to": pad_to, "batch_size": batch_size, "skipped_longer": skipped,
                   "num_samples": len(full) * batch_size, "feature": feature,
                   "unscored_partial_batch": [u.uid for b in batches if len(b) < batch_size for u in b]})
    header["inputs"] = [{"name": spec.name, "folder": folder, "dtype": spec.dtype, "role": spec.role,
                         "time_axis": spec.time_axis}]
    (out / folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / HEADER, header)
    done = {s.key for s in read_manifest(out / MANIFEST)}
    blank = card.blank_label
    dropped: Counter = Counter()
    with open(out / MANIFEST, "a") as manifest:
        for k, batch in enumerate(tqdm(full, desc=f"preprocess {out.name}", unit="batch", disable=not progress)):
            keys = [f"b{k:05d}r{row:03d}" for row in range(len(batch))]
            if all(key in done for key in keys):
                continue
            rows, samples = [], []
            for row, (key, utt) in enumerate(zip(keys, batch)):
                audio = decode_audio(utt.audio, sample_rate=sample_rate, raw_rate=raw_rate, resample=resample)
                x = np.zeros(pad_to, dtype=np.float32)
                x[: audio.size] = extract(audio, feature)
                rows.append(x)
                text, drops = to_labels(utt.transcript, list(card.labels), blank=blank,
                                        word_delimiter=card.delimiter)
                dropped.update(drops)
                samples.append((key, utt, audio.size, text, row))
            ref = write_bin(out / folder / mz["batch_files"].format(k=k), np.stack(rows)[:, None, :], spec.dtype)
            for key, utt, n, text, row in samples:
                sample = Sample(key=key, uid=utt.uid, audio=str(utt.audio), transcript_raw=utt.transcript,
                                transcript=text, num_samples=int(n), length=int(n), padded_length=pad_to,
                                inputs={spec.name: BinRef(ref.file, spec.dtype, (batch_size, pad_to), row)},
                                speaker=utt.speaker)
                manifest.write(sample.to_json() + "\n")
            manifest.flush()
            os.fsync(manifest.fileno())
    log_dropped(dropped, log)
    atomic_write_json(out / mz["map_file"].format(bs=batch_size), batch_map)
    lines = [f"{u.uid} {u.transcript}\n" for u in sorted(utts, key=lambda u: u.uid)]
    atomic_write_bytes(out / mz["ground_truth"], "".join(lines).encode())
    if skipped:
        log.info("skipped %d clips longer than %d samples (as the guide does)", skipped, limit)
    header["complete"] = True
    header["dropped_chars"] = dict(dropped)
    atomic_write_json(out / HEADER, header)
    return out
