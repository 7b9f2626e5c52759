"""The Ascend ModelZoo guide profile a model card carries, read the same way by every stage.

A family declares its guide as data (families/<name>/guide.py GUIDE); the export writes it into the card's
`modelzoo` entry, and the OM card that `export atc` writes beside the .om keeps it. With `--modelzoo`,
preprocess picks the profile's layout writer, the runners accept the profile's feature overrides, and
postprocess decodes by the profile's rule: no stage names a family.

Profile fields:
  layout             the preprocess writer: "sorted_padded" (one file per utterance, longest first, padded
                     to the longest) or "batch_files" (fixed-length batch files and a batch map)
  lengths_folder     sorted_padded: the folder of the lengths input (default: the input's name)
  decode_frames      {"from": "lengths_input", "divide": N}: the stored input length // N frames;
                     {"from": "output"}: every frame of the output, padding included
  feature_overrides  feature parameters the guide's preprocessing sets differently from the model's own
  static_shape       the guide's static graph (batch and time length)
  batch_size         clips per batch file when no OM (or fixed-batch card) and no --batch-size says otherwise
  pad_to, skip_longer_than, batch_files, map_file, ground_truth   batch_files: the guide's file names and limits

Batch size on the Ascend path has one owner: the model file. An OM's card records the batch atc compiled
(its inputs' first dim); `model_batch` reads it, and `guide_batch_size` refuses a --batch-size that
disagrees, naming both values.
"""
from __future__ import annotations

from typing import Any, Mapping

from core.card_records import CardError

LAYOUTS = ("sorted_padded", "batch_files")
# Cards written before the profile spelled its decode rule as data named it.
_NAMED_DECODE_RULES = {"input_length_floor_half": {"from": "lengths_input", "divide": 2}, "all": {"from": "output"}}
DECODE_SOURCES = ("lengths_input", "output")


def _as_dict(card: Any) -> Mapping[str, Any]:
    """The card's JSON form: a ModelCard (core/model_card.py), or a card dict as read from disk."""
    return card.to_dict() if hasattr(card, "to_dict") else card


def has_guide(card: Any) -> bool:
    return bool(_as_dict(card).get("modelzoo"))


def guide_profile(card: Any) -> dict[str, Any]:
    """The card's guide profile, with the fields older cards left implicit filled in; refused if absent."""
    data = _as_dict(card)
    raw = data.get("modelzoo")
    if not raw:
        raise CardError(f"the {data.get('family', '?')} card declares no ModelZoo guide profile (no 'modelzoo' "
                        "entry); drop --modelzoo")
    profile = dict(raw)
    if profile.get("layout") not in LAYOUTS:  # older cards: a file-name description, or only batch_files
        profile["layout"] = "batch_files" if profile.get("batch_files") else "sorted_padded"
        if profile["layout"] == "sorted_padded":
            profile.setdefault("lengths_folder", "sizes")  # what the one such guide of that time used
    profile["decode_frames"] = decode_rule(profile)
    profile.setdefault("feature_overrides", {})
    profile.setdefault("batch_size", 1)
    return profile


def decode_rule(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's decode rule as {"from": ..., "divide": N}; a rule named by an older card is translated."""
    rule = profile.get("decode_frames")
    if isinstance(rule, str):
        rule = _NAMED_DECODE_RULES.get(rule)
    if not isinstance(rule, Mapping) or rule.get("from") not in DECODE_SOURCES:
        raise CardError(f"the guide profile's decode_frames is {profile.get('decode_frames')!r}; expected "
                        f"{{'from': one of {list(DECODE_SOURCES)}, 'divide': N (optional)}}")
    divide = rule.get("divide", 1)
    if not isinstance(divide, int) or divide < 1:
        raise CardError(f"the guide profile's decode_frames divide is {divide!r}; expected a positive integer")
    return {"from": rule["from"], "divide": divide}


def describe_decode_rule(rule: Mapping[str, Any]) -> str:
    if rule["from"] == "lengths_input":
        return f"floor(input length / {rule['divide']}) frames" if rule["divide"] > 1 else "input length frames"
    return "every output frame"


def guide_feature(card: Any) -> dict[str, Any]:
    """The feature config of a dataset preprocessed in the card's guide layout."""
    data = _as_dict(card)
    return {**data["feature"], **guide_profile(data)["feature_overrides"]}


def model_batch(card: Any) -> int | None:
    """The batch the model file is fixed to (an OM's compiled batch, or a static export's), else None."""
    data = _as_dict(card)
    dim = data["inputs"][0]["shape"][0]
    return dim if isinstance(dim, int) and dim > 0 else None


def guide_batch_size(card: Any, requested: int | None, owner: Any = None,
                     owner_name: str = "the model") -> int:
    """Clips per batch file: the owner's (an OM card's) fixed batch; else `requested`; else the profile's.

    A `requested` batch that differs from the owner's is refused with both values named.
    """
    fixed = model_batch(owner) if owner is not None else None
    if fixed is not None and requested is not None and requested != fixed:
        raise CardError(f"--batch-size {requested} does not match the batch {fixed} that {owner_name} was compiled "
                        f"for; drop --batch-size (the OM's batch is used), or compile the OM with --batch-size "
                        f"{requested}")
    return fixed or requested or int(guide_profile(card)["batch_size"])
