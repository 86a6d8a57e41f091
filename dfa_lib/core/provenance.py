"""What produced a result: git revision, package versions, machine and creation time."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch

from dfa_lib.core.atomic import write_text_atomically

KEY_PACKAGES: tuple[str, ...] = (
    "dfa-lib",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "torch",
    "torchaudio",
    "transformers",
    "librosa",
    "soundfile",
    "papermill",
)


def git_revision(cwd: str | os.PathLike | None = None) -> dict:
    """Return the commit hash and whether the working tree has uncommitted changes."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Return the installed version of each package (``"absent"`` when not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


CPU_FIELDS = ("vendor_id", "cpu family", "model", "stepping", "model name", "cache size")


def parse_cpuinfo(text: str) -> dict:
    """Return the first processor's identity from ``/proc/cpuinfo`` text, and its flags.

    Keys: the :data:`CPU_FIELDS` found (spaces as underscores) and ``flags``, a sorted list.
    Two machines sold as the same kind can differ in family, model or cache size; recorded
    with every run, they let two runs' machines be compared (the same code has given other
    EERs on another machine: see the README on results across machines).
    """
    info: dict = {}
    for line in text.splitlines():
        if not line.strip():
            if info:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in CPU_FIELDS:
            info[key.replace(" ", "_")] = value
        elif key == "flags":
            info["flags"] = sorted(value.split())
    return info


@functools.cache
def cpu_identity(path: str = "/proc/cpuinfo") -> dict:
    """:func:`parse_cpuinfo` of this machine; empty where there is no such file (not Linux)."""
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}


def machine() -> dict:
    """Describe the machine: CPU count and identity, platform, Python and the accelerator.

    ``cpu`` holds the CPU's vendor, family, model, stepping, name and cache size, and
    ``torch_cpu_capability`` the vector instructions torch's CPU kernels use (e.g.
    ``AVX512``): training on another CPU can round differently and end elsewhere.
    """
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu": {k: v for k, v in cpu_identity().items() if k != "flags"},
    }
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def provenance_record(**extra) -> dict:
    """Return the full record (git, packages, machine, UTC time) merged with ``extra``."""
    return {
        "git": git_revision(),
        "packages": package_versions(),
        "machine": machine(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write JSON atomically (temp file then rename), pretty-printed and key-sorted."""
    return write_text_atomically(
        path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    )
