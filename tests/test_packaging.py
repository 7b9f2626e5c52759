"""pyproject.toml packages every top-level package of the repository (so `pip install -e .` imports them
without PYTHONPATH), and its dependencies are the pinned lock file."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_top_level_package_is_packaged() -> None:
    include = _project()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
    assert packages, "no top-level packages found"
    for name in packages:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in include), f"{name}/ is not in pyproject.toml"
        assert any(fnmatch.fnmatch(f"{name}.sub", pattern) for pattern in include), f"{name}.* is not packaged"


def test_dependencies_come_from_the_lock_file() -> None:
    project = _project()
    assert "dependencies" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
