"""Reading split-model-inference's `model.pth` and `autoencoder.pth` (plain state_dicts).

Both files are what `torch.save(model.state_dict(), path)` writes. They are read with
``weights_only=True``, so a file that holds anything but tensors and plain containers is refused
instead of executing code. Hyper-parameters are not stored in the files; they are inferred from the
tensor shapes (each can be overridden), and the whole state_dict is then checked key by key and shape
by shape against the network they describe, so a wrong or damaged file fails with a message that
names the file and the first offending tensors.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
import torch

from families.split_asr.autoencoder import AutoEncoderDecoder, AutoencoderConfig
from families.split_asr.model import SplitASRConfig, SpeechRecognitionModel

MAX_LISTED = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is; the message names the file and what was expected."""


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True) of a plain state_dict (name -> tensor), with errors that name `path`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch wraps the reason in advice to drop weights_only; keep only the reason.
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please use|\n|$)", str(exc))
        reason = found.group(1).strip() if found else str(exc).splitlines()[0]
        if "Unsupported global" in reason:
            raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): it holds Python objects, not "
                                  f"only tensors ({reason}); a {what} holds only tensors") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file ({reason})") from None
    except Exception as exc:  # zip/pickle corruption surfaces as RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a state_dict (a non-empty dict of tensors), got {type(obj).__name__}")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        hint = " (a training checkpoint wrapper? save model.state_dict() itself)" if "state_dict" in obj else ""
        raise CheckpointError(f"{path}: expected a plain state_dict of tensors; entries that are not tensors: "
                              f"{not_tensors[:MAX_LISTED]}{hint}")
    bad = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite values (NaN/inf) in {bad[:MAX_LISTED]}")
    return obj


def _shape(sd: dict[str, torch.Tensor], key: str, rank: int, path: Path) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{path}: no {key!r} tensor; is this a split-model-inference model.pth? "
                              f"(first keys: {list(sd)[:MAX_LISTED]})")
    shape = tuple(sd[key].shape)
    if len(shape) != rank:
        raise CheckpointError(f"{path}: {key!r} has shape {list(shape)}, expected rank {rank}")
    return shape


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(sd: dict[str, torch.Tensor], path: Path, **overrides: int | None) -> SplitASRConfig:
    """The network's hyper-parameters from tensor shapes; non-None `overrides` win."""
    channels = _shape(sd, "cnn.weight", 4, path)[0]
    rnn_dim, fc_in = _shape(sd, "fully_connected.weight", 2, path)
    n_class = _shape(sd, "classifier.3.weight", 2, path)[0]
    if fc_in % channels:
        raise CheckpointError(f"{path}: fully_connected takes {fc_in} inputs, not a multiple of the stem's "
                              f"{channels} channels")
    found = {
        "n_cnn_layers": _count(sd, r"rescnn_layers\.(\d+)\.cnn1\.weight$"),
        "n_rnn_layers": _count(sd, r"birnn_layers\.(\d+)\.BiGRU\.weight_ih_l0$"),
        "rnn_dim": rnn_dim,
        "n_class": n_class,
        "n_feats": 2 * (fc_in // channels),
        "channels": channels,
    }
    unknown = set(overrides) - set(found)
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)}; known: {sorted(found)}")
    found.update({k: int(v) for k, v in overrides.items() if v is not None})
    try:
        return SplitASRConfig(**found)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def check_state_dict(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path,
                     described: str) -> None:
    """Every key present, none extra, every shape equal; one message listing what is wrong."""
    problems: list[str] = []
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {missing[:MAX_LISTED]}")
    if extra:
        problems.append(f"unexpected {len(extra)} tensor(s): {extra[:MAX_LISTED]}")
    shapes = [f"{k}: {list(sd[k].shape)} in the file, {list(v.shape)} expected" for k, v in expected.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): " + "; ".join(shapes[:MAX_LISTED]))
    if problems:
        raise CheckpointError(f"{path} does not match {described}:\n  " + "\n  ".join(problems))


def load_model(path: Path, **overrides: int | None) -> tuple[SpeechRecognitionModel, SplitASRConfig]:
    """model.pth -> an eval-mode SpeechRecognitionModel and the config it was inferred as."""
    path = Path(path)
    sd = read_state_dict(path, "model.pth (split-model-inference state_dict)")
    cfg = infer_config(sd, path, **overrides)
    model = SpeechRecognitionModel(cfg)
    check_state_dict(sd, model.state_dict(), path, f"a split ASR model with {cfg.to_dict()}")
    model.load_state_dict(sd, strict=True)
    return model.eval(), cfg


def infer_autoencoder_config(sd: dict[str, torch.Tensor], path: Path) -> AutoencoderConfig:
    hidden, input_size = _ae_shape(sd, "layer_1.weight", path)
    bottleneck, _ = _ae_shape(sd, "layer_2.weight", path)
    return AutoencoderConfig(input_size=input_size, hidden_size=hidden, bottleneck=bottleneck)


def _ae_shape(sd: dict[str, torch.Tensor], key: str, path: Path) -> tuple[int, int]:
    if key not in sd:
        raise CheckpointError(f"{path}: no {key!r} tensor; an autoencoder.pth holds layer_1..layer_4 "
                              f"(first keys: {list(sd)[:MAX_LISTED]})")
    shape = tuple(sd[key].shape)
    if len(shape) != 2:
        raise CheckpointError(f"{path}: {key!r} has shape {list(shape)}, expected (out, in)")
    return shape[0], shape[1]


def load_autoencoder(path: Path, rnn_dim: int | None = None) -> AutoEncoderDecoder:
    """autoencoder.pth -> an eval-mode AutoEncoderDecoder; `rnn_dim` (the Head's width) is checked if given."""
    path = Path(path)
    sd = read_state_dict(path, "autoencoder.pth (split-model-inference autoencoder state_dict)")
    cfg = infer_autoencoder_config(sd, path)
    if rnn_dim is not None and cfg.input_size != rnn_dim:
        raise CheckpointError(f"{path}: the autoencoder takes {cfg.input_size} features per frame, but the model's "
                              f"Head gives rnn_dim = {rnn_dim}")
    ae = AutoEncoderDecoder(cfg)
    check_state_dict(sd, ae.state_dict(), path, f"an autoencoder with {cfg.to_dict()}")
    ae.load_state_dict(sd, strict=True)
    return ae.eval()


def save_state_dict(module: torch.nn.Module, path: Path) -> None:
    """The original's format (torch.save of the state_dict), written atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(module.state_dict(), str(tmp))
    tmp.replace(path)
