"""wav2vec2 CTC (Hugging Face model directory) as a pipeline family.

A directory as `save_pretrained` writes it, e.g. facebook/wav2vec2-base-960h: config.json, weights as
model.safetensors or pytorch_model.bin, vocab.json, preprocessor_config.json and tokenizer files. It is
read with transformers from local files only; nothing is fetched from a hub.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.audio import SAMPLE_RATE
from core.recipe import LoadedModel, TensorSpec, sha256_file
from families.wav2vec2 import FAMILY as _FAMILY
from families.wav2vec2.features import FEATURE_KIND
from families.wav2vec2.guide import GUIDE

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
REQUIRED_FILES = ("config.json", "vocab.json")
# The feature extractor's settings: preprocessor_config.json (as on the hub, transformers < 5), or the
# "feature_extractor" entry of processor_config.json (what transformers 5 save_pretrained writes).
PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
# HF's Wav2Vec2FeatureExtractor normalises with this epsilon (the Ascend guide uses 1e-5; see --modelzoo).
HF_NORM_EPS = 1e-7
# Tensors a wav2vec2 CTC checkpoint may lack without changing inference: the SpecAugment mask embedding is
# used only when training with time masking, and wav2vec2-base-960h on the hub does not hold it.
INFERENCE_UNUSED = frozenset({"wav2vec2.masked_spec_embed"})

# What Hugging Face tools read beside the weights (Optimum's ORTModelForCTC infers the library and task
# from config.json and refuses a folder without it; pipelines need the processor and tokenizer files).
# Copied next to the exported model.onnx so the export folder opens as an Optimum export does.
COMPANION_FILES = ("config.json", "preprocessor_config.json", "processor_config.json", "vocab.json",
                   "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.json")


class ModelDirError(ValueError):
    """A model directory that is incomplete or inconsistent; the message names the file."""


def _named(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def check_safetensors(path: Path) -> None:
    """A one-line ModelDirError for an empty or truncated safetensors file (the header promises more bytes
    than the file holds), instead of SafetensorError's traceback from deep inside transformers."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as exc:
        raise ModelDirError(f"{path}: not a complete safetensors file ({exc}; {path.stat().st_size} bytes): "
                            "expected the whole file save_pretrained writes (an interrupted copy or download?)") from None


def check_loading_info(weights: Path, info: dict[str, Any]) -> None:
    """Refuse weights that transformers would have filled in at random, naming the keys.

    `info` is from_pretrained's output_loading_info: its missing keys were initialised at random, its
    unexpected keys ignored, its mismatched keys (loaded with ignore_mismatched_sizes) re-initialised.
    """
    missing = sorted(set(info.get("missing_keys", ())) - INFERENCE_UNUSED)
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(info.get("mismatched_keys", ()))
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_named(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_named(unexpected)})")
    if mismatched:
        shapes = [f"{k}: {list(got)} in the file, {list(want)} in the model" for k, got, want in mismatched]
        parts.append(f"{len(mismatched)} mis-shaped ({_named(shapes)})")
    raise ModelDirError(f"{weights} does not hold this model's weights: " + ", ".join(parts)
                        + "; expected every Wav2Vec2ForCTC tensor that config.json describes, with its shape")


class LogitsOnly(nn.Module):
    """Wav2Vec2ForCTC returning a plain logits tensor (the exporters want tensors, not ModelOutput)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values).logits


def check_model_dir(model_dir: Path) -> Path:
    """The weights file; raises ModelDirError naming what is missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"wav2vec2 model directory not found: {model_dir}")
    missing = [f for f in REQUIRED_FILES if not (model_dir / f).is_file()]
    if not any((model_dir / f).is_file() for f in PREPROCESSOR_FILES):
        missing.append(" or ".join(PREPROCESSOR_FILES))
    weights = next((model_dir / w for w in WEIGHT_FILES if (model_dir / w).is_file()), None)
    if weights is None:
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise ModelDirError(f"{model_dir} is not a complete Hugging Face wav2vec2 CTC directory: missing "
                            + ", ".join(missing))
    return weights


def copy_companion_files(model_dir: Path, out_dir: Path) -> list[str]:
    """Copy the model directory's config, processor and tokenizer files into the export folder (each
    file appears complete or not at all); returns the names copied."""
    import os
    import shutil

    copied = []
    for name in COMPANION_FILES:
        src = Path(model_dir) / name
        if src.is_file():
            tmp = Path(out_dir) / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, Path(out_dir) / name)
            copied.append(name)
    return copied


def read_vocab(model_dir: Path, vocab_size: int) -> list[str]:
    path = Path(model_dir) / "vocab.json"
    try:
        vocab = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(vocab, dict) or not vocab:
        raise ModelDirError(f"{path}: expected a token -> id object")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise ModelDirError(f"{path}: token ids are not 0..{len(ids) - 1}")
    if len(ids) != vocab_size:
        raise ModelDirError(f"{path} has {len(ids)} tokens but the model's output size (config.json vocab_size) "
                            f"is {vocab_size}")
    labels = [""] * len(ids)
    for token, i in vocab.items():
        labels[i] = token
    return labels


def feature_config(model_dir: Path) -> dict[str, Any]:
    """The waveform normalisation the model's processor applies, read from its saved config."""
    path = next(Path(model_dir) / f for f in PREPROCESSOR_FILES if (Path(model_dir) / f).is_file())
    try:
        pre = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from None
    if path.name == "processor_config.json":
        if "feature_extractor" not in pre:
            raise ModelDirError(f"{path} has no feature_extractor entry")
        pre = pre["feature_extractor"]
    return {
        "kind": FEATURE_KIND,
        "sample_rate": int(pre.get("sampling_rate", SAMPLE_RATE)),
        "do_normalize": bool(pre.get("do_normalize", True)),
        "norm_eps": HF_NORM_EPS,
        "padding_value": float(pre.get("padding_value", 0.0)),
        "return_attention_mask": bool(pre.get("return_attention_mask", False)),
        "resample": True,  # audio at another rate is resampled with a warning unless --no-resample
    }


def output_length_rule(config: Any) -> dict[str, Any]:
    """The feature encoder's conv stack: frames = fold((n - k) // s + 1) over its layers."""
    return {"kind": "conv", "layers": [{"kernel": int(k), "stride": int(s), "padding": 0, "dilation": 1}
                                       for k, s in zip(config.conv_kernel, config.conv_stride)]}


def frames_for(rule: dict[str, Any], n: int) -> int:
    for layer in rule["layers"]:
        n = (n - layer["kernel"]) // layer["stride"] + 1
    return max(n, 0)


def make_example_inputs(lengths: list[int], total: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Normalised-waveform-like rows, zero past each row's length; a row depends only on its length."""
    total = total or max(lengths)
    x = torch.zeros(len(lengths), total)
    for row, n in enumerate(lengths):
        gen = torch.Generator().manual_seed(seed * 100003 + n)
        x[row, :n] = torch.randn(n, generator=gen)
    return {"input_values": x}


def load(model_dir: str | Path, static_samples: int | None = None, static_batch: int | None = None) -> LoadedModel:
    """Load a Hugging Face wav2vec2 CTC directory into an eval-mode reference model."""
    from transformers import Wav2Vec2ForCTC

    model_dir = Path(model_dir)
    weights = check_model_dir(model_dir)
    if weights.suffix == ".safetensors":
        check_safetensors(weights)
    try:
        # ignore_mismatched_sizes: report mis-shaped tensors by name below instead of transformers' bare raise.
        hf, info = Wav2Vec2ForCTC.from_pretrained(str(model_dir), local_files_only=True, output_loading_info=True,
                                                  ignore_mismatched_sizes=True)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDirError(f"{model_dir}: transformers could not load it as Wav2Vec2ForCTC: {first}") from None
    check_loading_info(weights, info)
    hf.eval()
    cfg = hf.config
    labels = read_vocab(model_dir, int(cfg.vocab_size))
    feature = feature_config(model_dir)
    rule = output_length_rule(cfg)
    batch: int | str = static_batch or "batch"
    samples: int | str = static_samples or "samples"
    frames: int | str = frames_for(rule, static_samples) if static_samples else "frames"
    inputs = [TensorSpec("input_values", "float32", (batch, samples), "features", time_axis=1)]
    outputs = [TensorSpec("logits", "float32", (batch, frames, len(labels)), "logits", time_axis=1)]
    vocab = {t: i for i, t in enumerate(labels)}
    pad_id = int(cfg.pad_token_id) if cfg.pad_token_id is not None else vocab.get("<pad>", 0)
    special = sorted({vocab[t] for t in ("<s>", "</s>", "<unk>") if t in vocab} - {pad_id})
    base_like = not bool(getattr(cfg, "feat_extract_norm", "group") == "layer")
    card_facts = {
        "architecture": {
            "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
            "feat_extract_norm": cfg.feat_extract_norm, "conv_dim": list(cfg.conv_dim),
            "parameters": sum(p.numel() for p in hf.parameters()),
        },
        "labels": labels,
        "blank_index": pad_id,
        "word_delimiter": "|" if "|" in vocab else " ",
        "special_tokens": special,
        "feature": feature,
        "output_length_rule": rule,
        "metrics_convention": "hf",
        "modelzoo": GUIDE,  # the Ascend wav2vec2 guide, reproduced by `--modelzoo` (families/wav2vec2/guide.py)
        "padding": ("zero padding changes outputs: this model takes no attention mask and its feature encoder "
                    "uses group norm" if base_like else "layer-norm feature encoder"),
        "static_shape": {"samples": static_samples, "batch": static_batch} if static_samples or static_batch else None,
    }
    source = {"path": str(model_dir.resolve()), "sha256": sha256_file(weights), "weights": weights.name,
              "format": "Hugging Face wav2vec2 CTC directory", "transformers_config": cfg.model_type}
    if static_samples:
        parity_lengths = [static_samples, static_samples * 3 // 4, static_samples // 2]
    else:
        parity_lengths = [16000, 40000, 100000]  # 100000 samples: the Ascend guide's fixed input
    return LoadedModel(
        family=_FAMILY.name,
        module=LogitsOnly(hf).eval(),
        inputs=inputs,
        outputs=outputs,
        make_inputs=lambda ls, total=None: make_example_inputs(ls, total or static_samples),
        card_facts=card_facts,
        source=source,
        opset=17,
        parity_lengths=parity_lengths,
        # Trained wav2vec2 logits reach tens in magnitude; fp32 reassociation in ORT's fused kernels moves
        # them by up to ~5e-4 on the demo model (random-weight models stay near 1e-6). 1e-3 still catches
        # any real export error, which shows up as differences of order 0.1-10.
        atol=1e-3,
        rtol=1e-3,
        frames_for=lambda n: frames_for(rule, n),
        padding_invariant=not base_like,
    )
