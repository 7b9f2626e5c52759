"""The backends of `python -m runners`: the options each one adds to the command line, and how it runs.

One entry per backend in BACKENDS. An in-process backend is built from the arguments and driven by
runners.base.run_dataset; a tool backend (msame, ais_bench) reads the dataset dir itself and its output
folder becomes the run dir. Options a backend adds are declared once in OPTION_GROUPS and shown under
their own heading in --help; adding a backend is an entry here, not a branch in __main__.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.cli_types import non_negative_int, positive_int, thread_count
from core.dataset_dir import DatasetDir
from core.guide import guide_profile, has_guide
from core.run_dir import RunError
from runners.ais_bench import run_ais_bench
from runners.backend_spec import backend_spec
from runners.base import Backend
from runners.msame import run_msame

ArgGroup = argparse._ArgumentGroup  # argparse has no public name for what add_argument_group returns


def _onnxruntime_options(g: ArgGroup) -> None:
    g.add_argument("--inter-threads", type=thread_count, default=1, help="onnxruntime inter-op threads")
    g.add_argument("--providers", default="CPUExecutionProvider",
                   help="onnxruntime execution providers, comma-separated, in priority order")
    g.add_argument("--graph-level", default="all", choices=["disable", "basic", "extended", "all"],
                   help="onnxruntime graph optimisation level")
    g.add_argument("--execution-mode", default="sequential", choices=["sequential", "parallel"],
                   help="onnxruntime execution mode (parallel: independent branches on the inter-op threads)")
    g.add_argument("--profile", action="store_true",
                   help="onnxruntime: profile the session; writes ort_profile.json (Chrome trace) and "
                        "ort_profile_top_ops.md into the run dir and the per-op summary into run.json")


def _openvino_options(g: ArgGroup) -> None:
    g.add_argument("--ov-precision", default="f32", choices=["f32", "bf16", "f16"],
                   help="openvino INFERENCE_PRECISION_HINT (default f32: the CPU plugin would otherwise pick bf16 "
                        "on CPUs with AMX/avx512_bf16)")
    g.add_argument("--ov-hint", default="LATENCY", choices=["LATENCY", "THROUGHPUT"],
                   help="openvino PERFORMANCE_HINT")


def _torch_options(g: ArgGroup) -> None:
    g.add_argument("--checkpoint", type=Path, help="torch backend: the original checkpoint (default: the card's source)")


def _ascend_tool_options(g: ArgGroup) -> None:
    g.add_argument("--outfmt", choices=["TXT", "BIN"], help="msame/ais_bench output format (default: TXT for msame "
                                                           "as the DeepSpeech guide uses, BIN for ais_bench)")
    g.add_argument("--ais-bench-python", help="python that has ais_bench installed (default: this one)")


def _ascend_device_options(g: ArgGroup) -> None:
    g.add_argument("--device", type=non_negative_int, default=0, help="Ascend device id for msame/ais_bench/torch_aie")


def _torch_aie_options(g: ArgGroup) -> None:
    g.add_argument("--soc-version", default="Ascend310P3", help="torch_aie: target SoC")
    g.add_argument("--aie-device", default="npu", help="torch_aie: torch device type the compiled model runs on")
    g.add_argument("--length", type=positive_int, help="torch_aie: the static time length compiled (default: the "
                                                       "pad_to of the card's guide profile)")
    g.add_argument("--aie-loops", type=positive_int, default=100,
                   help="torch_aie: timed loops of the guide's fps figure")


# Option groups, in --help order: key -> (heading, what it adds).
OPTION_GROUPS: dict[str, tuple[str, Callable[[ArgGroup], None]]] = {
    "onnxruntime": ("onnxruntime", _onnxruntime_options),
    "openvino": ("OpenVINO", _openvino_options),
    "torch": ("torch", _torch_options),
    "ascend_tools": ("msame / ais_bench", _ascend_tool_options),
    "ascend_device": ("Ascend device", _ascend_device_options),
    "torch_aie": ("torch_aie", _torch_aie_options),
}


def _build_local(args: argparse.Namespace, card: dict[str, Any]) -> Backend:
    return backend_spec(args, card).build(card)


def _build_torch_aie(args: argparse.Namespace, card: dict[str, Any]) -> Backend:
    from runners.torch_aie_backend import TorchAieBackend

    length = args.length or (guide_profile(card).get("pad_to") if has_guide(card) else None)
    if not length:
        raise RunError("torch_aie compiles a static shape: give --length (time steps every batch is padded to)")
    return TorchAieBackend(args.model, card, batch_size=args.batch_size, length=int(length),
                           soc_version=args.soc_version, device=f"{args.aie_device}:{args.device}",
                           guide_loops=args.aie_loops)


def _run_msame(args: argparse.Namespace, card: dict[str, Any], dataset: DatasetDir) -> dict[str, Any]:
    return run_msame(args.model, card, dataset, args.out, outfmt=args.outfmt or "TXT", device=args.device,
                     force=args.force)


def _run_ais_bench(args: argparse.Namespace, card: dict[str, Any], dataset: DatasetDir) -> dict[str, Any]:
    return run_ais_bench(args.model, card, dataset, args.out, outfmt=args.outfmt or "BIN", device=args.device,
                         warmup=args.warmup, python=args.ais_bench_python, force=args.force)


@dataclass(frozen=True)
class BackendEntry:
    """One backend of the CLI: what it is, which option groups it reads, and how a command runs it."""

    help: str
    options: tuple[str, ...] = ()
    build: Callable[[argparse.Namespace, dict[str, Any]], Backend] | None = None  # in-process backends
    run_tool: Callable[[argparse.Namespace, dict[str, Any], DatasetDir], dict[str, Any]] | None = None
    ray: bool = False  # can run as Ray workers (runners/ray_runner.py)

    @property
    def is_tool(self) -> bool:
        return self.run_tool is not None


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("the embedded default", ("onnxruntime",), _build_local, ray=True),
    "openvino": BackendEntry("OpenVINO CPU plugin on the same ONNX", ("openvino",), _build_local, ray=True),
    "torch": BackendEntry("the reference, from the checkpoint", ("torch",), _build_local, ray=True),
    "msame": BackendEntry("Ascend tool, on an .om from `python -m export atc`", ("ascend_tools", "ascend_device"),
                          run_tool=_run_msame),
    "ais_bench": BackendEntry("Ascend tool, on an .om from `python -m export atc`", ("ascend_tools", "ascend_device"),
                              run_tool=_run_ais_bench),
    "torch_aie": BackendEntry("Ascend, on the TorchScript from `python -m export wav2vec2 --torchscript`",
                              ("torch_aie", "ascend_device"), _build_torch_aie),
}


def add_backend_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=list(BACKENDS), required=True,
                   help="; ".join(f"{name}: {entry.help}" for name, entry in BACKENDS.items()))


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """Each option group under its own heading, naming the backends that read it."""
    for key, (heading, add) in OPTION_GROUPS.items():
        users = ", ".join(name for name, entry in BACKENDS.items() if key in entry.options)
        add(p.add_argument_group(f"{heading} options (--backend {users})"))


def ray_backends() -> list[str]:
    return [name for name, entry in BACKENDS.items() if entry.ray]
