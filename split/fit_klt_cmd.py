"""`python -m split fit-klt`: fit the klt-* codecs' transform to a Head's boundary on training utterances."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from core.family import resolve
from families.registry import get_family
from split.errors import run_cli

log = logging.getLogger("split.fit-klt")

HELP = "fit the KLT transform codec (klt-ans) to a Head's boundary tensors on training utterances"

DESCRIPTION = """Run the Head over a dataset dir (training utterances, not the test set) and fit the
Karhunen-Loeve transform of its boundary tensor: the principal axes of the boundary's channels, one
uniform step (--relative-step times the strongest component's standard deviation) and each component's
Laplace scale, written as klt.json for the klt-ans, klt-ans-2x and klt-ans-4x codecs; and for the klt-lp
codecs, at each of their steps, a least-squares prediction of every frame's components from the two frames
before (their entropy model's means) with the residual scales.

With --checkpoint (a family with its own Head/Tail cut, e.g. split_asr's model.pth) the fit is weighted
by the Tail's Fisher information at the boundary (the expected outer product of the gradient of the
Tail's log-likelihood of its own sampled outputs), so the error the step leaves falls where the Tail's
output is least sensitive to it. Without it the transform is the plain KLT (squared error).

--frame-normalize auto (the default) standardises each frame before the transform when the Tail (--tail,
default tail.onnx beside the head) uses the boundary only through a LayerNormalization over its channels:
that Tail cannot see a frame's mean and scale, so they need not be coded.

  python -m split fit-klt --head DIR/head.onnx --dataset TRAIN_DS --checkpoint model.pth --out DIR/klt.json

Put klt.json in the folder the edge and the server get as --autoencoder DIR; both must hold the same file
(requests carry its CRC-32)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", type=Path, required=True, help="head.onnx (its card beside it gives valid frames)")
    p.add_argument("--dataset", type=Path, required=True, help="dataset dir of training utterances")
    p.add_argument("--out", type=Path, required=True, help="the klt.json to write")
    p.add_argument("--checkpoint", type=Path,
                   help="the model's checkpoint: weight the fit by its Tail's Fisher information")
    p.add_argument("--family", help="model family of --checkpoint (default: the head card's family)")
    p.add_argument("--relative-step", type=float, default=0.05,
                   help="the step as a fraction of the strongest component's std (default %(default)s)")
    p.add_argument("--tail", type=Path, help="tail.onnx, read to decide --frame-normalize auto (default: beside --head)")
    p.add_argument("--frame-normalize", choices=["auto", "on", "off"], default="auto",
                   help="standardise each frame first; auto: when the Tail opens with LayerNorm over the channels "
                        "(default %(default)s)")
    p.add_argument("--fisher-samples", type=int, default=2,
                   help="sampled output sequences per utterance for the Fisher matrix (default %(default)s)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--seed", type=int, default=0, help="seed of the Fisher samples (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from split.codecs.klt import fit_klt, standardize_frames, with_predictors
    from split.edge import HeadModel, utterances_from_dataset

    if not args.relative_step > 0:
        raise ValueError(f"--relative-step {args.relative_step:g}: expected a positive fraction")
    head = HeadModel(args.head)
    boundaries: list[np.ndarray] = []
    for utt in tqdm(list(utterances_from_dataset(args.dataset, head.input.name, args.limit)), desc="fit-klt",
                    unit="utt", disable=args.no_progress):
        boundary, lengths = head.run(utt.features, utt.length)
        if boundary.ndim != 3:
            raise ValueError(f"--head {args.head}: boundary has shape {list(boundary.shape)}; the KLT codec needs "
                             "(batch, frames, channels)")
        boundaries.append(boundary[0, : lengths[0]] if lengths else boundary[0])
    if not boundaries:
        raise ValueError(f"--dataset {args.dataset}: no utterances")
    normalize = args.frame_normalize == "on"
    if args.frame_normalize == "auto":
        tail = args.tail or args.head.with_name("tail.onnx")
        normalize = tail.is_file() and opens_with_layer_norm(tail, head.session.get_outputs()[0].name)
        log.info("--frame-normalize auto: %s", f"{tail} opens with LayerNorm over the channels: on" if normalize
                 else f"{tail} {'does not open with LayerNorm' if tail.is_file() else 'not found'}: off")
    frames = np.concatenate(boundaries)
    fisher = None
    if args.checkpoint is not None:
        family = args.family or (head.card.family if head.card is not None else None)
        if not family:
            raise ValueError("--checkpoint: the head has no card naming its family; give --family")
        # The Fisher matrix is taken where the fit works: at the standardised frames (fit_klt standardises
        # the frames it is given itself).
        at = ([standardize_frames(b.astype(np.float64)).astype(np.float32) for b in boundaries] if normalize
              else boundaries)
        fisher = tail_fisher(family, args.checkpoint, at, args.fisher_samples, args.seed)
    meta: dict[str, Any] = {"head": str(args.head), "dataset": str(args.dataset), "utterances": len(boundaries),
                            "frames": int(frames.shape[0]), "relative_step": args.relative_step,
                            "checkpoint": str(args.checkpoint) if args.checkpoint else None}
    fit = fit_klt(frames, relative_step=args.relative_step, fisher=fisher, frame_normalize=normalize, meta=meta)
    fit = with_predictors(fit, boundaries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fit = fit.save(args.out)
    strong = int((fit.scales > fit.step / 2).sum())
    log.info("wrote %s: %d channels (%s weighting%s), step %.4g, %d components above half a step on the fit data",
             args.out, fit.channels, fit.weighting, ", frames standardised" if normalize else "", fit.step, strong)
    return 0


def opens_with_layer_norm(tail: Path, boundary: str) -> bool:
    """The Tail graph uses its input `boundary` only as the input of LayerNormalization nodes over the last
    axis (then it cannot tell a frame from the same frame shifted and scaled)."""
    import onnx

    graph = onnx.load(str(tail), load_external_data=False).graph
    name = boundary if any(i.name == boundary for i in graph.input) else graph.input[0].name
    rank = next((len(i.type.tensor_type.shape.dim) for i in graph.input if i.name == name), 0)
    users = [n for n in graph.node if name in n.input]
    if not users or any(o.name == name for o in graph.output):
        return False
    for node in users:
        if node.op_type != "LayerNormalization" or list(node.input).index(name) != 0:
            return False
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if axis not in (-1, rank - 1):
            return False
    return True


def tail_module(family: str, checkpoint: Path) -> Any:
    """The family's Tail (its own Head/Tail cut) as a PyTorch module in eval mode: boundary -> logits."""
    fam = get_family(family)
    if fam.split is None:
        raise ValueError(f"--checkpoint: family {family!r} has no Head/Tail cut of its own to take the Tail from")
    recipe = resolve(fam.split).split_recipe(checkpoint)
    tail = recipe.parts.get("tail")
    if tail is None or len(tail.inputs) != 1:
        raise ValueError(f"--checkpoint: family {family!r}'s Tail must take the boundary as its only input")
    return tail.module.eval()


def tail_fisher(family: str, checkpoint: Path, boundaries: list[np.ndarray], samples: int, seed: int) -> np.ndarray:
    """E[g g^T] over frames, g the gradient at one boundary frame of the Tail's log-likelihood of labels
    sampled from its own output distribution (the Fisher information of the Tail's per-frame outputs)."""
    import torch

    module = tail_module(family, checkpoint)
    gen = torch.Generator().manual_seed(seed)
    channels = boundaries[0].shape[1]
    total = np.zeros((channels, channels))
    count = 0
    for b in boundaries:
        for _ in range(max(1, samples)):
            x = torch.tensor(b[None], requires_grad=True)
            logits = module(x)
            if isinstance(logits, (tuple, list)):
                logits = logits[0]
            logp = torch.log_softmax(logits, dim=-1)
            labels = torch.multinomial(logp.detach().exp().reshape(-1, logp.shape[-1]), 1, generator=gen)
            logp.reshape(-1, logp.shape[-1]).gather(1, labels).sum().backward()
            g = x.grad[0].double().numpy()
            total += g.T @ g
            count += g.shape[0]
    return total / max(count, 1)
