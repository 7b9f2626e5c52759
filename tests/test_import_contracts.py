"""The layer rules of docs/architecture.md hold: core imports no project package, families import only core,
and the stages never import each other (import-linter, configured in .importlinter)."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LINT, str(config)], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept() -> None:
    res = _lint(REPO / ".importlinter")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_a_cross_stage_import_breaks_the_contract(tmp_path: Path) -> None:
    # The stages import core everywhere: counted as one more "stage", core must break the independence
    # contract. That shows the check sees the real imports, not an empty graph.
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    section = "importlinter:contract:stages-are-independent"
    cfg[section]["modules"] = cfg[section]["modules"] + "\ncore"
    config = tmp_path / "importlinter.ini"
    with config.open("w") as fh:
        cfg.write(fh)
    res = _lint(config)
    assert res.returncode != 0
    assert "BROKEN" in res.stdout and "core" in res.stdout
