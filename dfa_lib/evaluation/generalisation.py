"""Leave-one-family-out generalisation: the train x test family matrix of the lofo-* runs.

A ``lofo-<family>`` detector is trained on the fakes of every generator family but one and
tested on the whole test split (unseen speakers and voices, fakes of every family). Its run's
``by_family`` metrics (each family's test fakes against every real test clip) are one row of a
matrix, held-out family x test family, whose diagonal is the EER on the family training never
saw and whose other cells are the EER on families it did see (on unseen voices).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from dfa_lib.data.protocols import FAMILIES_ORDER, LOFO, lofo_family
from dfa_lib.detector.folder import read_metrics
from dfa_lib.evaluation.evaluate import find_runs

Key = tuple[str, str]  # (model, protocol)

SUMMARY_COLUMNS = (
    "held_out_mean_%",  # mean over the rotations found of the held-out family's EER
    "held_out_worst_%",  # the highest held-out EER
    "worst_family",  # the family held out in that rotation
    "rotations",  # lofo-* runs found for the model
    "expected",  # families with test fakes in any lofo-* run: the rotations there should be
    "seen_mean_%",  # mean EER on families training did see (the matrix off its diagonal)
    "gap_%",  # held_out_mean_% - seen_mean_%: what not having seen a family costs
)


class LofoResultsError(ValueError):
    """The metrics hold no leave-one-family-out results for the model asked about."""


def order_families(families: Iterable[str]) -> list[str]:
    """Return ``families`` in the corpus's order (classical engines first), unknown ones after."""
    found = set(families)
    return [f for f in FAMILIES_ORDER if f in found] + sorted(found - set(FAMILIES_ORDER))


def _lofo_runs(metrics: Mapping[Key, dict], model: str | None = None) -> dict[Key, dict]:
    """The lofo-* entries of ``metrics`` (of ``model`` only, when given), by (model, held-out)."""
    runs = {}
    for (name, protocol), entry in metrics.items():
        family = lofo_family(protocol)
        if family is not None and (model is None or name == model):
            runs[(name, family)] = entry
    return runs


def _family_eers(entry: Mapping) -> dict[str, float]:
    """EER (%) of each test family of one run (families too small for an EER left out)."""
    return {
        str(row["family"]): 100 * float(row["eer"])
        for row in entry.get("by_family") or []
        if row.get("eer") is not None
    }


def lofo_families(metrics: Mapping[Key, dict]) -> list[str]:
    """Every family the lofo-* runs of ``metrics`` held out or tested on, in corpus order."""
    families: set[str] = set()
    for (_, held_out), entry in _lofo_runs(metrics).items():
        families |= {held_out, *_family_eers(entry)}
    return order_families(families)


def lofo_matrix(
    metrics: Mapping[Key, dict], model: str, families: Iterable[str] | None = None
) -> pd.DataFrame:
    """EER (%) of ``model``'s lofo-* detectors: rows the held-out family, columns the test family.

    ``metrics`` maps (model, protocol) to a run's metrics (what
    :class:`~dfa_lib.evaluation.protocol_report.ProtocolEvaluation` gathers). Both axes list
    ``families`` (default: every family of the model's lofo-* runs), so the diagonal holds the
    held-out EERs; a rotation that was not run, or a family without an EER, is NaN.
    Raises :class:`LofoResultsError` when ``model`` has no lofo-* result.
    """
    runs = {held_out: entry for (_, held_out), entry in _lofo_runs(metrics, model).items()}
    if not runs:
        models = sorted({name for name, _ in _lofo_runs(metrics)})
        raise LofoResultsError(
            f"no {LOFO}-<family> results for model {model!r} "
            f"(models with some: {models or 'none'}); train and evaluate it on the "
            f"{LOFO}-* protocols first"
        )
    if families is None:
        families = set(runs).union(*(_family_eers(entry) for entry in runs.values()))
    axis = order_families(families)
    matrix = pd.DataFrame(np.nan, index=axis, columns=axis, dtype=np.float64)
    for held_out, entry in runs.items():
        for family, eer in _family_eers(entry).items():
            if held_out in matrix.index and family in matrix.columns:
                matrix.loc[held_out, family] = eer
    matrix.index.name = "held out"
    matrix.columns.name = "test family"
    return matrix


def held_out_eers(matrix: pd.DataFrame) -> pd.Series:
    """The diagonal of a :func:`lofo_matrix`: each held-out family's EER (%), NaN where missing."""
    return pd.Series(
        [matrix.loc[f, f] if f in matrix.columns else np.nan for f in matrix.index],
        index=matrix.index,
        dtype=np.float64,
        name="held_out_%",
    )


def lofo_summary(metrics: Mapping[Key, dict]) -> pd.DataFrame:
    """One row per model with lofo-* results, sorted by mean held-out EER (best first).

    Columns (:data:`SUMMARY_COLUMNS`): the mean and worst held-out EER (%) over the rotations
    found, the family behind the worst, rotations found and expected (families with test
    fakes), the mean EER on the families training saw, and the gap between the two means.
    A model missing rotations is averaged over the ones it has: read ``rotations``.
    """
    families = lofo_families(metrics)
    rows = []
    for model in sorted({name for name, _ in _lofo_runs(metrics)}):
        matrix = lofo_matrix(metrics, model, families)
        held_out = held_out_eers(matrix)
        seen = matrix.to_numpy()[~np.eye(len(families), dtype=bool)]
        seen = seen[~np.isnan(seen)]
        mean_held = float(held_out.mean()) if held_out.notna().any() else np.nan
        mean_seen = float(seen.mean()) if seen.size else np.nan
        rows.append(
            {
                "model": model,
                "held_out_mean_%": mean_held,
                "held_out_worst_%": float(held_out.max()) if held_out.notna().any() else np.nan,
                "worst_family": held_out.idxmax() if held_out.notna().any() else None,
                "rotations": len(_lofo_runs(metrics, model)),
                "expected": len(families),
                "seen_mean_%": mean_seen,
                "gap_%": mean_held - mean_seen,
            }
        )
    summary = pd.DataFrame(rows, columns=["model", *SUMMARY_COLUMNS])
    summary = summary.sort_values(["held_out_mean_%", "model"], na_position="last")
    return summary.set_index("model")


def lofo_metrics(runs_dir: str | os.PathLike) -> dict[Key, dict]:
    """The lofo-* metrics of every run folder under ``runs_dir``, by (model, protocol).

    The same mapping :func:`lofo_matrix` and :func:`lofo_summary` read from a
    ``ProtocolEvaluation``, taken from the metrics.json files an earlier evaluation wrote.
    """
    out: dict[Key, dict] = {}
    for folder in find_runs(runs_dir):
        for protocol, entry in read_metrics(folder).items():
            if isinstance(entry, dict) and lofo_family(protocol) is not None:
                out[(folder.name, protocol)] = entry
    return out
