"""A family's run plan: what `python -m pipeline run-all` does for it, as data.

Each family declares one `Plan` in families/<name>/plan.py; the driver (pipeline/) walks it. Plans name
corpora ("an4", "librispeech"), backends, option names and file stems, never code: the same walk serves every
family, so adding a family's section to the run matrix is writing its plan.

Strings may hold `{placeholders}` that the driver fills in: `{soc}` (the Ascend SoC), `{test_name}` (the test
split's folder name), `{first_bs}` (the first throughput batch size).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CORPORA = ("an4", "librispeech")


@dataclass(frozen=True)
class DemoModel:
    """The model artefact: the user's (option `option`) or, without it, a demo one trained on the corpus."""

    option: str                       # attribute of the driver's options holding the user's path
    path: str                         # the demo artefact, relative to the work dir
    train_record: str | None = None   # the trainer's JSON record, relative to the work dir (copied to results/)
    train_args: tuple[str, ...] = ()  # trainer options of the full run
    quick_train_args: tuple[str, ...] = ()
    train_args_env: str | None = None  # environment variable that replaces train_args (split on spaces)
    trainer_flags: tuple[str, ...] = ()  # trainer flags before the corpus (e.g. --autoencoder)


@dataclass(frozen=True)
class Export:
    """`python -m export <command> <model_flag> MODEL --out work/export/<family> <extra> --threads N`."""

    command: str
    model_flag: str
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuideRun:
    """One run of the Ascend guide's script: `--backend` (None: the script's default), its run dir name."""

    run: str
    label: str
    backend: str | None = None
    if_available: bool = False


@dataclass(frozen=True)
class GuideFlow:
    """The Ascend ModelZoo guide's flow, by its own script (scripts/modelzoo/<name>.sh)."""

    script: str
    dataset: str                      # the dataset dir its preprocess writes, relative to the work dir
    runs: tuple[GuideRun, ...]
    extra: tuple[str, ...] = ()       # script options after the corpus (e.g. --batch-size 8)


@dataclass(frozen=True)
class Variants:
    """Precision variants of the exported model, each gated against fp32, and their table.

    int8-static is calibrated on the calibration set; every other kind gates on the test set.
    """

    kinds: tuple[str, ...] = ("fp16", "int8-dynamic", "int8-static")
    batch_sizes: tuple[int, ...] = (1, 8)
    # OpenVINO runs: the fp32 graph, variant files by kind, and bf16 (a precision hint on the fp32 graph,
    # where the CPU has native bf16).
    openvino: tuple[str, ...] = ("fp32", "bf16", "int8-static")
    calibration: str = ""             # dataset dir of the calibration utterances, relative to the work dir
    calibration_utterances: int = 100
    # int8-static's ΔWER budget (points) on the calibration utterances: the most sensitive nodes fall back to
    # fp32 until it holds (export/fallback.py). Only where those come from a training split, never the test set.
    max_delta_wer: float | None = None


@dataclass(frozen=True)
class SplitPoint:
    """A cut for the split section: after the module `after`, or (None) the model's own Head/Tail + autoencoder."""

    name: str
    after: str | None = None


@dataclass(frozen=True)
class SplitSection:
    """Head on the edge, Tail in the cloud over gRPC on loopback, codecs, per-stage times and the planner."""

    autoencoder: DemoModel
    points: tuple[SplitPoint, ...]
    codec_option: str                 # the option naming the low-bit codec compared with fp32
    bandwidths: str
    quick_bandwidths: str
    limit: int                        # utterances per point for the planner's profile and measured check
    quick_limit: int
    rtt: str = "20ms"
    # A second sweep and measured check for an edge device this many times slower than the machine running
    # the pipeline (emulated: the edge sleeps after each Head inference); None for none.
    slow_edge_scale: float | None = None
    # The planner's accuracy budget: WER points above the unsplit model a choice may cost (None: the fastest
    # candidate wins whatever its codec does to the WER).
    max_delta_wer: float | None = None
    # Training utterances (spread over the calibration split) the KLT codec of the model's own cut is fitted
    # on (`split fit-klt`, Fisher-weighted by its Tail); 0 for no KLT codec.
    klt_utterances: int = 0
    quick_klt_utterances: int = 4
    # Training steps of the KLT codecs' decoder-side post-filters (`split fit-postfilter`, the *-pf codecs),
    # on the same utterances, one per coarseness; 0 for none.
    postfilter_steps: int = 0
    quick_postfilter_steps: int = 20
    postfilter_coarseness: tuple[float, ...] = (3.0, 4.0)
    # The cloud-edge seed's ResNet-50 partition table (`split resnet-table`): its name ("" for none), the files
    # it is made from (rebuilt when one is newer), and its quick-run options.
    resnet_table: str = ""
    resnet_sources: tuple[str, ...] = ()
    quick_resnet_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    family: str
    report: str                       # results/<report>_*.md|csv|json
    title: str
    corpus: str                       # one of CORPORA: where the test set, training and calibration data come from
    model: DemoModel
    export: Export
    test_set: str                     # the preprocessed test set, relative to the work dir
    batch_sizes: tuple[int, ...] = (1, 8)
    batch_sizes_option: str | None = None  # an option that replaces batch_sizes
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    ray: bool = True                  # preprocess and runners may spread over Ray (--ray)
    guide: GuideFlow | None = None
    variants: Variants | None = None
    split: SplitSection | None = None
    tables: tuple[str, ...] = field(default=("precision", "throughput"))

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"plan {self.family}: corpus {self.corpus!r}, expected one of {CORPORA}")
        if not self.batch_sizes:
            raise ValueError(f"plan {self.family}: no batch sizes")
