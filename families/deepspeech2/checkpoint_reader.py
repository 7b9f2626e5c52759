"""Read deepspeech.pytorch V3.0 checkpoints, safely, without deepspeech.pytorch, Lightning, hydra or omegaconf.

A V3.0 checkpoint (``an4_pretrained_v3.ckpt`` and the like) is what V3.0's train.py gets from PyTorch
Lightning 1.1.8's dump_checkpoint and ``torch.save`` (pickle protocol 2, zip container). Reconstructed from
those sources and reproduced with the real omegaconf/hydra in tests/fixtures/make_v3_ckpt_fixtures.py:

    {"epoch", "global_step", "pytorch-lightning_version",
     "callbacks": {deepspeech_pytorch.checkpoint.CheckpointHandler: {...}},   # keyed by the class object
     "optimizer_states": [...], "lr_schedulers": [...], ("native_amp_scaling_state": {...}),
     "state_dict": OrderedDict[str, Tensor], "hparams_name": "kwargs",
     "hyper_parameters": {"labels": [...], "model_cfg": DictConfig, "precision": int,
                          "optim_cfg": DictConfig, "spect_cfg": DictConfig}}

The three configs are omegaconf 2.0 DictConfigs that hydra composed; omegaconf pickles a node's ``__dict__``
including ``_parent``, so behind ``model_cfg`` sits the whole training config (trainer, data, checkpoint, ...).
In the pickle every container is ``NEWOBJ omegaconf.dictconfig.DictConfig`` + ``BUILD {"_metadata":
ContainerMetadata, "_parent": ..., "_content": {key: node}}``; values are ``omegaconf.nodes.*Node`` with
``BUILD {"_metadata": Metadata, "_parent": ..., "_val": value}`` (``"???"`` marks a missing value); the config
dataclass (``BiDirectionalConfig`` ...) only appears as ``_metadata.object_type``; enums are
``REDUCE RNNType(torch.nn.modules.rnn.LSTM)`` - RNNType's values are torch classes.

Loading never imports those packages: a restricted unpickler turns every global of theirs into an inert
placeholder that only records its arguments and state, allows the handful of torch/collections/builtins
globals that tensors and plain containers need, and refuses everything else. The writer of the same format
(for the demo trainer and test fixtures) is checkpoint_writer.py; it shares the hyper-parameter rules below.
"""
from __future__ import annotations

import _compat_pickle
import collections
import math
import os
import pickle
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch._utils

from families.deepspeech2.architecture import CONV_CHANNELS, CONV_LAYERS, DEFAULT_LOOKAHEAD, SPECT_DEFAULTS

__all__ = [
    "CheckpointError",
    "DeepSpeechCheckpoint",
    "check_deepspeech_state_dict",
    "expected_state_dict_shapes",
    "load_deepspeech_checkpoint",
    "normalize_labels",
    "normalize_model",
    "normalize_spect",
    "refuse_mismatch",
]

RNN_TYPES = ("lstm", "gru", "rnn")
WINDOWS = ("hamming", "hann", "blackman", "bartlett")
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MISSING = "???"  # omegaconf's MISSING, stored verbatim as a node's value
_MAX_DEPTH = 200  # deeper than any real config; stops a crafted self-nesting pickle from recursing forever


class CheckpointError(ValueError):
    """A file is not a usable deepspeech.pytorch V3 checkpoint; the message names the file and the problem."""


@dataclass
class DeepSpeechCheckpoint:
    """A V3 checkpoint as plain data: tensors, labels and the hyper-parameters that shape the network."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    labels: list[str]
    # {"rnn_type": "lstm"|"gru"|"rnn", "hidden_size", "hidden_layers", "bidirectional", "lookahead_context"}
    model: dict[str, Any]
    # {"sample_rate", "window_size", "window_stride", "window"}
    spect: dict[str, Any]
    optim: dict[str, Any] | None = None
    # epoch, global_step, pytorch-lightning_version, precision, hparams_name, config_classes, train_config, keys
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Restricted unpickling
# ----------------------------------------------------------------------------------------------------------

# Packages whose classes a V3 checkpoint names but that we never import. torch.nn.modules appears because
# RNNType's values are nn.LSTM/nn.GRU/nn.RNN; pathlib because a config value may be a Path.
_FOREIGN_PACKAGES = ("deepspeech_pytorch", "omegaconf", "pytorch_lightning", "hydra", "hydra_configs", "typing",
                     "torch.nn.modules", "pathlib")

# Everything else that may be named. Storage classes (torch.FloatStorage ...) never get here: torch's own
# Unpickler wrapper answers any name containing "Storage" before asking us.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,  # every tensor
    ("collections", "OrderedDict"): collections.OrderedDict,  # state_dict, a tensor's backward_hooks
    ("collections", "defaultdict"): collections.defaultdict,  # omegaconf Metadata.resolver_cache
    # As values: the ref/object types of omegaconf nodes; as callables they only build plain data.
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
}


def _is_foreign(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _FOREIGN_PACKAGES)


class _Foreign:
    """Inert stand-in for an object of a class we refuse to import: it records, never runs, anything.

    A placeholder *class* is made per (module, name) and returned by find_class; pickle then builds instances
    with NEWOBJ (``cls.__new__``) or REDUCE (``cls(*args)``), fills them with BUILD (``__setstate__``),
    SETITEMS (``__setitem__``) or APPENDS (``append``/``extend``). All of those land here.
    """

    _foreign: tuple[str, str] = ("", "")

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Foreign":
        self = object.__new__(cls)
        self.__dict__.update(_args=args, _kwargs=kwargs, _state=None, _items={}, _list=[])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ already recorded the arguments

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def append(self, value: Any) -> None:
        self._list.append(value)

    def extend(self, values: Any) -> None:
        self._list.extend(values)

    def __repr__(self) -> str:
        return f"<placeholder {'.'.join(type(self)._foreign)} args={self._args!r}>"


@dataclass(frozen=True)
class _ForeignMember:
    """``getattr(ForeignClass, name)``: how an enum member pickles by name."""

    owner: type
    name: str


@dataclass(frozen=True)
class _ForeignSubscript:
    """``operator.getitem(typing.X, args)``: how ``Optional[int]`` and friends pickle."""

    origin: Any
    args: Any


def _foreign_name(obj: Any) -> str | None:
    cls = obj if isinstance(obj, type) else type(obj)
    if isinstance(cls, type) and issubclass(cls, _Foreign) and cls is not _Foreign:
        return ".".join(cls._foreign)
    return None


def _is_placeholder(obj: Any) -> bool:
    return _foreign_name(obj) is not None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose find_class allows an explicit list, stubs the foreign packages, refuses the rest."""

    _ckpt_path: str = "<checkpoint>"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's default) writes Python 2 names (__builtin__.unicode); the stock find_class
        # maps them back before importing, so must we.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[key]
        if key == ("builtins", "getattr"):
            return self._safe_getattr
        if key in (("operator", "getitem"), ("_operator", "getitem")):  # typing pickles the C module's name
            return self._safe_getitem
        if key == ("builtins", "type"):
            return self._safe_type
        if _is_foreign(module):
            if key not in self._placeholders:
                short = name.rsplit(".", 1)[-1]
                self._placeholders[key] = type(short, (_Foreign,), {"_foreign": key, "__qualname__": short})
            return self._placeholders[key]
        raise CheckpointError(
            f"{self._ckpt_path}: refusing to load: the pickle references {module}.{name}, which is not allowed "
            "in a deepspeech.pytorch checkpoint (unpickling it could run arbitrary code)")

    def _refuse(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self._ckpt_path}: refusing to load: {what}")

    # Only the shapes real checkpoints use: enum members by name, typing subscripts, type(None).
    def _safe_getattr(self, obj: Any, name: Any) -> _ForeignMember:
        if isinstance(obj, type) and _is_placeholder(obj) and isinstance(name, str):
            return _ForeignMember(obj, name)
        raise self._refuse(f"builtins.getattr on {type(obj).__name__} (only foreign enum members are allowed)")

    def _safe_getitem(self, obj: Any, key: Any) -> _ForeignSubscript:
        if _is_placeholder(obj):
            return _ForeignSubscript(obj, key)
        raise self._refuse(f"operator.getitem on {type(obj).__name__} (only typing subscripts are allowed)")

    def _safe_type(self, *args: Any) -> type:
        if args == (None,):
            return type(None)
        raise self._refuse("builtins.type with arguments other than (None,)")


def _restricted_pickle_module(path: str) -> types.ModuleType:
    """What torch.load takes as pickle_module: it subclasses ``.Unpickler`` for the zip format's data.pkl."""
    unpickler = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"_ckpt_path": path})
    module = types.ModuleType("ds_checkpoint_restricted_pickle")
    module.Unpickler = unpickler  # type: ignore[attr-defined]

    def load(file: Any, **kwargs: Any) -> Any:  # torch's legacy (non-zip) path; we refuse that format earlier
        return unpickler(file, **kwargs).load()

    module.load = load  # type: ignore[attr-defined]
    return module


def _check_container(path: Path) -> None:
    """Refuse, with a useful message, what torch.load would misread or hand to another loader."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: {e}") from e
    if not zipfile.is_zipfile(path):
        if head[:2] == b"\x80\x02":
            raise CheckpointError(f"{path}: legacy (pre-1.6, non-zip) torch.save format is not supported; "
                                  "expected a deepspeech.pytorch V3 .ckpt (zip)")
        kind = "truncated zip" if head.startswith(b"PK") else "not a zip file"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({kind}); expected the zip format that "
                              "torch.save writes")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: corrupt zip container: {e}") from e
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: not a torch.save archive: expected one <name>/data.pkl, "
                              f"found {len(pickles)}")
    # torch.load hands TorchScript archives to torch.jit.load, which we never want for a training checkpoint.
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"{path}: this is a TorchScript archive, not a Lightning training checkpoint")


def _torch_load(path: Path) -> Any:
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_restricted_pickle_module(str(path)))
    except CheckpointError:
        raise
    except Exception as e:  # corrupt records, bad pickle opcodes, CRC errors ...: all mean "unreadable file"
        raise CheckpointError(f"{path}: could not read checkpoint: {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------------------------------------
# Placeholders -> plain data
# ----------------------------------------------------------------------------------------------------------

def _state(obj: _Foreign) -> dict[str, Any]:
    state = obj._state
    if isinstance(state, tuple) and len(state) == 2:  # (dict_state, slot_state)
        merged: dict[str, Any] = {}
        for part in state:
            merged.update(part if isinstance(part, dict) else {})
        return merged
    return state if isinstance(state, dict) else {}


def _is_kind(obj: Any, module: str, name: str | None = None) -> bool:
    if not isinstance(obj, _Foreign):
        return False
    mod, qual = type(obj)._foreign
    return mod == module and (name is None or qual == name)


def _is_dictconfig(obj: Any) -> bool:
    return _is_kind(obj, "omegaconf.dictconfig", "DictConfig")


def _is_listconfig(obj: Any) -> bool:
    return _is_kind(obj, "omegaconf.listconfig", "ListConfig")


def _is_node(obj: Any) -> bool:
    return _is_kind(obj, "omegaconf.nodes")


def _object_type(obj: Any) -> str | None:
    """The config dataclass behind a DictConfig (what ``OmegaConf.get_type`` returns), as 'module.Name'."""
    if not _is_dictconfig(obj):
        return None
    metadata = _state(obj).get("_metadata")
    if not isinstance(metadata, _Foreign):
        return None
    return _foreign_name(_state(metadata).get("object_type"))


def _enum_name(value: Any, fields: Mapping[str, Any] | None = None) -> Any:
    """An enum member as its name, whichever way it was pickled."""
    if isinstance(value, _ForeignMember):
        return value.name
    if isinstance(value, type) and _is_placeholder(value):
        name = value._foreign[1]
        return name.rsplit(".", 1)[-1] if "." in name else _foreign_name(value)  # "RNNType.lstm" by qualname
    if isinstance(value, _Foreign) and len(value._args) == 1:  # REDUCE EnumClass(value)
        raw = value._args[0]
        for name, candidate in (fields or {}).items():
            if candidate is raw or (not isinstance(raw, type) and candidate == raw):
                return name
        if isinstance(raw, type) and _is_placeholder(raw):  # RNNType's values: torch.nn.modules.rnn.LSTM
            return raw._foreign[1].lower()
        return raw
    return value


def _to_plain(obj: Any, depth: int = 0) -> Any:
    """Placeholders (DictConfig, nodes, enums ...) to dicts, lists and scalars; tensors stay tensors."""
    if depth > _MAX_DEPTH:
        raise RecursionError("checkpoint data nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor)):
        return obj
    if isinstance(obj, Mapping):
        return {_plain_key(k): _to_plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v, depth + 1) for v in obj]
    if isinstance(obj, (_ForeignMember, type)):
        return _enum_name(obj) if isinstance(obj, _ForeignMember) else (_foreign_name(obj) or obj.__qualname__)
    if isinstance(obj, _ForeignSubscript):  # rendered like the annotation it was: typing.Union[int, NoneType]
        args = obj.args if isinstance(obj.args, tuple) else (obj.args,)
        return f"{_to_plain(obj.origin, depth + 1)}[{', '.join(str(_to_plain(a, depth + 1)) for a in args)}]"
    if isinstance(obj, _Foreign):
        state = _state(obj)
        if _is_dictconfig(obj) or _is_listconfig(obj):
            return _to_plain(state.get("_content"), depth + 1)  # None and "???" pass through as themselves
        if _is_node(obj):
            if "fields" in state:  # EnumNode
                return _enum_name(state.get("_val"), state.get("fields"))
            return _to_plain(state.get("_val"), depth + 1)
        if type(obj)._foreign[0].split(".")[0] == "pathlib":  # pathlib._local on Python 3.13
            return str(Path(*[str(a) for a in obj._args]))
        if obj._items or obj._list:  # dict/list subclasses (Lightning's AttributeDict ...)
            return _to_plain(obj._items, depth + 1) if obj._items else _to_plain(obj._list, depth + 1)
        if len(obj._args) == 1 and not state:  # an enum member
            return _enum_name(obj)
        return f"<{_foreign_name(obj)}>"
    return obj


def _plain_key(key: Any) -> Any:
    return _foreign_name(key) if _is_placeholder(key) else key


def _children(obj: Any) -> dict[str, Any] | None:
    """A mapping's raw children (nodes still as placeholders), or None when it is not a mapping."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if _is_dictconfig(obj):
        content = _state(obj).get("_content")
        return dict(content) if isinstance(content, Mapping) else None
    if isinstance(obj, _Foreign) and obj._items:
        return dict(obj._items)
    return None


def _root_config(obj: Any) -> Any:
    """The top of a config node's ``_parent`` chain: the whole composed training config."""
    seen: set[int] = set()
    while _is_dictconfig(obj) and id(obj) not in seen:
        seen.add(id(obj))
        parent = _state(obj).get("_parent")
        if parent is None:
            return obj
        obj = parent
    return None


# ----------------------------------------------------------------------------------------------------------
# Hyper-parameter validation (shared with checkpoint_writer.py)
# ----------------------------------------------------------------------------------------------------------

def checked_int(value: Any, what: str, path: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CheckpointError(f"{path}: {what} must be an integer >= {minimum}, got {value!r}")
    return value


def checked_float(value: Any, what: str, path: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CheckpointError(f"{path}: {what} must be a positive number, got {value!r}")
    return float(value)


def normalize_model(model: Mapping[str, Any], path: Any) -> dict[str, Any]:
    if not isinstance(model, Mapping):
        raise CheckpointError(f"{path}: model config must be a mapping, got {type(model).__name__}")
    rnn_type = model.get("rnn_type")
    rnn_type = rnn_type.lower() if isinstance(rnn_type, str) else rnn_type
    if rnn_type not in RNN_TYPES:
        raise CheckpointError(f"{path}: model rnn_type must be one of {list(RNN_TYPES)}, got {rnn_type!r}")
    if not isinstance(model.get("bidirectional"), bool):
        raise CheckpointError(f"{path}: model bidirectional must be true or false, got {model.get('bidirectional')!r}")
    bidirectional = model["bidirectional"]
    lookahead = model.get("lookahead_context")
    if bidirectional:
        if lookahead is not None:
            raise CheckpointError(f"{path}: lookahead_context={lookahead!r} given for a bidirectional model; "
                                  "V3 only has a lookahead layer in unidirectional models")
    else:
        lookahead = checked_int(DEFAULT_LOOKAHEAD if lookahead is None else lookahead, "model lookahead_context",
                                path)
    return {
        "rnn_type": rnn_type,
        "hidden_size": checked_int(model.get("hidden_size"), "model hidden_size", path),
        "hidden_layers": checked_int(model.get("hidden_layers"), "model hidden_layers", path),
        "bidirectional": bidirectional,
        "lookahead_context": lookahead,
    }


def normalize_spect(spect: Mapping[str, Any] | None, path: Any) -> dict[str, Any]:
    if spect is None:
        return dict(SPECT_DEFAULTS)
    if not isinstance(spect, Mapping):
        raise CheckpointError(f"{path}: spect config must be a mapping, got {type(spect).__name__}")
    merged = {**SPECT_DEFAULTS, **spect}
    window = merged["window"].lower() if isinstance(merged["window"], str) else merged["window"]
    if window not in WINDOWS:
        raise CheckpointError(f"{path}: spect window must be one of {list(WINDOWS)}, got {window!r}")
    return {
        "sample_rate": checked_int(merged["sample_rate"], "spect sample_rate", path),
        "window_size": checked_float(merged["window_size"], "spect window_size", path),
        "window_stride": checked_float(merged["window_stride"], "spect window_stride", path),
        "window": window,
    }



def normalize_labels(labels: Any, path: Any) -> list[str]:
    if not isinstance(labels, (list, tuple)) or not labels or not all(isinstance(c, str) for c in labels):
        raise CheckpointError(f"{path}: labels must be a non-empty list of strings, got {labels!r:.80}")
    if len(set(labels)) != len(labels):
        raise CheckpointError(f"{path}: labels contain duplicates")
    return list(labels)


def _rnn_input_size(spect: Mapping[str, Any]) -> int:
    """Features into the first RNN: frequency bins after V3's two stride-2 convs, times 32 channels.

    Spelled as V3's DeepSpeech.__init__ computes it (floors in the same places), since a differently rounded
    formula would disagree for some window sizes.
    """
    size = int(math.floor((spect["sample_rate"] * spect["window_size"]) / 2) + 1)
    for layer in CONV_LAYERS:
        (k, _), (s, _), (p, _) = layer["kernel"], layer["stride"], layer["padding"]
        size = int(math.floor(size + 2 * p - k) / s + 1)
    return size * CONV_CHANNELS


def expected_state_dict_shapes(model: Mapping[str, Any], num_classes: int,
                               spect: Mapping[str, Any] | None = None) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of V3's DeepSpeech for this config, in module order, with its shape.

    Written from V3's DeepSpeech.__init__, not from our module: the reader checks a file against the format
    it claims to be. tests/test_ds_checkpoint_writer.py checks that our module (recipe.DeepSpeech) has the same.
    """
    model = normalize_model(model, "<model>")
    spect = normalize_spect(spect, "<spect>")
    hidden, gates = model["hidden_size"], _GATES[model["rnn_type"]] * model["hidden_size"]
    shapes: dict[str, tuple[int, ...]] = {}

    def batch_norm(prefix: str, size: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (size,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    in_channels = 1
    for index, layer in enumerate(CONV_LAYERS):  # Conv2d, BatchNorm2d, Hardtanh per layer
        shapes[f"conv.seq_module.{3 * index}.weight"] = (CONV_CHANNELS, in_channels, *layer["kernel"])
        shapes[f"conv.seq_module.{3 * index}.bias"] = (CONV_CHANNELS,)
        batch_norm(f"conv.seq_module.{3 * index + 1}", CONV_CHANNELS)
        in_channels = CONV_CHANNELS
    for layer in range(model["hidden_layers"]):
        input_size = _rnn_input_size(spect) if layer == 0 else hidden
        if layer > 0:  # V3 builds the first BatchRNN with batch_norm=False
            batch_norm(f"rnns.{layer}.batch_norm.module", hidden)
        for suffix in ("", "_reverse") if model["bidirectional"] else ("",):
            shapes[f"rnns.{layer}.rnn.weight_ih_l0{suffix}"] = (gates, input_size)
            shapes[f"rnns.{layer}.rnn.weight_hh_l0{suffix}"] = (gates, hidden)
            shapes[f"rnns.{layer}.rnn.bias_ih_l0{suffix}"] = (gates,)
            shapes[f"rnns.{layer}.rnn.bias_hh_l0{suffix}"] = (gates,)
    if not model["bidirectional"]:
        shapes["lookahead.0.conv.weight"] = (hidden, 1, model["lookahead_context"])
    batch_norm("fc.0.module.0", hidden)
    shapes["fc.0.module.1.weight"] = (num_classes, hidden)
    return shapes


def _listing(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_deepspeech_state_dict(state_dict: Mapping[str, torch.Tensor], model: Mapping[str, Any],
                                labels: Sequence[str], path: str | os.PathLike[str], *,
                                spect: Mapping[str, Any] | None = None) -> None:
    """Raise CheckpointError unless state_dict has exactly V3 DeepSpeech's keys and shapes for this config.

    ``spect`` decides the first RNN's input size (V3's default 16 kHz / 20 ms gives 1312); it defaults to
    V3's SpectConfig.
    """
    model = normalize_model(model, path)
    labels = normalize_labels(list(labels), path)
    expected = expected_state_dict_shapes(model, len(labels), normalize_spect(spect, path))
    refuse_mismatch(state_dict, expected, model, len(labels), path)


def refuse_mismatch(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                    model: Mapping[str, Any], num_classes: int, path: str | os.PathLike[str]) -> None:
    """Raise CheckpointError naming every missing, unexpected and misshapen key of state_dict against expected.

    ``model`` is a normalised model config; it only describes the architecture in the message.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: state_dict must be a mapping, got {type(state_dict).__name__}")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in state_dict.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict must map names to tensors; not so for {_listing(bad)}")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {expected[k]})"
             for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        kind = (f"{'bi' if model['bidirectional'] else 'uni'}directional {model['rnn_type']}, "
                f"hidden_size {model['hidden_size']}, {model['hidden_layers']} layers, {num_classes} labels")
        problems = [f"missing keys: {_listing(missing)}" if missing else "",
                    f"unexpected keys: {_listing(unexpected)}" if unexpected else "",
                    f"wrong shapes: {_listing(wrong)}" if wrong else ""]
        raise CheckpointError(f"{path}: state_dict is not deepspeech.pytorch V3 DeepSpeech ({kind}); "
                              + "; ".join(p for p in problems if p))


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

def load_deepspeech_checkpoint(path: str | os.PathLike[str]) -> DeepSpeechCheckpoint:
    """Load a deepspeech.pytorch V3 (Lightning) checkpoint into plain data, executing nothing from it.

    Raises CheckpointError (a ValueError) naming the file for anything that is missing, unreadable, unsafe
    or not V3 DeepSpeech.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint path is not a regular file")
    raw = _torch_load(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a Lightning checkpoint dict, got {type(raw).__name__}")
    for key in ("state_dict", "hyper_parameters"):
        if key not in raw:
            raise CheckpointError(f"{path}: not a deepspeech.pytorch V3 checkpoint: no {key!r} "
                                  f"(keys: {sorted(map(str, raw))})")
    hparams = _children(raw["hyper_parameters"])
    if hparams is None:
        raise CheckpointError(f"{path}: hyper_parameters is not a mapping "
                              f"({_foreign_name(raw['hyper_parameters']) or type(raw['hyper_parameters']).__name__})")
    for key in ("labels", "model_cfg"):
        if key not in hparams:
            raise CheckpointError(f"{path}: hyper_parameters lacks {key!r}, which every deepspeech.pytorch V3 "
                                  f"checkpoint has (found: {sorted(map(str, hparams))})")
    try:
        labels = normalize_labels(_to_plain(hparams["labels"]), path)
        model_plain = _to_plain(hparams["model_cfg"])
        spect_plain = _to_plain(hparams.get("spect_cfg"))
        optim_plain = _to_plain(hparams.get("optim_cfg"))
        root = _root_config(hparams["model_cfg"])
        train_config = _to_plain(root) if root is not None else None
        meta_top = {k: _to_plain(raw.get(k))
                    for k in ("epoch", "global_step", "pytorch-lightning_version", "hparams_name")}
        precision = _to_plain(hparams.get("precision"))
    except CheckpointError:
        raise
    except RecursionError as e:
        raise CheckpointError(f"{path}: hyper_parameters nested too deeply to be a real config") from e
    except Exception as e:  # only a crafted file gets here: real configs are plain nodes and containers
        raise CheckpointError(f"{path}: unreadable hyper_parameters: {type(e).__name__}: {e}") from e

    if not isinstance(model_plain, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters model_cfg is not a config mapping: {model_plain!r:.80}")
    model_class = _object_type(hparams["model_cfg"])
    missing = [k for k, v in model_plain.items() if isinstance(v, str) and v == MISSING]
    if missing:
        raise CheckpointError(f"{path}: model_cfg has missing ('???') values for {missing}")
    model_in = dict(model_plain)
    # V3 itself decides: bidirectional = OmegaConf.get_type(model_cfg) is BiDirectionalConfig.
    if model_class is not None and model_class.endswith(".BiDirectionalConfig"):
        model_in["bidirectional"] = True
    elif model_class is not None and model_class.endswith(".UniDirectionalConfig"):
        model_in["bidirectional"] = False
    elif "bidirectional" not in model_in:  # a plain dict: only UniDirectionalConfig has a lookahead
        model_in["bidirectional"] = "lookahead_context" not in model_in
    if model_in["bidirectional"]:
        model_in.pop("lookahead_context", None)
    model = normalize_model(model_in, path)

    if spect_plain is not None and not isinstance(spect_plain, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters spect_cfg is not a config mapping: {spect_plain!r:.80}")
    spect = normalize_spect({k: v for k, v in (spect_plain or {}).items() if k in SPECT_DEFAULTS}, path)
    optim = None
    if isinstance(optim_plain, Mapping):
        optim = {k: v for k, v in optim_plain.items()}

    state_dict = raw["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: state_dict is a {type(state_dict).__name__}, not a mapping of tensors")
    check_deepspeech_state_dict(state_dict, model, labels, path, spect=spect)
    # detach(): a pickle can attach backward hooks (and requires_grad) to a tensor; hand out bare data only.
    state_dict = {key: tensor.detach() for key, tensor in state_dict.items()}

    meta: dict[str, Any] = dict(meta_top)
    meta["precision"] = precision
    meta["config_classes"] = {k: _object_type(hparams.get(k)) for k in ("model_cfg", "optim_cfg", "spect_cfg")}
    meta["train_config"] = train_config
    meta["keys"] = sorted(str(_plain_key(k)) for k in raw)
    return DeepSpeechCheckpoint(path=path, state_dict=state_dict, labels=labels, model=model,
                                spect=spect, optim=optim, meta=meta)
