"""Nothing in dfa_lib is dead: every function, class, constant and attribute has a use.

vulture finds definitions nothing refers to. It cannot read notebooks, so their code cells are
added as uses here; the names [tool.vulture] ignores in pyproject.toml are used where vulture
does not look (tests, libraries reading attributes, dataclass fields read by name), each with
its reason. `make lint` runs this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
vulture = pytest.importorskip("vulture", reason="vulture is a dev dependency (make setup)")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def settings() -> dict:
    """The [tool.vulture] table of pyproject.toml."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["vulture"]


def notebook_code(path: Path) -> str:
    """The code cells of a notebook as one module (IPython magics and shell lines dropped)."""
    cells = json.loads(path.read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("%", "!"))
    ]
    return "\n".join(lines) + "\n"


def unused_in_package() -> list:
    """vulture's findings in [tool.vulture] paths, notebooks counted as users, nothing ignored."""
    config = settings()
    scanner = vulture.Vulture()
    scanner.scavenge([str(REPO / path) for path in config["paths"]])
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        scanner.scan(notebook_code(notebook), filename=str(notebook))
    roots = [(REPO / path).resolve() for path in config["paths"]]
    return [
        item
        for item in scanner.get_unused_code(min_confidence=config["min_confidence"])
        if any(Path(item.filename).resolve().is_relative_to(root) for root in roots)
    ]


@pytest.fixture(scope="module")
def unused() -> list:
    return unused_in_package()


def test_dfa_lib_has_no_dead_code(unused):
    ignored = set(settings()["ignore_names"])
    dead = [
        f"{Path(item.filename).relative_to(REPO)}:{item.first_lineno}: {item.message}"
        for item in unused
        if item.name not in ignored
    ]
    assert not dead, (
        "nothing uses these: remove them, or add the name to [tool.vulture] ignore_names in "
        "pyproject.toml with a comment saying what uses it:\n" + "\n".join(dead)
    )


def test_every_ignored_name_is_still_needed(unused):
    # An entry whose name is gone, or now used where vulture looks, only hides future dead code.
    stale = set(settings()["ignore_names"]) - {item.name for item in unused}
    assert not stale, f"drop these from [tool.vulture] ignore_names: {sorted(stale)}"


def test_notebook_calls_count_as_uses(tmp_path):
    # The check is only as good as its reading of notebooks: a call made in a code cell counts,
    # one in a Markdown cell does not.
    (tmp_path / "lib.py").write_text(
        "def called_in_code():\n    pass\n\n\ndef named_in_prose():\n    pass\n"
    )
    notebook = tmp_path / "n.ipynb"
    cells = [
        {"cell_type": "markdown", "source": ["named_in_prose()"]},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "lib.called_in_code()\n"]},
    ]
    notebook.write_text(json.dumps({"cells": cells}))
    scanner = vulture.Vulture()
    scanner.scavenge([str(tmp_path / "lib.py")])
    scanner.scan(notebook_code(notebook), filename=str(notebook))
    assert [item.name for item in scanner.get_unused_code()] == ["named_in_prose"]
