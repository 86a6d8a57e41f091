"""A detector folder's validation scores: reading them, their fingerprint and their labels."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dfa_lib.scoring.metrics import ScoreFileError, read_scores_asvspoof2021


class ValidationScoresError(ValueError):
    """A folder's validation scores are missing, unreadable, or do not match their labels."""


VALIDATION_SCORES = Path("scores") / "validation.txt"


def validation_fingerprint(folder: Path) -> str:
    """SHA-256 of a member's validation score file: what the fusion was fitted on."""
    path = Path(folder) / VALIDATION_SCORES
    if not path.is_file():
        raise ValidationScoresError(
            f"{folder}: no {VALIDATION_SCORES}; only trained run folders can be fused"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validation_scores(folder: Path) -> pd.Series:
    """A member's validation bona fide scores, indexed by clip path."""

    try:
        table = read_scores_asvspoof2021(Path(folder) / VALIDATION_SCORES)
    except ScoreFileError as error:
        raise ValidationScoresError(f"{folder}: {error}") from error
    if table["utt_id"].duplicated().any():
        raise ValidationScoresError(f"{folder}: {VALIDATION_SCORES} lists a clip twice")
    return table.set_index("utt_id")["score"]


def labels_of(paths: pd.Index, labels: Mapping[str, str] | pd.Series) -> np.ndarray:
    """1 for each real clip of ``paths``, 0 for each fake, from ``labels`` (path -> label)."""
    labels = pd.Series(labels)
    missing = paths.difference(labels.index)
    if len(missing):
        raise ValidationScoresError(
            f"no label for {len(missing)} validation clips (first: {missing[0]}); pass the "
            "protocol's manifest labels"
        )
    values = labels.loc[paths].to_numpy()
    unknown = sorted(set(values) - {"real", "fake"})
    if unknown:
        raise ValidationScoresError(f"labels must be 'real' or 'fake', found {unknown}")
    y = (values == "real").astype(int)
    if y.min() == y.max():
        raise ValidationScoresError("the validation clips hold one class only; a fusion needs both")
    return y
