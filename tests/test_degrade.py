"""The robustness sweep's named degradations: each runs, is deterministic, and caches."""

from __future__ import annotations

import numpy as np
import pytest

from dfa_lib.data import degrade as D
from dfa_lib.data.codecs import codec_available

SR = 16000

EXPECTED = {
    "clean",
    "mp3-32k",
    "mp3-64k",
    "mp3-128k",
    "opus-12k",
    "opus-24k",
    "gsm",
    "telephone",
    "noise-20db",
    "noise-10db",
    "noise-5db",
    "reverb",
    "resample-8k",
    "pitch+2",
    "pitch-2",
    "speed-0.9",
    "speed-1.1",
}


def voiced(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A speech-like clip: gliding harmonics under a syllable-rate envelope, plus a little hiss."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(110.0 + 80.0 * t / seconds) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(8 * np.pi * t)) ** 2
    x = x + 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def test_registry_has_the_sweep() -> None:
    assert set(D.DEGRADATIONS) == EXPECTED
    for name, degradation in D.DEGRADATIONS.items():
        assert degradation.name == name and degradation.description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_degradation_runs(name: str) -> None:
    degradation = D.DEGRADATIONS[name]
    if degradation.codec and not codec_available(degradation.codec[0]):
        pytest.skip(f"neither PyAV nor ffmpeg can encode {degradation.codec[0]}")
    x = voiced()
    y = D.apply_degradation(name, x, SR, seed=5)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    if degradation.changes_length:
        assert y.size == round(x.size / degradation.strength)
    else:
        assert y.shape == x.shape
    if name == "clean":
        np.testing.assert_array_equal(y, x)
    elif not degradation.changes_length:
        assert not np.allclose(y, x, atol=1e-4)
    np.testing.assert_array_equal(y, D.apply_degradation(name, x, SR, seed=5))


@pytest.mark.parametrize("name", ["noise-20db", "noise-10db", "noise-5db", "reverb"])
def test_random_degradations_depend_on_the_clip_seed(name: str) -> None:
    x = voiced()
    a = D.apply_degradation(name, x, SR, seed="clip-a")
    assert np.array_equal(a, D.apply_degradation(name, x, SR, seed="clip-a"))
    assert not np.array_equal(a, D.apply_degradation(name, x, SR, seed="clip-b"))


@pytest.mark.parametrize(
    ("name", "snr"), [("noise-20db", 20), ("noise-10db", 10), ("noise-5db", 5)]
)
def test_noise_degradations_have_their_snr(name: str, snr: float) -> None:
    x = voiced()
    noise = D.apply_degradation(name, x, SR, seed=1).astype(np.float64) - x
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2)) == pytest.approx(
        snr, abs=0.01
    )


def test_noise_degradations_of_one_clip_do_not_share_noise() -> None:
    x = voiced()
    n10 = D.apply_degradation("noise-10db", x, SR, seed=1) - x
    n5 = D.apply_degradation("noise-5db", x, SR, seed=1) - x
    assert abs(np.corrcoef(n10, n5)[0, 1]) < 0.1


def test_resample_8k_removes_the_upper_band() -> None:
    x = 0.1 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y = D.apply_degradation("resample-8k", x, SR)
    power = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    power_in = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    # The polyphase filter's transition band ends about 1 kHz above the 4 kHz Nyquist.
    high = np.fft.rfftfreq(SR, 1 / SR) > 5000
    assert power[high].sum() < 1e-4 * power_in[high].sum()


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(D.UnknownDegradationError, match="mp3-32k"):
        D.apply_degradation("mp3-31k", voiced(0.1), SR)
    with pytest.raises(D.UnknownDegradationError, match="unknown degradation 'louder'"):
        D.degrade_cached("louder", voiced(0.1), SR, "k", "unused")


def test_degrade_cached_reads_back_without_recomputing(tmp_path, monkeypatch) -> None:
    x = voiced()
    first = D.degrade_cached("noise-10db", x, SR, "sha-of-clip", tmp_path)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and files[0].parent.name == "noise-10db"

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache entry was not used")

    monkeypatch.setattr(D, "apply_degradation", must_not_run)
    np.testing.assert_array_equal(
        D.degrade_cached("noise-10db", x, SR, "sha-of-clip", tmp_path), first
    )
    monkeypatch.undo()
    # The cached value equals a fresh computation up to the float16 storage step.
    fresh = D.apply_degradation("noise-10db", x, SR, seed="sha-of-clip")
    np.testing.assert_allclose(first, fresh, rtol=2**-10, atol=1e-7)
    # Another key seeds other noise; another clip under the same key is not served stale.
    other_key = D.degrade_cached("noise-10db", x, SR, "another-clip", tmp_path)
    assert not np.array_equal(other_key, first)
    other_clip = D.degrade_cached("noise-10db", x * 0.5, SR, "sha-of-clip", tmp_path)
    assert np.std(other_clip) < 0.75 * np.std(first)
    assert len(list(tmp_path.rglob("*.npy"))) == 3
    # Without a key the samples' hash is the key.
    D.degrade_cached("reverb", x, SR, None, tmp_path)
    np.testing.assert_array_equal(
        D.degrade_cached("reverb", x, SR, None, tmp_path),
        D.degrade_cached("reverb", x, SR, None, tmp_path),
    )


def test_clean_is_never_cached(tmp_path) -> None:
    x = voiced(0.2)
    np.testing.assert_array_equal(D.degrade_cached("clean", x, SR, "k", tmp_path), x)
    assert not list(tmp_path.rglob("*.npy"))


def test_augmentation_effect_pairs_each_detector_with_its_augmented_twin():
    import pandas as pd

    from dfa_lib.evaluation.robustness import augmentation_effect

    summary = pd.DataFrame(
        {
            "clean_eer": [0.10, 0.12, 0.3],
            "mean_degraded_eer": [0.20, 0.13, 0.4],
            "worst_eer": [0.3, 0.2, 0.5],
            "ratio": [2.0, 13 / 12, 4 / 3],
        },
        index=["lcnn", "lcnn_aug", "gmm"],
    )
    results = pd.DataFrame(
        {
            "model": ["lcnn", "lcnn", "lcnn_aug", "gmm", "head_aug"],
            "protocol": ["in-domain", "cross-source", "cross-source", "in-domain", "in-domain"],
            "eer_%": [10.0, 40.0, 30.0, 30.0, 5.0],
        }
    )
    table = augmentation_effect(summary, results)
    # gmm has no twin and head_aug no clean run: only the LCNN pair is shown.
    assert table[["detector", "training"]].values.tolist() == [
        ["lcnn", "clean"],
        ["lcnn", "augmented"],
    ]
    clean, aug = table.iloc[0], table.iloc[1]
    assert (clean["sweep_mean_%"], aug["sweep_mean_%"]) == pytest.approx((20.0, 13.0))
    assert (clean["cross-source_%"], aug["cross-source_%"]) == (40.0, 30.0)
    assert clean["in-domain_%"] == 10.0 and np.isnan(aug["in-domain_%"])
    assert np.isnan(aug["unseen-generator_%"])
    empty = augmentation_effect(summary.iloc[:0], results.iloc[:0])
    assert empty.empty and "sweep_ratio" in empty.columns
