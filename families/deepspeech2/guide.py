"""The Ascend ModelZoo DeepSpeech guide, as data: what `--modelzoo` reproduces for this family.

The export writes GUIDE into the model card (its `modelzoo` entry); preprocess, the runners and
postprocess read it from there (core/guide.py) and hold no family-specific branch.
"""
from __future__ import annotations

from typing import Any

GUIDE: dict[str, Any] = {
    "name": "Ascend ModelZoo DeepSpeech",
    # preprocess's writer for this layout: the whole set sorted longest first (a stable sort), numbered
    # data{i}.bin from 1, every file zero-padded to the longest utterance, the lengths input in sizes/ as the
    # guide's float32 length ratio stores them, plus sizes.txt / targets.txt / target_sizes.txt.
    "layout": "sorted_padded",
    "layout_files": "spect/data{i}.bin, sizes/data{i}.bin",
    "lengths_folder": "sizes",
    # The guide's postprocess decodes input_length // 2 output frames; the model emits ceil(L/2).
    "decode_frames": {"from": "lengths_input", "divide": 2},
    "feature_overrides": {},
    # The guide's static graph (atc --input_shape spect:1,1,161,621): one utterance per file and inference.
    "static_shape": {"batch": 1, "frames": 621},
    "batch_size": 1,
    "description": "the Ascend DeepSpeech guide's flow (whole set sorted and zero-padded to the longest, 621 "
                   "frames on real AN4; float32-rounded sizes; static 1x1x161x621 graph), decoded as its "
                   "postprocess does: floor(L/2) of the ceil(L/2) output frames",
}
