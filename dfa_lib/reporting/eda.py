"""What 01_eda shows about a corpus: the shortcut audit, its composition, signals and examples.

:func:`load_corpus` reads a dataset's manifest (capped per split and class when asked);
:func:`audit_table` and :func:`feature_auc_table` set the shortcut audits side by side (the
report's headline: can a classifier that sees only format statistics tell real from fake?);
:func:`composition_tables`, :func:`plot_signal_histograms` and :func:`example_pairs` are the
detail after it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from dfa_lib.data.audio import load_audio
from dfa_lib.data.datasets import load_dataset
from dfa_lib.data.protocols import make_subset
from dfa_lib.evaluation.audit import AuditResult

# The statistics whose class histograms 01 draws, with their units.
SIGNAL_UNITS: dict[str, str] = {
    "duration": "s",
    "rms_dbfs": "dBFS",
    "leading_silence": "s",
    "speech_share": "share",
    "energy_above_4k": "share",
}

# Manifest columns that get a composition table when they hold more than one value.
COMPOSITION_COLUMNS: tuple[str, ...] = ("source", "generator", "language")


def load_corpus(
    dataset: str, data_dir: str | os.PathLike, max_per_class: int = 0, seed: int = 0
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, root)`` of ``dataset``, at most ``max_per_class`` per split and class.

    ``max_per_class`` 0 keeps every clip; a cap takes a seeded stratified subset of each split.
    """
    manifest, root = load_dataset(dataset, Path(data_dir))
    if max_per_class:
        manifest = pd.concat(
            [
                make_subset(group, max_per_class=max_per_class, seed=seed)
                for _, group in manifest.groupby("split")
            ]
        )
    return manifest, root


def audit_table(audits: Sequence[AuditResult]) -> pd.DataFrame:
    """One row per shortcut audit: its cross-validated ROC AUC, spread and verdict.

    ``near chance`` below :data:`~dfa_lib.evaluation.audit.PASS_AUC`; ``shortcuts present``
    otherwise (the corpus leaks the label through the channel).
    """
    return pd.DataFrame(
        [
            {
                "classifier": a.classifier,
                "roc_auc": a.auc,
                "auc_std": a.auc_std,
                "folds": a.folds,
                "clips": a.n_clips,
                "verdict": "near chance" if a.passed else "shortcuts present",
            }
            for a in audits
        ]
    ).set_index("classifier")


def feature_auc_table(audit: AuditResult) -> pd.DataFrame:
    """Each statistic's own ROC AUC (fake = positive), the most telling first.

    0.5 says nothing; the distance from 0.5 is how much that cue alone gives away.
    """
    table = pd.Series(audit.feature_auc, name="roc_auc").rename_axis("statistic").to_frame()
    table["distance_from_chance"] = (table["roc_auc"] - 0.5).abs()
    return table.sort_values("distance_from_chance", ascending=False, kind="stable")


def composition_tables(manifest: pd.DataFrame) -> list[pd.DataFrame]:
    """Clips by split and label, by each of :data:`COMPOSITION_COLUMNS` that varies, and voices.

    The last table counts the speakers (real) or voices (fake) behind each generator.
    """
    tables = [pd.crosstab(manifest["split"], manifest["label"], margins=True)]
    for column in COMPOSITION_COLUMNS:
        if column in manifest.columns and manifest[column].nunique() > 1:
            tables.append(pd.crosstab(manifest[column], manifest["label"], margins=True))
    voices = manifest.groupby(["label", "generator"])["speaker"].nunique()
    tables.append(voices.rename("speakers or voices").to_frame())
    return tables


def plot_signal_histograms(stats: pd.DataFrame, units: dict[str, str] = SIGNAL_UNITS) -> Figure:
    """Real and fake histograms (densities) of each statistic of ``units``, side by side.

    ``stats`` has one row per clip: :func:`~dfa_lib.evaluation.audit.measure_manifest`'s
    columns and ``label``.
    """
    fig, axes = plt.subplots(1, len(units), figsize=(16, 3.5), squeeze=False)
    for ax, (column, unit) in zip(axes[0], units.items(), strict=True):
        for label in ("real", "fake"):
            values = stats.loc[stats["label"] == label, column]
            ax.hist(values, bins=40, alpha=0.6, label=label, density=True)
        ax.set(title=column, xlabel=unit)
        ax.legend()
    fig.tight_layout()
    return fig


def example_pairs(
    manifest: pd.DataFrame, root: str | os.PathLike, n: int, seed: int = 0
) -> list[list[tuple[str, np.ndarray]]]:
    """Up to ``n`` pairs of one sentence spoken by the real speaker and by a synthesiser.

    Sentences (``transcript_id``) with both a real and a fake clip are drawn with ``seed``;
    each pair is ``[(title, wave), (title, wave)]``, real first. Empty when no sentence has
    both.
    """
    rng = np.random.default_rng(seed)
    real = manifest[manifest["label"] == "real"]
    fake = manifest[manifest["label"] == "fake"]
    shared = sorted(set(real["transcript_id"]) & set(fake["transcript_id"]))
    if not shared:
        return []
    pairs = []
    for tid in rng.choice(shared, size=min(n, len(shared)), replace=False):
        r = real[real["transcript_id"] == tid].iloc[0]
        f = fake[fake["transcript_id"] == tid].sample(1, random_state=seed).iloc[0]
        pairs.append(
            [
                (f"real · {r['speaker']}", load_audio(Path(root) / r["path"])[0]),
                (f"fake · {f['generator']} {f['speaker']}", load_audio(Path(root) / f["path"])[0]),
            ]
        )
    return pairs
