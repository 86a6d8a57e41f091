"""pyproject.toml, .setup/requirements.in and the pinned lock name the same packages."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")

REPO = Path(__file__).resolve().parents[1]
# requirements.in also caps the environment's own setuptools; dfa_lib never imports it.
BUILD_ONLY = {"setuptools"}


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def declared() -> dict[str, Requirement]:
    """Every dependency of pyproject.toml, the extras' included, by canonical name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    requirements = [Requirement(text) for group in groups for text in group]
    return {canonicalize_name(r.name): r for r in requirements}


def top_level() -> set[str]:
    """The names .setup/requirements.in lists."""
    path = REPO / ".setup" / "requirements.in"
    return {canonicalize_name(Requirement(line).name) for line in _requirement_lines(path)}


def locked() -> dict[str, str]:
    """The lock's pins, name -> version; a repeated name is an error."""
    pins: dict[str, str] = {}
    for line in _requirement_lines(REPO / ".setup" / "requirements.lock"):
        name, sep, version = line.partition("==")
        assert sep, f"requirements.lock: {line!r} is not a NAME==VERSION pin"
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock pins {name} twice"
        pins[key] = version
    return pins


def test_every_declared_dependency_is_listed_and_pinned_at_a_version_it_admits():
    listed, pins = top_level(), locked()
    for name, requirement in declared().items():
        assert name in listed, f"{name} is in pyproject.toml but not in .setup/requirements.in"
        assert name in pins, f"{name} is in pyproject.toml but not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_requirements_in_lists_only_declared_dependencies():
    undeclared = top_level() - set(declared()) - BUILD_ONLY
    assert not undeclared, f"declare these in pyproject.toml or drop them: {sorted(undeclared)}"
    assert top_level() <= set(locked()), "run `make lock` after editing requirements.in"


def test_the_readers_find_the_entries():
    # The checks above pass vacuously if the readers find nothing; they must see real entries.
    assert {"numpy", "torch", "pyworld", "pytest"} <= set(declared())
    assert {"numpy", "torch", "setuptools"} <= top_level()
    assert locked()["torch"].startswith("2.")
