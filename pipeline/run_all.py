"""`run-all`: every family's plan in turn, the optional streaming section, and the results README."""
from __future__ import annotations

import importlib
from dataclasses import fields
from pathlib import Path

from core.plan import Plan
from pipeline import corpora, demo, matrix, split_section
from pipeline.matrix import Collected, FamilyRun
from pipeline.options import OptionError, Options
from pipeline.steps import Runner


def load_plan(family: str) -> Plan:
    """families/<family>/plan.py's PLAN."""
    try:
        module = importlib.import_module(f"families.{family}.plan")
    except ModuleNotFoundError:
        raise OptionError(f"--families: {family!r} has no run plan (families/{family}/plan.py)") from None
    plan = getattr(module, "PLAN", None)
    if not isinstance(plan, Plan):
        raise OptionError(f"families/{family}/plan.py: expected a PLAN of type core.plan.Plan")
    known = {f.name for f in fields(Options)}
    named = [plan.model.option, plan.batch_sizes_option,
             *([plan.split.autoencoder.option, plan.split.codec_option] if plan.split else [])]
    unknown = [n for n in named if n is not None and n not in known]
    if unknown:
        raise OptionError(f"families/{family}/plan.py names options {unknown} that run-all does not have; "
                          f"known: {sorted(known)}")
    return plan


def walk(runner: Runner, plan: Plan, opts: Options, collected: Collected) -> None:
    """One family: model, export, test set, throughput runs, guide flow, split section, report, variants."""
    fr = FamilyRun(plan=plan, opts=opts)
    fr.model = matrix.demo_model(runner, fr, plan.model, collected)
    fr.export_dir = opts.work / "export" / plan.family
    fr.data = opts.work / plan.test_set
    fr.runs = opts.work / "runs" / plan.family
    matrix.export(runner, fr)
    runner.step(f"preprocess {fr.title} test set -> {fr.data}")
    matrix.preprocess(runner, fr, corpora.test_source(plan, opts), fr.data)
    throughput_runs = matrix.throughput(runner, fr)
    guide_rows = matrix.guide_flow(runner, fr) if plan.guide else []
    split = None
    if plan.split:
        split = split_section.prepare(runner, fr, collected)
        split_section.edge_runs(runner, split, collected)
    matrix.report(runner, fr, throughput_runs, guide_rows)
    if split:
        split_section.tables(runner, split, collected)
    if plan.variants:
        matrix.variants(runner, fr)
    collected.names.append(plan.report)


def streaming(runner: Runner, opts: Options, demo_corpus: bool) -> None:
    runner.step(f"streaming section (scripts/streaming.sh) -> {opts.results}")
    args = ["--work", str(opts.work), "--results", str(opts.results), "--threads", str(opts.threads)]
    if opts.an4_root or demo_corpus:
        args += ["--an4-root", corpora.an4_root(opts)]
    runner.run(["bash", "scripts/streaming.sh", *args, *(["--quick"] if opts.quick else [])])


def run_all(opts: Options, runner: Runner) -> Collected:
    plans = [load_plan(f) for f in opts.families]
    collected = Collected()
    if not runner.dry_run:
        opts.work.mkdir(parents=True, exist_ok=True)
        opts.results.mkdir(parents=True, exist_ok=True)
    need_corpus = any(corpora.needs_demo_corpus(p, opts) for p in plans)
    if need_corpus:
        runner.step(f"demo corpus (espeak-ng, AN4 + LibriSpeech layouts) -> {corpora.demo_corpus(opts)}")
        demo.synth(runner, opts, corpora.demo_corpus(opts))
    for plan in plans:
        walk(runner, plan, opts, collected)
    if opts.streaming:
        streaming(runner, opts, need_corpus)
    runner.run(runner.py("postprocess", "readme", "--out", str(opts.results), "--names", *collected.names,
                         *collected.tables, *[a for t in collected.trainings for a in ("--training", str(t))]))
    return collected


def print_tables(opts: Options, plans: list[Plan]) -> None:
    for plan in plans:
        for table in plan.tables:
            path = Path(opts.results) / f"{plan.report}_{table}.md"
            if path.is_file():
                print(path.read_text(), end="")
