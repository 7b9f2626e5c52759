"""Where each corpus's test, training and calibration utterances come from: the user's paths or the demo corpus.

A plan names its corpus ("an4" or "librispeech"); this module turns that into the stage options.
"""
from __future__ import annotations

from pathlib import Path

from core.plan import Plan
from pipeline.options import Options


def demo_corpus(opts: Options) -> Path:
    return opts.work / "corpus"


def demo_an4(opts: Options) -> Path:
    return demo_corpus(opts) / "an4"


def librispeech_test(opts: Options) -> str:
    return opts.librispeech or str(demo_corpus(opts) / "LibriSpeech" / "test-demo")


def librispeech_train(opts: Options) -> str:
    return str(demo_corpus(opts) / "LibriSpeech" / "train-demo")


def an4_root(opts: Options) -> str:
    return opts.an4_root or str(demo_an4(opts))


def needs_demo_corpus(plan: Plan, opts: Options) -> bool:
    """The plan reads the demo corpus: for its test set, or to train a demo model or companion."""
    demo_models = [plan.model] + ([plan.split.autoencoder] if plan.split else [])
    trains = any(not getattr(opts, m.option) for m in demo_models)
    if plan.corpus == "an4":
        return (not opts.an4_root and not opts.an4_manifest) or (trains and not opts.an4_root)
    return not opts.librispeech or trains


def test_source(plan: Plan, opts: Options) -> list[str]:
    """preprocess options that select the test utterances."""
    if plan.corpus == "an4":
        return ["--manifest", opts.an4_manifest] if opts.an4_manifest else ["--an4-root", an4_root(opts), "--split", "test"]
    return ["--librispeech", librispeech_test(opts)]


def guide_source(plan: Plan, opts: Options) -> list[str]:
    """The same test utterances as the Ascend guide scripts take them."""
    if plan.corpus == "an4":
        return ["--manifest", opts.an4_manifest] if opts.an4_manifest else ["--an4-root", an4_root(opts)]
    return ["--librispeech", librispeech_test(opts)]


def train_source(plan: Plan, opts: Options) -> list[str]:
    """Trainer options that select the training utterances of a demo model."""
    if plan.corpus == "an4":
        return ["--an4-root", an4_root(opts)]
    return ["--librispeech", librispeech_train(opts)]


def calibration_source(plan: Plan, opts: Options) -> tuple[list[str] | None, str]:
    """preprocess options for the int8-static calibration utterances, or None (calibrate on the test set) and why."""
    if plan.corpus == "an4":
        if opts.an4_manifest:
            return None, "a manifest gives no training split; calibrating int8-static on the test data"
        return ["--an4-root", an4_root(opts), "--split", "train"], ""
    split = opts.librispeech_calib or ("" if opts.librispeech else librispeech_train(opts))
    if not split:
        return None, "no LIBRISPEECH_CALIB split given; calibrating int8-static on the test data"
    return ["--librispeech", split], ""


def test_name(plan: Plan, opts: Options) -> str:
    """The test split's folder name, for titles."""
    return "test" if plan.corpus == "an4" else Path(librispeech_test(opts)).name
