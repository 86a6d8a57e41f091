"""A protocol's test results: metrics of scored clips, written into the detector folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dfa_lib.detector.folder import read_metrics, write_metrics, write_model_card
from dfa_lib.scoring.dcf import min_dcf
from dfa_lib.scoring.metrics import (
    breakdown,
    classification_summary,
    labels_from_scores,
    summarize_scores,
    write_scores_asvspoof2019,
    write_scores_asvspoof2021,
)

# An EER this far above the 50 % of chance, on at least this many clips of each class, is no
# accident of sampling: the scores run the wrong way round, most often because the labels do.
INVERTED_EER = 0.6
INVERTED_MIN_PER_CLASS = 20
UNDECODABLE_LISTED = 5  # paths of undecodable test clips kept in the metrics


def metric_warnings(metrics: Mapping) -> list[str]:
    """Return what a reader of these metrics must be told: inverted-looking labels, lost clips.

    The EER warning needs ``eer``, ``n_real`` and ``n_fake``; the second reads
    ``n_undecodable`` and the paths in ``undecodable``, where the evaluation recorded them.
    """
    warnings = []
    eer = metrics.get("eer")
    n_real, n_fake = int(metrics.get("n_real") or 0), int(metrics.get("n_fake") or 0)
    if eer is not None and eer > INVERTED_EER and min(n_real, n_fake) >= INVERTED_MIN_PER_CLASS:
        warnings.append(
            f"EER {100 * eer:.1f} % on {n_real} real and {n_fake} fake clips, far above the "
            "50 % of chance: the labels look inverted (a list where 1 means real, read as "
            "1 = fake?), or the detector ranks these fakes as more real than the real clips"
        )
    lost = int(metrics.get("n_undecodable") or 0)
    if lost:
        listed = list(metrics.get("undecodable") or [])
        names = ", ".join(map(str, listed)) + (" ..." if lost > len(listed) else "")
        warnings.append(
            f"{lost} test clip(s) could not be decoded and were left out"
            + (f": {names}" if listed else "")
        )
    return warnings


def evaluate_scores(
    scored: pd.DataFrame, threshold: float, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Return the protocol's metrics at the detector's own (validation EER) threshold.

    Keys: the flat summary of :func:`dfa_lib.scoring.metrics.summarize_scores` (EER with its bootstrap
    interval, AUC, accuracy at ``threshold``), ``min_dcf`` (:func:`scored_min_dcf`), ``classification`` (per-class precision, recall,
    F1, confusion matrix, report), ``by_generator`` / ``by_language`` tables as records, and
    ``warnings`` (:func:`metric_warnings`).
    """
    summary = summarize_scores(
        scored["score"].to_numpy(),
        scored["label"].to_numpy(),
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
    )
    summary["min_dcf"] = scored_min_dcf(scored)
    predicted = labels_from_scores(scored["score"].to_numpy(), threshold)
    summary["classification"] = classification_summary(scored["label"].to_numpy(), predicted)
    for col in ("generator", "family", "language", "source"):
        if col in scored.columns and scored[col].nunique() > 1:
            # Each generator's or family's fakes against every real clip (ASVspoof per attack).
            attack = col if col in ("generator", "family") else "generator"
            table = breakdown(scored, by=col, generator_col=attack)
            summary[f"by_{col}"] = table.replace({np.nan: None}).to_dict(orient="records")
    summary["warnings"] = metric_warnings(summary)
    return summary


def scored_min_dcf(scored: pd.DataFrame) -> float:
    """ASVspoof 5's normalised minimum detection cost of a frame of ``score`` and ``label`` rows.

    :func:`dfa_lib.scoring.dcf.min_dcf` with its default cost model (C_miss 1, C_fa 10,
    P_spoof 0.05): the cost at the best threshold, 0 for perfect separation, 1 for a detector no
    better than accepting or rejecting everything.
    """
    real = (scored["label"] == "real").to_numpy()
    scores = scored["score"].to_numpy(dtype=np.float64)
    return float(min_dcf(scores[real], scores[~real]).cost)


def weights_mtime(folder: Path) -> float | None:
    """Modification time of a run folder's newest weights file (None: it has none)."""
    files = sorted(folder.glob("*.safetensors"))
    return max(f.stat().st_mtime for f in files) if files else None


def write_evaluation(
    folder: str | os.PathLike,
    protocol: str,
    scored: pd.DataFrame,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    extra: dict | None = None,
) -> dict:
    """Write a protocol's metrics, score files and scored rows into a run folder; return metrics."""

    folder = Path(folder)
    metrics = evaluate_scores(scored, threshold, n_boot=n_boot, seed=seed)
    metrics.update(extra or {})
    metrics["warnings"] = metric_warnings(metrics)  # the extras may add clips left out
    metrics["weights_mtime"] = weights_mtime(folder)
    scores_dir = folder / "scores"
    attack = (
        scored["generator"] if "generator" in scored.columns else pd.Series(["-"] * len(scored))
    )
    write_scores_asvspoof2019(
        scores_dir / f"{protocol}.2019.txt",
        scored["path"].map(_utt_id),
        attack.where(scored["label"] == "fake", "-"),
        scored["label"],
        scored["score"],
    )
    write_scores_asvspoof2021(
        scores_dir / f"{protocol}.2021.txt", scored["path"].map(_utt_id), scored["score"]
    )
    scored.to_csv(scores_dir / f"{protocol}.scored.csv", index=False)
    everything = read_metrics(folder)
    everything[protocol] = metrics
    write_metrics(folder, everything)
    write_model_card(folder)  # the card lists the metrics of every protocol
    return metrics


def _utt_id(path: str) -> str:
    return str(path).replace("/", "__").replace(" ", "_")
