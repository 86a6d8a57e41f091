"""Shared fixtures: audio made in the test, never downloaded, and no network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

# No test may reach a model hub; transformers fails fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def make_tone(
    seconds: float = 1.0, sr: int = 16000, freq: float = 440.0, amplitude: float = 0.5
) -> np.ndarray:
    """Return a float32 sine tone."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def tone() -> np.ndarray:
    """One second of 440 Hz at 16 kHz."""
    return make_tone()


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """A short espeak-ng utterance (skips where espeak-ng is not installed)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    out = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(out), "this is a test of the audio loader"], check=True)
    return out
