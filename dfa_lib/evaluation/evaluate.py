"""Evaluate trained detectors on every protocol: scores, metrics, breakdowns, score files.

A detector trained for protocol P is tested on P's test split; a detector trained on the
``in-domain`` training split is also tested on ``cross-source`` (whose training and
validation splits are the in-domain ones). Results go into the run folder:
``metrics.json`` (one entry per protocol) and ``scores/<protocol>.2019.txt`` /
``scores/<protocol>.2021.txt`` (ASVspoof 2019 four-column and 2021 two-column forms).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dfa_lib.data.clips import ClipStore
from dfa_lib.data.manifest import split_checksum
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.data.protocols import protocol_mismatch
from dfa_lib.detector.folder import (
    is_detector_folder,
    read_detector_config,
    read_metrics,
)
from dfa_lib.detector.fusion import FusionError, is_fusion_folder, member_folders
from dfa_lib.detector.loading import load_detector
from dfa_lib.evaluation.fusions import evaluate_fusion
from dfa_lib.evaluation.results import (
    UNDECODABLE_LISTED,
    metric_warnings,
    scored_min_dcf,
    weights_mtime,
    write_evaluation,
)
from dfa_lib.features.ssl_features import FeatureSet
from dfa_lib.scoring.calibration import Calibration
from dfa_lib.scoring.metrics import (
    breakdown,
    cllr,
    eer_bootstrap_ci,
    eer_difference_ci,
    equal_error_rate,
    labels_from_scores,
    min_cllr,
)
from dfa_lib.training.ssl_pipeline import HeadRun, head_scores


def score_split(detector, data: ProtocolData, split: str = "testing") -> pd.DataFrame:
    """Score every decodable clip of one split; return its manifest rows with a ``score`` column.

    ``score`` is the bona fide score (higher = real) of the detector's own windowed scoring
    rule, the same rule ``dfa predict`` applies to a file.
    """
    frame, store = data.frames[split], data.stores[split]
    rows = [i for i in range(len(frame)) if store.ok(i)]
    scores = detector.score_waves([store[i] for i in rows])
    out = frame.iloc[rows].copy()
    out["score"] = np.asarray(scores, dtype=np.float64)
    return out.reset_index(drop=True)


def evaluate_run(
    folder: str | os.PathLike,
    data: ProtocolData,
    n_boot: int = 1000,
    seed: int = 0,
    detector=None,
    reuse: bool = True,
    device: str = "auto",
    key: str | None = None,
) -> dict:
    """Score one run folder on ``data``'s test split, write score files and update metrics.json.

    With ``reuse``, a protocol already evaluated on the same test split by the same weights is
    read back instead of scored again; the split's checksum covers its paths, labels and the
    hash of each clip's bytes as decoded, so a clip whose audio changed is scored again.
    ``device`` is where a detector loaded here scores (``detector``, when given, keeps its
    own). ``key`` names the metrics entry and the score files (default: the protocol; see
    :func:`evaluation_key`). Test clips that cannot be decoded are left out, counted
    (``n_undecodable``) and named (``undecodable``, the first few); see ``warnings``.
    """

    folder = Path(folder)
    frame, store = data.frames["testing"], data.stores["testing"]
    checksum = split_checksum(_with_decoded_hashes(frame, store))
    key = key or data.protocol
    previous = read_metrics(folder).get(key)
    fresh = previous and previous.get("weights_mtime") == weights_mtime(folder)
    if reuse and fresh and previous.get("split_checksum") == checksum:
        return previous
    detector = detector or load_detector(folder, device=device)
    scored = score_split(detector, data, "testing")
    return write_evaluation(
        folder,
        key,
        scored,
        detector.score_threshold,
        n_boot=n_boot,
        seed=seed,
        extra={
            "split_checksum": checksum,
            "n_undecodable": len(store.errors),
            "undecodable": [str(frame["path"].iloc[i]) for i in sorted(store.errors)][
                :UNDECODABLE_LISTED
            ],
        },
    )


def _with_decoded_hashes(frame: pd.DataFrame, store: ClipStore) -> pd.DataFrame:
    """The split with ``sha256`` as hashed when its clips were decoded, where that is known.

    A manifest's ``sha256`` says what a file held when the manifest was written; the store's
    says what was decoded. They agree for an intact corpus, so its checksum stays the same.
    """
    if store.sha256 is None or len(store.sha256) != len(frame):
        return frame
    return frame.assign(sha256=store.sha256)


class EvaluationError(ValueError):
    """A run folder cannot be evaluated on the requested test split; the message says why."""


# Columns of :func:`evaluate_folders`: one row per run folder, ``error`` set when it failed.
# ``protocol`` is the metrics entry the result went to (:func:`evaluation_key`); ``cllr`` the
# cost in bits of the probabilities of fake the detector reports (its calibration applied);
# ``min_dcf`` ASVspoof 5's normalised minimum detection cost (``results.scored_min_dcf``);
# ``n_undecodable`` the test clips left out because they could not be decoded; ``warning``
# what the numbers alone do not say (labels that look inverted, clips left out).
EVALUATION_COLUMNS: tuple[str, ...] = (
    "model",
    "trained_on",
    "protocol",
    "eer_%",
    "eer_ci_low_%",
    "eer_ci_high_%",
    "auc",
    "accuracy_%",
    "cllr",
    "min_dcf",
    "n",
    "n_undecodable",
    "folder",
    "warning",
    "error",
)


def evaluation_key(config: dict, dataset: str, protocol: str) -> str:
    """The metrics entry (and score file name) of a test on ``protocol`` of ``dataset``.

    A detector tested on its own dataset files the result under the protocol, as
    ``05_evaluation`` does. Tested on another dataset, the result is filed under
    ``<dataset>.<protocol>`` (a folder or CSV dataset is named by its file name and a short
    hash of its path), so a cross-dataset test never replaces the detector's own results.
    """
    trained = config.get("dataset")
    own = trained.get("dataset", dataset) if isinstance(trained, dict) else dataset
    if own == dataset:
        return protocol
    path = Path(dataset)
    if len(path.parts) == 1 and not path.suffix:
        label = dataset  # a named dataset: offline, for-2sec ...
    else:
        digest = hashlib.sha256(str(path.expanduser().resolve()).encode()).hexdigest()[:8]
        label = f"{path.stem}-{digest}"
    return f"{label}.{protocol}"


def run_folders(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand run folders and folders that hold run folders (searched recursively).

    Returns ``(folders, problems)``: detector folders in input order without duplicates, and
    ``(path, message)`` for each input that names none (missing, a file, no detector inside).
    A folder with a dfa ``config.json`` of another format version is kept, so that its
    evaluation reports the version.
    """

    folders: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in paths:
        path = Path(item)
        if is_detector_folder(path):
            found = [path]
        elif not path.exists():
            problems.append((str(item), f"{item}: no such folder"))
            continue
        elif not path.is_dir():
            problems.append((str(item), f"{item}: is a file; give a run folder"))
            continue
        else:
            found = find_runs(path)
            if not found:
                problems.append((str(item), f"{item}: holds no detector folder (config.json)"))
                continue
        folders += [f for f in found if f not in folders]
    return folders, problems


def _metric_columns(metrics: dict) -> dict:
    """A metrics.json entry as the columns of the results tables (percent where it reads so)."""
    return {
        "eer_%": 100 * metrics["eer"],
        "eer_ci_low_%": 100 * metrics["eer_ci_low"],
        "eer_ci_high_%": 100 * metrics["eer_ci_high"],
        "auc": metrics["auc"],
        "accuracy_%": 100 * metrics["accuracy"],
        "n": metrics["n"],
    }


def _evaluation_row(
    folder: Path, config: dict, protocol: str, trained_on: str, metrics: dict
) -> dict:

    scored = pd.read_csv(folder / "scores" / f"{protocol}.scored.csv")
    calibration = Calibration.from_config(config)
    return {
        "model": folder.name,
        "trained_on": trained_on,
        "protocol": protocol,
        **_metric_columns(metrics),
        "cllr": calibration_costs(scored, calibration)["cllr_calibrated"],
        "min_dcf": scored_min_dcf(scored),
        "n_undecodable": metrics.get("n_undecodable"),
        "folder": str(folder),
        # Recomputed, so that metrics written before warnings existed get them too.
        "warning": "; ".join(metric_warnings(metrics)) or None,
        "error": None,
    }


def _error_row(
    folder: str,
    protocol: str,
    message: str,
    model: str | None = None,
    trained_on: str | None = None,
) -> dict:
    return {
        **dict.fromkeys(EVALUATION_COLUMNS),
        "model": model,
        "trained_on": trained_on,
        "protocol": protocol,
        "folder": folder,
        "error": message if folder in message else f"{folder}: {message}",
    }


def evaluate_folders(
    folders: Sequence[str | os.PathLike],
    data: ProtocolData,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "auto",
    reuse: bool = True,
    problems: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Evaluate run folders on ``data``'s test split; one row each (:data:`EVALUATION_COLUMNS`).

    Detectors are scored (:func:`evaluate_run`, writing their score files and metrics) before
    fusions, which are evaluated from their members' score files
    (:func:`dfa_lib.detector.fusion.evaluate_fusion`); a fusion's members join the list (and the
    table) when they are not in it already. A folder that cannot be evaluated (not a detector,
    another format version, broken weights, trained for another protocol of this dataset, a
    fusion with a missing or retrained member) gets a row whose ``error`` says why; the others
    go on. Results on another dataset than a detector's own are filed under
    :func:`evaluation_key`, beside its own. ``problems`` (:func:`run_folders`' inputs that name
    no folder) close the table as error rows.
    """

    ordered = _with_members([Path(f) for f in folders])
    rows = []
    failed: set[Path] = set()
    for folder in ordered:
        trained_on = ""
        try:
            config = read_detector_config(folder)
            trained = config.get("dataset") or {}
            trained_on = "/".join(
                str(trained[k]) for k in ("dataset", "protocol") if trained.get(k)
            )
            problem = protocol_mismatch(config, data.dataset, data.protocol)
            if problem:
                raise EvaluationError(problem)
            key = evaluation_key(config, data.dataset, data.protocol)
            if is_fusion_folder(folder):
                broken = [m.name for m in member_folders(folder) if m.resolve() in failed]
                if broken:
                    raise EvaluationError(
                        f"member(s) {', '.join(broken)} could not be evaluated here (see their "
                        "rows), so their score files may be stale"
                    )
                metrics = evaluate_fusion(folder, key, n_boot=n_boot, seed=seed)
            else:
                metrics = evaluate_run(
                    folder, data, n_boot=n_boot, seed=seed, reuse=reuse, device=device, key=key
                )
            rows.append(_evaluation_row(folder, config, key, trained_on, metrics))
        except Exception as error:  # noqa: BLE001 - one bad folder must not stop the batch
            failed.add(folder.resolve())
            message = str(error) or type(error).__name__
            rows.append(_error_row(str(folder), data.protocol, message, folder.name, trained_on))
    rows += [_error_row(path, data.protocol, message) for path, message in problems]
    return pd.DataFrame(rows, columns=list(EVALUATION_COLUMNS))


def _with_members(folders: list[Path]) -> list[Path]:
    """Detector folders first, then fusions, each fusion's members added where missing."""

    seen = {f.resolve() for f in folders}
    detectors = [f for f in folders if not is_fusion_folder(f)]
    fusions = [f for f in folders if is_fusion_folder(f)]
    for fused in fusions:
        try:
            members = member_folders(fused)
        except FusionError:
            continue  # the fusion's own row reports it
        for member in members:
            if member.resolve() not in seen:
                seen.add(member.resolve())
                detectors.append(Path(os.path.relpath(member)))
    return detectors + fusions


def find_runs(runs_dir: str | os.PathLike) -> list[Path]:
    """Return every run folder (a folder with a detector ``config.json``) under ``runs_dir``."""

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p.parent for p in runs_dir.rglob("config.json") if is_detector_folder(p.parent))


def results_table(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """Return one row per (model, protocol): EER, its interval, AUC and accuracy, from metrics.json."""
    rows = []
    for folder in find_runs(runs_dir):
        metrics = read_metrics(folder)
        if not metrics:
            continue
        config = json.loads((folder / "config.json").read_text())
        trained_on = config.get("dataset", {}).get("protocol", "?")
        for protocol, m in metrics.items():
            if not isinstance(m, dict) or "eer" not in m:
                continue
            rows.append(
                {
                    "model": folder.name,
                    "trained_on": trained_on,
                    "protocol": protocol,
                    **_metric_columns(m),
                    "folder": str(folder),
                }
            )
    return pd.DataFrame(rows)


def headline_table(results: pd.DataFrame) -> pd.DataFrame:
    """Pivot :func:`results_table` into model x protocol EER (%), the reports' headline."""
    if results.empty:
        return results
    return results.pivot_table(index="model", columns="protocol", values="eer_%", aggfunc="first")


def _by_class(scored: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The bona fide and the spoof scores of a scored split."""
    real = scored["label"] == "real"
    return scored.loc[real, "score"], scored.loc[~real, "score"]


def eer_intervals(
    scored: pd.DataFrame, n_boot: int = 1000, seed: int = 0, voice_col: str = "speaker"
) -> dict:
    """The EER of a scored split with two bootstrap intervals: clips, and fake voices.

    ``ci_clips`` resamples clips one by one (the interval of the metrics files);
    ``ci_voices`` resamples the fake clips a voice at a time (real clips still one by one;
    see :func:`dfa_lib.scoring.metrics.eer_bootstrap_ci`), the honest interval when a split holds few
    voices and each is caught or missed as a whole. It is NaN when the fakes come from fewer
    than two voices or ``voice_col`` is absent.
    """

    bona, spoof = _by_class(scored)
    low, high = eer_bootstrap_ci(bona, spoof, n_boot=n_boot, seed=seed)
    row = {
        "eer_%": 100 * equal_error_rate(bona, spoof).eer,
        "ci_clips_%": (100 * low, 100 * high),
        "ci_voices_%": (float("nan"), float("nan")),
        "n_voices": 0,
    }
    if voice_col in scored.columns:
        voices = scored.loc[scored["label"] != "real", voice_col].astype(str)
        row["n_voices"] = int(voices.nunique())
        if row["n_voices"] >= 2:
            low, high = eer_bootstrap_ci(
                bona, spoof, n_boot=n_boot, seed=seed, spoof_groups=voices.to_numpy()
            )
            row["ci_voices_%"] = (100 * low, 100 * high)
    return row


def calibration_costs(scored: pd.DataFrame, calibration=None) -> dict:
    """Cllr and minCllr (bits) of a scored split, and the calibration loss between them.

    See :func:`dfa_lib.scoring.metrics.cllr`: the raw scores are read as log-likelihood ratios, as
    ``sigmoid(-score)`` reads them. With the detector's
    :class:`~dfa_lib.scoring.calibration.Calibration`, ``cllr_calibrated`` is the cost of the
    probabilities the detector reports once calibrated on its validation scores.
    """

    bona, spoof = _by_class(scored)
    actual, best = cllr(bona, spoof), min_cllr(bona, spoof)
    costs = {"cllr": actual, "min_cllr": best, "calibration_loss": actual - best}
    if calibration is not None:
        costs["cllr_calibrated"] = cllr(calibration.apply(bona), calibration.apply(spoof))
    return costs


def format_interval(interval: tuple[float, float]) -> str:
    """An interval as "low to high" with one decimal, or "-" when it is NaN."""
    low, high = interval
    return "-" if np.isnan(low) else f"{low:.1f} to {high:.1f}"


def paired_difference(
    scored_a: pd.DataFrame,
    scored_b: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    voice_col: str = "speaker",
) -> dict:
    """EER of B minus EER of A on the same test clips, with paired bootstrap intervals (%).

    The two frames are matched on ``path`` and must hold the same clips with the same labels.
    ``ci_clips_%`` resamples clips, ``ci_voices_%`` the fakes a voice at a time (NaN with
    fewer than two voices); see :func:`dfa_lib.scoring.metrics.eer_difference_ci`. A negative
    difference means B has the lower EER.
    """

    a = scored_a.set_index("path")
    b = scored_b.set_index("path")
    if set(a.index) != set(b.index) or not a.index.is_unique:
        raise ValueError(
            f"the two score files hold different clips ({len(a)} and {len(b)}; "
            f"{len(set(a.index) ^ set(b.index))} in only one)"
        )
    b = b.loc[a.index]
    if not (a["label"] == b["label"]).all():
        raise ValueError("the two score files label some clip differently")
    real = (a["label"] == "real").to_numpy()
    arrays = (
        a["score"].to_numpy()[real],
        a["score"].to_numpy()[~real],
        b["score"].to_numpy()[real],
        b["score"].to_numpy()[~real],
    )
    diff, low, high = eer_difference_ci(*arrays, n_boot=n_boot, seed=seed)
    row = {
        "diff_%": 100 * diff,
        "ci_clips_%": (100 * low, 100 * high),
        "ci_voices_%": (float("nan"), float("nan")),
    }
    if voice_col in a.columns and a.loc[~real, voice_col].nunique() >= 2:
        voices = a.loc[~real, voice_col].astype(str).to_numpy()
        _, low, high = eer_difference_ci(*arrays, n_boot=n_boot, seed=seed, spoof_groups=voices)
        row["ci_voices_%"] = (100 * low, 100 * high)
    return row


def comparison_pairs(models: Iterable[str], fusion_weights: pd.DataFrame) -> list[tuple[str, str]]:
    """The pairs ``05_evaluation`` compares with :func:`paired_table`, each once.

    ``(member, fusion)`` for every row of ``fusion_weights`` (:func:`dfa_lib.detector.fusion.
    weights_table`; a fusion of the same members exists once per protocol), then
    ``(smaller, larger)`` for every fusion whose members all belong to a larger one (what the
    extra members add), then ``(detector, detector_aug)`` for every detector of ``models``
    whose augmented twin is there.
    """
    pairs: list[tuple[str, str]] = []
    if not fusion_weights.empty:
        pairs += [(row.member, row.fusion) for row in fusion_weights.itertuples()]
        members = fusion_weights.groupby("fusion", sort=False)["member"].agg(frozenset)
        pairs += [
            (small, large)
            for small, inner in members.items()
            for large, outer in members.items()
            if inner < outer
        ]
    names = set(models)
    pairs += sorted((m, f"{m}_aug") for m in names if f"{m}_aug" in names)
    return list(dict.fromkeys(pairs))


def paired_table(
    scored: dict[tuple[str, str], pd.DataFrame],
    pairs: list[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`paired_difference` of model B against model A, for every protocol both scored.

    ``scored`` maps ``(model, protocol)`` to a scored test split (as ``05_evaluation`` holds
    them); ``pairs`` lists ``(a, b)``. One row per pair and protocol: ``protocol``, ``a``,
    ``b``, ``eer_a_%``, ``eer_b_%``, ``diff_%`` (B minus A) and the two intervals as text.
    """

    def eer(frame: pd.DataFrame) -> float:
        return 100 * equal_error_rate(*_by_class(frame)).eer

    rows = []
    protocols = sorted({protocol for _, protocol in scored})
    for a, b in pairs:
        for protocol in protocols:
            if (a, protocol) not in scored or (b, protocol) not in scored:
                continue
            first, second = scored[(a, protocol)], scored[(b, protocol)]
            result = paired_difference(first, second, n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "protocol": protocol,
                    "a": a,
                    "b": b,
                    "eer_a_%": eer(first),
                    "eer_b_%": eer(second),
                    "diff_%": result["diff_%"],
                    "ci_clips_%": format_interval(result["ci_clips_%"]),
                    "ci_voices_%": format_interval(result["ci_voices_%"]),
                }
            )
    columns = ["protocol", "a", "b", "eer_a_%", "eer_b_%", "diff_%", "ci_clips_%", "ci_voices_%"]
    return pd.DataFrame(rows, columns=columns)


def errors_by_group(
    scored: pd.DataFrame, threshold: float, by: str = "speaker", label_col: str = "label"
) -> pd.DataFrame:
    """Where a detector's errors fall at a fixed threshold, group by group.

    A real clip is an error when its score is below ``threshold`` (rejected), a fake clip when
    its score is at or above it (accepted), the rule of
    :func:`dfa_lib.scoring.metrics.labels_from_scores`. One row per (label, group value): ``n`` clips,
    ``errors``, ``error_%`` (of the group) and ``share_%`` (of all errors of that label), real
    rows first, each label's groups by falling error count. Grouping real clips by speaker and
    fakes by voice shows whether a pooled EER comes from a few voices or from all of them.
    """
    missing = [c for c in ("score", label_col, by) if c not in scored.columns]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}; it has {list(scored.columns)}")
    labels = scored[label_col].astype(str)
    unknown = sorted(set(labels) - {"real", "fake"})
    if unknown:
        raise ValueError(f"labels must be 'real' or 'fake', got {unknown[:3]}")
    columns = ["label", by, "n", "errors", "error_%", "share_%"]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    predicted = labels_from_scores(scored["score"].to_numpy(), threshold)
    frame = pd.DataFrame(
        {"label": labels, by: scored[by].astype(str), "error": predicted != labels.to_numpy()}
    )
    parts = []
    for label in ("real", "fake"):
        rows = frame[frame["label"] == label]
        if rows.empty:
            continue
        table = rows.groupby(by, sort=True)["error"].agg(n="size", errors="sum").reset_index()
        total = int(table["errors"].sum())
        table["error_%"] = 100 * table["errors"] / table["n"]
        table["share_%"] = 100 * table["errors"] / total if total else 0.0
        table.insert(0, "label", label)
        parts.append(table.sort_values(["errors", by], ascending=[False, True], kind="stable"))
    return pd.concat(parts, ignore_index=True)[columns]


def eer_by_voice(
    scored: pd.DataFrame, voice_col: str = "speaker", label_col: str = "label"
) -> pd.Series:
    """EER % of each fake voice's clips against every real test clip, highest first.

    The per-attack convention of :func:`dfa_lib.scoring.metrics.eer_by_generator`, one fake voice
    (``voice_col`` of the fake rows) at a time: a pooled EER carried by a single voice that no
    detector catches shows here as one voice far above the others. Raises ValueError when the
    frame lacks the columns or either class.
    """
    missing = [c for c in ("score", label_col, voice_col) if c not in scored.columns]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}; it has {list(scored.columns)}")
    labels = set(scored[label_col].astype(str))
    if not {"real", "fake"} <= labels:
        raise ValueError(f"need real and fake test clips to score voices, got {sorted(labels)}")
    frame = scored.assign(**{voice_col: scored[voice_col].astype(str)})
    table = breakdown(frame, by=voice_col, label_col=label_col, generator_col=voice_col)
    eer = pd.Series(100 * table["eer"].to_numpy(float), index=table[voice_col], name="eer_%")
    return eer.rename_axis("voice").sort_values(ascending=False, kind="stable")


def voice_eer_table(
    scored: Mapping[tuple[str, str], pd.DataFrame], protocol: str, voice_col: str = "speaker"
) -> pd.DataFrame:
    """EER % by detector (rows) and fake voice (columns) on ``protocol``, from :func:`eer_by_voice`.

    ``scored`` maps ``(detector, protocol)`` to a scored test frame, as ``05_evaluation``
    collects them; frames without ``voice_col`` are left out. The voices missed most on average
    come first. Empty when no frame of ``protocol`` names its voices.
    """
    rows = {
        model: eer_by_voice(frame, voice_col)
        for (model, name), frame in scored.items()
        if name == protocol and voice_col in frame.columns
    }
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).T
    return table[table.mean().sort_values(ascending=False, kind="stable").index]


__all__ = [
    "comparison_pairs",
    "evaluate_run",
    "eer_intervals",
    "eer_by_voice",
    "errors_by_group",
    "paired_difference",
    "paired_table",
    "find_runs",
    "format_interval",
    "weights_mtime",
    "headline_table",
    "results_table",
    "score_split",
    "voice_eer_table",
]


def evaluate_head(
    run: HeadRun, fs: FeatureSet, data: ProtocolData, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Score a head on cached test features and write the protocol's metrics into its folder."""

    scores, rows = head_scores(run.head, fs, run.config)
    scored = data.frames["testing"].iloc[rows].copy()
    scored["score"] = scores
    return write_evaluation(
        run.folder,
        data.protocol,
        scored.reset_index(drop=True),
        run.threshold,
        n_boot=n_boot,
        seed=seed,
        extra={
            "split_checksum": split_checksum(data.frames["testing"]),
            "n_undecodable": int((~fs.valid).sum()),
        },
    )
