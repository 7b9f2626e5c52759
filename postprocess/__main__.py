"""python -m postprocess: decode runs, score them, and write the precision and throughput tables.

    python -m postprocess score  --run RUN --dataset DS --card CARD [--modelzoo]
    python -m postprocess report --dataset DS --card CARD --reference RUN --candidate RUN [...]
                                 --throughput RUN [...] --out results/ --name deepspeech2_an4
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli_types import out_dir
from core.fsio import OutDirError, describe_os_error
from core.guide import guide_profile

if TYPE_CHECKING:
    from core.model_card import ModelCard

log = logging.getLogger("postprocess")
# Commands that left this stage (issue 10): the benchmarks drive several stages, so they live in bench/.
MOVED = {"bench": "python -m bench", "bench-scale": "python -m bench scale"}


def _labelled(text: str) -> tuple[str, Path]:
    """'LABEL=RUN_DIR' or just 'RUN_DIR' (labelled by its backend)."""
    if "=" in text:
        label, path = text.split("=", 1)
        return label, Path(path)
    return "", Path(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m postprocess",
                                description="Greedy CTC decoding, corpus WER/CER with S/D/I, and the precision "
                                            "and throughput tables (Markdown, CSV, JSON, PNG).")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="decode one run dir and write scores.json + transcripts.csv into it")
    s.add_argument("--run", type=Path, required=True)
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--card", type=Path, required=True)
    s.add_argument("--modelzoo", action="store_true",
                   help="decode as the Ascend guide's postprocess does, by the decode rule of the card's guide "
                        "profile (e.g. floor(L/2) frames for DeepSpeech2), to reproduce its numbers")

    r = sub.add_parser("report", help="score runs and write the precision and throughput tables")
    r.add_argument("--dataset", type=Path, required=True)
    r.add_argument("--card", type=Path, required=True)
    r.add_argument("--reference", required=True, help="[LABEL=]RUN of the reference (PyTorch) run")
    r.add_argument("--candidate", action="append", default=[], help="[LABEL=]RUN to compare (repeatable)")
    r.add_argument("--modelzoo", metavar="[LABEL=]RUN", action="append", default=[],
                   help="a run over the --modelzoo dataset dir, scored as the Ascend guide's postprocess does "
                        "(repeatable: e.g. onnxruntime and msame on the same dataset)")
    r.add_argument("--modelzoo-dataset", type=Path, help="the --modelzoo dataset dir of that run")
    r.add_argument("--throughput", type=Path, nargs="*", default=[], help="run dirs for the throughput table")
    r.add_argument("--out", type=out_dir, default=Path("results"), help="folder for the tables (default: results)")
    r.add_argument("--name", required=True, help="file stem prefix, e.g. deepspeech2_an4")
    r.add_argument("--title", default=None, help="table title (default: from --name)")

    v = sub.add_parser("variants", help="the per-variant table (accuracy, size, seq/s per batch size) + plot",
                       description="One row per system: WER, CER, S/D/I, ΔWER against the first row (the "
                                   "reference), identical transcripts, model size, and seq/s at each batch size its runs "
                                   "were made with (read from their run.json); and a plot of WER against throughput.")
    v.add_argument("--dataset", type=Path, required=True)
    v.add_argument("--card", type=Path, required=True, help="the fp32 model's card (labels, decoding)")
    v.add_argument("--row", action="append", required=True, metavar="LABEL=RUN[,RUN...]",
                   help="a system: its runs at one or more batch sizes; the smallest batch's run is scored "
                        "(repeatable; first = reference)")
    v.add_argument("--out", type=out_dir, default=Path("results"), help="folder for the tables (default: results)")
    v.add_argument("--name", required=True, help="file stem prefix, e.g. deepspeech2_an4 (writes <name>_variants.*)")
    v.add_argument("--title", default=None)

    st = sub.add_parser("streaming", help="the streaming table: chunk size vs latency, chunk compute, RTF, WER + plot",
                        description="One row per run dir (LABEL=RUN, repeatable; first = the offline reference): "
                                    "latency from the streaming cards, first-partial latency, per-chunk compute "
                                    "p50/p90 and RTF from run.json, WER/CER scored with each run's own card.")
    st.add_argument("--dataset", type=Path, required=True)
    st.add_argument("--card", type=Path, required=True, help="card of the offline model (for runs without one)")
    st.add_argument("--row", action="append", required=True, metavar="LABEL=RUN", help="a run dir (repeatable)")
    st.add_argument("--out", type=Path, required=True, help="results folder")
    st.add_argument("--name", required=True, help="file stem, e.g. deepspeech2_uni")
    st.add_argument("--title", help="table title (default: the name)")
    m = sub.add_parser("readme", help="gather the tables of several reports into <out>/README.md")
    m.add_argument("--out", type=out_dir, default=Path("results"), help="folder for the tables (default: results)")
    m.add_argument("--names", nargs="+", default=[],
                   help="report names (the --name of each report) or table stems, added to those <out>/readme.json "
                        "lists from earlier calls")
    m.add_argument("--training", type=Path, action="append", default=[],
                   help="a demo model's training record (repeatable)")
    m.add_argument("--replace", action="store_true",
                   help="gather only what this call names (forget the reports earlier calls added)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MOVED:
        print(f"python -m postprocess {argv[0]} moved: use `{MOVED[argv[0]]}` (see --help there)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "readme":
        from postprocess.summary import write_results_readme

        try:
            log.info("wrote %s", write_results_readme(args.out, args.names, args.training, args.replace))
        except ValueError as exc:  # a corrupt readme.json names itself
            log.error("%s", exc)
            return 2
        return 0
    from core.card import CardError, read_card
    from core.dataset_dir import DatasetDir, DatasetDirError
    from core.run_dir import RunError

    try:
        card = read_card(args.card)
        dataset = DatasetDir.open(args.dataset)
        if args.command == "score":
            from postprocess.score import score_run

            res = score_run(args.run, dataset, card, modelzoo=args.modelzoo)
            extra = f", accuracy (1-CER) {1 - res['cer']:.4f}" if res["convention"] == "hf" else ""
            empty = f", {res['empty_references']} empty references" if res["empty_references"] else ""
            log.info("%s: WER %.3f%% CER %.3f%%%s (%d utterances%s, %s)", args.run, 100 * res["wer"],
                     100 * res["cer"], extra, res["utterances"], empty, res["convention"])
            return 0
        if args.command == "variants":
            return _variants(args, card, dataset)
        if args.command == "streaming":
            from postprocess.streaming_table import write_streaming_table

            for path in write_streaming_table(args.out, args.name, dataset, card, [_labelled(r) for r in args.row],
                                              args.title or args.name):
                log.info("wrote %s", path)
            return 0
        return _report(args, card, dataset)
    except (CardError, DatasetDirError, RunError, ValueError, OutDirError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:  # a full disk or a read-only folder found mid-write
        log.error("%s", describe_os_error(exc))
        return 2


def _variants(args: argparse.Namespace, card: ModelCard, dataset) -> int:
    from postprocess.plots import wer_vs_throughput_plot
    from postprocess.tables import CONVENTION_NOTES, context_of, machine_note, write_table
    from postprocess.variants_table import batch_sizes_of, graph_notes, parse_row, variant_rows

    rows_in = [parse_row(r) for r in args.row]
    rows = variant_rows(dataset, card, rows_in)
    ctx = context_of(rows_in[0][1][0], dataset, card)
    batches = ", ".join(map(str, batch_sizes_of(rows)))
    title = f"Variants: {args.title or args.name}"
    notes = [CONVENTION_NOTES.get(card.metrics, ""),
             "ΔWER and same transcripts are against the first row. Accuracy columns come from each row's run at "
             f"its smallest batch size; seq/s = utterances / summed model-execution time (warm-up excluded), at "
             f"batch {batches}.",
             "size MB: the file the runtime loaded (ONNX file; checkpoint or weights for PyTorch).",
             *graph_notes(rows_in, card), machine_note(ctx)]
    written = write_table(args.out, f"{args.name}_variants", title, rows, notes, ctx)
    written.append(wer_vs_throughput_plot(rows, args.out / f"{args.name}_variants.png", title))
    for path in written:
        log.info("wrote %s", path)
    return 0


def _report(args: argparse.Namespace, card: ModelCard, dataset) -> int:
    from postprocess.plots import throughput_plot
    from postprocess.score import final_frame_emissions, lengths_by_uid, output_diff, score_run
    from postprocess.tables import (CONVENTION_NOTES, context_of, machine_note, precision_rows, speaker_rows,
                                    throughput_rows, write_table)
    from core.dataset_dir import DatasetDir

    modelzoo_note = ""
    ref_label, ref_dir = _labelled(args.reference)
    ref_scores = score_run(ref_dir, dataset, card)
    reference = {"label": ref_label or f"{ref_scores['backend']} (reference)", "scores": ref_scores}
    lengths = lengths_by_uid(card, ref_dir, dataset)
    candidates = []
    for text in args.candidate:
        label, run_dir = _labelled(text)
        sc = score_run(run_dir, dataset, card)
        candidates.append({"label": label or sc["backend"], "scores": sc,
                           "diff": output_diff(run_dir, dataset, ref_dir, dataset, card, lengths)})
    if args.modelzoo and not args.modelzoo_dataset:
        raise ValueError("--modelzoo needs --modelzoo-dataset (the dataset dir those runs read)")
    for index, text in enumerate(args.modelzoo):
        label, run_dir = _labelled(text)
        mz = DatasetDir.open(args.modelzoo_dataset)
        sc = score_run(run_dir, mz, card, modelzoo=True)
        candidates.append({"label": label or f"{sc['backend']} (ModelZoo mode)", "scores": sc,
                           "diff": output_diff(run_dir, mz, ref_dir, dataset, card, lengths)})
        if index:
            continue
        own = score_run(run_dir, mz, card, modelzoo=False, write=False)
        guide = guide_profile(card)
        modelzoo_note = (f"ModelZoo row: {guide.get('description', 'the Ascend guide flow')}. Decoding the "
                         f"same run's valid output frames instead gives WER {100 * own['wer']:.2f}% / CER "
                         f"{100 * own['cer']:.2f}%.")
        rule = guide["decode_frames"]
        if rule["from"] == "lengths_input" and rule["divide"] > 1:  # a rule that can cut off the last frame
            last = final_frame_emissions(run_dir, mz, card)
            modelzoo_note += (f" The difference is the final output frame, dropped when L is not a multiple of "
                              f"{rule['divide']}, in which this model puts a non-blank label for {last} of "
                              f"{len(mz.samples)} utterances.")
    ctx = context_of(ref_dir, dataset, card)
    title = args.title or args.name
    convention = card.metrics
    notes = [
        CONVENTION_NOTES.get(convention, convention),
        "ΔWER is in absolute percentage points against the reference row; max |Δ output| is the largest "
        f"difference of the model's {card.scores_output.name} "
        "output over every valid frame; argmax agreement is the share of frames whose best label is the same.",
        f"Data: {len(dataset.samples)} utterances from {dataset.header.get('source', {}).get('kind')} "
        f"({dataset.path.name}); greedy CTC decoding.",
        machine_note(ctx),
    ]
    if ref_scores.get("empty_references"):
        notes.append(f"{ref_scores['empty_references']} of {ref_scores['utterances']} utterances have an empty "
                     "reference: their hypothesis words count as insertions against no reference words.")
    if modelzoo_note:
        notes.insert(2, modelzoo_note)
    if card.parity is not None and card.parity.padding_invariant is False:
        notes.insert(2, f"Padded batches: {card.padding or 'padding changes this model outputs'}; a row padded "
                        "in a batch therefore differs from the same utterance at batch 1, and the padded-batch rows "
                        "show by how much.")
    written = write_table(args.out, f"{args.name}_precision", f"Precision: {title}",
                          precision_rows(reference, candidates), notes, ctx)
    written += write_table(args.out, f"{args.name}_speakers", f"Per speaker: {title}, {reference['label']}",
                           speaker_rows(ref_dir, dataset, convention),
                           ["Worst first. " + CONVENTION_NOTES.get(convention, convention)], ctx)
    if args.throughput:
        rows = throughput_rows(args.throughput)
        tnotes = ["seq/s = utterances / summed model-execution time (batch assembly and file I/O excluded; "
                  "warm-up batches excluded); batch latency is per batch; RTF = execution time / audio duration.",
                  "seq/s is what the Ascend ModelZoo guides call samples/s (one sample = one utterance, not one "
                  "audio sample).",
                  "Batches are formed after sorting by length, so padding is small.", machine_note(ctx)]
        written += write_table(args.out, f"{args.name}_throughput", f"Throughput: {title}", rows, tnotes, ctx)
        written.append(throughput_plot(rows, args.out / f"{args.name}_throughput.png", f"Throughput: {title}"))
    for path in written:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
