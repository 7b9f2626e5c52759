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
    # Drop one of the still-tolerated imports from the ignore list: the contract must then fail on it,
    # which shows the check sees real imports (and that the ignore list holds only imports that exist).
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    section = "importlinter:contract:stages-are-independent"
    ignored = [line for line in cfg[section].get("ignore_imports", "").splitlines() if line.strip()]
    if not ignored:
        return  # nothing tolerated any more: test_import_contracts_are_kept covers the rule alone
    dropped, kept = ignored[0], ignored[1:]
    cfg[section]["ignore_imports"] = "\n" + "\n".join(kept)
    config = tmp_path / "importlinter.ini"
    with config.open("w") as fh:
        cfg.write(fh)
    res = _lint(config)
    assert res.returncode != 0
    importer = dropped.split("->")[0].strip()
    assert importer in res.stdout
