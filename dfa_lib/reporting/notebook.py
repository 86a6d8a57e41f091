"""What every notebook does first: seed, print versions and the run's record, set plot defaults."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from IPython.display import Audio

from dfa_lib.core.provenance import provenance_record
from dfa_lib.training.engine import seed_everything


def start(seed: int, **parameters) -> dict:
    """Seed every generator, set plot defaults, print and return the record of this run."""

    seed_everything(seed)
    mpl.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})
    record = provenance_record(parameters={"seed": seed, **parameters})
    git = record["git"]
    print(f"dfa git commit: {git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}")
    print("packages:", ", ".join(f"{k} {v}" for k, v in record["packages"].items()))
    print("machine:", record["machine"])
    print("parameters:", record["parameters"])
    return record


def audio_player(wave: np.ndarray, sr: int = 16000):
    """Return an inline audio player for a waveform."""

    return Audio(np.asarray(wave, dtype=np.float32), rate=sr, normalize=False)
