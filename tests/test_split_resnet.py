"""The bare-graph demo: torchvision's ResNet-50 names and sizes, and the seed's partition table on a tiny one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from families.resnet.model import resnet50
from split.__main__ import main as split_main
from split.resnet_table import SEED_POINTS


def test_resnet50_has_torchvisions_state_dict_layout() -> None:
    """torchvision's resnet50(): 320 state_dict entries (161 parameters, 3 buffers per BatchNorm), 25,557,032
    parameters, and its names, so a torchvision state_dict loads without renaming."""
    model = resnet50()
    state = model.state_dict()
    assert len(state) == 320
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    for key, shape in {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,),
                       "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer2.0.conv2.weight": (128, 128, 3, 3),
                       "layer3.5.bn3.num_batches_tracked": (), "layer4.2.conv3.weight": (2048, 512, 1, 1),
                       "fc.weight": (1000, 2048), "fc.bias": (1000,)}.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("layer2.1.downsample") for k in state)  # only each stage's first block projects


def test_resnet50_is_deterministic_per_seed_and_loads_its_state_dict() -> None:
    a, b, c = resnet50(width=4, seed=1), resnet50(width=4, seed=1), resnet50(width=4, seed=2)
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    c.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    a.eval(), c.eval()
    with torch.no_grad():
        assert torch.equal(a(x), c(x)) and a(x).shape == (2, 1000)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("resnet")
    rc = split_main(["resnet-table", "--out", str(out), "--work", str(out / "work"), "--width", "4", "--images", "3",
                     "--classes", "10", "--bandwidth", "1mbit", "--rtt", "5ms", "--repeats", "1", "--no-progress"])
    assert rc == 0
    return out, json.loads((out / "split_resnet50_partitions.json").read_text())


def test_partition_table_rows_follow_the_seed(table: tuple[Path, dict]) -> None:
    out, result = table
    rows = {r["point"]: r for r in result["rows"]}
    assert sorted(rows) == [0, 3, 10, 16, 20, 22] == sorted(SEED_POINTS)
    # width 4: stem 4 channels at 16x16, layer2 4*2*4 channels at 4x4, layer3 at 2x2, pooled 4*8*4 channels
    assert rows[0]["boundary_shape"] == "1x3x32x32" and rows[3]["boundary_shape"] == "1x4x16x16"
    assert rows[10]["boundary_shape"] == "1x32x4x4" and rows[16]["boundary_shape"] == "1x64x2x2"
    assert rows[20]["boundary_shape"] == "1x128x1x1" and rows[22]["boundary_shape"] == "1x10"
    for r in rows.values():
        elements = int(np.prod([int(d) for d in r["boundary_shape"].split("x")]))
        assert r["bytes"] == 4 * elements  # fp32 boundary
        assert r["transfer_ms"] == pytest.approx(8e3 * r["bytes"] / 1e6 + 5.0)
        assert r["agreement_pct"] == 100.0 and r["max_abs_diff"] < 1e-4
        assert r["total_ms"] == pytest.approx(r["edge_ms"] + r["transfer_ms"] + r["cloud_ms"])
    assert rows[0]["edge_ms"] == 0.0 and rows[22]["cloud_ms"] == 0.0
    assert rows[10]["tensor"].startswith("/layer2/")
    for point in (3, 10, 16, 20):  # real cuts, made by `split cut`, kept beside the model
        cut = json.loads((out / "work" / f"point{point}" / "cut.json").read_text())
        assert cut["parity"]["passed"] and cut["cut"] == {"after": SEED_POINTS[point][0]}
    md = (out / "split_resnet50_partitions.md").read_text()
    assert "| 16 | layer3 |" in md and "agreement_pct" in (out / "split_resnet50_partitions.csv").read_text()


def test_partition_table_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    args = ["resnet-table", "--out", str(tmp_path), "--work", str(tmp_path / "w"), "--width", "4", "--images", "1"]
    assert split_main(args + ["--weights", str(bad)]) == 2
    assert "not a torchvision resnet50 state_dict" in capsys.readouterr().err
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    assert split_main(args + ["--weights", str(tmp_path / "garbage.pth")]) == 2
    assert "garbage.pth" in capsys.readouterr().err
    assert split_main(args + ["--codec", "nope"]) == 2
    assert "unknown codec" in capsys.readouterr().err
    assert not (tmp_path / "split_resnet50_partitions.json").exists()
