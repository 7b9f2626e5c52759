"""Write deepspeech.pytorch V3.0 checkpoints that real deepspeech.pytorch (Lightning 1.1, omegaconf 2.0) loads.

Used by the demo trainer (families/deepspeech2/train.py), the tests and the benchmark's real-size fixture;
the pipeline itself only reads (checkpoint_reader.py, whose docstring describes the format). Without
omegaconf, hydra or deepspeech.pytorch installed, the same pickle structure is written from lightweight
stand-ins that the pickler names by the real classes' module and qualified name. The state_dict is checked
against the module itself: recipe.DeepSpeech built for the config (on the meta device, so a full-size
model costs no memory) says which keys and shapes a checkpoint of that config holds.
"""
from __future__ import annotations

import collections
import copyreg
import io
import os
import pickle
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from families.deepspeech2.checkpoint_reader import (
    MISSING,
    WINDOWS,
    CheckpointError,
    checked_int,
    normalize_labels,
    normalize_model,
    normalize_spect,
    refuse_mismatch,
)
from families.deepspeech2.recipe import DeepSpeechConfig, build_model

__all__ = ["model_state_dict_shapes", "save_deepspeech_checkpoint"]

_V3_ADAM_DEFAULTS: dict[str, Any] = {"learning_rate": 1.5e-4, "learning_anneal": 0.99, "weight_decay": 1e-5,
                                     "eps": 1e-8, "betas": [0.9, 0.999]}
_TRAIN_CONFIG = "deepspeech_pytorch.configs.train_config"
_LIGHTNING_VERSION = "1.1.8"

def _normalize_optim(optim: Mapping[str, Any] | None, path: Any) -> dict[str, Any]:
    """V3 knows AdamConfig (eps, betas) and SGDConfig (momentum); which one is told by the keys."""
    optim = dict(_V3_ADAM_DEFAULTS if optim is None else optim)
    for key in ("learning_rate", "learning_anneal", "weight_decay"):
        if key not in optim:
            raise CheckpointError(f"{path}: optim config lacks {key!r}")
    if "momentum" in optim and ("eps" in optim or "betas" in optim):
        raise CheckpointError(f"{path}: optim config mixes SGD (momentum) and Adam (eps, betas) keys")
    if "momentum" not in optim:
        optim.setdefault("eps", _V3_ADAM_DEFAULTS["eps"])
        betas = optim.get("betas", _V3_ADAM_DEFAULTS["betas"])
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in betas)):
            raise CheckpointError(f"{path}: optim betas must be two numbers, got {betas!r}")
        optim["betas"] = [float(b) for b in betas]
    for key, value in optim.items():
        if key != "betas" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise CheckpointError(f"{path}: optim {key} must be a number, got {value!r}")
        if key != "betas":
            optim[key] = float(value)
    return optim



def model_state_dict_shapes(labels: Sequence[str], model: Mapping[str, Any],
                            spect: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The keys and shapes, in module order, of the DeepSpeech module this (normalised) config builds."""
    cfg = DeepSpeechConfig.from_parts(list(labels), dict(model), dict(spect))
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost, no draw from torch's RNG
        module = build_model(cfg)
    return {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}


def check_state_dict_against_model(state_dict: Mapping[str, torch.Tensor], labels: Sequence[str],
                                   model: Mapping[str, Any], spect: Mapping[str, Any], path: Any) -> None:
    """Raise CheckpointError unless state_dict has exactly the keys and shapes of the module for this config."""
    refuse_mismatch(state_dict, model_state_dict_shapes(labels, model, spect), model, len(labels), path)


class _Emit:
    """Pickles as ``NEWOBJ <its foreign class>`` + ``BUILD state``, exactly as omegaconf's objects do."""

    _pickle_as: tuple[str, str]

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return copyreg.__newobj__, (type(self),), self.state


class _EmitEnum:
    """Pickles as ``REDUCE <enum class>(value)``, as Enum members do."""

    def __init__(self, enum_cls: type, value: Any) -> None:
        self.enum_cls, self.value = enum_cls, value

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.enum_cls, (self.value,)


_EMIT_CLASSES: dict[tuple[str, str], type] = {}


def _emit_class(module: str, name: str, base: type = _Emit) -> type:
    """A class that the writer's pickler names ``module.name``; made once, never importable as that."""
    key = (module, name)
    if key not in _EMIT_CLASSES:
        _EMIT_CLASSES[key] = type(name, (base,), {"_pickle_as": key})
    return _EMIT_CLASSES[key]


class _StandInPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """The pure-Python pickler with one change: stand-in classes are written under their foreign name.

    The C pickler insists that a global's name resolve to the very object; doing that would mean planting
    fake omegaconf modules in sys.modules. Overriding save_global here touches nothing global.
    """

    def save_global(self, obj: Any, name: str | None = None) -> None:
        target = vars(obj).get("_pickle_as") if isinstance(obj, type) else None
        if target is None:
            return super().save_global(obj, name)
        module, qualname = target
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"))
        self.memoize(obj)


def _writer_pickle_module() -> types.ModuleType:
    module = types.ModuleType("ds_checkpoint_standin_pickle")
    module.Pickler = _StandInPickler  # type: ignore[attr-defined]
    return module


_DICTCONFIG = _emit_class("omegaconf.dictconfig", "DictConfig")
_LISTCONFIG = _emit_class("omegaconf.listconfig", "ListConfig")
_CONTAINER_METADATA = _emit_class("omegaconf.base", "ContainerMetadata")
_METADATA = _emit_class("omegaconf.base", "Metadata")
_NODES = {kind: _emit_class("omegaconf.nodes", cls) for kind, cls in
          {"str": "StringNode", "int": "IntegerNode", "float": "FloatNode", "bool": "BooleanNode",
           "any": "AnyNode", "enum": "EnumNode"}.items()}
_REF_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "any": typing.Any}
_RNN_TYPE = _emit_class("deepspeech_pytorch.enums", "RNNType", object)
_WINDOW = _emit_class("deepspeech_pytorch.enums", "SpectrogramWindow", object)
# RNNType's members in V3's order; their values are the torch classes themselves.
_ENUM_FIELDS: dict[type, dict[str, Any]] = {
    _RNN_TYPE: {"lstm": nn.LSTM, "rnn": nn.RNN, "gru": nn.GRU},
    _WINDOW: {w: w for w in WINDOWS},
}
_CHECKPOINT_HANDLER = _emit_class("deepspeech_pytorch.checkpoint", "CheckpointHandler", object)


def _metadata(ref_type: Any, object_type: Any, optional: bool, key: Any, *, container: bool,
              flags: dict[str, bool] | None = None, key_type: Any = None) -> _Emit:
    state: dict[str, Any] = {"ref_type": ref_type, "object_type": object_type, "optional": optional, "key": key,
                             "flags": flags or {}, "resolver_cache": collections.defaultdict(dict)}
    if container:
        state.update(key_type=key_type, element_type=None)
        return _CONTAINER_METADATA(state)
    return _METADATA(state)


def _value_node(kind: str, key: Any, value: Any, parent: _Emit, optional: bool = False) -> _Emit:
    if kind == "any":  # omegaconf gives Any-typed fields object_type None and optional True
        return _NODES["any"]({"_metadata": _metadata(typing.Any, None, True, key, container=False),
                              "_parent": parent, "_val": value})
    if value is not None and value != MISSING:
        value = {"int": int, "float": float, "bool": bool, "str": str}[kind](value)
    ref = _REF_TYPES[kind]
    return _NODES[kind]({"_metadata": _metadata(ref, ref, optional, key, container=False),
                         "_parent": parent, "_val": value})


def _enum_node(enum_cls: type, key: str, name: str, parent: _Emit) -> _Emit:
    fields = _ENUM_FIELDS[enum_cls]
    return _NODES["enum"]({"fields": dict(fields), "enum_type": enum_cls,
                           "_metadata": _metadata(enum_cls, enum_cls, False, key, container=False),
                           "_parent": parent, "_val": _EmitEnum(enum_cls, fields[name])})


def _dict_config(config_cls: type, key: Any, parent: _Emit | None, optional: bool,
                 fields: Sequence[tuple[str, str, Any]] = (), flags: dict[str, bool] | None = None) -> _Emit:
    """A structured DictConfig; fields are (name, kind, value) with kind str/int/float/bool/any or '?kind' for
    Optional[kind]. Containers and enums are added by the caller through ``state['_content']``."""
    node = _DICTCONFIG({"_metadata": _metadata(config_cls, config_cls, optional, key, container=True, flags=flags),
                        "_parent": parent, "_content": {}})
    for name, kind, value in fields:
        node.state["_content"][name] = _value_node(kind.lstrip("?"), name, value, node, kind.startswith("?"))
    return node


def _train_config_class(name: str) -> type:
    return _emit_class(_TRAIN_CONFIG, name)


def _build_train_config(model: dict[str, Any], spect: dict[str, Any], optim: dict[str, Any],
                        precision: int) -> _Emit:
    """The hydra-composed DeepSpeechConfig that V3's train.py hands out pieces of.

    Real checkpoints carry it because omegaconf pickles ``_parent``; values we do not know (trainer, data
    paths ...) are V3.0's defaults, not a training run's.
    """
    root = _dict_config(_train_config_class("DeepSpeechConfig"), None, None, True, flags={"struct": True})
    content = root.state["_content"]

    is_sgd = "momentum" in optim
    opt = _dict_config(_train_config_class("SGDConfig" if is_sgd else "AdamConfig"), "optim", root, True,
                       [(k, "float", optim[k]) for k in ("learning_rate", "learning_anneal", "weight_decay")])
    if is_sgd:
        opt.state["_content"]["momentum"] = _value_node("float", "momentum", optim["momentum"], opt)
    else:
        opt.state["_content"]["eps"] = _value_node("float", "eps", optim["eps"], opt)
        # AdamConfig.betas is annotated `tuple`; omegaconf keeps it as a ListConfig of AnyNodes.
        betas = _LISTCONFIG({"_metadata": _metadata(tuple, list, False, "betas", container=True, key_type=int),
                             "_parent": opt, "_content": []})
        betas.state["_content"].extend(_value_node("any", i, float(b), betas) for i, b in enumerate(optim["betas"]))
        opt.state["_content"]["betas"] = betas
    content["optim"] = opt

    bidirectional = model["bidirectional"]
    mdl = _dict_config(_train_config_class("BiDirectionalConfig" if bidirectional else "UniDirectionalConfig"),
                       "model", root, True)
    mdl.state["_content"]["rnn_type"] = _enum_node(_RNN_TYPE, "rnn_type", model["rnn_type"], mdl)
    for name in ("hidden_size", "hidden_layers") + (() if bidirectional else ("lookahead_context",)):
        mdl.state["_content"][name] = _value_node("int", name, model[name], mdl)
    content["model"] = mdl

    content["checkpoint"] = _dict_config(
        _emit_class("hydra_configs.pytorch_lightning.callbacks", "ModelCheckpointConf"), "checkpoint", root, True,
        [("_target_", "str", "pytorch_lightning.callbacks.ModelCheckpoint"), ("filepath", "?str", None),
         ("monitor", "?str", None), ("verbose", "bool", False), ("save_last", "?bool", None),
         ("save_top_k", "?int", None), ("save_weights_only", "bool", False), ("mode", "str", "auto"),
         ("period", "int", 1), ("prefix", "str", ""), ("dirpath", "any", MISSING), ("filename", "?str", None)])
    content["trainer"] = _dict_config(
        _train_config_class("DeepSpeechTrainerConf"), "trainer", root, False,
        [("_target_", "str", "pytorch_lightning.trainer.Trainer"), ("logger", "any", True),
         ("checkpoint_callback", "bool", True), ("callbacks", "any", MISSING), ("default_root_dir", "?str", None),
         ("gradient_clip_val", "float", 0.0), ("gpus", "any", None), ("max_epochs", "int", 1000),
         ("precision", "int", precision), ("accelerator", "any", None), ("plugins", "any", None),
         ("amp_backend", "str", "native"), ("distributed_backend", "?str", None)])

    def augmentation(parent: _Emit) -> _Emit:
        return _dict_config(_train_config_class("AugmentationConfig"), "augmentation", parent, False,
                            [("speed_volume_perturb", "bool", False), ("spec_augment", "bool", False),
                             ("noise_dir", "str", ""), ("noise_prob", "float", 0.4), ("noise_min", "float", 0.0),
                             ("noise_max", "float", 0.5)])

    data = _dict_config(_train_config_class("DataConfig"), "data", root, False,
                        [("train_path", "str", "data/train_manifest.csv"), ("val_path", "str", "data/val_manifest.csv"),
                         ("batch_size", "int", 64), ("num_workers", "int", 4), ("labels_path", "str", "labels.json")])
    spc = _dict_config(_train_config_class("SpectConfig"), "spect", data, False,
                       [(k, kind, spect[k]) for k, kind in (("sample_rate", "int"), ("window_size", "float"),
                                                            ("window_stride", "float"))])
    spc.state["_content"]["window"] = _enum_node(_WINDOW, "window", spect["window"], spc)
    data.state["_content"]["spect"] = spc
    data.state["_content"]["augmentation"] = augmentation(data)
    content["data"] = data
    content["augmentation"] = augmentation(root)
    content["seed"] = _value_node("int", "seed", 123456, root)
    content["load_auto_checkpoint"] = _value_node("bool", "load_auto_checkpoint", False, root)
    return root


def save_deepspeech_checkpoint(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor],
                               labels: Sequence[str], model: Mapping[str, Any], spect: Mapping[str, Any],
                               optim: Mapping[str, Any] | None = None, epoch: int = 0, global_step: int = 0,
                               *, precision: int = 32) -> None:
    """Write a checkpoint that deepspeech.pytorch V3 (Lightning 1.1, omegaconf 2.0) loads as its own.

    The pickle has the real one's structure: hyper_parameters holds DictConfigs of BiDirectionalConfig /
    UniDirectionalConfig, AdamConfig / SGDConfig (chosen by ``momentum`` in optim; None means V3's default
    Adam) and SpectConfig inside a composed DeepSpeechConfig root. There is no optimizer or scheduler state,
    and the callback entry is that of a ModelCheckpoint that has not saved yet. Written atomically.
    """
    path = Path(path)
    model = normalize_model(model, path)
    spect = normalize_spect(spect, path)
    optim_n = _normalize_optim(optim, path)
    labels = normalize_labels(list(labels), path)
    check_state_dict_against_model(state_dict, labels, model, spect, path)
    # detach(): a pickle can attach backward hooks (and requires_grad) to a tensor; hand out bare data only.
    state_dict = {key: tensor.detach() for key, tensor in state_dict.items()}
    root = _build_train_config(model, spect, optim_n, checked_int(precision, "precision", path))
    content = root.state["_content"]
    checkpoint = {
        # Lightning 1.1.8's dump_checkpoint order.
        "epoch": checked_int(epoch, "epoch", path, 0),
        "global_step": checked_int(global_step, "global_step", path, 0),
        "pytorch-lightning_version": _LIGHTNING_VERSION,
        "callbacks": {_CHECKPOINT_HANDLER: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                            "current_score": None, "dirpath": None}},
        "optimizer_states": [],
        "lr_schedulers": [],
        # clone(): torch.save writes a view's whole storage; a copy writes just the tensor.
        "state_dict": collections.OrderedDict((k, t.detach().to("cpu").clone()) for k, t in state_dict.items()),
        "hparams_name": "kwargs",
        # DeepSpeech.__init__'s arguments, which Lightning's load_from_checkpoint passes back to it.
        "hyper_parameters": {"labels": labels, "model_cfg": content["model"], "precision": precision,
                             "optim_cfg": content["optim"], "spect_cfg": content["data"].state["_content"]["spect"]},
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer, pickle_module=_writer_pickle_module(), pickle_protocol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make the checkpoint private, unlike torch.save's
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
