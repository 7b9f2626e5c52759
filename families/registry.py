"""Model families: one recipe module each, registered here by the `family` name cards carry.

A family module provides `load(artifact_path, **options) -> core.recipe.LoadedModel`.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FAMILIES: dict[str, str] = {
    "deepspeech2": "families.deepspeech2.recipe",
    "wav2vec2": "families.wav2vec2.recipe",
    "split_asr": "families.split_asr.recipe",
}


# Families that can also run chunk by chunk: a module with
# `streaming_model(offline_module, chunk_frames) -> module with streaming_spec and streaming_forward`
# (the contract of core/streaming.py).
STREAMING_FAMILIES: dict[str, str] = {
    "deepspeech2": "families.deepspeech2.streaming",
}


def streaming_module(family: str) -> ModuleType:
    if family not in STREAMING_FAMILIES:
        raise ValueError(f"model family {family!r} has no streaming form; streaming families: "
                         f"{sorted(STREAMING_FAMILIES)}")
    return importlib.import_module(STREAMING_FAMILIES[family])


def family_module(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def variant_defaults(family: str) -> dict[str, Any]:
    """The family's VARIANT_DEFAULTS (op types to quantise, expected onnxruntime fusions), or {}."""
    return dict(getattr(family_module(family), "VARIANT_DEFAULTS", {}))
