"""Shortcut audit: can the label be predicted from format and level statistics alone?

A corpus whose real and fake clips differ in duration, level, leading silence, the share of
speech, bandwidth or sample rate lets a detector score well without hearing any trace of
synthesis (silence is a known one: in ASVspoof 2019 LA the duration of the leading and
trailing silences alone detects many spoofed trials, Müller et al., Interspeech 2021). The
audit measures a handful of such statistics per clip and cross-validates a simple classifier
on them, with folds grouped by transcript. An ROC AUC near 0.5 means these cues tell nothing;
each statistic's own AUC shows which one leaks when the total is high.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from dfa_lib.features.vad import load_speech_activity, with_speech_seconds

AUDIT_FEATURES: tuple[str, ...] = (
    "duration",  # seconds
    "sample_rate",  # Hz, as stored in the file
    "rms_dbfs",  # overall level
    "peak_dbfs",
    "leading_silence",  # seconds before the first frame within 40 dB of the loudest
    "trailing_silence",  # seconds after the last such frame
    "noise_floor_db",  # 10th percentile of frame levels
    "rolloff_hz",  # frequency under which 85 % of the energy lies
    "energy_above_4k",  # share of the energy above 4 kHz
    "bandwidth_hz",  # highest frequency within 50 dB of the spectrum's peak
    "speech_share",  # share of the clip that the speech-activity model calls speech
)
PASS_AUC = 0.6  # an audit AUC below this counts as "near chance"


@dataclass
class AuditResult:
    """The audit's cross-validated AUC, each feature's own AUC, and the measured table."""

    auc: float  # mean ROC AUC over the folds (fake = positive class)
    auc_std: float
    feature_auc: dict[str, float]  # univariate ROC AUC per feature (0.5 = no information)
    n_clips: int
    classifier: str
    folds: int
    features: pd.DataFrame = field(repr=False)

    @property
    def passed(self) -> bool:
        """Whether the audit scores near chance (``auc < PASS_AUC``)."""
        return self.auc < PASS_AUC

    def summary(self) -> str:
        """Return a short human-readable report."""
        lines = [
            f"shortcut audit ({self.classifier}, {self.folds}-fold grouped CV, {self.n_clips} clips): "
            f"ROC AUC {self.auc:.3f} +- {self.auc_std:.3f} "
            f"({'near chance' if self.passed else 'SHORTCUTS PRESENT'})"
        ]
        for name, value in sorted(self.feature_auc.items(), key=lambda kv: -abs(kv[1] - 0.5)):
            lines.append(f"  {name:>17s}: AUC {value:.3f}")
        return "\n".join(lines)


def clip_statistics(
    wave: np.ndarray, sr: int, speech_seconds: float | None = None
) -> dict[str, float]:
    """Measure the audit's statistics on one clip (mono float samples).

    ``speech_seconds`` is the clip's speech as :mod:`dfa_lib.features.vad` measures it; it is measured
    here when not given (:func:`measure_manifest` measures many clips at once).
    """
    if speech_seconds is None:
        speech_seconds = load_speech_activity().speech_seconds(np.asarray(wave), sr)[0]
    wave = np.asarray(wave, dtype=np.float64)
    hop, frame = sr // 100, sr // 50
    n = max(1, 1 + (len(wave) - frame) // hop)
    padded = np.pad(wave, (0, max(0, frame - len(wave))))
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    db = 10.0 * np.log10(np.mean(padded[idx] ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(db > db.max() - 40.0)
    spectrum = np.mean(np.abs(np.fft.rfft(padded[idx] * np.hanning(frame), axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(frame, 1.0 / sr)
    total = spectrum.sum() + 1e-20
    cumulative = np.cumsum(spectrum) / total
    spectrum_db = 10.0 * np.log10(spectrum + 1e-20)
    within = np.flatnonzero(spectrum_db > spectrum_db.max() - 50.0)
    return {
        "duration": len(wave) / sr,
        "sample_rate": float(sr),
        "rms_dbfs": 10.0 * np.log10(np.mean(wave**2) + 1e-12),
        "peak_dbfs": 20.0 * np.log10(np.max(np.abs(wave)) + 1e-12),
        "leading_silence": active[0] * hop / sr if len(active) else len(wave) / sr,
        "trailing_silence": max(0.0, (len(wave) - (active[-1] * hop + frame)) / sr)
        if len(active)
        else 0.0,
        "noise_floor_db": float(np.percentile(db, 10)),
        "rolloff_hz": float(freqs[min(np.searchsorted(cumulative, 0.85), len(freqs) - 1)]),
        "energy_above_4k": float(spectrum[freqs > 4000.0].sum() / total),
        "bandwidth_hz": float(freqs[within[-1]]) if len(within) else 0.0,
        "speech_share": min(1.0, speech_seconds / max(len(wave) / sr, 1e-9)),
    }


def measure_manifest(manifest: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """Return one row of :data:`AUDIT_FEATURES` per manifest row (files read under ``root``)."""

    root = Path(root)

    def clips():
        for rel in manifest["path"]:
            wave, sr = sf.read(str(root / rel), dtype="float64", always_2d=True)
            yield wave.mean(axis=1), int(sr)

    # The speech-activity model is the slow part: it reads many clips side by side.
    rows = [
        clip_statistics(wave, sr, speech_seconds=seconds)
        for wave, sr, seconds in with_speech_seconds(clips())
    ]
    return pd.DataFrame(rows, columns=list(AUDIT_FEATURES), index=manifest.index)


def shortcut_audit(
    manifest: pd.DataFrame,
    root: str | Path,
    folds: int = 5,
    seed: int = 0,
    classifier: str = "logistic",
    max_clips: int | None = None,
    table: pd.DataFrame | None = None,
) -> AuditResult:
    """Cross-validate a classifier that sees only format statistics; return its ROC AUC.

    ``classifier`` is ``"logistic"`` (standardised logistic regression) or ``"boosting"``
    (gradient-boosted trees, which also find non-linear cues). Folds are grouped by
    ``transcript_id`` when the manifest has it. ``max_clips`` samples the manifest first.
    ``table`` is :func:`measure_manifest`'s result for this manifest, when already measured.
    """

    if max_clips is not None and len(manifest) > max_clips:
        manifest = manifest.sample(n=max_clips, random_state=seed)
    y = (manifest["label"] == "fake").to_numpy(dtype=int)
    if len(set(y)) < 2:
        raise ValueError("the audit needs both real and fake clips in the manifest")
    if table is None:
        table = measure_manifest(manifest, root)
    else:
        missing = [c for c in AUDIT_FEATURES if c not in table.columns]
        if missing or not manifest.index.isin(table.index).all():
            raise ValueError(
                "table must be measure_manifest(manifest, root) for this manifest: "
                + (f"it lacks {missing}" if missing else "it lacks rows of the manifest")
            )
        table = table.loc[manifest.index, list(AUDIT_FEATURES)]
    x = table.to_numpy(dtype=float)
    folds = max(2, min(folds, int(np.bincount(y).min())))
    if "transcript_id" in manifest.columns:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = splitter.split(x, y, groups=manifest["transcript_id"].astype(str))
    else:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y)
    scores = []
    # One thread: the data are small, and spinning OpenMP threads only slow a busy machine.
    limits = threadpool_limits(1)
    for train, test in splits:
        if len(set(y[test])) < 2:
            continue
        if classifier == "logistic":
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        elif classifier == "boosting":
            model = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
        else:
            raise ValueError(f"classifier must be 'logistic' or 'boosting', not {classifier!r}")
        model.fit(x[train], y[train])
        scores.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    limits.unregister()
    feature_auc = {}
    for name in AUDIT_FEATURES:
        column = table[name].to_numpy(dtype=float)
        feature_auc[name] = 0.5 if np.ptp(column) == 0 else float(roc_auc_score(y, column))
    return AuditResult(
        auc=float(np.mean(scores)),
        auc_std=float(np.std(scores)),
        feature_auc=feature_auc,
        n_clips=len(manifest),
        classifier=classifier,
        folds=len(scores),
        features=table,
    )
