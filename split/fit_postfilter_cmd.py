"""`python -m split fit-postfilter`: train the KLT codec's decoder-side post-filter on training utterances."""
from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.fsio import atomic_write_bytes
from split.errors import run_cli

log = logging.getLogger("split.fit-postfilter")

HELP = "train a KLT codec's post-filter (decoder side, the *-pf codecs) on training utterances"

DESCRIPTION = """Run the Head over a dataset dir (training utterances, not the test set), code each boundary
with the KLT codec at --coarseness times the fit's step, and train a small residual convolution over time
that maps the decoded boundary back towards the original, minimising the error in the fit's
(Fisher-weighted) coordinates, the error the Tail is sensitive to. (Training against the divergence of the
Tail's outputs instead was tried on the demo model and cost more words.) Writes klt_postfilter_<N>x.onnx beside
klt.json; the server applies it when a request names the -pf codec. The edge needs neither the filter nor
any change.

  python -m split fit-postfilter --head DIR/head.onnx --dataset TRAIN_DS --learned DIR

Training is seeded and single-threaded, so the same inputs give the same filter on one machine."""

SUPPORTED = (3.0, 4.0)  # the steps a -pf codec is registered for (split/codecs/__init__.py)
EVAL_EVERY = 100  # steps between checks on the held-out utterances


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", type=Path, required=True, help="head.onnx")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir of training utterances")
    p.add_argument("--learned", type=Path, required=True, help="the folder holding klt.json; the filter is written there")
    p.add_argument("--coarseness", type=float, default=4.0, choices=SUPPORTED,
                   help="the KLT step multiple the filter is trained for (default %(default)g: klt-ans-4x-pf and "
                        "klt-lp-4x-pf; 3: klt-lp-3x-pf)")
    p.add_argument("--steps", type=int, default=3000, help="training steps, at most (default %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default %(default)s)")
    p.add_argument("--crop", type=int, default=64, help="frames per crop (default %(default)s)")
    p.add_argument("--hidden", type=int, default=192, help="hidden channels (default %(default)s)")
    p.add_argument("--kernel", type=int, default=5, help="time kernel of the two hidden convolutions (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from split.codecs.klt import KLT_FILE, KltQuantizer, KltTransform, load_klt, standardize_frames
    from split.codecs.postfilter import META_COARSENESS, META_KLT_CRC, postfilter_file
    from split.edge import HeadModel, utterances_from_dataset

    for name in ("steps", "batch", "crop", "hidden", "kernel"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)}: expected at least 1")
    if args.kernel % 2 == 0:
        raise ValueError(f"--kernel {args.kernel}: expected an odd width (the filter keeps the frame count)")
    if not (args.learned / KLT_FILE).is_file():
        raise FileNotFoundError(f"--learned {args.learned}: no {KLT_FILE} (python -m split fit-klt first)")
    # The fit alone: the folder's filters may have been trained with an earlier klt.json, and replacing
    # them after a refit is what this command is for (Learned.from_dir would refuse them).
    fit = load_klt(args.learned / KLT_FILE)
    # What any codec at this step decodes before its filter (the entropy stage is lossless, so not run here).
    quantizer, transform = KltQuantizer(fit, args.coarseness), KltTransform(fit)
    head = HeadModel(args.head)
    decoded, targets = [], []
    for utt in tqdm(list(utterances_from_dataset(args.dataset, head.input.name, args.limit)), desc="code",
                    unit="utt", disable=args.no_progress):
        boundary, lengths = head.run(utt.features, utt.length)
        b = boundary[0, : lengths[0]] if lengths else boundary[0]
        q, qparams = quantizer.quantize(transform.forward(b))
        decoded.append(transform.inverse(quantizer.dequantize(q, qparams, q.shape), b.shape[1]))
        # What the decoder should return: the frame the codec means to carry (standardised where the fit is).
        targets.append(standardize_frames(b.astype(np.float64)).astype(np.float32) if fit.frame_normalize else b)
    if not decoded:
        raise ValueError(f"--dataset {args.dataset}: no utterances")
    if decoded[0].shape[1] != fit.channels:
        raise ValueError(f"--head {args.head}: boundary has {decoded[0].shape[1]} channels, klt.json {fit.channels}")
    model, before, after = train(decoded, targets, fit.forward, args)
    out = args.learned / postfilter_file(args.coarseness)
    atomic_write_bytes(out, export(model, fit.channels, {META_KLT_CRC: str(fit.crc),
                                                         META_COARSENESS: f"{args.coarseness:g}"}))
    log.info("wrote %s: weighted squared error on held-out training utterances %.4g -> %.4g", out, before, after)
    return 0


def _model(channels: int, hidden: int, kernel: int) -> Any:
    import torch
    from torch import nn

    class PostFilterNet(nn.Module):
        """x + conv(gelu(conv(gelu(conv(x))))) over time; (batch, frames, C) in and out. The last layer starts
        at zero, so training starts from the plain codec's output."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv1d(channels, hidden, kernel, padding=kernel // 2)
            self.b = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
            self.c = nn.Conv1d(hidden, channels, 1)
            nn.init.zeros_(self.c.weight)
            nn.init.zeros_(self.c.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.transpose(1, 2)
            h = self.c(nn.functional.gelu(self.b(nn.functional.gelu(self.a(h)))))
            return x + h.transpose(1, 2)

    return PostFilterNet()


def _weighted_error(out: Any, target: Any, weight: Any) -> Any:
    """Mean squared error in the fit's coordinates (Fisher-weighted where the fit is)."""
    return (((out - target) @ weight) ** 2).mean()


def _mean_error(model: Any, weight: Any, decoded: list[np.ndarray], targets: list[np.ndarray]) -> float:
    import torch

    with torch.no_grad():
        total = sum(float(_weighted_error(model(torch.from_numpy(d)[None]), torch.from_numpy(t)[None], weight))
                    * d.shape[0] for d, t in zip(decoded, targets))
    return total / sum(d.shape[0] for d in decoded)


def train(decoded: list[np.ndarray], targets: list[np.ndarray], forward: np.ndarray,
          args: argparse.Namespace) -> tuple[Any, float, float]:
    """The filter after at most --steps Adam steps on random crops, kept at its best on held-out utterances
    (a tenth of them, at least one): a few hundred utterances overfit a filter of this size quickly. Returns
    it with the held-out weighted error before training and at the kept step."""
    import copy

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)  # reproducible sums
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(decoded))
    held = order[: max(1, len(decoded) // 10)] if len(decoded) > 1 else order
    fit_on = [i for i in order if i not in set(held)] or list(order)
    model = _model(decoded[0].shape[1], args.hidden, args.kernel)
    weight = torch.tensor(forward, dtype=torch.float32)

    def held_error() -> float:
        return _mean_error(model, weight, [decoded[i] for i in held], [targets[i] for i in held])

    before = best = held_error()
    best_state = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in tqdm(range(1, args.steps + 1), desc="fit-postfilter", unit="step", disable=args.no_progress):
        picks = [fit_on[int(i)] for i in rng.integers(len(fit_on), size=args.batch)]
        length = min(args.crop, *(decoded[i].shape[0] for i in picks))
        starts = [int(rng.integers(decoded[i].shape[0] - length + 1)) for i in picks]
        x = torch.from_numpy(np.stack([decoded[i][s:s + length] for i, s in zip(picks, starts)]))
        filtered = model(x)
        # The mean of each crop's error (equal to the batch's up to rounding; the committed filter was
        # trained with this order of sums).
        value = sum(_weighted_error(filtered[k:k + 1], torch.from_numpy(targets[i][s:s + length])[None], weight)
                    for k, (i, s) in enumerate(zip(picks, starts))) / len(picks)
        opt.zero_grad()
        value.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == args.steps:
            error = held_error()
            if error < best:
                best, best_state = error, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model, before, best


def export(model: Any, channels: int, metadata: dict[str, str]) -> bytes:
    """The filter as ONNX bytes (dynamic batch and frames), checked against PyTorch, with `metadata`."""
    import onnx
    import onnxruntime as ort
    import torch

    example = torch.randn(2, 37, channels, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, input_names=["decoded"], output_names=["filtered"], opset_version=17,
                      dynamic_axes={"decoded": {0: "batch", 1: "frames"}, "filtered": {0: "batch", 1: "frames"}},
                      dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"decoded": example.numpy()})[0]
    with torch.no_grad():
        want = model(example).numpy()
    if not np.allclose(got, want, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"post-filter ONNX differs from PyTorch by {np.abs(got - want).max():.3g}")
    return data
