"""`python -m split export`: cut a model into Head and Tail ONNX graphs, each gated, and gate their composition.

Every part goes through the export stage's pipeline (ONNX export, onnxoptimizer, its own parity gate
against its PyTorch part, a card). On top of that the composition is checked: ONNX Runtime runs
head.onnx then tail.onnx on the whole model's sweep (batch 1 at every length, a padded batch, and the
same batch reordered with a duplicate) and must match the whole PyTorch model at the same batch; with
an autoencoder, head -> ae_encoder -> ae_decoder -> tail must match the PyTorch chain. The report goes
into every card under `split_parity`. Parts are written into a temporary folder and moved into --out
only when every gate has passed, cards before models.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from core.family import Family, resolve
from core.model_card import ModelCard
from families.registry import family_names, get_family

if TYPE_CHECKING:  # torch is imported where it runs, so that `python -m split --help` does not load it
    import torch

log = logging.getLogger("split")

HELP = "export Head and Tail (and the autoencoder halves) to ONNX, gated against the whole model"


class SplitExportError(RuntimeError):
    """A gate failed; carries the report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def composition_cases(lengths: list[int]) -> list[list[int]]:
    """The parity gate's sweep: each length alone, all in one padded batch, reordered with a duplicate."""
    shuffled = lengths[1:] + lengths[:1] + [lengths[len(lengths) // 2]]
    return [[n] for n in lengths] + [list(lengths), shuffled]


def check_composition(chain: list[Path], reference: Callable[[torch.Tensor], torch.Tensor],
                      make_inputs: Callable[[list[int]], dict[str, torch.Tensor]], lengths: list[int],
                      frames_for: Callable[[int], int], *, atol: float, rtol: float,
                      threads: int = 0) -> dict[str, Any]:
    """Run the ONNX graphs in `chain` one after the other (each one's outputs feed the next one's inputs,
    in order) and compare the last output with `reference` on each row's valid frames."""
    import torch

    from core.ort_session import create_session

    sessions = [create_session(p, threads=threads) for p in chain]
    cases: list[dict[str, Any]] = []
    failures: list[str] = []
    worst_abs = worst_rel = 0.0
    for lens in composition_cases(lengths):
        inputs = make_inputs(lens)
        with torch.inference_mode():
            ref = reference(*inputs.values()).numpy()
        values = [v.numpy() for v in inputs.values()]
        for sess in sessions:  # positional hand-over: a part's outputs are the next part's inputs
            values = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], values)))
        got = values[0]
        max_abs = max_rel = 0.0
        bad = 0
        for row, n in enumerate(lens):
            valid = frames_for(n)
            g = got[row, :valid].astype(np.float64)
            r = ref[row, :valid].astype(np.float64)
            if g.shape != r.shape:
                failures.append(f"lengths {lens} row {row}: shape {g.shape} != reference {r.shape}")
                continue
            if not np.isfinite(g).all():
                failures.append(f"lengths {lens} row {row}: non-finite values in the ONNX chain's output")
                continue
            err = np.abs(g - r)
            max_abs = max(max_abs, float(err.max(initial=0.0)))
            big = np.abs(r) >= 1e-3
            if big.any():
                max_rel = max(max_rel, float((err[big] / np.abs(r[big])).max()))
            bad += int((err > atol + rtol * np.abs(r)).sum())
        if bad:
            failures.append(f"lengths {lens}: {bad} values beyond atol {atol} rtol {rtol} (max abs {max_abs:.3g})")
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        cases.append({"lengths": lens, "max_abs": max_abs, "max_rel": max_rel, "mismatched": bad})
    return {"chain": [p.name for p in chain], "passed": not failures, "atol": atol, "rtol": rtol,
            "max_abs": worst_abs, "max_rel": worst_rel, "cases": cases, "failures": failures,
            "reference": "the whole PyTorch model (eval) at the same batch"}


def _export_part(model: Any, tmp: Path, name: str, threads: int, optimize_graph: bool) -> ModelCard:
    from core.gated_export import export_family

    card = export_family(model, tmp, name=name, optimize_graph=optimize_graph, options={"split_part": name},
                         threads=threads)
    log.info("%s.onnx: parity passed (%s)", name,
             ", ".join(f"{k} max abs {v['max_abs']:.2e}" for k, v in (card.parity.outputs or {}).items()))
    return card


def export_native_split(family: Family, checkpoint: Path, out: Path, *, autoencoder: Path | None = None,
                        options: dict[str, Any] | None = None, threads: int = 0,
                        optimize_graph: bool = True) -> dict[str, ModelCard]:
    """The family's own cut (its Family.split): every part as <name>.onnx with its card in `out`, each
    gated, and every chain of parts gated against its PyTorch reference."""
    from core.card import card_path_for, write_card

    split = resolve(family.split).split_recipe(checkpoint, autoencoder=autoencoder, **(options or {}))
    parts = split.parts
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".split-") as tmp_name:
        tmp = Path(tmp_name)
        cards = {name: _export_part(part, tmp, name, threads, optimize_graph) for name, part in parts.items()}
        reports = {chain: check_composition([tmp / f"{n}.onnx" for n in names], reference, split.make_inputs,
                                            split.parity_lengths, split.frames_for, atol=split.atol,
                                            rtol=split.rtol, threads=threads)
                   for chain, (names, reference) in split.chains.items()}
        failed = {k: r for k, r in reports.items() if not r["passed"]}
        if failed:
            raise SplitExportError("split parity FAILED:\n  " + "\n  ".join(
                f"{k}: {f}" for k, r in failed.items() for f in r["failures"]), reports)
        for name, card in list(cards.items()):
            split = {**(card.split or {}), "files": sorted(f"{n}.onnx" for n in parts)}
            cards[name] = card = card.replace(split_parity=reports, split=split)
            write_card(card, card_path_for(tmp / f"{name}.onnx"))
        for name in parts:  # cards first: never a model file without its card
            shutil.move(str(card_path_for(tmp / f"{name}.onnx")), str(card_path_for(out / f"{name}.onnx")))
        for name in parts:
            shutil.move(str(tmp / f"{name}.onnx"), str(out / f"{name}.onnx"))
    return cards


def export_family_cut(family: str, checkpoint: Path, out: Path, after: str, *, threads: int = 0,
                      optimize_graph: bool = True) -> tuple[ModelCard, ModelCard]:
    """Any family cut after a module: export the whole model (its own parity gate vs PyTorch), cut the graph
    at the module's boundary, and check head -> tail against the whole graph on the family's parity sweep
    (each length at batch 1, the padded batch, the reordered batch)."""
    import onnx

    from core.gated_export import export_family
    from split.cut_graph import derive_cards, write_parts
    from split.onnx_cut import compare_chain, cut, module_boundary, save

    model = get_family(family).recipe_module().load(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".split-") as tmp_name:
        tmp = Path(tmp_name)
        card = export_family(model, tmp, name="model", optimize_graph=optimize_graph,
                             options={"split_after": after}, threads=threads)
        proto = onnx.load(str(tmp / "model.onnx"))
        result = cut(proto, module_boundary(proto, after))
        save(result.head, tmp / "head.onnx")
        save(result.tail, tmp / "tail.onnx")
        static = model.inputs[0].shape[0]
        sweep = [[n] * static for n in model.parity_lengths] if isinstance(static, int) else \
            composition_cases(model.parity_lengths)
        cases = [{k: v.numpy() for k, v in model.make_inputs(lens, None).items()} for lens in sweep]
        parity = compare_chain(tmp / "model.onnx", tmp / "head.onnx", tmp / "tail.onnx", cases, threads=threads)
        parity["sweep"] = sweep
        if not parity["passed"]:
            raise SplitExportError("head -> tail does not reproduce the whole model:\n  " +
                                   "\n  ".join(parity["failures"]), parity)
        cards = derive_cards(card, result, parity, {"family": family, "after": after})
        write_parts(out, result, cards, {})
    return cards


def add_arguments(p: argparse.ArgumentParser) -> None:
    native = [get_family(name) for name in family_names() if get_family(name).split is not None]
    p.add_argument("--family", default=native[0].name if native else None, required=not native,
                   choices=sorted(family_names()),
                   help="model family (default split_asr: its own Head/Tail cut after fully_connected)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="the family's artifact: split_asr model.pth, deepspeech2 .ckpt, wav2vec2 model directory")
    p.add_argument("--after", metavar="LAYER",
                   help="cut after this module (top-level name, or e.g. rnns.1); required for families other than "
                        "split_asr, where it replaces the Head/Tail cut")
    p.add_argument("--autoencoder", type=Path, help="autoencoder.pth: also write ae_encoder.onnx and ae_decoder.onnx")
    p.add_argument("--out", type=Path, required=True, help="output folder for head.onnx, tail.onnx and their cards")
    p.add_argument("--no-optimize", action="store_true", help="skip onnxoptimizer")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for the gates (0 = auto)")
    for family in native:  # the own cut takes the family's load options (split_asr: hyper-parameter overrides)
        resolve(family.export.options).add_arguments(p)


def _gated(export: Callable[[], Any]) -> tuple[Any, int]:
    """Run an export; a refused input is exit 2, a failed gate exit 3 (the gate has logged its numbers)."""
    from core.parity import ParityError

    try:
        return export(), 0
    except ValueError as exc:  # CheckpointError, ModelDirError, CutError: the message names the problem
        log.error("%s", exc)
        return None, 2
    except ParityError:
        return None, 3
    except SplitExportError as exc:
        log.error("%s", exc)
        return None, 3


def _main_family_cut(args: argparse.Namespace) -> int:
    if not args.after:
        log.error("--family %s needs --after LAYER (a top-level module of the model)", args.family)
        return 2
    if args.autoencoder:
        log.error("--autoencoder goes with the split_asr Head/Tail cut (no --after)")
        return 2
    result, code = _gated(lambda: export_family_cut(args.family, args.checkpoint, args.out, args.after,
                                                    threads=args.threads, optimize_graph=not args.no_optimize))
    if code:
        return code
    head, _ = result
    log.info("wrote head.onnx and tail.onnx into %s; boundary %s; tail also takes %s", args.out,
             [(b["name"], b["shape"]) for b in head.split["boundary"]], head.split["tail_graph_inputs"])
    return 0


def main(args: argparse.Namespace) -> int:
    family = get_family(args.family)
    if family.split is None or args.after:
        return _main_family_cut(args)
    options = resolve(family.export.options).load_options(args)
    cards, code = _gated(lambda: export_native_split(family, args.checkpoint, args.out, autoencoder=args.autoencoder,
                                                     options=options, threads=args.threads,
                                                     optimize_graph=not args.no_optimize))
    if code:
        return code
    boundary = cards["head"].split["boundary"]
    log.info("wrote %s into %s; boundary %s %s", ", ".join(f"{n}.onnx" for n in cards), args.out, boundary["name"],
             boundary["shape"])
    for name, rep in cards["head"].split_parity.items():
        log.info("%s vs the whole model: max abs %.2e over %d cases", name, rep["max_abs"], len(rep["cases"]))
    return 0
