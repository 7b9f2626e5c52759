"""Walking one family's plan: model, export + parity gate, test set, throughput runs, the Ascend guide's flow,
the precision and throughput report, and the precision variants with their table."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.machine import cpu_has_native_bf16
from core.plan import DemoModel, Plan
from pipeline import corpora, demo
from pipeline.options import Options, env_args
from pipeline.steps import Runner

# A model trained for two epochs is a plumbing check: how far int8 moves its near-random outputs depends on the
# CPU's int8 kernels, so the quick run opens the lossy gate (the full run keeps the defaults).
QUICK_VARIANT_GATE = ("--min-argmax-agreement", "0", "--max-text-cer", "1")

# Row labels of the variants table, by backend and variant kind ("" is the exported fp32 model).
VARIANT_LABELS = {
    ("onnxruntime", ""): "ONNX Runtime fp32",
    ("onnxruntime", "fp16"): "ONNX Runtime fp16",
    ("onnxruntime", "int8-dynamic"): "ONNX Runtime int8 dynamic",
    ("onnxruntime", "int8-static"): "ONNX Runtime int8 static (QDQ)",
    ("onnxruntime", "fused"): "ONNX Runtime fp32 + transformer fusions",
    ("openvino", ""): "OpenVINO fp32",
    ("openvino", "int8-static"): "OpenVINO int8 static (QDQ)",
    ("openvino", "bf16"): "OpenVINO bf16 (precision hint, fp32 graph)",
}
# OpenVINO "variants" that are a precision the runtime applies to the fp32 graph, not a variant file: their
# runner options. bf16 runs only where the CPU computes it (core.machine.cpu_has_native_bf16).
OPENVINO_PRECISIONS = {"bf16": ("--ov-precision", "bf16")}


@dataclass
class Collected:
    """What the families' walks leave for the results README: report names, extra tables, training records."""

    names: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    trainings: list[Path] = field(default_factory=list)


@dataclass
class FamilyRun:
    """The paths one family's walk works with."""

    plan: Plan
    opts: Options
    model: str = ""
    export_dir: Path = Path()
    data: Path = Path()
    runs: Path = Path()
    candidates: list[str] = field(default_factory=list)

    @property
    def card(self) -> Path:
        return self.export_dir / "model.card.json"

    @property
    def onnx(self) -> Path:
        return self.export_dir / "model.onnx"

    def fmt(self, text: str) -> str:
        return text.format(soc=self.opts.soc_version, test_name=corpora.test_name(self.plan, self.opts),
                           first_bs=self.batch_sizes[0])

    @property
    def title(self) -> str:
        return self.fmt(self.plan.title)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        opt = self.plan.batch_sizes_option
        return tuple(getattr(self.opts, opt)) if opt else self.plan.batch_sizes

    def ray(self) -> list[str]:
        return self.opts.ray_args() if self.plan.ray else []

    def model_args(self, backend: str, onnx: Path | None = None) -> list[str]:
        """The runner's model options: the checkpoint and card for torch, the ONNX file otherwise."""
        if backend == "torch":
            return ["--card", str(self.card), "--checkpoint", self.model]
        return ["--model", str(onnx or self.onnx)]

    def run_dir(self, backend: str, bs: int, variant: str = "") -> Path:
        return self.runs / f"{backend}{'.' + variant if variant else ''}_bs{bs}"


def demo_model(runner: Runner, fr: FamilyRun, spec: DemoModel, collected: Collected, checkpoint: str | None = None,
               title: str = "") -> str:
    """The user's artefact named by the plan's option, or the demo one (trained here; cached)."""
    given = getattr(fr.opts, spec.option)
    if given:
        return str(given)
    opts = fr.opts
    out = opts.work / spec.path
    runner.step(f"{title or 'demo ' + fr.plan.family} (fixed seed; cached) -> {out}")
    options = spec.quick_train_args if opts.quick else (
        env_args(dict(os.environ if runner.env is None else runner.env), spec.train_args_env, spec.train_args)
        if spec.train_args_env else spec.train_args)
    demo.train(runner, fr.plan.family, corpora.train_source(fr.plan, opts), out, options,
               flags=spec.trainer_flags, checkpoint=checkpoint)
    if spec.train_record:
        record = opts.results / f"{fr.plan.family}_demo_training.json"
        runner.copy(opts.work / spec.train_record, record)
        collected.trainings.append(record)
    return str(out)


def export(runner: Runner, fr: FamilyRun) -> None:
    e = fr.plan.export
    runner.step(f"export {fr.plan.family} to ONNX + parity gate -> {fr.export_dir}")
    runner.run(runner.py("export", e.command, e.model_flag, fr.model, "--out", str(fr.export_dir), *e.extra,
                         "--threads", str(fr.opts.threads)))


def preprocess(runner: Runner, fr: FamilyRun, source: list[str], out: Path, *extra: str) -> None:
    runner.run(runner.py("preprocess", *fr.ray(), *source, "--card", str(fr.card), "--out", str(out), *extra))


def run(runner: Runner, fr: FamilyRun, backend: str, bs: int, variant: str = "", onnx: Path | None = None,
        extra: tuple[str, ...] = ()) -> Path:
    out = fr.run_dir(backend, bs, variant)
    runner.run(runner.py("runners", *fr.ray(), "--backend", backend, *fr.model_args(backend, onnx), *extra,
                         "--dataset", str(fr.data), "--out", str(out), "--batch-size", str(bs),
                         "--threads", str(fr.opts.threads), "--no-progress"))
    return out


def throughput(runner: Runner, fr: FamilyRun) -> list[Path]:
    """Every backend at every batch size; the first batch size is the accuracy candidate, the others padded ones."""
    runs: list[Path] = []
    first = fr.batch_sizes[0]
    for bs in fr.batch_sizes:
        for backend in fr.plan.backends:
            runner.step(f"{fr.title}: {backend} batch {bs}")
            runs.append(run(runner, fr, backend, bs))
        if bs == first:
            fr.candidates.append(f"ONNX Runtime fp32 (bs {bs})={fr.run_dir('onnxruntime', bs)}")
        else:
            fr.candidates.append(f"ONNX Runtime fp32 (padded bs {bs})={fr.run_dir('onnxruntime', bs)}")
            fr.candidates.append(f"PyTorch (padded bs {bs})={fr.run_dir('torch', bs)}")
    return runs


def guide_flow(runner: Runner, fr: FamilyRun) -> list[str]:
    """The Ascend guide's script per backend; a row for each run that produced a run dir (or always, for the
    script's default backend, which must run)."""
    g = fr.plan.guide
    assert g is not None
    opts = fr.opts
    common = [fr.plan.export.model_flag, fr.model, *corpora.guide_source(fr.plan, opts), *g.extra,
              "--soc-version", opts.soc_version, "--work", str(opts.work), "--threads", str(opts.threads)]
    rows = []
    for r in g.runs:
        runner.step(f"ModelZoo flow ({g.script}): {r.backend or 'default backend'}")
        out = fr.runs / r.run
        runner.run(["bash", g.script, *common, *(["--backend", r.backend] if r.backend else []),
                    *(["--if-available"] if r.if_available else []), "--run", str(out)])
        if not r.if_available or (out / "run.json").is_file():
            rows += ["--modelzoo", f"{fr.fmt(r.label)}={out}"]
    return rows


def report(runner: Runner, fr: FamilyRun, throughput_runs: list[Path], guide_rows: list[str]) -> None:
    plan, opts = fr.plan, fr.opts
    first = fr.batch_sizes[0]
    runner.step(f"postprocess: precision and throughput tables -> {opts.results}")
    mz = ["--modelzoo-dataset", str(opts.work / plan.guide.dataset)] if plan.guide else []
    runner.run(runner.py(
        "postprocess", "report", "--dataset", str(fr.data), "--card", str(fr.card),
        "--reference", f"PyTorch fp32 (reference, bs {first})={fr.run_dir('torch', first)}",
        *[a for c in fr.candidates for a in ("--candidate", c)], *guide_rows, *mz,
        "--throughput", *map(str, throughput_runs), "--out", str(opts.results), "--name", plan.report,
        "--title", fr.title))


def variants(runner: Runner, fr: FamilyRun) -> None:
    """fp16 / int8 variants gated against fp32; torch, onnxruntime and OpenVINO runs; the variants table."""
    v = fr.plan.variants
    assert v is not None
    opts = fr.opts
    source, why = corpora.calibration_source(fr.plan, opts)
    calib = fr.data
    if source is None:
        runner.note(why)
    else:
        calib = opts.work / v.calibration
        preprocess(runner, fr, source, calib, "--spread", str(v.calibration_utterances))
    runner.step(f"{fr.title}: {' / '.join(v.kinds)} variants (each gated against fp32 on {fr.data.name})")
    gate = QUICK_VARIANT_GATE if opts.quick else ()
    stem = str(fr.onnx)[:-len(".onnx")]
    budget = []
    if v.max_delta_wer is not None:
        if source is None:
            runner.note("no per-node int8 fallback: its sweep would choose nodes on the test set")
        else:
            budget = ["--max-delta-wer", f"{v.max_delta_wer:g}"]
    for kind in v.kinds:
        data = calib if kind == "int8-static" else fr.data
        runner.run(runner.py("export", "variant", "--model", str(fr.onnx), "--kind", kind, "--dataset", str(data),
                             "--threads", str(opts.threads), *gate, *(budget if kind == "int8-static" else ())))
    ort_variants = ("", *v.kinds)
    ov_variants = tuple("" if k == "fp32" else k for k in v.openvino)
    if "bf16" in ov_variants and not cpu_has_native_bf16():
        runner.note("OpenVINO bf16 not run: this CPU has neither avx512_bf16 nor AMX, where bf16 is emulated or "
                    "quietly run as fp32")
        ov_variants = tuple(k for k in ov_variants if k != "bf16")
    for bs in v.batch_sizes:
        run(runner, fr, "torch", bs)
        for kind in ort_variants:
            runner.step(f"{fr.title}: onnxruntime.{kind or 'fp32'} batch {bs}")
            run(runner, fr, "onnxruntime", bs, kind, Path(f"{stem}.{kind}.onnx") if kind else None)
        for kind in ov_variants:
            runner.step(f"{fr.title}: openvino.{kind or 'fp32'} batch {bs}")
            variant_file = kind and kind not in OPENVINO_PRECISIONS
            run(runner, fr, "openvino", bs, kind, Path(f"{stem}.{kind}.onnx") if variant_file else None,
                OPENVINO_PRECISIONS.get(kind, ()))

    def row(label: str, backend: str, kind: str = "") -> list[str]:
        return ["--row", f"{label}=" + ",".join(str(fr.run_dir(backend, bs, kind)) for bs in v.batch_sizes)]

    # The table's first row is its reference.
    rows = row("PyTorch fp32 (reference)", "torch")
    for backend, kinds in (("onnxruntime", ort_variants), ("openvino", ov_variants)):
        for kind in kinds:
            rows += row(VARIANT_LABELS[(backend, kind)], backend, kind)
    runner.run(runner.py("postprocess", "variants", "--dataset", str(fr.data), "--card", f"{stem}.card.json", *rows,
                         "--out", str(opts.results), "--name", fr.plan.report, "--title", fr.title))
