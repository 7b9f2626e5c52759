"""The one registry of model families: the `family` name a card carries -> the folder that declares it.

Each folder's __init__.py holds `FAMILY`, a core.family.Family. Adding a family is its folder plus one
line here; the stages reach families only through these functions.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from core.family import Family
from core.features import FeatureKind

FAMILIES: dict[str, str] = {
    "deepspeech2": "families.deepspeech2",
    "wav2vec2": "families.wav2vec2",
    "split_asr": "families.split_asr",
}


def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[name]).FAMILY


def family_module(name: str) -> ModuleType:
    """The family's recipe: `load(artifact, **options) -> core.recipe.LoadedModel`."""
    return get_family(name).recipe_module()


def streaming_module(name: str) -> ModuleType:
    """The family's streaming form: `streaming_model(offline_module, chunk_frames)` (core/streaming.py)."""
    family = get_family(name)
    if family.streaming is None:
        streaming = sorted(n for n in FAMILIES if get_family(n).streaming is not None)
        raise ValueError(f"model family {name!r} has no streaming form; streaming families: {streaming}")
    return family.streaming_module()


def feature_kinds() -> dict[str, FeatureKind]:
    """Every feature kind the registered families define, by the name a card's feature["kind"] gives."""
    return {kind: fk for name in FAMILIES for kind, fk in get_family(name).features.items()}


def feature_kind(kind: Any) -> FeatureKind:
    kinds = feature_kinds()
    if kind not in kinds:
        raise ValueError(f"feature kind {kind!r} is not supported; known: {sorted(kinds)}")
    return kinds[kind]


def extract(audio: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """The features a card's feature config describes, of one clip (core.features.FeatureKind.extract)."""
    return feature_kind(cfg.get("kind")).extract(audio, cfg)


def frames_for(num_samples: int, cfg: dict[str, Any]) -> int:
    """Feature frames of a clip of `num_samples` samples under a card's feature config."""
    return feature_kind(cfg["kind"]).frames(num_samples, cfg)

