"""export -> optimise -> parity gate -> card, for any family's LoadedModel."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

from core.card import CARD_VERSION, ModelCard, card_path_for, read_card, versions, write_card
from core.onnx_export import export_onnx, save_atomic, set_metadata
from core.onnx_optimize import optimize
from core.parity import ParityError, run_parity
from core.recipe import LoadedModel, check_finite_weights, sha256_file
from core.torchscript import export_torchscript

log = logging.getLogger("export")


def up_to_date(onnx_path: Path, source_sha256: str, options: dict[str, Any]) -> bool:
    """True when a passed export of the same source with the same options is already in place."""
    card_path = card_path_for(onnx_path)
    if not (onnx_path.is_file() and card_path.is_file()):
        return False
    try:
        card = read_card(card_path)
    except ValueError:
        return False
    return (card.source is not None and card.source.sha256 == source_sha256
            and card.export_options == options
            and card.parity is not None and card.parity.passed is True
            and card.onnx_sha256 == sha256_file(onnx_path))


def export_family(model: LoadedModel, out_dir: Path, *, name: str = "model", optimize_graph: bool = True,
                  options: dict[str, Any] | None = None, threads: int = 0,
                  torchscript: bool = False) -> ModelCard:
    """Write `<out_dir>/<name>.onnx` and its card; the ONNX file appears only if the parity gate passes.

    Raises NonFiniteWeightsError (naming the tensors) before exporting anything when a weight is NaN/inf.
    """
    check_finite_weights(model.module, str(model.source.get("path", model.family)))
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    options = dict(options or {})
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        proto = export_onnx(model, tmp / "raw.onnx")
        export_s = time.perf_counter() - t0
        opt_report: dict[str, Any] = {"applied": False}
        if optimize_graph:
            proto, opt_report = optimize(proto)
            opt_report["applied"] = True
        candidate = tmp / f"{name}.onnx"
        onnx.save(proto, str(candidate))
        t0 = time.perf_counter()
        try:
            parity = run_parity(model, candidate, threads=threads)
        except ParityError as exc:
            failed = out_dir / f"{name}.parity_failed.json"
            failed.write_text(json.dumps(exc.report, indent=2) + "\n")
            log.error("%s\nfull report: %s", exc, failed)
            raise
        parity_s = time.perf_counter() - t0
        entries: dict[str, Any] = {
            "card_version": CARD_VERSION,
            "family": model.family,
            "onnx": onnx_path.name,
            "precision": "fp32",
            "made_by": "torch.onnx.export (TorchScript-based, dynamo=False)",
            "opset": model.opset,
            "inputs": [s.to_dict() for s in model.inputs],
            "outputs": [s.to_dict() for s in model.outputs],
            **model.card_facts,
            "source": model.source,
            "export_options": options,
            "optimization": opt_report,
            "parity": parity,
            "timings_s": {"export": round(export_s, 3), "parity": round(parity_s, 3)},
            "versions": versions(),
        }
        if torchscript:
            entries["torchscript"] = export_torchscript(model, out_dir / f"{name}.ts.pt")
        card = ModelCard.from_dict(entries, f"the {model.family} card")
        set_metadata(proto, card.metadata())
        save_atomic(proto, candidate)
        card = card.replace(onnx_sha256=sha256_file(candidate))
        # The card goes first: a model file without a card is unusable, but never a card naming a
        # model that is not there yet.
        write_card(card, card_path_for(onnx_path))
        shutil.move(str(candidate), str(onnx_path))
    return card
