"""06_robustness's study: augmented twins tested beside their clean runs, in-domain detectors swept.

:func:`test_augmented_twins` scores the detectors trained with augmentation (``*_aug``: 06's
CNNs, 03's encoder heads) on every protocol their training protocols answer.
:func:`sweep_detectors` loads the in-domain detectors a profile names (glob patterns), scores
them and the fusions of them under every degradation of
:data:`dfa_lib.evaluation.robustness.SWEEP` and returns the sweep with the detectors that
could not be loaded, so the report can show the rest before the run fails
(:func:`raise_if_not_loaded`).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfa_lib.data.protocol_data import ProtocolData, prepare_protocol, protocols_for
from dfa_lib.data.protocols import TRAINED_ON
from dfa_lib.detector.fusion import is_fusion_folder
from dfa_lib.detector.loading import load_detectors
from dfa_lib.evaluation.evaluate import evaluate_run, find_runs
from dfa_lib.evaluation.fusions import sweepable_fusions
from dfa_lib.evaluation.robustness import AUGMENTED_SUFFIX, SWEEP, degradation_sweep, sweep_summary


class DetectorsNotLoadedError(RuntimeError):
    """Some detectors named for the sweep could not be loaded; the sweep left them out."""


def evaluate_augmented_twins(
    runs_dir: str | os.PathLike,
    trained: Sequence[str],
    dataset: str,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Test every ``*_aug`` detector trained on one of ``trained`` on the protocols it answers.

    Writes each one's metrics and score files (a protocol already evaluated on the same clips
    by the same weights is read back). Returns one row per detector and protocol: ``model``,
    ``protocol``, ``eer_%``.
    """
    rows = []
    for protocol in protocols_for(dataset):
        if TRAINED_ON[protocol] not in trained:
            continue
        test = prepare_protocol(
            dataset, protocol, data_dir, cache_dir, seed=seed, splits=("testing",)
        )
        for folder in find_runs(Path(runs_dir) / TRAINED_ON[protocol]):
            if folder.name.endswith(AUGMENTED_SUFFIX) and not is_fusion_folder(folder):
                metrics = evaluate_run(folder, test, n_boot=n_boot, seed=seed)
                rows.append(
                    {"model": folder.name, "protocol": protocol, "eer_%": 100 * metrics["eer"]}
                )
    return pd.DataFrame(rows, columns=["model", "protocol", "eer_%"])


def chosen_folders(folders: Sequence[Path], patterns: str) -> list[Path]:
    """The detector folders (fusions aside) whose name matches one of the comma-separated globs.

    An empty ``patterns`` chooses every detector.
    """
    globs = [p for p in patterns.split(",") if p]
    return [
        f
        for f in folders
        if not is_fusion_folder(f)
        and (not globs or any(fnmatch.fnmatchcase(f.name, g) for g in globs))
    ]


@dataclass
class Sweep:
    """What :func:`sweep_detectors` swept: one row per (detector, degradation), and what it left out."""

    rows: pd.DataFrame  # degradation_sweep's columns
    detectors: list[str] = field(default_factory=list)  # loaded and swept
    fusions: list[str] = field(default_factory=list)  # scored from their members' scores
    failed: dict[str, str] = field(default_factory=dict)  # detector -> why it was not loaded

    def eer_table(self) -> pd.DataFrame:
        """EER (%) by detector (rows) and degradation (columns, in :data:`SWEEP` order)."""
        if self.rows.empty:
            return pd.DataFrame(columns=list(SWEEP))
        table = self.rows.pivot(index="detector", columns="degradation", values="eer")
        return table[[d for d in SWEEP if d in table.columns]] * 100

    def summary_table(self) -> pd.DataFrame:
        """Per detector: clean, mean degraded and worst EER (%), their ratio, and the Cllr (bits)."""
        summary = sweep_summary(self.rows)
        return (summary[["clean_eer", "mean_degraded_eer", "worst_eer"]] * 100).assign(
            ratio=summary["ratio"],
            clean_cllr=summary["clean_cllr"],
            mean_degraded_cllr=summary["mean_degraded_cllr"],
        )


def sweep_detectors(
    runs_dir: str | os.PathLike,
    test: ProtocolData,
    patterns: str,
    cache_dir: str | os.PathLike,
    max_per_class: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Sweep:
    """Sweep the detectors of ``runs_dir`` chosen by ``patterns`` over :data:`SWEEP` on ``test``.

    Detectors on a pretrained encoder run it for every degraded clip (slow on a CPU), hence the
    globs. A detector that cannot be loaded is listed with its error and left out; the fusions
    whose members are all swept are scored from their members' scores. Degraded audio and
    scores are cached under ``cache_dir`` (a second sweep only reads); ``max_per_class`` test
    clips per class (None: all).
    """
    folders = find_runs(runs_dir)
    detectors, failed = load_detectors(chosen_folders(folders, patterns), device=device)
    fusions = sweepable_fusions(folders, list(detectors))
    rows = degradation_sweep(
        detectors,
        test,
        SWEEP,
        cache_dir=cache_dir,
        max_per_class=max_per_class,
        seed=seed,
        fusions=fusions,
    )
    return Sweep(rows, list(detectors), list(fusions), failed)


def raise_if_not_loaded(sweep: Sweep) -> None:
    """Raise :class:`DetectorsNotLoadedError` naming each detector the sweep could not load."""
    if sweep.failed:
        raise DetectorsNotLoadedError(
            f"{len(sweep.failed)} detector(s) could not be loaded for the sweep: "
            + "; ".join(f"{name}: {error}" for name, error in sweep.failed.items())
        )
