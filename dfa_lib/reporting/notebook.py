"""What every notebook does first and last: seed and set plot defaults, then show the run's record."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from IPython.display import Audio

from dfa_lib.core.provenance import provenance_record
from dfa_lib.training.engine import seed_everything


def start(seed: int, **parameters) -> dict:
    """Seed every generator, set plot defaults and return the record of this run.

    The record (git commit, package versions, machine, ``parameters``) is shown at the end
    of the report (:func:`record_text`), so that the report opens with its results.
    """

    seed_everything(seed)
    mpl.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})
    return provenance_record(parameters={"seed": seed, **parameters})


def record_text(record: dict) -> str:
    """Return the record of a run as lines: git commit, packages, machine, parameters."""
    git = record.get("git", {})
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    packages = ", ".join(f"{k} {v}" for k, v in record.get("packages", {}).items())
    return "\n".join(
        [
            f"dfa git commit: {git.get('commit')}{dirty}",
            f"packages: {packages}",
            f"machine: {record.get('machine')}",
            f"parameters: {record.get('parameters')}",
        ]
    )


def audio_player(wave: np.ndarray, sr: int = 16000):
    """Return an inline audio player for a waveform."""

    return Audio(np.asarray(wave, dtype=np.float32), rate=sr, normalize=False)
