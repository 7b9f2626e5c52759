"""The split section of a plan: Head/Tail exports at each split point, the cloud server on loopback with edge
runs per codec (scored beside the whole model), codecs, per-stage timing, the planner, and the ResNet-50 table.

The stages here do not cache their outputs themselves, so each step is skipped when its output is newer than
what it is made from.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.plan import SplitSection
from pipeline import corpora
from pipeline.matrix import Collected, FamilyRun, demo_model, preprocess
from pipeline.steps import Runner, free_port, fresh

# Without a KLT fit the split rows fall back to the plain low-bit codec.
FALLBACK_CODEC = "q4-ans"

class SplitRun:
    def __init__(self, fr: FamilyRun, section: SplitSection) -> None:
        self.fr, self.s = fr, section
        self.dir = fr.opts.work / "split" / fr.plan.family
        own = [p for p in section.points if p.after is None]
        if len(own) != 1:
            raise ValueError(f"plan {fr.plan.family}: the split section needs exactly one point without 'after' "
                             "(the model's own Head/Tail)")
        self.own = self.dir / own[0].name
        self.autoencoder = ""
        self.klt_fitted = False

    @property
    def klt(self) -> Path:
        return self.own / "klt.json"

    def postfilters(self) -> dict[str, Path]:
        """The decoder-side post-filters trained beside klt.json, by coarseness (split fit-postfilter)."""
        if not self.s.postfilter_steps:
            return {}
        return {f"{c:g}": self.own / f"klt_postfilter_{c:g}x.onnx" for c in self.s.postfilter_coarseness}

    def learned(self) -> list[Path]:
        """The learned codec files beside the own cut that outputs measured with them depend on."""
        if not self.klt_fitted:
            return []
        return [self.klt, *self.postfilters().values()]

    @property
    def head(self) -> Path:
        return self.own / "head.onnx"

    @property
    def tail(self) -> Path:
        return self.own / "tail.onnx"

    def codecs(self) -> list[str]:
        chosen = getattr(self.fr.opts, self.s.codec_option)
        if chosen.startswith("klt") and not self.klt_fitted:
            chosen = FALLBACK_CODEC
        return ["fp32", chosen]

    def points(self) -> list[str]:
        return [a for p in self.s.points for a in ("--point", f"{p.name}={self.dir / p.name}")]

    def limit(self) -> list[str]:
        return ["--limit", str(self.s.quick_limit if self.fr.opts.quick else self.s.limit)]


def prepare(runner: Runner, fr: FamilyRun, collected: Collected) -> SplitRun:
    """The autoencoder (the user's or a demo one) and the Head/Tail exports at every split point."""
    assert fr.plan.split is not None
    sr = SplitRun(fr, fr.plan.split)
    sr.autoencoder = demo_model(runner, fr, sr.s.autoencoder, collected, checkpoint=fr.model,
                                title="its activation autoencoder (the Head's outputs on the train split)")
    opts = fr.opts
    for point in sr.s.points:
        out = sr.dir / point.name
        if fresh(out / "tail.onnx", Path(fr.model), Path(sr.autoencoder)):
            continue
        runner.step(f"split export {point.after or 'Head/Tail + autoencoder'} -> {out}")
        if point.after is None:
            cmd = ["--checkpoint", fr.model, "--autoencoder", sr.autoencoder]
        else:
            cmd = ["--family", fr.plan.family, "--checkpoint", fr.model, "--after", point.after]
        runner.run(runner.py("split", "export", *cmd, "--out", str(out), "--threads", str(opts.threads)))
    if sr.s.klt_utterances:
        fit_klt(runner, sr)
    return sr


def fit_klt(runner: Runner, sr: SplitRun) -> None:
    """The KLT codec of the own cut, fitted on training utterances and weighted by the Tail's Fisher information."""
    fr, opts = sr.fr, sr.fr.opts
    source, _ = corpora.calibration_source(fr.plan, opts)
    if source is None:
        runner.step(f"no training split to fit the KLT codec on (give LIBRISPEECH_CALIB): the split rows use "
                    f"{FALLBACK_CODEC} instead of klt-*")
        return
    data = opts.work / "data" / f"{fr.plan.report}_klt_fit"
    count = sr.s.quick_klt_utterances if opts.quick else sr.s.klt_utterances
    runner.step(f"training utterances for the KLT codec ({count}, spread over the split) -> {data}")
    preprocess(runner, fr, source, data, "--spread", str(count))
    sr.klt_fitted = True
    if not fresh(sr.klt, sr.head, Path(fr.model), data / "manifest.jsonl"):
        runner.step(f"split fit-klt: the boundary's KLT, weighted by the Tail's Fisher information -> {sr.klt}")
        runner.run(runner.py("split", "fit-klt", "--head", str(sr.head), "--dataset", str(data), "--checkpoint",
                             fr.model, "--out", str(sr.klt), "--no-progress"))
    steps = sr.s.quick_postfilter_steps if opts.quick else sr.s.postfilter_steps
    for coarseness, path in sr.postfilters().items():
        if not fresh(path, sr.klt, data / "manifest.jsonl"):
            runner.step(f"split fit-postfilter: the decoder-side filter of the {coarseness}x codecs -> {path}")
            runner.run(runner.py("split", "fit-postfilter", "--head", str(sr.head), "--dataset", str(data),
                                 "--learned", str(sr.own), "--coarseness", coarseness, "--steps", str(steps),
                                 "--no-progress"))


def edge_runs(runner: Runner, sr: SplitRun, collected: Collected) -> None:
    """Per codec: the Tail's outputs returned (a run dir, scored as a candidate) and the per-stage times (a table),
    against one server started only when some of them are due."""
    fr, opts = sr.fr, sr.fr.opts
    family = fr.plan.family
    manifest = fr.data / "manifest.jsonl"
    todo = []
    for codec in sr.codecs():
        outputs = fr.runs / f"edge_{codec}_outputs"
        if not fresh(outputs / "run.json", sr.tail, manifest, *sr.learned()):
            todo.append((codec, "outputs"))
        if not fresh(opts.results / f"{family}_timing_{codec}.json", sr.tail, manifest, *sr.learned()):
            todo.append((codec, "timing"))
        fr.candidates.append(f"Split Head -> gRPC -> Tail, {codec} boundary={outputs}")
        collected.tables.append(f"{family}_timing_{codec}")
    if not todo:
        return
    port = free_port()
    serve = runner.py("split", "serve", "--tail", str(sr.tail), "--autoencoder", str(sr.own), "--port", str(port),
                      "--threads", "1")
    with runner.background(serve, fr.runs / "serve.log", ready="listening on"):
        for codec, what in todo:
            out = fr.runs / f"edge_{codec}_{what}"
            edge = ["split", "edge", "--head", str(sr.head), "--server", f"127.0.0.1:{port}", "--dataset",
                    str(fr.data), "--codec", codec, "--autoencoder", str(sr.own)]
            if what == "outputs":
                runner.step(f"split edge -> server ({codec} boundary, outputs returned) -> {out}")
                runner.run(runner.py(*edge, "--return-output", "--tail-card", str(sr.own / "tail.card.json"),
                                     "--out", str(out), "--no-progress"))
            else:
                # Transcripts only, as a deployed edge asks.
                table = opts.results / f"{family}_timing_{codec}"
                runner.step(f"split edge per-stage timing ({codec} boundary) -> {table}.*")
                runner.run(runner.py(*edge, "--out", str(out), "--no-progress"))
                for ext in ("md", "csv", "json"):
                    runner.copy(out / f"timing.{ext}", Path(f"{table}.{ext}"))


def _planned(check: Path, profile: Path, max_delta_wer: float | None) -> bool:
    """The plan's check is newer than the profile and was made with this WER budget."""
    if not fresh(check, profile):
        return False
    try:
        return json.loads(check.read_text()).get("max_delta_wer") == max_delta_wer
    except (OSError, ValueError):
        return False


def tables(runner: Runner, sr: SplitRun, collected: Collected) -> None:
    """Codecs (bits per element vs dWER), the planner's profile, sweep and measured check, the ResNet-50 table."""
    fr, opts = sr.fr, sr.fr.opts
    family, results = fr.plan.family, opts.results
    manifest = fr.data / "manifest.jsonl"
    codecs = f"{family}_codecs"
    if not fresh(results / f"{codecs}.json", sr.tail, manifest, *sr.learned()):
        runner.step(f"split codecs: bits per element vs dWER -> {results / codecs}.*")
        runner.run(runner.py("split", "codecs", "--head", str(sr.head), "--tail", str(sr.tail), "--dataset",
                             str(fr.data), "--autoencoder", str(sr.own), "--out", str(results), "--name", codecs,
                             "--no-progress"))
    collected.tables.append(codecs)

    autoencoder = ["--autoencoder", f"{sr.own.name}={sr.own}"]
    profile = opts.work / "split" / f"{family}_profile.json"
    tails = [sr.dir / p.name / "tail.onnx" for p in sr.s.points]
    if not fresh(profile, *tails, manifest, *sr.learned()):
        runner.step(f"split profile: every point's edge/cloud latency and bytes per codec -> {profile}")
        runner.run(runner.py("split", "profile", *sr.points(), *autoencoder, "--full", str(fr.onnx),
                             "--dataset", str(fr.data), *sr.limit(), "--out", str(profile)))
    plan_name = f"{family}_plan"
    bandwidths = sr.s.quick_bandwidths if opts.quick else sr.s.bandwidths
    budget = [] if sr.s.max_delta_wer is None else ["--max-delta-wer", f"{sr.s.max_delta_wer:g}"]
    if not _planned(results / f"{plan_name}_check.json", profile, sr.s.max_delta_wer):
        runner.step(f"split plan: sweep over {bandwidths}, choice checked on a shaped link -> {results / plan_name}*")
        runner.run(runner.py("split", "plan", "--profile", str(profile), "--bandwidth", bandwidths, "--rtt",
                             sr.s.rtt, *budget, "--out", str(results), "--name", plan_name, "--measure", *sr.points(),
                             *autoencoder, "--full", str(fr.onnx), "--dataset", str(fr.data), *sr.limit()))
    collected.tables += [plan_name, f"{plan_name}_chosen", f"{plan_name}_measured", f"{plan_name}_check"]
    if sr.s.slow_edge_scale:
        scale = sr.s.slow_edge_scale
        slow = f"{plan_name}_edge{scale:g}x"
        if not _planned(results / f"{slow}_check.json", profile, sr.s.max_delta_wer):
            runner.step(f"split plan for an edge {scale:g}x slower (emulated), checked on a shaped link -> "
                        f"{results / slow}*")
            runner.run(runner.py("split", "plan", "--profile", str(profile), "--bandwidth", bandwidths, "--rtt",
                                 sr.s.rtt, *budget, "--edge-scale", f"{scale:g}", "--out", str(results), "--name", slow,
                                 "--measure", *sr.points(), *autoencoder, "--full", str(fr.onnx), "--dataset",
                                 str(fr.data), *sr.limit()))
        collected.tables += [slow, f"{slow}_chosen", f"{slow}_measured", f"{slow}_check"]

    if sr.s.resnet_table:
        if not fresh(results / f"{sr.s.resnet_table}.json", *map(Path, sr.s.resnet_sources)):
            runner.step("the cloud-edge seed's ResNet-50 partition table (a bare ONNX graph cut by split cut)")
            runner.run(runner.py("split", "resnet-table", "--out", str(results), "--work",
                                 str(opts.work / "split" / "resnet50"), "--threads", "1", "--no-progress",
                                 *(sr.s.quick_resnet_args if opts.quick else ())))
        collected.tables.append(sr.s.resnet_table)
