"""DeepSpeech2 recipe: V3.0 parameter names, equality with the original's forward, padded batches,
ONNX export with the parity gate, the card, and the errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from core.card import CardError, card_path_for, load_model_and_card
from families.deepspeech2 import recipe as ds
from core.parity import ParityError, run_parity
from tests.conftest import make_tiny_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


def _original_forward(model: ds.DeepSpeech, spect: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The V3.0 forward as its source describes it, written independently for comparison: a mask
    built row by row from Python ints, and packing that requires the batch sorted longest first."""
    out_lens = ds.conv_output_lengths(lengths)
    x = spect
    for module in model.conv.seq_module:
        x = module(x)
        mask = torch.zeros(x.shape, dtype=torch.bool)
        for i, n in enumerate(out_lens.tolist()):
            if x.size(3) - n > 0:
                mask[i, :, :, n:] = True
        x = x.masked_fill(mask, 0)
    b, c, d, t = x.shape
    x = x.view(b, c * d, t).transpose(1, 2).transpose(0, 1).contiguous()
    for rnn in model.rnns:
        if rnn.batch_norm is not None:
            x = rnn.batch_norm(x)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, out_lens.to(torch.int64))  # enforce_sorted=True
        y, _ = rnn.rnn(packed)
        x, _ = torch.nn.utils.rnn.pad_packed_sequence(y)
        if rnn.bidirectional:
            x = x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)
    if model.lookahead is not None:
        x = model.lookahead(x)
    x = model.fc(x).transpose(0, 1)
    return F.softmax(x, dim=-1)


@pytest.mark.parametrize("fixture", ["ds2_v3_bidir_lstm_tiny", "ds2_v3_unidir_gru_tiny"])
def test_real_v3_checkpoint_loads_strict(fixture: str) -> None:
    loaded = ds.load(FIXTURES / f"{fixture}.ckpt")
    expected = json.loads((FIXTURES / f"{fixture}.expected.json").read_text())
    arch = loaded.card_facts["architecture"]
    model_cfg = expected.get("model") or expected.get("hyper_parameters", {}).get("model")
    assert arch["rnn_type"] == model_cfg["rnn_type"]
    assert arch["hidden_size"] == model_cfg["hidden_size"]
    assert arch["bidirectional"] == model_cfg["bidirectional"]
    assert loaded.card_facts["labels"][0] == "_" and len(loaded.card_facts["labels"]) == 29


@pytest.mark.parametrize("bidirectional,rnn_type", [(True, "lstm"), (False, "gru"), (True, "rnn")])
def test_forward_equals_original_semantics(tmp_path: Path, bidirectional: bool, rnn_type: str) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "m.ckpt", bidirectional=bidirectional, rnn_type=rnn_type)
    model = ds.load(ckpt).module
    cfg = model.cfg
    lengths = [300, 251, 120, 37]  # sorted longest first, as the original's packing requires
    inputs = ds.make_example_inputs(cfg, lengths)
    with torch.inference_mode():
        ours, out_lens = model(inputs["spect"], inputs["lengths"])
        ref = _original_forward(model, inputs["spect"], inputs["lengths"])
    assert out_lens.tolist() == [150, 126, 60, 19]
    for row, n in enumerate(out_lens.tolist()):
        np.testing.assert_allclose(ours[row, :n].numpy(), ref[row, :n].numpy(), atol=1e-6, rtol=1e-5)


def test_padded_batch_equals_batch_one_in_torch(tiny_ckpt: Path) -> None:
    model = ds.load(tiny_ckpt).module
    lengths = [120, 300, 37, 300, 64]  # unsorted, with a duplicate
    batch = ds.make_example_inputs(model.cfg, lengths, frames=340)  # padded past the longest too
    with torch.inference_mode():
        probs, out_lens = model(batch["spect"], batch["lengths"])
        for row, n in enumerate(lengths):
            single = ds.make_example_inputs(model.cfg, [n])
            p1, l1 = model(single["spect"], single["lengths"])
            assert int(l1[0]) == int(out_lens[row])
            np.testing.assert_allclose(probs[row, : int(l1[0])].numpy(), p1[0].numpy(), atol=1e-6)


def test_export_writes_model_card_and_metadata(tiny_export: Path) -> None:
    proto, model_card = load_model_and_card(tiny_export)
    card = model_card.to_dict()  # the JSON layout the card is written in
    assert model_card.parity.passed is True and card["card_version"] == 2
    assert card["parity"]["outputs"]["probs"]["max_abs"] < 1e-5
    assert card["parity"]["padded_batch_vs_batch1"]["probs"]["compared"] > 0
    batches = {c["batch"] for c in card["parity"]["cases"]}
    assert 1 in batches and max(batches) >= 3
    assert card["optimization"]["nodes_after"] <= card["optimization"]["nodes_before"]
    assert [i["name"] for i in card["inputs"]] == ["spect", "lengths"]
    assert card["inputs"][0]["shape"] == ["batch", 1, 161, "time"]
    assert card["outputs"][0]["shape"] == ["batch", "frames", 29]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["labels"]) == card["labels"]
    assert json.loads(meta["feature"])["n_fft"] == 320
    ops = {n.op_type for n in proto.graph.node}
    assert "LSTM" in ops


def test_export_is_skipped_when_up_to_date(tiny_ckpt: Path, tiny_export: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    caplog.set_level("INFO")
    before = tiny_export.stat().st_mtime_ns
    assert main(["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(tiny_export.parent)]) == 0
    assert tiny_export.stat().st_mtime_ns == before
    assert "up to date" in caplog.text


def test_static_shape_export(tmp_path: Path, tiny_ckpt: Path) -> None:
    from export.__main__ import main

    out = tmp_path / "static"
    assert main(["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--static-shape", "1,1,161,621"]) == 0
    proto, card = load_model_and_card(out / "model.onnx")
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 161, 621]
    assert card.outputs[0].shape == (1, 311, 29) and card.static_batch == 1


def test_parity_gate_fails_with_numbers(tmp_path: Path, tiny_ckpt: Path, tiny_export: Path) -> None:
    other = ds.load(make_tiny_checkpoint(tmp_path / "other.ckpt", seed=1))
    with pytest.raises(ParityError) as err:
        run_parity(other, tiny_export)
    assert "max abs" in str(err.value)
    assert err.value.report["passed"] is False


def test_failed_gate_leaves_no_model(tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import gated_export as pipeline
    from export.__main__ import main

    def broken(model, path, **kw):  # noqa: ANN001
        raise ParityError("parity gate FAILED (simulated)", {"passed": False})

    monkeypatch.setattr(pipeline, "run_parity", broken)
    out = tmp_path / "x"
    assert main(["deepspeech2", "--checkpoint", str(tiny_ckpt), "--out", str(out)]) == 3
    assert not (out / "model.onnx").exists()
    assert not card_path_for(out / "model.onnx").exists()


def test_card_that_does_not_match_graph_is_refused(tmp_path: Path, tiny_export: Path) -> None:
    work = tmp_path / "m"
    work.mkdir()
    shutil.copy(tiny_export, work / "model.onnx")
    card = json.loads(card_path_for(tiny_export).read_text())
    card["inputs"][0]["name"] = "features"
    card["outputs"][0]["dtype"] = "float16"
    card_path_for(work / "model.onnx").write_text(json.dumps(card))
    with pytest.raises(CardError) as err:
        load_model_and_card(work / "model.onnx")
    assert "input names" in str(err.value) and "model.onnx" in str(err.value)


def test_corrupt_onnx_is_refused(tmp_path: Path, tiny_export: Path) -> None:
    work = tmp_path / "c"
    work.mkdir()
    (work / "model.onnx").write_bytes(tiny_export.read_bytes()[:1000])
    shutil.copy(card_path_for(tiny_export), card_path_for(work / "model.onnx"))
    with pytest.raises(CardError) as err:
        load_model_and_card(work / "model.onnx")
    assert "not a readable ONNX model" in str(err.value)


def test_missing_and_foreign_checkpoints_give_clear_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from export.__main__ import main

    assert main(["deepspeech2", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in caplog.text and "nope.ckpt" in caplog.text
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"layer1.weight": torch.zeros(3)}, "hyper_parameters": {}}, foreign)
    caplog.clear()
    assert main(["deepspeech2", "--checkpoint", str(foreign), "--out", str(tmp_path / "o")]) == 2
    assert "resnet.ckpt" in caplog.text
    assert not (tmp_path / "o" / "model.onnx").exists()


def test_onnx_graph_is_valid_and_dynamic(tiny_export: Path) -> None:
    proto = onnx.load(str(tiny_export))
    onnx.checker.check_model(proto)
    spect = proto.graph.input[0].type.tensor_type.shape.dim
    assert spect[0].dim_param == "batch" and spect[3].dim_param == "time"
