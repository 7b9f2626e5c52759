"""`python -m split resnet-table`: the cloud-edge seed's per-partition table on a bare ResNet-50 ONNX graph.

The seed (Cloud-Edge Collaborative Inference) cuts weiaicunzai/pytorch-cifar100's CIFAR ResNet-50,
unrolled into a chain of 22 layers: the 3x3 stem's conv, bn and relu (1-3), the 16 bottleneck blocks
(4-19: conv2_x 4-6, conv3_x 7-10, conv4_x 11-16, conv5_x 17-19), the average pool (20), the flatten
(21) and fc (22). Partition k runs layers 1..k on the edge and the rest in the cloud, so its points 0,
3, 10, 16, 20 and 22 are the stage boundaries. torchvision's ResNet-50 (families/resnet) has the same
stages, with a 7x7/2 stem conv and a max pool after the stem's relu, so the points map onto its
top-level children as in SEED_POINTS. Point 0 and 22 are not cuts: the whole model runs in the cloud
(the image is sent) or on the edge (the logits are sent, as the seed's edge sends its result).

The graph is exported from PyTorch once (random weights from --seed, or --weights: a torchvision
resnet50 state_dict), then cut with `python -m split cut --after MODULE` like any bare ONNX graph, and
each point is run in ONNX Runtime on synthetic 32x32 images (uniform pixels normalised with the seed's
CIFAR-100 mean/std): edge and cloud ms are per-image medians, transfer ms is the boundary's encoded
bytes (--codec) at --bandwidth plus --rtt, and agreement is the share of images whose top-1 class
equals the unsplit graph's.
"""
from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from core.dataset_dir import atomic_write_json
from core.machine import machine_info
from split.__main__ import main as split_main
from split.errors import run_cli
from split.planner import format_bandwidth, parse_bandwidth, parse_duration_ms
from split.timing import write_tables

log = logging.getLogger("split")

HELP = "the cloud-edge seed's partition table (edge / transfer / cloud ms, agreement) on a bare ResNet-50 graph"

# seed partition point -> (top-level module of torchvision's ResNet-50 the cut follows, what that is)
SEED_POINTS: dict[int, tuple[str | None, str]] = {
    0: (None, "input: the whole model in the cloud, the image is sent"),
    3: ("relu", "after conv1, bn1, relu (the seed's 3-layer stem; the max pool runs in the cloud)"),
    10: ("layer2", "after layer2 (the seed's conv3_x)"),
    16: ("layer3", "after layer3 (the seed's conv4_x)"),
    20: ("avgpool", "after the global average pool"),
    22: (None, "output: the whole model on the edge, the logits are sent"),
}
# The seed's normalisation of CIFAR-100 images.
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
IMAGE_SIZE = 32
OPSET = 17


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="folder for NAME.md/.csv/.json")
    p.add_argument("--name", default="split_resnet50_partitions", help="file stem (default %(default)s)")
    p.add_argument("--work", type=Path, default=Path("work/split/resnet50"),
                   help="folder for model.onnx and the cuts (reused while the model options are unchanged)")
    p.add_argument("--images", type=int, default=100, help="synthetic images (the seed used 100)")
    p.add_argument("--width", type=int, default=64, help="stem channels; 64 is torchvision's ResNet-50")
    p.add_argument("--classes", type=int, default=1000, help="classifier outputs (torchvision's default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the images")
    p.add_argument("--weights", type=Path, help="a torchvision resnet50 state_dict (.pth) instead of random weights")
    p.add_argument("--bandwidth", default="10mbit", help="link rate for transfer ms (default %(default)s)")
    p.add_argument("--rtt", default="0ms", help="round-trip time added to every transfer (default %(default)s)")
    p.add_argument("--codec", default="fp32", help="codec of the boundary tensor (see `python -m split codecs`)")
    p.add_argument("--repeats", type=int, default=3, help="runs per image and stage, median kept (default 3)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    return run_cli(_run, args)


def export_resnet(work: Path, *, width: int, classes: int, seed: int, weights: Path | None) -> Path:
    """work/model.onnx (input `image` (batch, 3, 32, 32), output `logits`), re-exported when the options change."""
    import torch

    from families.resnet.model import resnet50

    config = {"width": width, "classes": classes, "seed": seed, "image_size": IMAGE_SIZE, "opset": OPSET,
              "weights": str(weights) if weights else None,
              "weights_mtime": weights.stat().st_mtime if weights else None}
    model_path, config_path = work / "model.onnx", work / "model.json"
    if model_path.is_file() and config_path.is_file() and json.loads(config_path.read_text()) == config:
        return model_path
    model = resnet50(classes, width, seed)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            raise ValueError(f"--weights {weights}: not a torchvision resnet50 state_dict for {classes} classes "
                             f"at width {width}: {str(exc).splitlines()[0]}") from None
    model.eval()
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "model.onnx.tmp"
    # The TorchScript exporter (as core/onnx_export.py): it names nodes by module scope
    # (/layer2/layer2.3/...), which `split cut --after` relies on.
    torch.onnx.export(model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),), str(tmp), dynamo=False,
                      input_names=["image"], output_names=["logits"], opset_version=OPSET,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
    tmp.replace(model_path)
    atomic_write_json(config_path, config)
    for point in SEED_POINTS:  # cuts of an older model are stale
        (work / f"point{point}" / "cut.json").unlink(missing_ok=True)
    return model_path


def cut_points(model: Path, work: Path) -> dict[int, Path]:
    """Each seed point that is a real cut, cut by `python -m split cut` into work/point<k>/ (kept when done)."""
    dirs = {}
    for point, (module, _) in SEED_POINTS.items():
        if module is None:
            continue
        out = work / f"point{point}"
        if not (out / "cut.json").is_file():
            rc = split_main(["cut", "--model", str(model), "--after", module, "--out", str(out),
                             "--dims", "batch=2"])
            if rc != 0:
                raise ValueError(f"python -m split cut --model {model} --after {module} failed (exit {rc})")
        dirs[point] = out
    return dirs


def synthetic_images(n: int, seed: int) -> np.ndarray:
    """n images (n, 3, 32, 32): uniform pixels in [0, 1), normalised as the seed normalises CIFAR-100."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    mean = np.asarray(CIFAR100_MEAN, np.float32)[:, None, None]
    std = np.asarray(CIFAR100_STD, np.float32)[:, None, None]
    return (pixels - mean) / std


def run_io_name(session: Any, inputs: bool) -> str:
    return (session.get_inputs() if inputs else session.get_outputs())[0].name


def partition_table(model: Path, cuts: dict[int, Path], images: np.ndarray, codec: Any, *, bandwidth_bps: float,
                    rtt_ms: float, repeats: int, threads: int, progress: bool = True) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from split.profiler import timed
    from split.session import load_session

    whole = load_session(model, threads)

    def run(session: Any, x: np.ndarray) -> np.ndarray:
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    reference = [run(whole, img[None]) for img in images]
    rows = []
    for point, (module, what) in tqdm(SEED_POINTS.items(), desc="partitions", unit="point", disable=not progress):
        head = load_session(cuts[point] / "head.onnx", threads) if point in cuts else None
        tail = load_session(cuts[point] / "tail.onnx", threads) if point in cuts else None
        if point == 0:
            tail = whole
        elif point == max(SEED_POINTS):
            head = whole
        edge_ms, cloud_ms, nbytes, agree, max_diff = [], [], [], 0, 0.0
        shape: tuple[int, ...] = ()
        for i, (img, ref) in enumerate(zip([images[0]] + list(images), [reference[0]] + reference)):
            x = img[None]
            boundary, t_edge = timed(lambda: run(head, x), repeats) if head is not None else (x, 0.0)
            encoded = codec.encode(boundary)
            received = codec.decode(encoded.payload, encoded.params, boundary.shape)
            logits, t_cloud = timed(lambda: run(tail, received), repeats) if tail is not None else (received, 0.0)
            if i == 0:
                continue  # warm-up
            shape = boundary.shape
            edge_ms.append(t_edge)
            cloud_ms.append(t_cloud)
            nbytes.append(len(encoded.payload))
            agree += int(np.argmax(logits) == np.argmax(ref))
            max_diff = max(max_diff, float(np.abs(logits.astype(np.float64) - ref).max()))
        mean_bytes = float(np.mean(nbytes))
        transfer = 8e3 * mean_bytes / bandwidth_bps + rtt_ms
        edge, cloud = float(np.median(edge_ms)), float(np.median(cloud_ms))
        tensor = (json.loads((cuts[point] / "cut.json").read_text())["boundary"][0] if point in cuts
                  else run_io_name(whole, point == 0))
        rows.append({"point": point, "boundary": module or ("input" if point == 0 else "output"), "tensor": tensor,
                     "boundary_shape": "x".join(map(str, shape)), "bytes": mean_bytes, "edge_ms": edge,
                     "transfer_ms": transfer, "cloud_ms": cloud, "total_ms": edge + transfer + cloud,
                     "agreement_pct": 100.0 * agree / len(images), "max_abs_diff": max_diff, "what": what})
    return rows


def _run(args: argparse.Namespace) -> int:
    from split.codecs import get_codec

    if args.images < 1 or args.width < 1 or args.classes < 1 or args.repeats < 1:
        raise ValueError("--images, --width, --classes and --repeats must be positive")
    bandwidth, rtt = parse_bandwidth(args.bandwidth), parse_duration_ms(args.rtt)
    codec = get_codec(args.codec)
    if args.weights is not None and not args.weights.is_file():
        raise FileNotFoundError(f"--weights {args.weights}: no such file")
    model = export_resnet(args.work, width=args.width, classes=args.classes, seed=args.seed, weights=args.weights)
    cuts = cut_points(model, args.work)
    images = synthetic_images(args.images, args.seed)
    rows = partition_table(model, cuts, images, codec, bandwidth_bps=bandwidth, rtt_ms=rtt, repeats=args.repeats,
                           threads=args.threads, progress=not args.no_progress)

    meta = {"model": "ResNet-50 (torchvision architecture)", "width": args.width, "classes": args.classes,
            "weights": str(args.weights) if args.weights else f"random (seed {args.seed})", "images": args.images,
            "image_size": IMAGE_SIZE, "codec": args.codec, "bandwidth_bps": bandwidth, "rtt_ms": rtt,
            "threads": args.threads, "repeats": args.repeats, "onnx": str(model), "machine": machine_info(),
            "seed_points": {str(k): {"module": m, "what": w} for k, (m, w) in SEED_POINTS.items()}}
    title = (f"ResNet-50 partitions at the cloud-edge seed's points ({args.images} synthetic {IMAGE_SIZE}x{IMAGE_SIZE} "
             f"images, {args.codec} boundary at {format_bandwidth(bandwidth)}, RTT {rtt:g} ms)")
    notes = ["point: the seed's partition index (layers 1..k of its 22-layer chain on the edge); boundary: the "
             "top-level module of torchvision's ResNet-50 the cut follows (`python -m split cut --after`)",
             "edge_ms / cloud_ms: per-image medians in ONNX Runtime (batch 1) on this machine; transfer_ms: "
             "8 x bytes / bandwidth + RTT",
             "agreement_pct: images whose top-1 class equals the unsplit graph's; max_abs_diff: largest logit "
             "difference from it"]
    write_tables(args.out, args.name, rows, meta, title=title, notes=notes)
    for r in rows:
        log.info("point %2d %-8s edge %7.2f ms  transfer %7.2f ms  cloud %7.2f ms  agreement %5.1f%%", r["point"],
                 r["boundary"], r["edge_ms"], r["transfer_ms"], r["cloud_ms"], r["agreement_pct"])
    log.info("wrote %s/%s.{md,csv,json}", args.out, args.name)
    return 0
