"""Fitting and testing the score fusions of the detectors trained for one protocol."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dfa_lib.detector.folder import read_metrics
from dfa_lib.detector.fusion import (
    FusionError,
    FusionParameters,
    _config,
    fit_fusion,
    fuse_scored,
    is_fusion_folder,
    members_and_parameters,
    parse_fusions,
    resolve_members,
)
from dfa_lib.evaluation.results import write_evaluation


def evaluate_fusion(
    folder: str | os.PathLike, protocol: str, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Evaluate a fusion on ``protocol`` from its members' score files; write its metrics."""

    folder = Path(folder)
    scored = fuse_scored(folder, protocol)
    checksum = hashlib.sha256(
        pd.util.hash_pandas_object(scored[["path", "score"]], index=False).to_numpy().tobytes()
    ).hexdigest()
    previous = read_metrics(folder).get(protocol)
    if (
        previous
        and previous.get("scores_checksum") == checksum
        and previous.get("n_boot") == n_boot
    ):
        return previous
    threshold = float(_config(folder)["threshold"])
    return write_evaluation(
        folder,
        protocol,
        scored,
        threshold,
        n_boot=n_boot,
        seed=seed,
        extra={"scores_checksum": checksum, "n_boot": n_boot},
    )


def fit_and_evaluate(
    spec: str,
    folders: Sequence[Path],
    labels: Mapping[str, str] | pd.Series,
    protocol: str,
    c: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict[Path, dict], list[str]]:
    """Fit (or reuse) each fusion of ``spec`` among ``folders`` and evaluate it on ``protocol``.

    ``folders`` are the detectors trained for the protocol's training run, all evaluated on
    ``protocol`` already; ``labels`` are that run's validation labels. Returns the metrics by
    fusion folder, and one line per fusion skipped because its members are not all there.
    """
    results: dict[Path, dict] = {}
    skipped: list[str] = []
    for members in parse_fusions(spec):
        try:
            chosen = resolve_members(members, folders)
        except FusionError as error:
            skipped.append(f"fusion {'+'.join(members)} skipped: {error}")
            continue
        folder = fit_fusion(chosen, labels, c=c)
        results[folder] = evaluate_fusion(folder, protocol, n_boot, seed)
    return results, skipped


def sweepable_fusions(
    folders: Sequence[Path], detectors: Sequence[str]
) -> dict[str, tuple[list[str], FusionParameters]]:
    """The fusions among ``folders`` whose members are all in ``detectors``, for
    :func:`dfa_lib.evaluation.robustness.degradation_sweep`: name -> (member names, parameters)."""
    found = {}
    for folder in folders:
        if is_fusion_folder(folder):
            members, parameters = members_and_parameters(folder)
            if set(members) <= set(detectors):
                found[Path(folder).name] = (members, parameters)
    return found


def weights_table(folders: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per fusion member: its weight (on standardised scores) and the fusion's EER."""
    rows = []
    for folder in folders:
        if not is_fusion_folder(folder):
            continue
        config = _config(Path(folder))
        kwargs = config["model"]["kwargs"]
        for record, weight in zip(kwargs["members"], kwargs["weights"], strict=True):
            rows.append(
                {
                    "fusion": Path(folder).name,
                    "trained_on": config.get("dataset", {}).get("protocol", "?"),
                    "member": record["name"],
                    "weight": weight,
                    "fusion_val_eer_%": 100 * config["val_eer"],
                }
            )
    return pd.DataFrame(rows)
