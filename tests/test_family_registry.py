"""The family registry: every registered Family is consistent, and the stages name no family.

Adding a family is its folder plus one registry line (docs/families.md); the second half of this file
keeps that true by scanning the stage packages for family names and feature kinds.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from core.corpora import CORPUS_READERS
from core.family import Family, resolve
from families.registry import (FAMILIES, extract, feature_kind, feature_kinds, family_module, family_names,
                               frames_for, get_family, streaming_module)

ROOT = Path(__file__).resolve().parent.parent
STAGE_PACKAGES = ("export", "preprocess", "runners", "postprocess", "split", "demo", "core")
# String arguments that only explain (they may name a family) and are not logic.
PROSE_KEYWORDS = {"help", "description", "usage", "epilog"}

# (file, literal) pairs still allowed, each with its reason. The list may only shrink: an entry that no
# longer occurs fails test_known_exceptions_still_occur.
KNOWN_LITERALS: dict[tuple[str, str], str] = {}
KNOWN_IMPORTS: dict[tuple[str, str], str] = {
    # Not a registered family: torchvision's ResNet-50 architecture for the split stage's bare-graph table.
    ("split/resnet_table.py", "families.resnet.model"): "the ResNet-50 partition table's model",
}


# ---------------------------------------------------------------------------------------------------
# (a) every registered Family is consistent


@pytest.mark.parametrize("name", family_names())
def test_family_declaration_is_consistent(name: str) -> None:
    family = get_family(name)
    assert isinstance(family, Family) and family.name == name
    assert FAMILIES[name] == f"families.{name}"
    assert callable(family_module(name).load)
    if family.streaming is not None:
        assert callable(streaming_module(name).streaming_model)
    if family.split is not None:
        assert callable(resolve(family.split).split_recipe)
    assert family.features, f"{name} declares no feature kind"
    for kind, fk in family.features.items():
        assert feature_kind(kind) is fk
        assert callable(fk.compute) and callable(fk.frames)
    options = resolve(family.export.options)
    assert callable(options.add_arguments) and callable(options.load_options)
    assert family.bench.corpus in CORPUS_READERS
    assert bool(family.bench.models) == bool(family.bench.length_option)
    for model in family.bench.models:
        assert model.make is None or callable(resolve(model.make))
    for kind in ("int8-dynamic", "int8-static"):
        op_types = family.variant_defaults.get(kind, {}).get("op_types", [])
        assert all(isinstance(op, str) for op in op_types)
    assert family.sample_rate > 0


def test_names_and_flags_are_unique_across_families() -> None:
    """A feature kind, export command or benchmark flag belongs to one family only (the registry would
    otherwise pick one silently)."""
    kinds = [k for n in family_names() for k in get_family(n).features]
    commands = [get_family(n).export.command for n in family_names()]
    flags = [m.option for n in family_names() for m in get_family(n).bench.models] + \
        [get_family(n).bench.length_option for n in family_names() if get_family(n).bench.length_option]
    for values in (kinds, commands, flags):
        assert len(values) == len(set(values)), values
    assert set(feature_kinds()) == set(kinds)


def test_family_facts_are_read_only() -> None:
    family = get_family(family_names()[0])
    with pytest.raises(TypeError):
        family.features["another"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        family.name = "renamed"  # type: ignore[misc]


def test_feature_kinds_resolve_through_the_registry() -> None:
    """The card's feature["kind"] picks the family's function: a DeepSpeech2 card's spectrogram and a
    split_asr card's mel spectrogram, each with the frame count its rule predicts."""
    from families.deepspeech2.recipe import DeepSpeechConfig, feature_config as ds_features
    from families.split_asr.features import feature_config as mel_features

    audio = (np.random.default_rng(0).standard_normal(5000) * 0.1).astype(np.float32)
    for cfg in (ds_features(DeepSpeechConfig()), mel_features(32)):
        feats = extract(audio, cfg)
        assert feats.shape[-1] == frames_for(audio.size, cfg)
        assert np.isfinite(feats).all()


def test_unknown_names_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown model family 'nope'; known: "):
        get_family("nope")
    with pytest.raises(ValueError, match="feature kind 'nope' is not supported; known: "):
        extract(np.zeros(400, dtype=np.float32), {"kind": "nope"})
    plain = [n for n in family_names() if get_family(n).streaming is None]
    with pytest.raises(ValueError, match="has no streaming form; streaming families: "):
        streaming_module(plain[0])


# ---------------------------------------------------------------------------------------------------
# (b) stage code names no family


def _prose_nodes(tree: ast.AST) -> set[int]:
    """Docstrings and the strings passed as help=/description=/usage=/epilog=: prose, allowed to name
    a family."""
    prose: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                prose.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in PROSE_KEYWORDS:
            prose |= {id(n) for n in ast.walk(node.value)}
    return prose


def family_literals(source: str, names: set[str]) -> list[str]:
    """String literals of `source` that equal one of `names`, outside docstrings and help texts."""
    tree = ast.parse(source)
    prose = _prose_nodes(tree)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            and id(node) not in prose]


def family_imports(source: str) -> list[str]:
    """Modules under families/ that `source` imports, other than the registry."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.startswith("families.") and m != "families.registry"]


def _stage_files() -> list[Path]:
    return sorted(p for pkg in STAGE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _names() -> set[str]:
    return set(family_names()) | set(feature_kinds())


def _found() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    literals, imports = set(), set()
    for path in _stage_files():
        rel, source = path.relative_to(ROOT).as_posix(), path.read_text()
        literals |= {(rel, value) for value in family_literals(source, _names())}
        imports |= {(rel, module) for module in family_imports(source)}
    return literals, imports


def test_the_scanner_sees_a_family_name_in_code_only() -> None:
    source = '''"""Docstring naming deepspeech2."""
import argparse
from families.wav2vec2.recipe import load
from families.registry import get_family
p = argparse.ArgumentParser(description="for wav2vec2 and " "deepspeech2")
p.add_argument("--x", help="deepspeech2")
if card["family"] == "deepspeech2" or kind == "mel_spectrogram":
    pass
'''
    assert sorted(family_literals(source, {"deepspeech2", "wav2vec2", "mel_spectrogram"})) == \
        ["deepspeech2", "mel_spectrogram"]
    assert family_imports(source) == ["families.wav2vec2.recipe"]


def test_stage_code_names_no_family() -> None:
    literals, imports = _found()
    new_literals = sorted(literals - set(KNOWN_LITERALS))
    new_imports = sorted(imports - set(KNOWN_IMPORTS))
    assert not new_literals, ("stage code names a family or feature kind; read it from the card or the "
                              f"Family (families/registry.py) instead: {new_literals}")
    assert not new_imports, ("stage code imports a family's module; go through families.registry and the "
                             f"Family instead: {new_imports}")


def test_known_exceptions_still_occur() -> None:
    """The exception lists only shrink: remove an entry once its mention is gone."""
    literals, imports = _found()
    assert not sorted(set(KNOWN_LITERALS) - literals), "stale KNOWN_LITERALS entries"
    assert not sorted(set(KNOWN_IMPORTS) - imports), "stale KNOWN_IMPORTS entries"


def test_stage_packages_exist() -> None:
    """The scan covers real packages (a renamed stage would otherwise pass the scan vacuously)."""
    for pkg in STAGE_PACKAGES:
        assert importlib.util.find_spec(pkg) is not None, pkg
        assert any((ROOT / pkg).rglob("*.py")), pkg
