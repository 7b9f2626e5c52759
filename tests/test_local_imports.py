"""A project import kept out of module level (inside a function, or under `if TYPE_CHECKING:`) must be a lazy
import of something heavy: the module it names loads, at import time and through its own module-level
imports, a package of HEAVY that the importing module does not load already. Anything else belongs at the
top of the file (issue 10: no local import that only dodges a cycle; the layers of .importlinter keep the
module graph free of cycles).

The walk is our own over `ast`: grimp records an import inside a function as an ordinary edge, and that
difference (module level or deferred) is exactly what this checks.
"""
from __future__ import annotations

import ast
import configparser
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What a `python -m <stage> --help` should not pay for. Heavy: the ML runtimes and frameworks, the Ray and
# gRPC runtimes, matplotlib, and numpy, each of which costs a noticeable share of a command's start-up on
# its own (python -X importtime), so deferring it is worth a local import. Left out on purpose: librosa and
# scipy load their submodules lazily (their top-level import costs next to nothing, and the real cost comes at
# first use, wherever the import statement stands); tqdm, soundfile, protobuf and yaml are small.
HEAVY = frozenset({
    "numpy", "torch", "torch_aie", "transformers", "optimum",
    "onnx", "onnxruntime", "onnxoptimizer", "onnxslim", "openvino",
    "ray", "grpc", "matplotlib",
})


def project_packages() -> list[str]:
    """The packages of the layer contracts (one list: .importlinter's root_packages)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    return cfg["importlinter"]["root_packages"].split()


@dataclass(frozen=True)
class Deferred:
    """One import statement that does not run when its module is imported."""
    path: Path
    line: int
    importer: str
    targets: frozenset[str]  # the project modules it imports (parent packages included)


def _modules(root: Path, packages: list[str]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST, deferred: bool = False):
    """(import statement, whether it is deferred) for every import under node."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, deferred
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, True)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for stmt in child.body:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), True)
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), deferred)
        else:
            yield from _imports(child, deferred)


def _names(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """Every module the statement runs: the named ones, their parent packages, and submodules imported by
    `from package import submodule`. Outside the project only the top-level package name matters."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        named = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    result = set()
    for name in named:
        parts = name.split(".")
        result.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return result


class ImportMap:
    """Module-level and deferred imports of every module of the given packages under root."""

    def __init__(self, root: Path, packages: list[str]) -> None:
        self.root = root
        self.modules = _modules(root, packages)
        self.module_level: dict[str, set[str]] = {}
        self.deferred: list[Deferred] = []
        for name, path in self.modules.items():
            tree = ast.parse(path.read_text(), str(path))
            self.module_level[name] = set()
            for node, deferred in _imports(tree):
                targets = _names(node, name, path.name == "__init__.py", self.modules)
                if not deferred:
                    self.module_level[name] |= targets
                elif project := frozenset(t for t in targets if t in self.modules):
                    self.deferred.append(Deferred(path, node.lineno, name, project))

    def heavy_loaded(self, module: str) -> set[str]:
        """HEAVY packages that importing `module` loads (its parent packages run first)."""
        parts = module.split(".")
        todo = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        seen: set[str] = set()
        heavy: set[str] = set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for target in self.module_level.get(current, ()):
                if target in self.modules:
                    todo.append(target)
                elif target.split(".")[0] in HEAVY:
                    heavy.add(target.split(".")[0])
        return heavy

    def light_deferred(self) -> list[str]:
        """One line per deferred import that defers no heavy package, naming file:line."""
        problems = []
        for d in self.deferred:
            gained = set().union(*(self.heavy_loaded(t) for t in d.targets)) - self.heavy_loaded(d.importer)
            if not gained:
                where = d.path.relative_to(self.root)
                named = sorted(t for t in d.targets if not any(o.startswith(t + ".") for o in d.targets))
                problems.append(f"{where}:{d.line}: {', '.join(named)} loads no heavy package that "
                                f"{d.importer} does not already load at import time: import it at the top")
        return problems


def test_every_deferred_project_import_defers_a_heavy_package() -> None:
    imports = ImportMap(REPO, project_packages())
    assert imports.deferred, "no deferred imports found at all: the walk is broken"
    problems = imports.light_deferred()
    assert not problems, "\n".join(problems)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_flags_light_deferred_imports_and_accepts_heavy_ones(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/light.py": "import json\nX = 1\n",
        "pkg/heavy.py": "import torch\nY = 1\n",
        "pkg/via.py": "from pkg.heavy import Y\n",  # heavy only through another module
        "pkg/sub/__init__.py": "",
        "pkg/sub/rel.py": "from ..via import Y\n",  # relative import, heavy through two modules
        "pkg/loop_a.py": "from pkg import loop_b\n",  # a cycle must not hang the walk
        "pkg/loop_b.py": "from pkg import loop_a\nimport onnx\n",
        "pkg/user.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from pkg.light import X\n"  # line 3: light
            "def a():\n"
            "    from pkg.light import X\n"  # line 5: light
            "def b():\n"
            "    from pkg.via import Y\n"  # heavy, transitively
            "def c():\n"
            "    from pkg import heavy\n"  # a submodule named by `from package import`
            "def d():\n"
            "    from pkg.sub import rel\n"
            "def e():\n"
            "    from pkg.loop_a import loop_b\n"
            "def f():\n"
            "    import json\n"  # not a project import: not this check's business
        ),
        "pkg/already.py": (
            "import torch\n"
            "def g():\n"
            "    from pkg.heavy import Y\n"  # line 3: torch is loaded already, nothing deferred
        ),
    })
    imports = ImportMap(tmp_path, ["pkg"])
    problems = imports.light_deferred()
    assert sorted(p.split(": ")[0] for p in problems) == ["pkg/already.py:3", "pkg/user.py:3", "pkg/user.py:5"]
    assert {d.line for d in imports.deferred if d.importer == "pkg.user"} == {3, 5, 7, 9, 11, 13}
