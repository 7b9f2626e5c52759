"""python -m preprocess: audio + transcripts -> a dataset dir of .bin inputs and a manifest.

    python -m preprocess --card CARD --out DIR --an4-root ROOT [--split test]
    python -m preprocess --card CARD --out DIR --manifest an4_test_manifest.json
    python -m preprocess --card CARD --out DIR --librispeech LibriSpeech/test-clean
    python -m preprocess --card CARD --out DIR --librispeech LibriSpeech --split test-clean
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.cli_types import io_threads, out_dir, positive_int
from core.corpora import DatasetError, read_an4_raw, read_ds_manifest, read_librispeech, spread_evenly
from core.fsio import OutDirError, describe_os_error
from core.guide import guide_batch_size, guide_profile
from core.ray_cluster import ClusterError, add_ray_arguments

if TYPE_CHECKING:
    from core.model_card import ModelCard

log = logging.getLogger("preprocess")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Read a speech test set and write the model's inputs as raw .bin tensors (one folder per "
                    "model input, as msame/ais_bench read them) plus manifest.jsonl, using the feature "
                    "configuration in the model card. Rerunning the same command resumes an interrupted run. "
                    "The demo corpus generator is `python -m demo synth`.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--an4-root", type=Path, help="AN4 raw release (the an4/ folder or its parent)")
    src.add_argument("--manifest", type=Path, help="deepspeech.pytorch JSON manifest (root_path + samples)")
    src.add_argument("--librispeech", type=Path,
                     help="a LibriSpeech split folder (LibriSpeech/test-clean), or the LibriSpeech/ root with --split")
    p.add_argument("--split", help="AN4: train or test (default: test). LibriSpeech root: the split folder to read, "
                                   "e.g. test-clean (needed when the root holds more than one split)")
    p.add_argument("--card", type=Path, required=True, help="model card (<model>.card.json) written by export")
    p.add_argument("--out", type=out_dir, required=True,
                   help="dataset dir to write (refused if it is a file, read-only, on a full disk, or being "
                        "written by another process)")
    p.add_argument("--modelzoo", action="store_true",
                   help="reproduce the Ascend ModelZoo guide of the card's family, as the card's guide profile "
                        "(its 'modelzoo' entry) declares it: layout 'sorted_padded' (whole set sorted longest "
                        "first, one file per utterance padded to the longest or --pad-to, e.g. DeepSpeech2's "
                        "spect/data{i}.bin + sizes/data{i}.bin) or 'batch_files' (e.g. wav2vec2's batch_{k}.bin of "
                        "the OM's batch, batch map, ground_truth_texts.txt); the profile's feature overrides apply")
    p.add_argument("--om", type=Path, metavar="OM",
                   help="--modelzoo with batch files: the .om (or its card) the data is for; its compiled batch "
                        "sets the clips per batch file (the card is read from beside the .om, written by "
                        "`python -m export atc` whether or not atc ran)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="--modelzoo with batch files: clips per batch file when no --om is given (default: the "
                        "batch the card is fixed to, else the guide profile's); refused if it differs from the "
                        "OM's batch")
    p.add_argument("--pad-to", type=positive_int, help="pad every input's time axis to this many frames (e.g. 621)")
    p.add_argument("--raw-rate", type=positive_int, default=None,
                   help="sample rate of headerless .raw files (they cannot say; default: the card's rate)")
    rs = p.add_mutually_exclusive_group()
    rs.add_argument("--resample", action="store_true", help="resample audio at another rate (with a warning)")
    rs.add_argument("--no-resample", action="store_true", help="refuse audio at another rate")
    p.add_argument("--max-samples", type=positive_int, help="skip clips longer than this many samples (named in the log)")
    p.add_argument("--downmix", action="store_true", help="average multichannel audio instead of refusing it")
    p.add_argument("--limit", type=positive_int, help="only the first N utterances (in the dataset's order)")
    p.add_argument("--spread", type=positive_int, metavar="N",
                   help="only N utterances spread evenly over the dataset (every speaker; e.g. a calibration set)")
    p.add_argument("--force", action="store_true",
                   help="rebuild every sample, also of a finished dataset dir or one made with other settings "
                        "(a dir whose sources changed since is rebuilt without it)")
    p.add_argument("--threads", type=positive_int, default=io_threads(),
                   help="threads decoding and extracting features in this process (default %(default)s: the "
                        "cores, at most 4; without --ray)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Issue 13: the same build spread over a Ray cluster (preprocess/ray_build.py, docs/ray.md).
    add_ray_arguments(p, "write the utterances' feature files as Ray tasks; --out must be on storage every node "
                         "sees; the same dataset dir as without --ray")
    return p


def _resample(args: argparse.Namespace, card: ModelCard) -> bool:
    """--resample / --no-resample, else the family's default from its card (wav2vec2's processor
    resamples, as the Ascend guide does; deepspeech.pytorch expects 16 kHz and refuses the rest)."""
    if args.resample or args.no_resample:
        return bool(args.resample)
    return bool(card.feature.resample)


def _batch_size(args: argparse.Namespace, card: dict) -> int:
    """Clips per batch file. The model file owns the batch on the Ascend path: the --om card's compiled batch
    (or the --card's own fixed batch), with a disagreeing --batch-size refused (core/guide.py)."""
    from core.card import CARD_SUFFIX, CardError, card_path_for, read_card
    if not args.modelzoo or guide_profile(card)["layout"] != "batch_files":
        if args.om or (args.modelzoo and args.batch_size):
            raise CardError("--om and --batch-size apply to a guide layout of batch files (--modelzoo with a card "
                            "whose guide profile has layout batch_files); this one writes one utterance per file")
        return args.batch_size or 1
    owner_path = args.card
    if args.om:
        owner_path = args.om if args.om.name.endswith(CARD_SUFFIX) else card_path_for(args.om)
    owner = read_card(owner_path) if args.om else card
    return guide_batch_size(card, args.batch_size, owner, str(owner_path))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if argv and argv[0] == "synth":  # the generator left the production stage (issue 10)
        print("python -m preprocess synth has moved: use python -m demo synth (same options)", file=sys.stderr)
        return 2

    args = build_parser().parse_args(argv)
    from core.audio import AudioError
    from core.card import CardError, read_card
    from core.dataset_dir import DatasetDirError
    from preprocess.build import BuildOptions, build_dataset

    try:
        card = read_card(args.card)
        if args.an4_root:
            split = args.split or "test"
            utts = read_an4_raw(args.an4_root, split)
            source = {"kind": "an4_raw", "root": str(args.an4_root.resolve()), "split": split}
        elif args.manifest:
            if args.split:
                raise DatasetError(f"--split {args.split} does not apply to --manifest (a manifest is one split)")
            utts = read_ds_manifest(args.manifest)
            source = {"kind": "deepspeech_manifest", "path": str(args.manifest.resolve())}
        else:
            utts = read_librispeech(args.librispeech, args.split)
            source = {"kind": "librispeech", "root": str(args.librispeech.resolve())}
            if args.split:
                source["split"] = args.split
        if args.limit:
            utts = utts[: args.limit]
            source["limit"] = args.limit
        if args.spread and args.spread < len(utts):
            utts = spread_evenly(utts, args.spread)
            source["spread"] = args.spread
        opts = BuildOptions(layout="modelzoo" if args.modelzoo else "default", pad_to=args.pad_to,
                            sample_rate=int(card.feature.sample_rate), raw_rate=args.raw_rate,
                            resample=_resample(args, card), downmix=args.downmix,
                            batch_size=_batch_size(args, card), max_samples=args.max_samples)
        from preprocess.ray_build import mapper_for  # issue 13: --ray

        with mapper_for(args.ray, args.ray_address) as mapper:
            out = build_dataset(utts, args.out, card, source, opts, card_path=args.card.resolve(), force=args.force,
                                progress=not args.no_progress, mapper=mapper, threads=args.threads)
    except (CardError, AudioError, DatasetError, DatasetDirError, ClusterError, OutDirError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:  # a full disk or a read-only folder found mid-write
        log.error("%s", describe_os_error(exc))
        return 2
    log.info("dataset dir ready: %s (%d utterances)", out, len(utts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
