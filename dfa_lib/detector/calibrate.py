"""Fitting a detector folder's probability calibration on its validation scores."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dfa_lib.core.atomic import write_json_atomically
from dfa_lib.detector.folder import (
    CONFIG_FILE,
    DetectorFormatError,
    read_detector_config,
    write_model_card,
)
from dfa_lib.detector.validation import (
    ValidationScoresError,
    labels_of,
    validation_fingerprint,
    validation_scores,
)
from dfa_lib.scoring.calibration import (
    CALIBRATION_KEY,
    CALIBRATION_METHOD,
    Calibration,
    CalibrationError,
    fit_calibration,
)


def calibrate_folder(
    folder: str | os.PathLike, labels: Mapping[str, str] | pd.Series
) -> Calibration:
    """Fit a detector folder's calibration on its validation scores and write it to its config.

    ``labels`` maps each validation clip's path to ``real`` or ``fake`` (e.g.
    :func:`dfa_lib.detector.fusion.protocol_labels`). A folder whose stored calibration was fitted on
    the same validation scores, the same way, is left as it is. The model card is written again.
    """

    folder = Path(folder)
    config = read_detector_config(folder)
    try:
        fingerprint = validation_fingerprint(folder)
        scores = validation_scores(folder)
        truth = labels_of(scores.index, labels)
    except ValidationScoresError as error:
        raise CalibrationError(f"{folder}: cannot calibrate: {error}") from error
    stored = config.get(CALIBRATION_KEY)
    if (
        isinstance(stored, Mapping)
        and stored.get("validation_fingerprint") == fingerprint
        and stored.get("method") == CALIBRATION_METHOD
    ):
        return Calibration.from_config(config)
    real = truth == 1
    try:
        calibration = fit_calibration(scores.to_numpy()[real], scores.to_numpy()[~real])
    except CalibrationError as error:
        raise CalibrationError(f"{folder}: {error}") from error
    config[CALIBRATION_KEY] = {
        "scale": calibration.scale,
        "offset": calibration.offset,
        "fitted_on": "validation",
        "method": CALIBRATION_METHOD,
        "n_real": int(real.sum()),
        "n_fake": int((~real).sum()),
        "validation_fingerprint": fingerprint,
    }
    write_json_atomically(folder / CONFIG_FILE, config)
    write_model_card(folder)
    return calibration


def calibrate_new_folder(
    folder: str | os.PathLike, labels: Mapping[str, str] | pd.Series
) -> Calibration | None:
    """:func:`calibrate_folder` for a folder training has just written.

    A calibration that cannot be fitted (validation scores that rank the classes the wrong way
    round, a missing label) is skipped with a warning: the folder then reports raw
    probabilities, and training does not fail for it.
    """
    try:
        return calibrate_folder(folder, labels)
    except CalibrationError as error:
        warnings.warn(f"not calibrated: {error}", stacklevel=2)
        return None


def calibrate_folders(
    folders: Iterable[str | os.PathLike], labels: Mapping[str, str] | pd.Series
) -> dict[str, str]:
    """:func:`calibrate_folder` for each folder; returns the error of each that failed, by name.

    A detector whose calibration cannot be fitted keeps reporting ``sigmoid(-score)``.
    """

    failed: dict[str, str] = {}
    for folder in map(Path, folders):
        try:
            calibrate_folder(folder, labels)
        except (CalibrationError, DetectorFormatError, OSError) as error:
            failed[folder.name] = str(error)
    return failed
