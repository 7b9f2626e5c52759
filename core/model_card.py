"""The typed model card: what every stage knows about a model file, read through one frozen type.

Cards on disk are JSON (core/card.py reads and writes them); :class:`ModelCard` is that JSON as frozen
dataclasses. The parts stages act on are typed (tensor specs, labels, the feature config, the
output-length rule, the parity verdict, the streaming state description, the OM compile facts); the
rest stays as the JSON mappings the writer made, and keys no field names stay in ``extra``, so
``ModelCard.from_dict(d).to_dict() == d`` for every current card, key order included.

Versions (``card_version``):

* 1 - the untyped card. ``metrics_convention`` and ``word_delimiter`` could be absent or null, and each
  reader supplied its own default ("deepspeech", " "); a card without ``card_version`` is one of these.
* 2 - the same layout, read through :class:`ModelCard`. Loading a version-1 card migrates it in memory:
  ``card_version`` becomes 2 and an absent or null ``metrics_convention`` / ``word_delimiter`` is written
  in with the default every version-1 reader assumed (:data:`DEFAULT_METRICS_CONVENTION`,
  :data:`DEFAULT_WORD_DELIMITER`). Nothing else changes. A newer or unknown version is refused by name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from core.card_records import CardError, CardRecord, many, plain, record
from core.ctc import greedy_decode
from core.tensor_spec import TensorSpec

CARD_VERSION = 2
# What a card without the entry means (the defaults version-1 readers applied at every read).
DEFAULT_METRICS_CONVENTION = "deepspeech"
DEFAULT_WORD_DELIMITER = " "
DEFAULT_PRECISION = "fp32"
# Output roles that CTC decoding reads, in the card's terms.
SCORE_ROLES = ("probabilities", "logits", "log_probs")
# The card keys copied into ONNX metadata_props, so a bare .onnx still explains itself.
METADATA_KEYS = ["family", "labels", "blank_index", "feature", "output_length_rule", "precision",
                 "metrics_convention", "card_version"]


def _tensor(value: Any, where: str) -> TensorSpec:
    if not isinstance(value, Mapping):
        raise CardError(f"{where}: expected a tensor entry (name, dtype, shape, role), got {value!r:.100}")
    missing = [k for k in ("name", "dtype", "shape", "role") if k not in value]
    if missing:
        raise CardError(f"{where} ({value.get('name', '?')}) has no {missing[0]!r} entry")
    return TensorSpec.from_dict(dict(value))


@dataclass(frozen=True, kw_only=True)
class FeatureConfig(CardRecord):
    """The features the model expects. ``kind`` names the extractor; its parameters differ per kind and
    stay in ``extra`` (``params()`` gives all of it as the mapping the extractors take)."""

    kind: str
    sample_rate: int | None = None
    # wav2vec2-style configs state whether audio at another rate may be resampled.
    resample: bool | None = None
    REQUIRED = ("kind",)

    def params(self) -> dict[str, Any]:
        return self.to_dict()


@dataclass(frozen=True, kw_only=True)
class ConvLayer(CardRecord):
    kernel: int
    stride: int
    padding: int | None = None
    dilation: int | None = None
    REQUIRED = ("kernel", "stride")


@dataclass(frozen=True, kw_only=True)
class OutputLengthRule(CardRecord):
    """How many valid output frames an input length gives (``kind`` "conv": the conv stack's formula)."""

    kind: str
    layers: tuple[ConvLayer, ...] = ()
    REQUIRED = ("kind",)
    DECODE = {"layers": many(record(ConvLayer))}

    def frames(self, input_length: int) -> int:
        n = int(input_length)
        for layer in self.layers:
            n = (n + 2 * (layer.padding or 0) - (layer.dilation or 1) * (layer.kernel - 1) - 1) // layer.stride + 1
        return max(n, 0)


@dataclass(frozen=True, kw_only=True)
class Source(CardRecord):
    """The artifact the model was exported from."""

    path: str | None = None
    sha256: str | None = None
    format: str | None = None


@dataclass(frozen=True, kw_only=True)
class ParityReport(CardRecord):
    """A gate's verdict; per-output and per-case numbers differ per gate and stay as written."""

    passed: bool | None = None
    kind: str | None = None
    atol: float | None = None
    rtol: float | None = None
    outputs: Mapping[str, Any] | None = None
    max_abs: Any = None
    padding_invariant: bool | None = None


@dataclass(frozen=True, kw_only=True)
class StreamingState(CardRecord):
    name: str
    dtype: str
    shape: tuple[int | str, ...]
    holds: str | None = None
    input: str | None = None
    output: str | None = None
    REQUIRED = ("name", "dtype", "shape")
    DECODE = {"shape": lambda v, w: tuple(v)}


@dataclass(frozen=True, kw_only=True)
class StreamingInfo(CardRecord):
    """A streaming export's contract (core/streaming.py): chunk size, the state tensors, latency facts."""

    chunk_frames: int
    feature_shape: tuple[int, ...] = ()
    classes: int | None = None
    max_output_frames: int | None = None
    states: tuple[StreamingState, ...] = ()
    latency: Mapping[str, Any] | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    # The offline features input: the dataset dir folder a streaming dataset run reads.
    features_input: str | None = None
    REQUIRED = ("chunk_frames",)
    DECODE = {"feature_shape": lambda v, w: tuple(v), "states": many(record(StreamingState)),
              "inputs": lambda v, w: tuple(v), "outputs": lambda v, w: tuple(v)}


@dataclass(frozen=True, kw_only=True)
class OmInfo(CardRecord):
    """How an OM card's model was compiled by atc, with every gear of a dynamic OM."""

    file: str | None = None
    source_onnx: str | None = None
    source_onnx_sha256: str | None = None
    soc_version: str | None = None
    input_shape: Mapping[str, list[int]] | None = None
    dynamic_batch_size: tuple[int, ...] = ()
    dynamic_dims: tuple[tuple[int, ...], ...] = ()
    gears: tuple[Mapping[str, Any], ...] = ()
    precision_mode: str | None = None
    atc_command: tuple[str, ...] = ()
    DECODE = {"dynamic_batch_size": lambda v, w: tuple(v), "dynamic_dims": lambda v, w: tuple(tuple(p) for p in v),
              "gears": lambda v, w: tuple(dict(g) for g in v), "atc_command": lambda v, w: tuple(v)}


@dataclass(frozen=True, kw_only=True)
class ModelZooProfile(CardRecord):
    """The Ascend ModelZoo guide's flow for this family (its layout, padding and decode rule); core/guide.py
    reads it for every stage and documents the fields."""

    name: str | None = None
    # {"from": "lengths_input" | "output", "divide": N}; cards written before that named the rule as a string.
    decode_frames: Mapping[str, Any] | str | None = None
    layout: str | None = None
    layout_files: str | None = None
    lengths_folder: str | None = None
    static_shape: Mapping[str, Any] | None = None
    batch_size: int | None = None
    description: str | None = None
    pad_to: int | None = None
    skip_longer_than: int | None = None
    feature_overrides: Mapping[str, Any] | None = None
    batch_files: str | None = None
    map_file: str | None = None
    ground_truth: str | None = None


@dataclass(frozen=True, kw_only=True)
class TorchScriptInfo(CardRecord):
    """The TorchScript trace written beside the ONNX file for torch_aie."""

    file: str
    passed: bool | None = None
    REQUIRED = ("file",)


@dataclass(frozen=True, kw_only=True)
class ModelCard(CardRecord):
    """One model file's card (see the module docstring for versions). Build it with :meth:`from_dict`."""

    card_version: int = CARD_VERSION
    family: str
    onnx: str
    precision: str | None = None
    made_by: str | None = None
    opset: int | None = None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    architecture: Mapping[str, Any] | None = None
    labels: tuple[str, ...]
    blank_index: int
    word_delimiter: str | None = None
    special_tokens: tuple[int, ...] | None = None
    feature: FeatureConfig
    output_length_rule: OutputLengthRule | None = None
    metrics_convention: str | None = None
    modelzoo: ModelZooProfile | None = None
    static_shape: Mapping[str, Any] | None = None
    padding: str | None = None
    source: Source | None = None
    export_options: Mapping[str, Any] | None = None
    optimization: Mapping[str, Any] | None = None
    parity: ParityReport | None = None
    timings_s: Mapping[str, Any] | None = None
    versions: Mapping[str, str] | None = None
    torchscript: TorchScriptInfo | None = None
    streaming: StreamingInfo | None = None
    om: OmInfo | None = None
    # A variant's card: how it was made from the fp32 graph, with which options, and its graph report.
    variant: Mapping[str, Any] | None = None
    variant_options: Mapping[str, Any] | None = None
    graph: Mapping[str, Any] | None = None
    split: Mapping[str, Any] | None = None
    split_parity: Mapping[str, Any] | None = None
    whole_model_parity: Mapping[str, Any] | None = None
    onnx_sha256: str | None = None

    REQUIRED = ("family", "onnx", "inputs", "outputs", "labels", "blank_index", "feature")
    DECODE = {
        "inputs": many(_tensor), "outputs": many(_tensor),
        "labels": lambda v, w: tuple(str(x) for x in v), "blank_index": lambda v, w: int(v),
        "special_tokens": lambda v, w: tuple(int(x) for x in v),
        "feature": record(FeatureConfig), "output_length_rule": record(OutputLengthRule),
        "modelzoo": record(ModelZooProfile), "source": record(Source), "parity": record(ParityReport),
        "torchscript": record(TorchScriptInfo), "streaming": record(StreamingInfo), "om": record(OmInfo),
    }

    @classmethod
    def from_dict(cls, d: Any, where: str = "model card") -> "ModelCard":
        """A card from its JSON object; a version-1 card is migrated, a newer or unknown one refused."""
        return super().from_dict(migrate(d, where), where)

    def replace(self, **changes: Any) -> "ModelCard":
        """A copy with some typed fields changed; entries new to the card go after the others, in the order
        given."""
        order = self.key_order + tuple(k for k, v in changes.items() if k not in self.key_order and v is not None)
        return dataclasses.replace(self, **changes, key_order=order)

    # --- derived facts -------------------------------------------------------------------------------
    @property
    def precision_name(self) -> str:
        return self.precision or DEFAULT_PRECISION

    @property
    def metrics(self) -> str:
        """The WER/CER convention of this family's tables (core/metrics.py)."""
        return self.metrics_convention or DEFAULT_METRICS_CONVENTION

    @property
    def delimiter(self) -> str:
        """The label that stands for the space between words in transcripts."""
        return self.word_delimiter or DEFAULT_WORD_DELIMITER

    @property
    def blank_label(self) -> str:
        return self.labels[self.blank_index]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def input(self, name: str) -> TensorSpec:
        for s in self.inputs:
            if s.name == name:
                return s
        raise CardError(f"the card of {self.onnx} has no input {name!r} (inputs: {', '.join(self.input_names)})")

    def output(self, name: str) -> TensorSpec:
        for s in self.outputs:
            if s.name == name:
                return s
        raise CardError(f"the card of {self.onnx} has no output {name!r} (outputs: {', '.join(self.output_names)})")

    @property
    def scores_output(self) -> TensorSpec:
        """The output CTC decoding reads (probabilities, logits or log-probabilities)."""
        for s in self.outputs:
            if s.role in SCORE_ROLES:
                return s
        raise CardError(f"the card of {self.onnx} has no output with a role in {SCORE_ROLES}")

    @property
    def lengths_input(self) -> TensorSpec | None:
        return next((s for s in self.inputs if s.role == "lengths"), None)

    @property
    def time_input(self) -> TensorSpec | None:
        """The first input with a time axis (the one padding and static lengths act on)."""
        return next((s for s in self.inputs if s.time_axis is not None), None)

    @property
    def static_batch(self) -> int | None:
        """The batch size fixed by the first input's shape, or None where it is symbolic."""
        dim = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        return dim if isinstance(dim, int) else None

    def output_frames(self, input_length: int) -> int:
        """Valid output frames for an input of `input_length` steps, by the card's output-length rule."""
        rule = self.output_length_rule
        if rule is None or rule.kind != "conv":
            raise CardError(f"card of {self.family} has no usable output_length_rule "
                            f"({plain(rule) if rule is not None else None!r})")
        return rule.frames(input_length)

    def decode(self, scores: np.ndarray, frames: int | None) -> str:
        """Greedy CTC text of one sample's score output (T, V) over its first `frames` frames."""
        delimiter = self.delimiter
        return greedy_decode(scores, frames, self.labels, self.blank_index,
                             word_delimiter=delimiter if delimiter != " " else None,
                             special_tokens=self.special_tokens or ())

    def metadata(self) -> dict[str, Any]:
        """The essentials copied into ONNX metadata_props (:data:`METADATA_KEYS`)."""
        d = self.to_dict()
        return {k: d[k] for k in METADATA_KEYS if k in d}


def metrics_convention_of(card: ModelCard | None) -> str:
    """The card's metrics convention, or the default where a model comes without a card (split's Head)."""
    return card.metrics if card is not None else DEFAULT_METRICS_CONVENTION


def migrate(d: Any, where: str = "model card") -> Any:
    """The JSON object of a version-2 card: a version-1 one migrated (module docstring), a v2 one as is."""
    if not isinstance(d, Mapping):
        return d  # from_dict names the problem
    version = d.get("card_version", 1)
    if version == CARD_VERSION:
        return d
    if version != 1 or isinstance(version, bool):
        raise CardError(f"{where} has card_version {version!r}; this pipeline reads card_version {CARD_VERSION} "
                        "(and migrates version 1): export the model again with this pipeline")
    out = {"card_version": CARD_VERSION, **{k: v for k, v in d.items() if k != "card_version"}}
    if "card_version" in d:  # keep the key where the writer put it
        out = {k: (CARD_VERSION if k == "card_version" else v) for k, v in d.items()}
    for key, default in (("metrics_convention", DEFAULT_METRICS_CONVENTION), ("word_delimiter", DEFAULT_WORD_DELIMITER)):
        if out.get(key) is None:
            out[key] = default
    return out
