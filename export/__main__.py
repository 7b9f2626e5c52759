"""python -m export: load a real checkpoint, export it to ONNX, optimise, gate on parity, write the card."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from core.card import CardError, ModelCard, card_path_for, load_model_and_card, read_card
from core.cli_types import out_dir, positive_int, thread_count
from core.dataset_dir import DatasetDir, DatasetDirError
from core.family import resolve
from core.fsio import describe_os_error
from export.atc import AtcError, AtcOptions, convert, input_shapes, simplify
from families.registry import family_names, get_family

log = logging.getLogger("export")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=out_dir, required=True, help="output folder for <name>.onnx and <name>.card.json")
    p.add_argument("--name", default="model", help="file stem of the exported model (default: model)")
    p.add_argument("--no-optimize", action="store_true", help="skip onnxoptimizer (the card records it)")
    p.add_argument("--threads", type=thread_count, default=0,
                   help="onnxruntime threads for the parity gate (0 = auto)")
    p.add_argument("--force", action="store_true", help="re-export even when an up-to-date export exists")


def _onnx_in(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="the exported fp32 .onnx (its card beside it)")
    p.add_argument("--card", type=Path, help="model card, if not beside --model")


def _export(args: argparse.Namespace, family: str, source: Path, what: str, load_kwargs: dict) -> int:
    """Shared flow of every family: skip if up to date, load, export, gate, write the card."""
    from core.parity import ParityError
    from core.gated_export import export_family, up_to_date
    from core.recipe import NonFiniteWeightsError

    torchscript = bool(getattr(args, "torchscript", False))
    options = {**load_kwargs, "optimize": not args.no_optimize, "torchscript": torchscript}
    onnx_path = args.out / f"{args.name}.onnx"
    if not source.exists():
        log.error("%s not found: %s", what, source)
        return 2
    module = get_family(family).recipe_module()
    try:
        model = module.load(source, **load_kwargs)
    except ValueError as exc:  # CheckpointError, ModelDirError: the message names the file
        log.error("%s", exc)
        return 2
    if not args.force and up_to_date(onnx_path, model.source["sha256"], options):
        log.info("%s is up to date (same source and options, parity passed); --force to redo", onnx_path)
        return 0
    log.info("loaded %s (%s, %d parameters)", source, family, model.card_facts["architecture"]["parameters"])
    try:
        card = export_family(model, args.out, name=args.name, optimize_graph=not args.no_optimize,
                             options=options, threads=args.threads, torchscript=torchscript)
    except ParityError:
        return 3
    except NonFiniteWeightsError as exc:
        log.error("%s", exc)
        return 2
    par = card.parity.outputs or {}
    opt = card.optimization or {}
    log.info("wrote %s and %s", onnx_path, card_path_for(onnx_path))
    log.info("parity passed: %s", ", ".join(f"{k} max abs {v['max_abs']:.2e}" for k, v in par.items()))
    if opt.get("applied"):
        log.info("onnxoptimizer: %d -> %d nodes", opt["nodes_before"], opt["nodes_after"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`python -m export <family command>`: the family's artifact through the shared flow."""
    family = get_family(args.family)
    source = Path(getattr(args, family.export.artifact_option.replace("-", "_")))
    if family.streaming is not None and (args.streaming or args.chunk_frames is not None):
        from export.streaming_export import streaming_cli

        return streaming_cli(args, family.name, source)
    options = resolve(family.export.options)
    rc = _export(args, family.name, source, family.export.artifact_what, options.load_options(args))
    after_export = getattr(options, "after_export", None)
    if rc == 0 and after_export is not None:
        after_export(args, log)
    return rc


def _add_family_commands(sub: Any) -> None:
    """One subcommand per registered family, as its Family.export declares it."""
    for family in map(get_family, family_names()):
        spec = family.export
        p = sub.add_parser(spec.command, help=spec.help, description=spec.description)
        p.add_argument(f"--{spec.artifact_option}", required=True, help=spec.artifact_help)
        resolve(spec.options).add_arguments(p)
        if family.streaming is not None:
            p.add_argument("--streaming", action="store_true",
                           help="export the chunk-by-chunk graph of a checkpoint that has a streaming form instead: "
                                "its caches are inputs and outputs (docs/streaming.md); needs --chunk-frames")
            p.add_argument("--chunk-frames", type=int, metavar="N",
                           help="--streaming: feature frames per chunk, fixed in the graph")
        _common(p)
        p.set_defaults(func=cmd_export, family=family.name)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers, e.g. 1,4,8") from None


def _profiles(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(b), int(n)) for b, n in (p.split("x") for p in text.split(",") if p)]
    except ValueError:
        raise argparse.ArgumentTypeError("expected BATCHxLENGTH profiles, e.g. 1x621,8x621") from None


def cmd_atc(args: argparse.Namespace) -> int:
    opts = AtcOptions(soc_version=args.soc_version, batch=args.batch_size, length=args.length,
                      dynamic_batch=args.dynamic_batch or [], dynamic_dims=args.dynamic_dims or [],
                      input_format=args.input_format, log_level=args.log, precision_mode=args.precision_mode,
                      op_precision_mode=args.op_precision_mode, extra=args.atc_arg or [])
    try:
        _, card = load_model_and_card(args.model, args.card)
        onnx_path = args.model
        name = args.name or f"{args.model.stem}_{args.soc_version}"
        if args.simplify:
            onnx_path = simplify(args.model, card, input_shapes(card, opts), args.out / f"{name}.slim.onnx")
            log.info("simplified with onnxslim -> %s", onnx_path)
        om, ran = convert(onnx_path, card, args.out, name, opts)
    except (AtcError, CardError) as exc:
        log.error("%s", exc)
        return 2
    if ran:
        log.info("wrote %s and its card %s", om, card_path_for(om))
    return 0


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def cmd_variant(args: argparse.Namespace) -> int:
    from export.streaming_quant import streaming_variant_cli

    streaming = streaming_variant_cli(args)  # a streaming card: int8-static calibrated with its caches
    if streaming is not None:
        return streaming
    from export.variants import VariantError, VariantOptions, make_variant

    opts = VariantOptions(kind=args.kind, op_types=args.op_types, exclude_nodes=args.exclude_nodes or [],
                          per_channel=args.per_channel, calibration=args.calibration,
                          calibration_samples=args.calibration_samples, parity_samples=args.parity_samples,
                          min_argmax_agreement=args.min_argmax_agreement, max_text_cer=args.max_text_cer,
                          keep_io_types=not args.fp16_io, threads=args.threads,
                          max_delta_wer=args.max_delta_wer, sweep_samples=args.sweep_samples)
    try:
        _, card = load_model_and_card(args.model, args.card)
        if card.precision_name != "fp32":
            raise CardError(f"{args.model} is already a {card.precision} variant; make variants from the fp32 export")
        name = args.name or f"{args.model.stem}.{args.kind}"
        target = (args.out or args.model.parent) / f"{name}.onnx"
        if target.is_file() and not args.force and _variant_up_to_date(target, card, opts, args.dataset):
            log.info("%s is up to date (same fp32 model, options and dataset); --force to redo", target)
            return 0
        dataset = DatasetDir.open(args.dataset)
        path, out = make_variant(args.model, card, opts, dataset, args.out, args.name)
    except VariantError as exc:
        log.error("%s", exc)
        if exc.report:
            log.error("gate report: %s", {k: exc.report[k] for k in ("argmax_agreement", "text_cer_vs_fp32",
                                                                      "identical_transcripts", "thresholds")})
        return 3 if exc.report else 2
    except (CardError, DatasetDirError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    par, var = out.parity.to_dict(), out.variant
    log.info("wrote %s (%.1f MB, fp32 %.1f MB) and its card", path, var["size_bytes"] / 1e6,
             var["fp32_size_bytes"] / 1e6)
    log.info("lossy gate passed on %d samples: argmax agreement %.4f, transcripts identical %s, CER vs fp32 %.4f",
             par["samples"], par["argmax_agreement"], par["identical_transcripts"], par["text_cer_vs_fp32"])
    fallback = var.get("fallback")
    if fallback:
        log.info("fallback (ΔWER budget %g on %d utterances): all quantised ΔWER %.3f; %d of %d quantisable nodes "
                 "kept fp32: %s", fallback["budget_delta_wer"], fallback["samples"],
                 fallback["all_quantised"]["delta_wer"], len(fallback["excluded"]), fallback["candidates"],
                 ", ".join(fallback["excluded"]) or "none")
    missing = out.graph["expected_fusions_missing"]
    if missing:
        log.info("expected fusions that onnxruntime did not apply: %s", ", ".join(missing))
    return 0


def _variant_up_to_date(target: Path, card: ModelCard, opts, dataset: Path) -> bool:
    from dataclasses import asdict

    from core.recipe import sha256_file

    try:
        old = read_card(card_path_for(target))
    except ValueError:
        return False
    return (old.variant is not None and old.variant.get("from_sha256") == card.onnx_sha256
            and old.variant_options == asdict(opts) | {"dataset": str(Path(dataset).resolve())}
            and old.onnx_sha256 == sha256_file(target))


def cmd_train_moved(args: argparse.Namespace) -> int:
    print("python -m export train has moved: use python -m demo train FAMILY (same options)", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a speech model to ONNX with dynamic batch/time axes, optimise it with onnxoptimizer, "
                    "check it against PyTorch over batch sizes and lengths (the parity gate), and write a model "
                    "card beside it. Nothing is written as a usable model unless the gate passes.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_family_commands(sub)

    a = sub.add_parser("atc", help="the Ascend atc command for an exported model (runs it if atc is installed)",
                       description="Build the atc (ONNX -> .om) command from the model card: framework 5, "
                                   "input_format, input_shape of every input at the chosen static shape, or dynamic "
                                   "batch / dims profiles, soc_version, log level. Runs atc when it is on PATH; "
                                   "otherwise writes <name>.atc.sh to run on a machine with the CANN toolkit. "
                                   "Either way <name>.card.json is written for the .om, so the msame and "
                                   "ais_bench runners find it.")
    _onnx_in(a)
    a.add_argument("--out", type=out_dir, required=True, help="folder for <name>.om, its card and the atc script")
    a.add_argument("--name", help="OM file stem (default: <onnx stem>_<soc version>)")
    a.add_argument("--soc-version", default="Ascend310P3",
                   help="\"Ascend\" + the chip name `npu-smi info` shows: Ascend310, Ascend310P3 (default), "
                        "Ascend310B1, Ascend910B3, ... (a name not known here is passed to atc with a warning)")
    a.add_argument("--batch-size", type=positive_int, help="static batch (default: the card's static batch, else 1)")
    a.add_argument("--length", type=positive_int, help="static time length: frames for DeepSpeech2 (621 in the guide), "
                                              "samples for wav2vec2 (100000); default: the card's static length")
    a.add_argument("--dynamic-batch", type=_int_list, metavar="1,4,8", help="atc --dynamic_batch_size profiles")
    a.add_argument("--dynamic-dims", type=_profiles, metavar="1x621,8x621",
                   help="atc --dynamic_dims profiles of batch x length (input_format becomes ND)")
    a.add_argument("--input-format", choices=["NCHW", "ND"], help="default: NCHW for 4-D inputs, else ND")
    a.add_argument("--log", default="error", help="atc --log level (debug, info, warning, error, null)")
    a.add_argument("--precision-mode", help="atc --precision_mode, e.g. allow_fp32_to_fp16, force_fp32")
    a.add_argument("--op-precision-mode", type=Path, help="atc --op_precision_mode .ini (the wav2vec2 guide's Gelu)")
    a.add_argument("--simplify", action="store_true", help="fold the graph with onnxslim at the static shape first")
    a.add_argument("--atc-arg", action="append", metavar="--FLAG=VALUE", help="any further atc flag (repeatable)")
    a.set_defaults(func=cmd_atc)

    v = sub.add_parser("variant", help="an fp16 / int8-dynamic / int8-static / fused variant of an fp32 export, gated",
                       description="Make a variant of an exported fp32 model: fp16 (onnxruntime's float16 "
                                   "converter, inputs/outputs kept fp32), int8-dynamic (quantize_dynamic), "
                                   "int8-static (QDQ, calibrated on a dataset dir) or fused (onnxruntime's offline "
                                   "transformer fusions, onnxruntime only). The variant is compared with "
                                   "the fp32 graph on real inputs from --dataset (argmax agreement and decoded "
                                   "text) and written as <stem>.<kind>.onnx with its card only if it passes.")
    _onnx_in(v)
    v.add_argument("--kind", required=True, choices=["fp16", "int8-dynamic", "int8-static", "fused"],
                   help="fused = onnxruntime's offline transformer fusions, fp32 (runs on onnxruntime only)")
    v.add_argument("--dataset", type=Path, required=True,
                   help="dataset dir for the parity gate (and for calibration of int8-static)")
    v.add_argument("--out", type=out_dir, help="output folder (default: beside --model)")
    v.add_argument("--name", help="file stem (default: <model stem>.<kind>)")
    v.add_argument("--op-types", type=_names, metavar="A,B", help="op types to quantise (default: the family's)")
    v.add_argument("--exclude-nodes", type=_names, metavar="N1,N2", help="node names to keep in fp32")
    v.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    v.add_argument("--calibration", default="MinMax", choices=["MinMax", "Entropy", "Percentile"],
                   help="int8-static calibration method (default MinMax)")
    v.add_argument("--calibration-samples", type=positive_int, default=64, help="int8-static: samples to calibrate on")
    v.add_argument("--parity-samples", type=positive_int, default=32, help="samples the lossy gate compares (default 32)")
    v.add_argument("--min-argmax-agreement", type=float, default=0.97,
                   help="gate: share of valid frames whose argmax matches fp32 (default 0.97)")
    v.add_argument("--max-text-cer", type=float, default=0.02,
                   help="gate: CER of the variant's transcripts against fp32's (default 0.02)")
    v.add_argument("--max-delta-wer", type=float, metavar="POINTS",
                   help="int8 kinds: ΔWER budget in WER points on --dataset. Measures the whole variant; over "
                        "budget, ranks the quantisable nodes by a sensitivity sweep and keeps the fewest most "
                        "sensitive ones in fp32 that meet it (the sweep goes into the card). Give calibration "
                        "utterances, not the test set")
    v.add_argument("--sweep-samples", type=positive_int, default=64,
                   help="--max-delta-wer: utterances the sweep measures (default 64)")
    v.add_argument("--fp16-io", action="store_true", help="fp16: make inputs/outputs fp16 too")
    v.add_argument("--threads", type=thread_count, default=0, help="onnxruntime threads for the gate")
    v.add_argument("--force", action="store_true", help="redo even when an up-to-date variant exists")
    v.set_defaults(func=cmd_variant)

    t = sub.add_parser("train", help="moved: the demo trainers are `python -m demo train FAMILY`",
                       description="Moved: `python -m demo train FAMILY` trains the demo models (same options).")
    t.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_train_moved)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:  # a full disk or a read-only folder found mid-write
        log.error("%s", describe_os_error(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
