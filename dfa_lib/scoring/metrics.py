"""Detection metrics for deepfake scores: EER, its bootstrap interval, AUC, Cllr and score files.

Score convention (ASVspoof): a score is larger the more a clip looks bona fide (``real``);
a clip is accepted as bona fide when ``score >= threshold``. A model with two logits
``[real, fake]`` gives ``score = logit_real - logit_fake``.

Error rates, as fractions in 0..1:

- FRR (false rejection, the ASVspoof "miss" rate): share of bona fide clips with
  ``score < threshold``.
- FAR (false acceptance, the ASVspoof "false alarm" rate): share of spoof clips with
  ``score >= threshold``.

The equal error rate is where the DET curve (FRR against FAR over all thresholds) crosses
FRR = FAR; see :func:`equal_error_rate` for how the crossing is located.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from dfa_lib.core.atomic import write_text_atomically
from dfa_lib.core.labels import FAKE, LABELS, REAL, label_to_index

# ASVspoof score-file keys for each project label.
_KEY_OF_LABEL = {REAL: "bonafide", FAKE: "spoof"}
_LABEL_OF_KEY = {"bonafide": "real", "spoof": "fake"}

# Upper bound on the elements of one bootstrap block, so memory stays near 100 MB
# whatever the number of scores and replicates.
_BOOTSTRAP_BLOCK_ELEMENTS = 4_000_000


class MetricError(ValueError):
    """Raised when scores or labels cannot give a meaningful metric."""


class ScoreFileError(MetricError):
    """Raised when a score file cannot be written or parsed; the message names the file."""


@dataclass(frozen=True)
class EER:
    """Equal error rate (fraction in 0..1) and the bona fide score threshold that reaches it.

    ``threshold`` is an operating point of the DET curve: clips with ``score >= threshold``
    are accepted as bona fide.
    """

    eer: float
    threshold: float


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _as_scores(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a finite 1-D float64 array, or raise MetricError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} must be numbers, could not convert: {exc}") from exc
    if arr.ndim != 1:
        raise MetricError(f"{name} must be a 1-D sequence of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise MetricError(
            f"{name} is empty: the metric needs at least one bona fide and one spoof score"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MetricError(
            f"{name} has {int(bad.sum())} NaN or infinite score(s) (first at index {first}, "
            f"value {arr[first]}); fix the model output or drop those clips before scoring"
        )
    return arr


def _label_indices(labels: Any, name: str = "labels") -> np.ndarray:
    """Map labels to an int array (real = 0, fake = 1).

    Accepts ``"real"``/``"fake"``, the integers 0/1 and the aliases that
    :func:`dfa_lib.core.labels.label_to_index` knows (``"bonafide"``, ``"spoof"``, ...).
    """
    if isinstance(labels, (np.ndarray, pd.Series, pd.Index, pd.Categorical)):
        arr = np.asarray(labels)
    else:
        # A plain list mixing "real" and 0 would otherwise become the strings "real" and "0".
        arr = np.asarray(list(labels), dtype=object)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind == "b" or arr.dtype.kind == "f":
        raise MetricError(
            f"{name} must be the strings 'real'/'fake' or the integers 0 (real)/1 (fake), "
            f"got dtype {arr.dtype}"
        )
    if arr.dtype.kind in "iu":
        bad = (arr != REAL) & (arr != FAKE)
        if bad.any():
            raise MetricError(
                f"{name} must be 0 (real) or 1 (fake); found {sorted(set(arr[bad].tolist()))[:5]}"
            )
        return arr.astype(np.int64)
    # Map each distinct value once, so a million labels cost a million lookups in C, not Python.
    codes, uniques = pd.factorize(pd.Series(arr, dtype=object), use_na_sentinel=False)
    index_of_code = np.empty(len(uniques), dtype=np.int64)
    unknown: list[str] = []
    for code, value in enumerate(uniques):
        # bool is an int subclass; True must not silently mean "fake".
        try:
            if isinstance(value, (bool, np.bool_)):
                raise ValueError(value)
            index_of_code[code] = label_to_index(value)
        except (ValueError, TypeError):
            unknown.append(repr(value))
    if unknown:
        raise MetricError(
            f"{name} must be 'real'/'fake' (or 0/1); unknown value(s): {sorted(unknown)[:5]}"
        )
    return index_of_code[codes]


def _split_by_label(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Split scores into (bona fide, spoof) arrays according to labels."""
    score_arr = _as_scores(scores, "scores")
    label_idx = _label_indices(labels)
    if score_arr.shape != label_idx.shape:
        raise MetricError(
            f"scores and labels differ in length: {score_arr.size} scores, {label_idx.size} labels"
        )
    return score_arr[label_idx == REAL], score_arr[label_idx == FAKE]


def _check_both(bonafide: Any, spoof: Any) -> tuple[np.ndarray, np.ndarray]:
    return _as_scores(bonafide, "bona fide (real) scores"), _as_scores(spoof, "spoof (fake) scores")


# --------------------------------------------------------------------------------------
# DET curve and EER
# --------------------------------------------------------------------------------------


def _pooled_ranks(
    bonafide: np.ndarray, spoof: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the sorted distinct scores and each class's index into them."""
    values, inverse = np.unique(np.concatenate([bonafide, spoof]), return_inverse=True)
    inverse = inverse.reshape(-1)
    return values, inverse[: bonafide.size], inverse[bonafide.size :]


def _thresholds(values: np.ndarray) -> np.ndarray:
    # The last operating point accepts nothing; the next float above the top score does that
    # while staying finite, so it can be written to JSON configs.
    return np.append(values, np.nextafter(values[-1], np.inf))


def _rates(
    bona_counts: np.ndarray,
    spoof_counts: np.ndarray,
    n_bona: int | np.ndarray,
    n_spoof: int | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """FRR and FAR at every operating point from per-distinct-score counts.

    ``*_counts`` have shape (replicates, K): how many scores of the class equal each of the
    K distinct scores, ascending; ``n_*`` are the class sizes, one number or one per
    replicate (shape (replicates, 1)). Operating point j (0..K) uses threshold ``values[j]`` (j < K)
    or "above every score" (j = K). Tied scores share one threshold, so they move together.
    """
    rows, k = bona_counts.shape
    cum_bona = np.zeros((rows, k + 1), dtype=np.int64)
    np.cumsum(bona_counts, axis=1, out=cum_bona[:, 1:])
    cum_spoof = np.zeros((rows, k + 1), dtype=np.int64)
    np.cumsum(spoof_counts, axis=1, out=cum_spoof[:, 1:])
    # Integer counts divided once: the end points are exactly 0 and 1, and equal rational
    # rates give equal floats, so "FRR == FAR" is tested exactly.
    frr = cum_bona / n_bona
    far = (n_spoof - cum_spoof) / n_spoof
    return frr, far


def _crossing(frr: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EER and operating-point index for each row of DET rates (see equal_error_rate)."""
    diff = frr - far  # non-decreasing along each row, from -1 to +1
    upper = np.argmax(diff >= 0, axis=1)  # first point with FRR >= FAR; never 0
    lower = upper - 1
    rows = np.arange(diff.shape[0])
    d_lo, d_hi = diff[rows, lower], diff[rows, upper]
    frr_lo, frr_hi = frr[rows, lower], frr[rows, upper]
    weight = -d_lo / (d_hi - d_lo)
    eer = np.where(d_hi == 0, frr_hi, frr_lo + weight * (frr_hi - frr_lo))
    # The reported threshold is the operating point nearer the diagonal (the lower one on a tie),
    # which is also where |FRR - FAR| is smallest over the whole curve.
    index = np.where(np.abs(d_lo) <= np.abs(d_hi), lower, upper)
    return np.clip(eer, 0.0, 1.0), index


def det_curve(bonafide: Any, spoof: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the DET curve ``(frr, far, thresholds)`` over every distinct score.

    ``thresholds`` ascends: the distinct pooled scores, then one value just above the highest
    score (nothing accepted). At ``thresholds[j]``, ``frr[j]`` is the share of bona fide scores
    below it and ``far[j]`` the share of spoof scores at or above it, so the curve runs from
    (FRR 0, FAR 1) to (FRR 1, FAR 0). Tied scores change the rates in one step.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    bona, spf = _check_both(bonafide, spoof)
    frr, (far,), thresholds = det_rates(bona, spf)
    return frr, far, thresholds


def det_rates(
    accepted: Any, *rejected: Any
) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """Return the miss rate of one class and the false-alarm rate of others at every threshold.

    ``accepted`` holds the scores that should be accepted (bona fide clips, or target trials);
    each of ``rejected`` one class that should be rejected (spoof clips; or non-target and spoof
    trials). Thresholds are the distinct scores of all classes pooled, ascending, then one value
    just above the highest. At ``thresholds[j]`` the miss rate is the share of ``accepted`` below
    it and each false-alarm rate the share of that class at or above it; tied scores move
    together. :func:`det_curve` is the case of one rejected class. Returns
    ``(miss, (false_alarm, ...), thresholds)``, one false-alarm array per rejected class.

    Raises:
        MetricError: no rejected class, an empty class, or a NaN or infinite score.
    """
    if not rejected:
        raise MetricError("det_rates needs at least one class of scores to reject")
    classes = [_as_scores(accepted, "accepted scores")]
    classes += [_as_scores(r, f"rejected scores (class {i})") for i, r in enumerate(rejected)]
    values, inverse = np.unique(np.concatenate(classes), return_inverse=True)
    ranks = np.split(inverse.reshape(-1), np.cumsum([c.size for c in classes])[:-1])
    k = values.size
    counts = [np.bincount(r, minlength=k)[None, :] for r in ranks]
    false_alarms = []
    for cls, cls_counts in zip(classes[1:], counts[1:], strict=True):
        miss, far = _rates(counts[0], cls_counts, classes[0].size, cls.size)
        false_alarms.append(far[0])
    return miss[0], tuple(false_alarms), _thresholds(values)


def equal_error_rate(bonafide_scores: Any, spoof_scores: Any) -> EER:
    """Compute the equal error rate of bona fide against spoof scores, ASVspoof style.

    Higher scores mean bona fide; a clip is accepted when ``score >= threshold``. The DET
    curve is evaluated at every distinct score (see :func:`det_curve`). ``FRR - FAR`` never
    decreases as the threshold rises, so exactly one pair of neighbouring operating points
    brackets the crossing: the last with FRR < FAR and the first with FRR >= FAR.

    EER definition: the point where the straight segment joining those two operating points
    meets FRR = FAR (exact when an operating point lies on the diagonal). This is the error
    rate reached by choosing between the two thresholds at random in the right proportion, so
    it is attainable; it does not depend on how ties in ``|FRR - FAR|`` are broken, and when
    the two points sit symmetrically about the diagonal it equals ASVspoof's
    ``mean(FRR, FAR)`` at ``argmin |FRR - FAR|``.

    ``threshold`` is the operating point of the two nearer the diagonal (the lower one if both
    are equally near), i.e. ASVspoof's ``argmin |FRR - FAR|`` threshold; it is always an
    observed score or, when rejecting everything is best, the float just above the top score.

    Reference cases: perfect separation gives 0 (threshold = lowest bona fide score); fully
    inverted scores (every spoof above every bona fide) give 1; all scores equal give 0.5.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    bona, spf = _check_both(bonafide_scores, spoof_scores)
    frr, far, thresholds = det_curve(bona, spf)
    eer, index = _crossing(frr[None, :], far[None, :])
    return EER(eer=float(eer[0]), threshold=float(thresholds[index[0]]))


def eer_bootstrap_ci(
    bonafide: Any,
    spoof: Any,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    bonafide_groups: Any = None,
    spoof_groups: Any = None,
) -> tuple[float, float]:
    """Return a percentile bootstrap interval ``(low, high)`` for the EER.

    Each replicate resamples the bona fide and the spoof scores separately, with replacement
    and at their original sizes (stratified, so both classes are always present), and computes
    the EER exactly as :func:`equal_error_rate` does. The interval holds the central
    ``confidence`` share of the replicate EERs. The same inputs and ``seed`` give the same
    interval.

    ``bonafide_groups`` / ``spoof_groups`` (one label per score, e.g. the voice of each fake
    clip) make it a cluster bootstrap for that class: a replicate draws as many groups as the
    class has, with replacement, and keeps every score of each group drawn. Use it when
    scores are not independent: the clips of one voice tend to be caught or missed together,
    and resampling them one by one understates how much the EER depends on which voices the
    test set holds.

    Raises:
        MetricError: bad scores (see :func:`equal_error_rate`), ``n_boot < 1``,
            ``confidence`` outside (0, 1), or groups of the wrong length or fewer than two.
    """
    n_boot = _check_bootstrap(n_boot, confidence)
    bona, spf = _check_both(bonafide, spoof)
    values, rank_bona, rank_spoof = _pooled_ranks(bona, spf)
    k = values.size
    rng = np.random.default_rng(seed)
    if bonafide_groups is not None or spoof_groups is not None:
        eers = _grouped_bootstrap_eers(
            rank_bona,
            rank_spoof,
            k,
            _group_indices(bonafide_groups, bona.size, "bonafide_groups"),
            _group_indices(spoof_groups, spf.size, "spoof_groups"),
            n_boot,
            rng,
        )
        return _percentile_interval(eers, confidence)
    block = _block_rows(n_boot, k + 1, bona.size, spf.size)
    eers = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        # Offsetting each replicate's ranks by row * k lets one bincount build every
        # replicate's per-score counts at once.
        offsets = (np.arange(rows, dtype=np.int64) * k)[:, None]
        draw_bona = rank_bona[rng.integers(0, bona.size, size=(rows, bona.size))] + offsets
        draw_spoof = rank_spoof[rng.integers(0, spf.size, size=(rows, spf.size))] + offsets
        bona_counts = np.bincount(draw_bona.ravel(), minlength=rows * k).reshape(rows, k)
        spoof_counts = np.bincount(draw_spoof.ravel(), minlength=rows * k).reshape(rows, k)
        frr, far = _rates(bona_counts, spoof_counts, bona.size, spf.size)
        eers[start : start + rows] = _crossing(frr, far)[0]
    return _percentile_interval(eers, confidence)


def _check_bootstrap(n_boot: int, confidence: float) -> int:
    """Validate the bootstrap settings; return ``n_boot`` as an int."""
    if int(n_boot) < 1:
        raise MetricError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise MetricError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence}")
    return int(n_boot)


def _percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` share of the replicates, as ``(low, high)``."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def _group_indices(groups: Any, n: int, name: str) -> np.ndarray:
    """Group labels as indices 0..G-1 (each score its own group when ``groups`` is None)."""
    if groups is None:
        return np.arange(n)
    labels = np.asarray(groups, dtype=object).reshape(-1)
    if labels.size != n:
        raise MetricError(f"{name} has {labels.size} labels for {n} scores")
    _, index = np.unique(labels.astype(str), return_inverse=True)
    if index.max(initial=0) < 1:
        raise MetricError(f"{name} holds one group: a cluster bootstrap needs at least two")
    return index.reshape(-1)


def _draw_weights(groups: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """How often each score is drawn in each of ``rows`` replicates: ``(rows, scores)``.

    A replicate draws as many groups as there are, with replacement; every score of a group
    weighs as often as its group was drawn (one score per group: the ordinary bootstrap).
    """
    n_groups = int(groups.max()) + 1
    drawn = rng.integers(0, n_groups, size=(rows, n_groups))
    drawn += (np.arange(rows, dtype=np.int64) * n_groups)[:, None]
    times = np.bincount(drawn.ravel(), minlength=rows * n_groups).reshape(rows, n_groups)
    return times[:, groups]


def _weighted_eers(
    rank_bona: np.ndarray, rank_spoof: np.ndarray, k: int, w_bona: np.ndarray, w_spoof: np.ndarray
) -> np.ndarray:
    """EER of each replicate whose scores weigh ``w_*`` (rows, scores); see _rates."""
    rows = w_bona.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * k)[:, None]
    counts = []
    for ranks, weights in ((rank_bona, w_bona), (rank_spoof, w_spoof)):
        per_score = np.bincount(
            (ranks[None, :] + offsets).ravel(), weights=weights.ravel(), minlength=rows * k
        )
        counts.append(np.rint(per_score).astype(np.int64).reshape(rows, k))
    totals = (w_bona.sum(axis=1, keepdims=True), w_spoof.sum(axis=1, keepdims=True))
    frr, far = _rates(counts[0], counts[1], *totals)
    return _crossing(frr, far)[0]


def _block_rows(n_boot: int, *widths: int) -> int:
    return max(1, min(n_boot, _BOOTSTRAP_BLOCK_ELEMENTS // max(widths)))


def _grouped_bootstrap_eers(
    rank_bona: np.ndarray,
    rank_spoof: np.ndarray,
    k: int,
    group_bona: np.ndarray,
    group_spoof: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replicate EERs of a (per-class) cluster bootstrap; see :func:`eer_bootstrap_ci`."""
    block = _block_rows(n_boot, k + 1, rank_bona.size, rank_spoof.size)
    eers = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        w_bona = _draw_weights(group_bona, rows, rng)
        w_spoof = _draw_weights(group_spoof, rows, rng)
        eers[start : start + rows] = _weighted_eers(rank_bona, rank_spoof, k, w_bona, w_spoof)
    return eers


def eer_difference_ci(
    bonafide_a: Any,
    spoof_a: Any,
    bonafide_b: Any,
    spoof_b: Any,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    bonafide_groups: Any = None,
    spoof_groups: Any = None,
) -> tuple[float, float, float]:
    """Return ``(difference, low, high)``: EER of system B minus that of A, with a paired interval.

    Both systems scored the same clips, in the same order (``bonafide_a[i]`` and
    ``bonafide_b[i]`` are one clip). Each replicate resamples the clips (or, with
    ``*_groups``, whole groups as in :func:`eer_bootstrap_ci`) once and computes both EERs on
    that one resample, so what the two systems share (the hard clips, the hard voices)
    cancels in the difference. An interval that excludes 0 says B differs from A on clips
    (or voices) like these; comparing two separate intervals is far less sensitive.

    Raises:
        MetricError: bad scores, the two systems' class sizes differ, or the settings of
            :func:`eer_bootstrap_ci` are bad.
    """
    n_boot = _check_bootstrap(n_boot, confidence)
    bona_a, spf_a = _check_both(bonafide_a, spoof_a)
    bona_b, spf_b = _check_both(bonafide_b, spoof_b)
    if (bona_a.size, spf_a.size) != (bona_b.size, spf_b.size):
        raise MetricError(
            f"the systems scored different clips: {bona_a.size}/{spf_a.size} bona fide/spoof "
            f"scores against {bona_b.size}/{spf_b.size}"
        )
    group_bona = _group_indices(bonafide_groups, bona_a.size, "bonafide_groups")
    group_spoof = _group_indices(spoof_groups, spf_a.size, "spoof_groups")
    ranked = [_pooled_ranks(bona_a, spf_a), _pooled_ranks(bona_b, spf_b)]
    widths = [r[0].size + 1 for r in ranked]
    rng = np.random.default_rng(seed)
    block = _block_rows(n_boot, *widths, bona_a.size, spf_a.size)
    differences = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        w_bona = _draw_weights(group_bona, rows, rng)
        w_spoof = _draw_weights(group_spoof, rows, rng)
        eer_a, eer_b = (
            _weighted_eers(rank_bona, rank_spoof, values.size, w_bona, w_spoof)
            for values, rank_bona, rank_spoof in ranked
        )
        differences[start : start + rows] = eer_b - eer_a
    low, high = _percentile_interval(differences, confidence)
    point = equal_error_rate(bona_b, spf_b).eer - equal_error_rate(bona_a, spf_a).eer
    return float(point), float(low), float(high)


def roc_auc(bonafide: Any, spoof: Any) -> float:
    """Return the ROC AUC: the probability that a bona fide score beats a spoof score.

    Ties count one half, so all-equal scores give 0.5, perfect separation 1.0 and fully
    inverted scores 0.0. Same value as scikit-learn's ``roc_auc_score`` with bona fide as the
    positive class.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    bona, spf = _check_both(bonafide, spoof)
    values, rank_bona, rank_spoof = _pooled_ranks(bona, spf)
    bona_counts = np.bincount(rank_bona, minlength=values.size).astype(np.float64)
    spoof_counts = np.bincount(rank_spoof, minlength=values.size).astype(np.float64)
    spoof_below = np.cumsum(spoof_counts) - spoof_counts
    wins = np.sum(bona_counts * (spoof_below + 0.5 * spoof_counts))
    return float(wins / (bona.size * spf.size))


# --------------------------------------------------------------------------------------
# Calibration: scores read as log-likelihood ratios
# --------------------------------------------------------------------------------------


def cllr(bonafide: Any, spoof: Any) -> float:
    """Return the log-likelihood-ratio cost in bits, reading each score as a natural-log LLR.

    ``Cllr = (mean over bona fide of log2(1 + e^-s) + mean over spoof of log2(1 + e^s)) / 2``.
    Every detector here scores a clip with the log-odds of bona fide at equal priors (two
    logits, a balanced logistic regression, a GMM log-likelihood difference), which is what
    ``p_fake = sigmoid(-score)`` of ``dfa predict`` assumes; Cllr measures how far those
    probabilities can be trusted. It is 0 for confident correct scores, 1 for scores that are
    all 0 (no information, honestly stated), and above 1 when the scores mislead. Compare with
    :func:`min_cllr`: the difference is what calibration alone would save.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    bona, spf = _check_both(bonafide, spoof)
    cost = np.mean(np.logaddexp(0.0, -bona)) + np.mean(np.logaddexp(0.0, spf))
    return float(cost / (2.0 * np.log(2.0)))


def _pav_blocks(bona_counts: np.ndarray, spoof_counts: np.ndarray) -> list[list[float]]:
    """Pool adjacent score levels until the bona fide share never falls as the score rises."""
    blocks: list[list[float]] = []  # [bona fide clips, spoof clips]
    for b, f in zip(bona_counts, spoof_counts, strict=True):
        blocks.append([float(b), float(f)])
        # Merge while the previous block holds a larger bona fide share (b1/n1 > b2/n2).
        while len(blocks) > 1:
            (b1, f1), (b2, f2) = blocks[-2], blocks[-1]
            if b1 * (b2 + f2) <= b2 * (b1 + f1):
                break
            blocks[-2:] = [[b1 + b2, f1 + f2]]
    return blocks


def min_cllr(bonafide: Any, spoof: Any) -> float:
    """Return the Cllr (bits) of the scores after the best order-preserving recalibration.

    The scores are replaced by the LLRs of the pool-adjacent-violators fit (the monotone map
    from score to the share of bona fide clips, found on these very scores), so only the order
    of the scores matters, as for the EER: 0 for perfect separation, 1 when the order carries
    no information (all scores equal, or fully inverted, since a monotone map cannot turn the
    order round). ``cllr - min_cllr`` is the calibration loss. Ties between the classes are
    pooled first.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    bona, spf = _check_both(bonafide, spoof)
    values, rank_bona, rank_spoof = _pooled_ranks(bona, spf)
    bona_counts = np.bincount(rank_bona, minlength=values.size)
    spoof_counts = np.bincount(rank_spoof, minlength=values.size)
    bona_cost = spoof_cost = 0.0
    for b, f in _pav_blocks(bona_counts, spoof_counts):
        # The block's LLR: its share of the bona fide clips over its share of the spoofs;
        # infinite where it holds one class only, and then that class pays nothing.
        if b and f:
            llr = np.log(b / bona.size) - np.log(f / spf.size)
            bona_cost += b * np.logaddexp(0.0, -llr)
            spoof_cost += f * np.logaddexp(0.0, llr)
    cost = bona_cost / bona.size + spoof_cost / spf.size
    return float(cost / (2.0 * np.log(2.0)))


# --------------------------------------------------------------------------------------
# Reliability of the reported probability of fake
# --------------------------------------------------------------------------------------

RELIABILITY_COLUMNS: tuple[str, ...] = (
    "bin",
    "lower",
    "upper",
    "mean_p_fake",
    "fake_rate",
    "count",
)


def _probabilities_and_labels(p_fake: Any, labels: Any, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Check and return ``(p_fake, is_fake)``; raise MetricError with what is wrong."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise MetricError(f"bins must be a positive integer, got {bins!r}")
    p = _as_scores(p_fake, "p_fake")
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise MetricError(
            f"p_fake must be probabilities in [0, 1]; {int(outside.sum())} are not (first at "
            f"index {first}, value {p[first]}): pass sigmoid(-score), not the score itself"
        )
    is_fake = _label_indices(labels)
    if is_fake.shape != p.shape:
        raise MetricError(
            f"p_fake and labels differ in length: {p.size} probabilities, {is_fake.size} labels"
        )
    return p, is_fake == FAKE


def reliability_table(p_fake: Any, labels: Any, bins: int = 10) -> pd.DataFrame:
    """Return the data of a reliability diagram: per probability bin, predicted against observed.

    The bins are of **equal width** on [0, 1] (``bins=10``: 0-0.1, 0.1-0.2, ...; each holds its
    lower edge, the last one also 1.0), the usual reliability diagram, so tables of different
    detectors line up bin by bin. One row per bin, empty bins included: ``bin`` (0-based),
    ``lower`` and ``upper`` (its edges), ``mean_p_fake`` (mean predicted probability of fake of
    its clips), ``fake_rate`` (the share of them that are fake) and ``count`` (its clips);
    the two means are NaN in an empty bin. A calibrated detector has ``fake_rate`` close to
    ``mean_p_fake`` in every well-filled bin. ``p_fake`` is what a detector reports,
    ``sigmoid(-score)`` for a bona fide score; labels are ``"real"``/``"fake"`` or 0/1.

    Raises:
        MetricError: empty input, a probability outside [0, 1] or NaN, an unknown label,
            lengths that differ, or ``bins`` not a positive integer.
    """
    p, is_fake = _probabilities_and_labels(p_fake, labels, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds [edges[i], edges[i + 1]); 1.0 goes to the last bin.
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    n_fake = np.bincount(index, weights=is_fake.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        rate = np.where(count > 0, n_fake / count, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "mean_p_fake": mean_p,
            "fake_rate": rate,
            "count": count.astype(np.int64),
        },
        columns=list(RELIABILITY_COLUMNS),
    )


def calibration_error_of_table(table: pd.DataFrame) -> float:
    """Return the expected calibration error of a :func:`reliability_table`.

    The mean over clips of ``|mean_p_fake - fake_rate|`` of their bin: the bins' gaps
    weighted by their counts; empty bins weigh nothing.
    """
    _require_columns(table, ["mean_p_fake", "fake_rate", "count"])
    filled = table[table["count"] > 0]
    total = float(filled["count"].sum())
    if total == 0:
        raise MetricError("the reliability table holds no clip: the calibration error needs some")
    gaps = (filled["mean_p_fake"] - filled["fake_rate"]).abs()
    return float((gaps * filled["count"]).sum() / total)


def expected_calibration_error(p_fake: Any, labels: Any, bins: int = 10) -> float:
    """Return the expected calibration error (ECE) of probabilities of fake, in 0..1.

    ``ECE = sum over bins of (clips in the bin / clips) * |mean p_fake - fake rate|`` with
    ``bins`` **equal-width** bins on [0, 1] (those of :func:`reliability_table`). 0 when, in
    every bin, the share of fakes is the mean probability the detector gave them; a detector
    that says 0.99 on clips of which 70 % are fake is off by 0.29 there. Unlike Cllr it ignores
    how far a probability is from 0 or 1 within a bin, and with few clips it is biased upwards
    (each bin's fake rate is noisy): compare detectors on the same clips and bins.

    Raises:
        MetricError: as :func:`reliability_table`.
    """
    return calibration_error_of_table(reliability_table(p_fake, labels, bins))


# --------------------------------------------------------------------------------------
# Decisions and summaries
# --------------------------------------------------------------------------------------


def labels_from_scores(scores: Any, threshold: float) -> np.ndarray:
    """Return ``"real"`` where ``score >= threshold`` and ``"fake"`` elsewhere."""
    arr = _as_scores(scores, "scores")
    return np.where(arr >= threshold, LABELS[REAL], LABELS[FAKE])


def classification_summary(y_true_labels: Any, y_pred_labels: Any) -> dict[str, Any]:
    """Summarise hard decisions: accuracy, per-class precision/recall/F1, confusion matrix.

    Labels are ``"real"``/``"fake"`` or ``0`` (real)/``1`` (fake), in any mix of the two forms.
    Returns a JSON-ready dict::

        {"n", "accuracy", "macro_f1",
         "per_class": {"real": {"precision", "recall", "f1", "support"}, "fake": {...}},
         "confusion_matrix": [[real->real, real->fake], [fake->real, fake->fake]],
         "report": scikit-learn's classification_report text}

    Confusion matrix rows are the true class and columns the predicted class, both in the order
    real, fake. A class that is never predicted gets precision 0 rather than a warning.

    Raises:
        MetricError: unknown labels, different lengths, or no labels at all.
    """

    y_true = _label_indices(y_true_labels, "y_true_labels")
    y_pred = _label_indices(y_pred_labels, "y_pred_labels")
    if y_true.shape != y_pred.shape:
        raise MetricError(
            f"y_true_labels and y_pred_labels differ in length: {y_true.size} vs {y_pred.size}"
        )
    if y_true.size == 0:
        raise MetricError("no labels given: classification_summary needs at least one clip")
    classes = [REAL, FAKE]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = {
        LABELS[c]: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c in classes
    }
    report = classification_report(
        y_true, y_pred, labels=classes, target_names=list(LABELS), digits=4, zero_division=0
    )
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "report": report,
    }


def summarize_scores(
    scores: Any,
    labels: Any,
    threshold: float | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Summarise scores against labels in one flat, JSON-ready dict.

    Keys: ``n``, ``n_real``, ``n_fake``; ``eer`` and ``eer_threshold``; ``eer_ci_low`` and
    ``eer_ci_high`` (bootstrap, ``confidence`` and ``n_boot`` recorded too; NaN when
    ``n_boot=0``); ``auc``; and, at ``threshold`` (default: the EER threshold, recorded as
    ``threshold``), ``accuracy``, ``frr`` (real clips called fake) and ``far`` (fake clips
    called real). All rates are fractions in 0..1.

    Raises:
        MetricError: bad scores or labels, or a class missing from ``labels``.
    """
    bona, spf = _split_by_label(scores, labels)
    bona, spf = _check_both(bona, spf)
    point = equal_error_rate(bona, spf)
    if n_boot:
        ci_low, ci_high = eer_bootstrap_ci(
            bona, spf, n_boot=n_boot, confidence=confidence, seed=seed
        )
    else:
        ci_low = ci_high = float("nan")
    used = point.threshold if threshold is None else float(threshold)
    frr = float(np.mean(bona < used))
    far = float(np.mean(spf >= used))
    correct = int(np.sum(bona >= used) + np.sum(spf < used))
    return {
        "n": int(bona.size + spf.size),
        "n_real": int(bona.size),
        "n_fake": int(spf.size),
        "eer": point.eer,
        "eer_threshold": point.threshold,
        "eer_ci_low": ci_low,
        "eer_ci_high": ci_high,
        "confidence": float(confidence),
        "n_boot": int(n_boot),
        "auc": roc_auc(bona, spf),
        "threshold": used,
        "accuracy": correct / (bona.size + spf.size),
        "frr": frr,
        "far": far,
    }


# --------------------------------------------------------------------------------------
# Breakdowns by generator, source, language
# --------------------------------------------------------------------------------------


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MetricError(f"data frame lacks column(s) {missing}; it has {list(df.columns)}")


def _group_row(
    key_values: dict[str, Any],
    bona: np.ndarray,
    spoof: np.ndarray,
    n_boot: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    row: dict[str, Any] = dict(key_values)
    row.update(n_real=int(bona.size), n_fake=int(spoof.size))
    nan = float("nan")
    row.update(eer=nan, threshold=nan, eer_ci_low=nan, eer_ci_high=nan, auc=nan, note="")
    if bona.size == 0 or spoof.size == 0:
        missing = "real" if bona.size == 0 else "fake"
        row["note"] = f"no {missing} clips in this group: EER undefined"
        return row
    point = equal_error_rate(bona, spoof)
    row.update(eer=point.eer, threshold=point.threshold, auc=roc_auc(bona, spoof))
    if n_boot:
        row["eer_ci_low"], row["eer_ci_high"] = eer_bootstrap_ci(
            bona, spoof, n_boot=n_boot, confidence=confidence, seed=seed
        )
    return row


def _as_key_tuple(key: Any) -> tuple[Any, ...]:
    return key if isinstance(key, tuple) else (key,)


def _frame_scores_and_labels(
    df: pd.DataFrame, columns: list[str], score_col: str, label_col: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check the frame's columns and return its scores and label indices, row-aligned."""
    _require_columns(df, [*columns, score_col, label_col])
    scores = _as_scores(df[score_col].to_numpy(dtype=np.float64), f"column {score_col!r}")
    labels = _label_indices(df[label_col].to_numpy(), f"column {label_col!r}")
    return scores, labels


def eer_by_group(
    df: pd.DataFrame,
    by: str | list[str],
    score_col: str = "score",
    label_col: str = "label",
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Return the EER within each group of ``by`` (e.g. ``source`` or ``language``).

    Real and fake clips of one group are scored against each other. A group holding only one
    class gets NaN metrics and a ``note`` saying which class is missing.

    Columns: the ``by`` columns, ``n_real``, ``n_fake``, ``eer``, ``threshold``,
    ``eer_ci_low``, ``eer_ci_high`` (NaN unless ``n_boot > 0``), ``auc``, ``note``.
    """
    columns = [by] if isinstance(by, str) else list(by)
    scores, labels = _frame_scores_and_labels(df, columns, score_col, label_col)
    rows = []
    for key, positions in df.groupby(columns, sort=True, dropna=False).indices.items():
        group_scores, group_labels = scores[positions], labels[positions]
        rows.append(
            _group_row(
                dict(zip(columns, _as_key_tuple(key), strict=True)),
                group_scores[group_labels == REAL],
                group_scores[group_labels == FAKE],
                n_boot,
                confidence,
                seed,
            )
        )
    return pd.DataFrame(rows, columns=_breakdown_columns(columns))


def eer_by_generator(
    df: pd.DataFrame,
    by: str | list[str] = "generator",
    generator_col: str = "generator",
    score_col: str = "score",
    label_col: str = "label",
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Return the EER of each generator's fakes against all real clips (ASVspoof per attack).

    Real clips carry no generator of their own (``human``), so every generator is scored
    against the whole real pool. Other columns in ``by`` (e.g. ``["language", "generator"]``)
    still split both classes: each (language, generator) group's fakes are scored against the
    real clips of that language. Groups are formed from fake clips only; a group whose real
    pool is empty gets NaN metrics and a ``note``.

    Columns: as :func:`eer_by_group`.
    """
    columns = [by] if isinstance(by, str) else list(by)
    if generator_col not in columns:
        raise MetricError(
            f"eer_by_generator needs {generator_col!r} among by={columns}; "
            "use eer_by_group for groupings without the generator"
        )
    scores, labels = _frame_scores_and_labels(df, columns, score_col, label_col)
    shared = [c for c in columns if c != generator_col]
    is_real = labels == REAL
    real_frame, fake_frame = df.loc[is_real], df.loc[~is_real]
    real_scores, fake_scores = scores[is_real], scores[~is_real]
    if shared:
        real_pools = {
            _as_key_tuple(key): real_scores[positions]
            for key, positions in real_frame.groupby(shared, dropna=False).indices.items()
        }
    rows = []
    for key, positions in fake_frame.groupby(columns, sort=True, dropna=False).indices.items():
        key_values = dict(zip(columns, _as_key_tuple(key), strict=True))
        if shared:
            shared_key = tuple(key_values[c] for c in shared)
            bona = real_pools.get(shared_key, np.empty(0))
        else:
            bona = real_scores
        rows.append(_group_row(key_values, bona, fake_scores[positions], n_boot, confidence, seed))
    return pd.DataFrame(rows, columns=_breakdown_columns(columns))


def _breakdown_columns(columns: list[str]) -> list[str]:
    return [
        *columns,
        "n_real",
        "n_fake",
        "eer",
        "threshold",
        "eer_ci_low",
        "eer_ci_high",
        "auc",
        "note",
    ]


def breakdown(
    df: pd.DataFrame,
    by: str | list[str],
    score_col: str = "score",
    label_col: str = "label",
    generator_col: str = "generator",
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Return EER per group, pairing fakes with the right real clips for the grouping.

    When ``by`` includes ``generator_col`` this is :func:`eer_by_generator` (each generator's
    fakes against all real clips, still split by any other ``by`` column); otherwise
    :func:`eer_by_group` (both classes taken from inside each group, e.g. per source or
    language).
    """
    columns = [by] if isinstance(by, str) else list(by)
    options = dict(
        score_col=score_col, label_col=label_col, n_boot=n_boot, confidence=confidence, seed=seed
    )
    if generator_col in columns:
        return eer_by_generator(df, columns, generator_col=generator_col, **options)
    return eer_by_group(df, columns, **options)


# --------------------------------------------------------------------------------------
# ASVspoof score files
# --------------------------------------------------------------------------------------


def _atomic_write_lines(path: str | Path, lines: Iterable[str]) -> Path:
    """Write lines to ``path`` through a temporary file in the same folder, then rename."""
    return write_text_atomically(path, "".join(f"{line}\n" for line in lines))


def _as_tokens(values: Iterable[Any], name: str, path: str | Path) -> list[str]:
    tokens = [str(v) for v in values]
    for i, token in enumerate(tokens):
        if not token or any(ch.isspace() for ch in token):
            raise ScoreFileError(
                f"{path}: {name}[{i}] = {token!r} is empty or contains whitespace, which would "
                "break the space-separated columns; rename it"
            )
    return tokens


def _check_lengths(path: str | Path, **columns: Sequence[Any]) -> None:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ScoreFileError(f"{path}: columns differ in length: {lengths}")


def write_scores_asvspoof2019(
    path: str | Path,
    utt_ids: Iterable[Any],
    sources_or_attacks: Iterable[Any],
    labels: Iterable[Any],
    scores: Iterable[float],
) -> Path:
    """Write an ASVspoof 2019 countermeasure score file: ``utt_id attack key score``.

    ``key`` is ``bonafide`` for real clips and ``spoof`` for fakes; ``attack`` is the given
    source/attack name (e.g. the generator) for spoof lines and ``-`` for every bona fide line,
    as in the ASVspoof 2019 files. Scores are written in full precision (higher = bona fide).
    The file appears atomically (temporary file, then rename); returns its path.

    Raises:
        ScoreFileError: columns of different lengths, or an id/attack with whitespace.
        MetricError: unknown labels or a NaN/infinite score.
    """
    ids = _as_tokens(utt_ids, "utt_ids", path)
    attacks = _as_tokens(sources_or_attacks, "sources_or_attacks", path)
    label_idx = _label_indices(labels)
    score_arr = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores)
    _check_lengths(
        path, utt_ids=ids, sources_or_attacks=attacks, labels=label_idx, scores=score_arr
    )
    if score_arr.size:
        score_arr = _as_scores(score_arr, "scores")
    lines = (
        f"{utt} {'-' if lab == REAL else attack} {_KEY_OF_LABEL[int(lab)]} {float(s)!r}"
        for utt, attack, lab, s in zip(ids, attacks, label_idx, score_arr, strict=True)
    )
    return _atomic_write_lines(path, lines)


def write_scores_asvspoof2021(
    path: str | Path, utt_ids: Iterable[Any], scores: Iterable[float]
) -> Path:
    """Write an ASVspoof 2021 score file: one ``utt_id score`` line per clip.

    Scores are written in full precision (higher = bona fide). The file appears atomically
    (temporary file, then rename); returns its path.

    Raises:
        ScoreFileError: columns of different lengths, or an id with whitespace.
        MetricError: a NaN/infinite score.
    """
    ids = _as_tokens(utt_ids, "utt_ids", path)
    score_arr = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores)
    _check_lengths(path, utt_ids=ids, scores=score_arr)
    if score_arr.size:
        score_arr = _as_scores(score_arr, "scores")
    return _atomic_write_lines(
        path, (f"{u} {float(s)!r}" for u, s in zip(ids, score_arr, strict=True))
    )


def _read_columns(path: str | Path, n_columns: int, layout: str) -> list[list[str]]:
    target = Path(path)
    if not target.is_file():
        raise ScoreFileError(f"score file not found: {target}")
    rows = []
    with target.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != n_columns:
                raise ScoreFileError(
                    f"{target}:{line_no}: expected {n_columns} columns '{layout}', "
                    f"got {len(parts)}: {line.strip()!r}"
                )
            rows.append([*parts, str(line_no)])
    return rows


def _parse_score(token: str, path: str | Path, line_no: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ScoreFileError(f"{path}:{line_no}: score {token!r} is not a number") from None
    if not np.isfinite(value):
        raise ScoreFileError(f"{path}:{line_no}: score {token!r} is NaN or infinite")
    return value


def read_scores_asvspoof2019(path: str | Path) -> pd.DataFrame:
    """Read an ASVspoof 2019 four-column score file.

    Returns a frame with columns ``utt_id``, ``attack`` (``-`` for bona fide), ``key``
    (``bonafide``/``spoof``), ``score`` (float) and ``label`` (``real``/``fake``).

    Raises:
        ScoreFileError: missing file, a line without four columns, an unknown key or a
            score that is not a finite number (the message gives file and line).
    """
    rows = _read_columns(path, 4, "utt_id attack key score")
    for utt, _attack, key, _score, line_no in rows:
        if key not in _LABEL_OF_KEY:
            raise ScoreFileError(
                f"{path}:{line_no}: key {key!r} of {utt!r} is neither 'bonafide' nor 'spoof'"
            )
    return pd.DataFrame(
        {
            "utt_id": [r[0] for r in rows],
            "attack": [r[1] for r in rows],
            "key": [r[2] for r in rows],
            "score": np.array([_parse_score(r[3], path, r[4]) for r in rows], dtype=np.float64),
            "label": [_LABEL_OF_KEY[r[2]] for r in rows],
        }
    )


def read_scores_asvspoof2021(path: str | Path) -> pd.DataFrame:
    """Read an ASVspoof 2021 two-column score file into columns ``utt_id`` and ``score``.

    Raises:
        ScoreFileError: missing file, a line without two columns or a score that is not a
            finite number (the message gives file and line).
    """
    rows = _read_columns(path, 2, "utt_id score")
    return pd.DataFrame(
        {
            "utt_id": [r[0] for r in rows],
            "score": np.array([_parse_score(r[1], path, r[2]) for r in rows], dtype=np.float64),
        }
    )
