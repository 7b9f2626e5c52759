"""What a model family declares, so that the stages can stay generic over families.

Each families/<name>/__init__.py holds one `FAMILY = Family(...)`, and families/registry.py lists the
folders. A Family is data: the stages read it and never branch on a family's name. Code that needs torch
or transformers is named by a dotted path ("package.module" or "package.module:function") and imported
only when used, so that reading the registry stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Mapping

from core.audio import SAMPLE_RATE
from core.features import FeatureKind


def resolve(ref: str) -> Any:
    """The module "a.b" or the attribute "a.b:name" that a dotted reference names."""
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


@dataclass(frozen=True)
class ExportCommand:
    """`python -m export <command>`: the subcommand that exports the family's real artifact."""

    command: str
    help: str
    description: str
    artifact_option: str  # the flag (without dashes) that takes the artifact's path
    artifact_help: str
    artifact_what: str  # what the artifact is, for the message when it is missing
    # Module with `add_arguments(parser)` (the family's own flags) and `load_options(args) -> dict` (the
    # keyword arguments of the recipe's load), and optionally `after_export(args, log)` (files written
    # beside a passed export).
    options: str


@dataclass(frozen=True)
class BenchModel:
    """One model the throughput benchmark can add to its roster (`python -m postprocess bench --<option>`)."""

    option: str  # the command-line flag without its dashes
    label: str  # the row's model label
    help: str
    # "module:function" building a random-weight artifact in a scratch folder (`function(folder) -> path`);
    # None: the flag itself takes the artifact's path.
    make: str | None = None


@dataclass(frozen=True)
class BenchDefaults:
    """How the benchmark (`python -m postprocess bench`) exercises a family."""

    # Corpus reader (core.corpora.CORPUS_READERS) for the rows on the stages around the model (--pipeline).
    corpus: str
    models: tuple[BenchModel, ...] = ()
    # Flag (without dashes) of the models' input length, in the input's time unit, and its default.
    length_option: str | None = None
    length: int | None = None
    length_help: str = ""
    # Whether the benchmark's peer (Hugging Face Optimum) can export this family's artifact.
    optimum_peer: bool = False


@dataclass(frozen=True)
class Family:
    """Everything about one model family that generic code needs."""

    name: str  # the `family` a model card carries
    # Module with `load(artifact, **options) -> core.recipe.LoadedModel` (the export recipe).
    recipe: str
    # Feature kinds this family defines (a card's feature["kind"] -> how to compute it).
    features: Mapping[str, FeatureKind]
    export: ExportCommand
    bench: BenchDefaults
    sample_rate: int = SAMPLE_RATE  # the audio rate its feature configs expect by default
    # Module with `streaming_model(offline_module, chunk_frames)` (core/streaming.py's contract), if any.
    streaming: str | None = None
    # Module with `split_recipe(artifact, *, autoencoder=None, **load_options) -> core.recipe.SplitRecipe`:
    # the family's own cut (`python -m split export` without --after), if it has one.
    split: str | None = None
    # export/variants.py defaults per variant kind ("int8-dynamic": {"op_types": [...]}, ...), the
    # onnxruntime transformer fusion ("fused": {"model_type": ...}) and "expected_fusions" {op: meaning}.
    variant_defaults: Mapping[str, Any] = field(default_factory=dict)
    # The Ascend ModelZoo guide's flow as data (families/<name>/guide.py GUIDE): the export writes it into
    # the card's `modelzoo` entry, and `--modelzoo` in every stage reads it from there (core/guide.py).
    guide: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", MappingProxyType(dict(self.features)))
        object.__setattr__(self, "variant_defaults", MappingProxyType(dict(self.variant_defaults)))

    def recipe_module(self) -> ModuleType:
        return importlib.import_module(self.recipe)

    def streaming_module(self) -> ModuleType:
        if self.streaming is None:
            raise ValueError(f"model family {self.name!r} has no streaming form")
        return importlib.import_module(self.streaming)
