"""Tests of the shortcut audit on clips made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dfa_lib.evaluation.audit import AUDIT_FEATURES, AuditResult, clip_statistics, shortcut_audit

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


def test_speech_share_is_measured_in_batches_as_clip_by_clip(tmp_path, speech_wav):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (make setup)")
    from dfa_lib.data.audio import load_audio
    from dfa_lib.evaluation.audit import measure_manifest

    speech, _ = load_audio(speech_wav, target_sr=SR)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    clips = {
        "speech.wav": (speech, SR),
        "tone.wav": (tone, SR),
        "speech_22k.wav": (load_audio(speech_wav, target_sr=22050)[0], 22050),
        "pause.wav": (np.concatenate([speech, np.zeros(2 * SR, np.float32)]), SR),
    }
    for name, (wave, sr) in clips.items():
        sf.write(tmp_path / name, wave, sr, subtype="FLOAT")
    manifest = pd.DataFrame({"path": list(clips), "label": ["real", "fake"] * 2})
    table = measure_manifest(manifest, tmp_path)
    # The audit takes a table already measured, and refuses one of another manifest.
    given = shortcut_audit(manifest, tmp_path, folds=2, table=table.assign(label="x"))
    assert given.features.equals(table)
    with pytest.raises(ValueError, match="lacks rows"):
        shortcut_audit(manifest, tmp_path, table=table.iloc[:2])
    with pytest.raises(ValueError, match="lacks \\['speech_share'\\]"):
        shortcut_audit(manifest, tmp_path, table=table.drop(columns="speech_share"))
    for i, (wave, sr) in enumerate(clips.values()):
        alone = clip_statistics(wave.astype(np.float64), sr)["speech_share"]
        assert table.iloc[i]["speech_share"] == pytest.approx(alone, abs=1e-9)
    share = dict(zip(clips, table["speech_share"], strict=True))
    assert share["tone.wav"] == 0.0 and share["speech.wav"] > 0.5
    assert share["speech_22k.wav"] == pytest.approx(share["speech.wav"], abs=0.1)
    # Two seconds of pause after the same words: the share drops by their length.
    duration = clips["pause.wav"][0].size / SR
    assert share["pause.wav"] == pytest.approx(
        share["speech.wav"] * speech.size / SR / duration, abs=0.05
    )
