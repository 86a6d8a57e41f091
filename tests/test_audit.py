"""Tests of the shortcut audit on clips made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dfa_lib.audit import AUDIT_FEATURES, AuditResult, clip_statistics, shortcut_audit

SR = 16000


def _clip(
    rng: np.random.Generator, seconds: float = 1.0, level: float = 0.1, lead: float = 0.0
) -> np.ndarray:
    """Band-limited noise bursts, optionally after a silent lead."""
    n = int(seconds * SR)
    noise = rng.standard_normal(n)
    kernel = np.hanning(9) / np.hanning(9).sum()  # gentle low-pass: most energy below 4 kHz
    wave = np.convolve(noise, kernel, mode="same") * level
    wave[: int(lead * SR)] = 0.0
    return wave.astype(np.float32)


def _corpus(tmp_path, fake_level: float, fake_lead: float, n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        for label, level, lead in (("real", 0.1, 0.0), ("fake", fake_level, fake_lead)):
            rel = f"{label}/{i}.wav"
            (tmp_path / label).mkdir(exist_ok=True)
            sf.write(
                tmp_path / rel, _clip(rng, level=level * rng.uniform(0.8, 1.25), lead=lead), SR
            )
            rows.append({"path": rel, "label": label, "transcript_id": f"t{i}"})
    return pd.DataFrame(rows)


def test_clip_statistics_measure_what_they_say():
    rng = np.random.default_rng(1)
    wave = _clip(rng, seconds=2.0, lead=0.5)
    stats = clip_statistics(wave, SR)
    assert set(stats) == set(AUDIT_FEATURES)
    assert stats["duration"] == pytest.approx(2.0)
    assert stats["leading_silence"] == pytest.approx(0.5, abs=0.02)
    assert stats["trailing_silence"] < 0.02
    tone = np.sin(2 * np.pi * 6000 * np.arange(SR) / SR).astype(np.float32) * 0.5
    tone_stats = clip_statistics(tone, SR)
    assert tone_stats["energy_above_4k"] > 0.99
    assert tone_stats["rolloff_hz"] == pytest.approx(6000, abs=100)
    assert tone_stats["rms_dbfs"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)


def test_audit_finds_a_level_and_silence_shortcut(tmp_path):
    df = _corpus(tmp_path, fake_level=0.03, fake_lead=0.3)
    result = shortcut_audit(df, tmp_path, folds=4)
    assert isinstance(result, AuditResult)
    assert result.auc > 0.95 and not result.passed
    assert result.feature_auc["rms_dbfs"] < 0.05  # fakes are quieter
    assert result.feature_auc["leading_silence"] > 0.95
    assert "SHORTCUTS PRESENT" in result.summary()


def test_audit_is_near_chance_when_classes_match(tmp_path):
    df = _corpus(tmp_path, fake_level=0.1, fake_lead=0.0)
    for classifier in ("logistic", "boosting"):
        result = shortcut_audit(df, tmp_path, folds=4, classifier=classifier)
        assert 0.2 < result.auc < 0.8, classifier
        assert result.n_clips == len(df) and len(result.features) == len(df)
    assert result.feature_auc["sample_rate"] == 0.5 and result.feature_auc["duration"] == 0.5


def test_audit_rejects_one_class_and_bad_classifier(tmp_path):
    df = _corpus(tmp_path, fake_level=0.1, fake_lead=0.0, n=4)
    with pytest.raises(ValueError, match="both real and fake"):
        shortcut_audit(df[df.label == "real"], tmp_path)
    with pytest.raises(ValueError, match="logistic"):
        shortcut_audit(df, tmp_path, classifier="svm")
