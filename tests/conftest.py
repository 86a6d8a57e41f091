"""Shared fixtures: audio made in the test, never downloaded, and no network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


def make_toy_split(n: int, seed: int, name: str, seconds: float = 0.5, noise: float = 0.3):
    """Return (manifest rows, ClipStore) of ``n`` real tones and ``n`` fake noise bursts.

    An easy, separable split for tests of the training and evaluation plumbing; paths are
    ``<name>/<i>.wav``, generators ``human`` and ``noise``.
    """
    import pandas as pd

    from dfa_lib.data.clips import ClipStore

    sr = 16000
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    waves, labels = [], []
    for _ in range(n):
        waves.append((0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)).astype(np.float32))
        waves.append((noise * rng.standard_normal(t.size)).astype(np.float32))
        labels += ["real", "fake"]
    frame = pd.DataFrame(
        {
            "path": [f"{name}/{i}.wav" for i in range(len(waves))],
            "label": labels,
            "generator": ["human" if lab == "real" else "noise" for lab in labels],
        }
    )
    return frame, ClipStore.from_waves(waves, sr)


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


@pytest.fixture(scope="session")
def tiny_wav2vec2_dir(tmp_path_factory) -> str:
    """A random-init wav2vec2 (2 layers, width 32, 80 samples per frame) saved to a folder."""
    import torch
    from transformers import AutoModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor

    folder = tmp_path_factory.mktemp("tiny-w2v")
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 4, 4),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    AutoModel.from_config(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return str(folder)


def write_toy_dataset(root: Path, sizes: list[tuple[str, int]]) -> Path:
    """Write a dataset in FoR layout under ``root``: tones are real, noise bursts fake.

    ``sizes`` gives each split's clips per class, e.g. ``[("training", 12), ...]``; the clips
    are :func:`make_toy_split`'s at 0.75 s, as 16-bit WAV. Returns ``root``.
    """
    for seed, (split, n) in enumerate(sizes):
        frame, store = make_toy_split(n, seed, split, seconds=0.75, noise=0.05)
        for i, label in enumerate(frame["label"]):
            path = root / split / label / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, store[i], 16000, subtype="PCM_16")
    return root
