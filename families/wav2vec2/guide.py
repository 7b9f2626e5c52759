"""The Ascend ModelZoo wav2vec2 guide, as data: what `--modelzoo` reproduces for this family.

The export writes GUIDE into the model card (its `modelzoo` entry); preprocess, the runners and
postprocess read it from there (core/guide.py) and hold no family-specific branch.
"""
from __future__ import annotations

from typing import Any

GUIDE: dict[str, Any] = {
    "name": "Ascend ModelZoo wav2vec2",
    # preprocess's writer for this layout (preprocess/modelzoo_batched.py): clips over skip_longer_than
    # samples skipped, each zero-padded to pad_to samples, full batches of batch_size clips as batch_{k}.bin,
    # the final partial batch listed in the map file but never written (so never scored).
    "layout": "batch_files",
    "skip_longer_than": 100000,
    "pad_to": 100000,
    # The guide normalises with population variance + 1e-5 where HF's feature extractor uses 1e-7.
    "feature_overrides": {"norm_eps": 1e-5},
    "batch_files": "batch_{k}.bin",
    "map_file": "batch_i_filename_map_bs{bs}.json",
    "ground_truth": "ground_truth_texts.txt",
    # The guide's postprocess decodes every output frame of the padded clip.
    "decode_frames": {"from": "output"},
    "static_shape": {"samples": 100000},
    # Clips per batch file when neither an OM card nor --batch-size says otherwise.
    "batch_size": 1,
    "description": "the Ascend wav2vec2 guide's flow (clips over 100000 samples skipped, eps 1e-5 "
                   "normalisation, zero-padded to 100000 samples, batch files, final partial batch "
                   "unscored), decoded over all output frames as its postprocess does",
}
