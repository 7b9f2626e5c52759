"""deepspeech.pytorch V3.0's fixed facts, in one place for the model, its checkpoints and its streaming form.

V3.0 fixes the conv stack (only the RNN part is configurable), defaults a unidirectional model's
lookahead to 20 frames (UniDirectionalConfig.lookahead_context), and its SpectConfig to 16 kHz audio with
20 ms hamming windows every 10 ms.
"""
from __future__ import annotations

from typing import Any

from core.audio import SAMPLE_RATE

# (kernel, stride, padding) per axis as (freq, time).
CONV_LAYERS: list[dict[str, tuple[int, int]]] = [
    {"kernel": (41, 11), "stride": (2, 2), "padding": (20, 5)},
    {"kernel": (21, 11), "stride": (2, 1), "padding": (10, 5)},
]
CONV_CHANNELS = 32
DEFAULT_LOOKAHEAD = 20
SPECT_DEFAULTS: dict[str, Any] = {"sample_rate": SAMPLE_RATE, "window_size": 0.02, "window_stride": 0.01,
                                  "window": "hamming"}
