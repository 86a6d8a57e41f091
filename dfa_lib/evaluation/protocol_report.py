"""05_evaluation's study: every detector on every protocol it answers, and the tables of its report.

:func:`evaluate_protocols` scores each detector trained for a protocol on that protocol's test
split (a detector that cannot be scored gets its error, the others go on), fits and scores the
fusions among them, and calibrates every detector's probabilities on its validation scores.
The functions after it turn what it gathered (:class:`ProtocolEvaluation`) into the report's
tables, one per question: intervals, calibration, errors by generator, family and voice, the
worst mistakes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dfa_lib.data.protocol_data import prepare_protocol, protocol_labels, protocols_for
from dfa_lib.data.protocols import TRAINED_ON, lofo_family
from dfa_lib.detector.calibrate import calibrate_folders
from dfa_lib.detector.folder import read_detector_config, read_metrics
from dfa_lib.detector.fusion import is_fusion_folder, parse_fusions
from dfa_lib.evaluation.evaluate import (
    calibration_costs,
    eer_intervals,
    errors_by_group,
    evaluate_folders,
    find_runs,
    format_interval,
    results_table,
)
from dfa_lib.evaluation.fusions import fit_and_evaluate
from dfa_lib.evaluation.generalisation import order_families
from dfa_lib.evaluation.results import scored_min_dcf
from dfa_lib.scoring.calibration import Calibration, sigmoid_array
from dfa_lib.scoring.metrics import expected_calibration_error, reliability_table

Key = tuple[str, str]  # (model, protocol)


class DetectorsNotEvaluatedError(RuntimeError):
    """Some detectors could not be evaluated; the report's tables left them out."""


@dataclass
class ProtocolEvaluation:
    """What :func:`evaluate_protocols` scored, by (model, protocol)."""

    runs_dir: Path  # <runs_dir>/<training protocol>/<model>
    scored: dict[Key, pd.DataFrame] = field(default_factory=dict)  # test rows with a score
    metrics: dict[Key, dict] = field(default_factory=dict)  # the metrics.json entry
    roots: dict[str, Path] = field(default_factory=dict)  # protocol -> audio root of its clips
    failed: list[dict] = field(default_factory=list)  # {protocol, model, error} per failure
    uncalibrated: dict[str, str] = field(default_factory=dict)  # model -> why not calibrated
    notes: list[str] = field(default_factory=list)  # one line per protocol and skipped fusion

    def folder(self, model: str, protocol: str) -> Path:
        """Return the run folder of ``model`` as trained for ``protocol``."""
        return self.runs_dir / TRAINED_ON[protocol] / model

    def threshold(self, model: str, protocol: str) -> float:
        """Return the threshold ``model`` chose at its validation EER."""
        return float(read_detector_config(self.folder(model, protocol))["threshold"])

    def protocols(self) -> list[str]:
        """The protocols with at least one scored detector, sorted."""
        return sorted({p for _, p in self.scored})


def evaluate_protocols(
    dataset: str,
    runs_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    fusions: str = "",
    fusion_c: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "auto",
    max_per_class: int = 0,
) -> ProtocolEvaluation:
    """Score every detector under ``runs_dir`` on each protocol of ``dataset`` it answers.

    Per protocol: the detectors trained for it (``<runs_dir>/<TRAINED_ON[protocol]>``) on its
    complete test split (:func:`evaluate_folders`: score files and metrics.json in each folder);
    the fusions of ``fusions`` (``a+b,c+d``) among them, fitted on the training protocol's
    validation scores with inverse regularisation ``fusion_c``; then each detector's and
    fusion's calibration, fitted on its validation scores (kept when those have not changed).
    Scores, thresholds and metrics do not depend on the calibration.
    """
    runs_dir = Path(runs_dir)
    out = ProtocolEvaluation(runs_dir)
    for protocol in protocols_for(dataset):
        trained_on = runs_dir / TRAINED_ON[protocol]
        folders = [f for f in find_runs(trained_on) if not is_fusion_folder(f)]
        if not folders:
            out.notes.append(f"{protocol}: no detector trained for it under {trained_on}")
            continue
        data = prepare_protocol(
            dataset,
            protocol,
            data_dir,
            cache_dir,
            max_per_class=max_per_class or None,
            seed=seed,
            splits=("testing",),
        )
        out.roots[protocol] = data.root
        # A detector that cannot be scored gets its error in the table; the others go on.
        table = evaluate_folders(folders, data, n_boot=n_boot, seed=seed, device=device)
        done = table["error"].isna()
        out.failed += table.loc[~done, ["protocol", "model", "error"]].to_dict(orient="records")
        folders = [Path(f) for f in table.loc[done, "folder"]]
        for folder in folders:
            _keep(out, folder, protocol, read_metrics(folder)[protocol])
        held_out = lofo_family(protocol)
        trained = f" (trained without the {held_out} fakes)" if held_out else ""
        out.notes.append(
            f"{protocol}: {len(folders)} detectors{trained} on "
            f"{len(data.frames['testing'])} test clips"
        )
        labels = protocol_labels(dataset, TRAINED_ON[protocol], data_dir, seed=seed)
        fused: dict[Path, dict] = {}
        if parse_fusions(fusions):
            fused, skipped = fit_and_evaluate(
                fusions, folders, labels, protocol, fusion_c, n_boot, seed
            )
            out.notes += [f"{protocol}: {line}" for line in skipped]
            for folder, metrics in fused.items():
                _keep(out, folder, protocol, metrics)
        out.uncalibrated |= calibrate_folders([*folders, *fused], labels)
    return out


def _keep(out: ProtocolEvaluation, folder: Path, protocol: str, metrics: dict) -> None:
    key = (folder.name, protocol)
    out.metrics[key] = metrics
    out.scored[key] = pd.read_csv(folder / "scores" / f"{protocol}.scored.csv")


def current_results(evaluation: ProtocolEvaluation) -> pd.DataFrame:
    """Return :func:`results_table` of the runs, less the detectors that failed this time.

    A detector that could not be evaluated keeps the metrics.json of an earlier evaluation,
    which may describe other weights: its rows are left out.
    """
    results = results_table(evaluation.runs_dir)
    if not evaluation.failed or results.empty:
        return results
    stale = pd.MultiIndex.from_frame(pd.DataFrame(evaluation.failed)[["model", "protocol"]])
    return results[~pd.MultiIndex.from_frame(results[["model", "protocol"]]).isin(stale)]


def failure_message(failed: list[dict]) -> str:
    """One line naming each detector that could not be evaluated, and why."""
    return f"{len(failed)} detector(s) could not be evaluated: " + "; ".join(
        f"{f['model']} on {f['protocol']}: {f['error']}" for f in failed
    )


def raise_if_failed(evaluation: ProtocolEvaluation) -> None:
    """Raise :class:`DetectorsNotEvaluatedError` naming the detectors that could not be evaluated.

    The report's last cell calls it: every table is shown first, then the run fails.
    """
    if evaluation.failed:
        raise DetectorsNotEvaluatedError(failure_message(evaluation.failed))


def interval_table(scored: Mapping[Key, pd.DataFrame], n_boot: int, seed: int) -> pd.DataFrame:
    """EER (%) of each detector and protocol with its intervals over clips and over voices.

    Beside them ``min_dcf``: ASVspoof 5's normalised minimum detection cost
    (:func:`dfa_lib.evaluation.results.scored_min_dcf`).
    """
    intervals = pd.DataFrame(
        [
            {
                "model": model,
                "protocol": protocol,
                **eer_intervals(df, n_boot=n_boot, seed=seed),
                "min_dcf": scored_min_dcf(df),
            }
            for (model, protocol), df in scored.items()
        ]
    )
    if intervals.empty:
        return intervals
    for column in ("ci_clips_%", "ci_voices_%"):
        intervals[column] = intervals[column].map(format_interval)
    return intervals.sort_values(["protocol", "eer_%"]).set_index(["protocol", "model"])


def calibration_table(evaluation: ProtocolEvaluation) -> pd.DataFrame:
    """Cllr (bits) of each detector's raw scores, calibrated probabilities and best recalibration."""
    return pd.DataFrame(
        [
            {
                "model": model,
                "protocol": protocol,
                **calibration_costs(
                    df,
                    Calibration.from_config(
                        read_detector_config(evaluation.folder(model, protocol))
                    ),
                ),
            }
            for (model, protocol), df in evaluation.scored.items()
        ]
    )


def calibrated_p_fake(evaluation: ProtocolEvaluation, model: str, protocol: str) -> np.ndarray:
    """The probability of fake a detector reports for each test clip (its calibration applied)."""
    calibration = Calibration.from_config(read_detector_config(evaluation.folder(model, protocol)))
    scores = evaluation.scored[(model, protocol)]["score"].to_numpy(dtype=np.float64)
    return sigmoid_array(-calibration.apply(scores))


def reliability_tables(
    evaluation: ProtocolEvaluation, protocol: str, bins: int = 10
) -> dict[str, pd.DataFrame]:
    """Each detector's reliability table on ``protocol``: its reported P(fake) against the truth."""
    return {
        model: reliability_table(
            calibrated_p_fake(evaluation, model, protocol), scored["label"], bins
        )
        for (model, tested), scored in evaluation.scored.items()
        if tested == protocol
    }


def calibration_error_table(evaluation: ProtocolEvaluation, bins: int = 10) -> pd.DataFrame:
    """Expected calibration error (%) of each detector's P(fake), model x protocol."""
    rows = [
        {
            "model": model,
            "protocol": protocol,
            "ece_%": 100
            * expected_calibration_error(
                calibrated_p_fake(evaluation, model, protocol), scored["label"], bins
            ),
        }
        for (model, protocol), scored in evaluation.scored.items()
    ]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(
        index="model", columns="protocol", values="ece_%", aggfunc="first"
    )


def score_curves(
    scored: Mapping[Key, pd.DataFrame], protocol: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The bona fide and spoof scores of each detector on ``protocol`` (for ROC and DET curves)."""
    return {
        model: (
            df.loc[df["label"] == "real", "score"].to_numpy(),
            df.loc[df["label"] == "fake", "score"].to_numpy(),
        )
        for (model, p), df in scored.items()
        if p == protocol
    }


def on_protocol(metrics: Mapping[Key, dict], protocol: str) -> dict[str, dict]:
    """The metrics of each detector on ``protocol``, by model."""
    return {model: m for (model, p), m in metrics.items() if p == protocol}


def confusion_matrices(metrics: Mapping[Key, dict], protocol: str) -> dict[str, list]:
    """Each detector's confusion matrix on ``protocol`` at its validation threshold."""
    return {
        model: m["classification"]["confusion_matrix"]
        for model, m in on_protocol(metrics, protocol).items()
    }


def breakdown_table(metrics: Mapping[Key, dict], protocol: str, by: str) -> pd.DataFrame:
    """EER (%) of each detector on ``protocol`` by ``generator`` (one row per model).

    Each generator's fakes against every real test clip (the ASVspoof per-attack
    convention); a generator with too few clips for an EER is left blank.
    """
    rows = {
        model: {r[by]: 100 * r["eer"] for r in m.get(f"by_{by}", []) if r["eer"] is not None}
        for model, m in on_protocol(metrics, protocol).items()
    }
    return pd.DataFrame(rows).T


def family_table(metrics: Mapping[Key, dict]) -> pd.DataFrame:
    """EER (%) by generator family, one row per detector and protocol.

    Columns in the corpus's family order (concatenative and formant engines first, neural TTS
    last); a ``lofo-<family>`` row's column of that family is its held-out EER
    (:func:`dfa_lib.evaluation.generalisation.lofo_matrix` lays those rows out as a matrix).
    """
    rows = {
        key: {r["family"]: 100 * r["eer"] for r in m.get("by_family", []) if r["eer"] is not None}
        for key, m in metrics.items()
    }
    table = pd.DataFrame(rows).T
    if table.empty:
        return table
    return table[order_families(table.columns)].rename_axis(["model", "protocol"])


def worst_errors(scored: pd.DataFrame, threshold: float, n_worst: int) -> tuple[pd.DataFrame, int]:
    """Return a detector's most confident mistakes at ``threshold``, and how many it made.

    Up to ``n_worst`` real clips scored most fake, then up to ``n_worst`` fake clips scored
    most real (scores: higher means real).
    """
    real, fake = scored["label"] == "real", scored["label"] == "fake"
    wrong = scored[real & (scored["score"] < threshold) | fake & (scored["score"] >= threshold)]
    worst = pd.concat(
        [
            wrong[wrong["label"] == "real"].nsmallest(n_worst, "score"),
            wrong[wrong["label"] == "fake"].nlargest(n_worst, "score"),
        ]
    )
    return worst, len(wrong)


def speaker_error_table(
    evaluation: ProtocolEvaluation, protocol: str = "in-domain"
) -> pd.DataFrame:
    """Share (%) of each speaker's or fake voice's clips each detector gets wrong on ``protocol``.

    Each detector at its validation threshold; column ``n`` holds the test clips per speaker.
    Empty when no scored split has a ``speaker`` column.
    """
    columns: dict[str, pd.Series] = {}
    for (model, p), df in evaluation.scored.items():
        if p != protocol or "speaker" not in df.columns:
            continue
        threshold = evaluation.threshold(model, p)
        table = errors_by_group(df, threshold, by="speaker").set_index(["label", "speaker"])
        columns.setdefault("n", table["n"])
        columns[model] = table["error_%"]
    return pd.concat(columns, axis=1) if columns else pd.DataFrame()


def scored_on(evaluation: ProtocolEvaluation, protocol: str) -> Iterable[tuple[str, pd.DataFrame]]:
    """The scored test split of each detector on ``protocol``, in the order they were scored."""
    return [(model, df) for (model, p), df in evaluation.scored.items() if p == protocol]
