"""The ASVspoof challenges' ranking costs: min t-DCF, min DCF and min a-DCF, and the ASV score files.

Score convention as in :mod:`dfa_lib.scoring.metrics`: a score is larger the more a trial looks
bona fide (or, for a speaker verification score, the more it looks like the claimed speaker);
a trial is accepted when ``score >= threshold``. Every metric here is a *minimum normalised*
detection cost: the cost is evaluated at every distinct score (tied scores move together, as in
:func:`~dfa_lib.scoring.metrics.det_curve`), the lowest value is kept with the threshold that
reaches it (the lowest such threshold on a tie), and it is divided by the cost of the better of
the two trivial systems, "accept everything" and "reject everything". A value of 1 is therefore
no better than a trivial system; 0 is a perfect one.

- **min t-DCF** (:func:`min_tdcf`): a countermeasure (CM) in tandem with a fixed automatic
  speaker verification (ASV) system; the primary metric of ASVspoof 2019 and 2021 (LA, PA).
  Kinnunen et al., "t-DCF: a detection cost function for the tandem assessment of spoofing
  countermeasures and automatic speaker verification", Odyssey 2018 (the 2019 formulation), and
  "Tandem assessment of spoofing countermeasures and automatic speaker verification:
  fundamentals", IEEE/ACM TASLP 28, 2020 (the revised formulation of ASVspoof 2021).
- **min DCF** (:func:`min_dcf`): the CM alone, bona fide against spoof; the primary metric of
  ASVspoof 5 track 1.
- **min a-DCF** (:func:`min_a_dcf`): one spoofing-aware speaker verification (SASV) score for
  target, non-target and spoof trials; Shim et al., "a-DCF: an architecture agnostic metric
  with application to spoofing-robust speaker verification", Odyssey 2024; the primary metric
  of ASVspoof 5 track 2.

``python -m dfa_lib.scoring.dcf --help`` computes them from score files.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from dfa_lib.scoring.metrics import (
    MetricError,
    ScoreFileError,
    det_curve,
    det_rates,
    equal_error_rate,
    read_scores_asvspoof2019,
)

# Keys of the three kinds of speaker verification trial, as the ASVspoof files write them.
ASV_KEYS = ("target", "nontarget", "spoof")
# First-column values that mark a bona fide trial in an ASVspoof 2019 ASV score file: the
# released files write "bonafide"; the example file of the 2019 t-DCF package writes "-".
_BONA_FIDE_MARKS = ("bonafide", "-")


@dataclass(frozen=True)
class MinDetectionCost:
    """A minimum normalised detection cost and the score threshold that reaches it.

    ``threshold`` is an operating point: trials with ``score >= threshold`` are accepted. It is
    an observed score, or the float just above the highest score when rejecting everything is
    cheapest.
    """

    cost: float
    threshold: float


def _check_priors(owner: str, **priors: float) -> None:
    bad = {name: value for name, value in priors.items() if not 0.0 <= value <= 1.0}
    if bad:
        raise MetricError(f"{owner}: priors must lie in [0, 1], got {bad}")
    total = sum(priors.values())
    if abs(total - 1.0) > 1e-9:
        raise MetricError(f"{owner}: priors {priors} sum to {total}, not 1")


def _check_costs(owner: str, **costs: float) -> None:
    bad = {
        name: value for name, value in costs.items() if not (value >= 0 and math.isfinite(value))
    }
    if bad:
        raise MetricError(f"{owner}: costs must be finite and non-negative, got {bad}")


def _lowest(curve: np.ndarray, thresholds: np.ndarray) -> MinDetectionCost:
    """The minimum of a normalised cost curve and its (lowest) threshold."""
    index = int(np.argmin(curve))
    return MinDetectionCost(cost=float(curve[index]), threshold=float(thresholds[index]))


# --------------------------------------------------------------------------------------
# Tandem detection cost function (t-DCF)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TDCFCostModel:
    """Priors and costs of the t-DCF; the defaults are those of ASVspoof 2019 and 2021.

    Priors of a trial: ``p_target`` (the claimed speaker), ``p_nontarget`` (another human) and
    ``p_spoof`` (a spoofing attack), summing to 1. Costs: ``c_miss_asv`` / ``c_fa_asv`` of the
    ASV rejecting a target / accepting a non-target; ``c_miss_cm`` / ``c_fa_cm`` of the CM
    rejecting a bona fide target / passing a spoof on to the ASV.

    Source: ASVspoof 2019 evaluation plan and the organisers' ``tDCF_python`` package:
    ``P_spoof = 0.05``, ``P_tar = 0.95 x 0.99 = 0.9405``, ``P_non = 0.95 x 0.01 = 0.0095``,
    ``C_miss_asv = C_miss_cm = 1``, ``C_fa_asv = C_fa_cm = 10``. The ASVspoof 2021 evaluation
    plan and package keep these numbers under the revised names ``C_miss = 1``, ``C_fa = 10``,
    ``C_fa_spoof = 10`` (one miss cost for the tandem system), and ASVspoof 5 reports its
    secondary min t-DCF with them too.

    Raises:
        MetricError: priors outside [0, 1] or not summing to 1, or a negative cost.
    """

    p_target: float = 0.9405
    p_nontarget: float = 0.0095
    p_spoof: float = 0.05
    c_miss_asv: float = 1.0
    c_fa_asv: float = 10.0
    c_miss_cm: float = 1.0
    c_fa_cm: float = 10.0

    def __post_init__(self) -> None:
        _check_priors(
            "TDCFCostModel",
            p_target=self.p_target,
            p_nontarget=self.p_nontarget,
            p_spoof=self.p_spoof,
        )
        _check_costs(
            "TDCFCostModel",
            c_miss_asv=self.c_miss_asv,
            c_fa_asv=self.c_fa_asv,
            c_miss_cm=self.c_miss_cm,
            c_fa_cm=self.c_fa_cm,
        )


ASVSPOOF2019_TDCF = TDCFCostModel()


@dataclass(frozen=True)
class ASVErrorRates:
    """Error rates (fractions in 0..1) of the speaker verification system a CM is paired with.

    ``p_miss``: target trials the ASV rejects. ``p_fa``: non-target trials it accepts.
    ``p_fa_spoof``: spoof trials it accepts, i.e. ``1 - Pmiss_spoof_asv`` of the 2019 t-DCF
    code. ``threshold``: the ASV threshold they were measured at (NaN when given directly).

    Raises:
        MetricError: a rate outside [0, 1].
    """

    p_miss: float
    p_fa: float
    p_fa_spoof: float
    threshold: float = float("nan")

    def __post_init__(self) -> None:
        rates = {"p_miss": self.p_miss, "p_fa": self.p_fa, "p_fa_spoof": self.p_fa_spoof}
        bad = {name: value for name, value in rates.items() if not 0.0 <= value <= 1.0}
        if bad:
            raise MetricError(
                f"ASV error rates must be fractions in [0, 1] (not percentages), got {bad}"
            )


def _finite(values: Any, name: str) -> np.ndarray:
    """``values`` as a non-empty, finite 1-D float array, or a MetricError naming them."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} must be numbers, could not convert: {exc}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise MetricError(f"{name} must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricError(f"{name} hold NaN or infinite values; fix or drop those trials")
    return arr


def asv_error_rates(
    target: Any,
    nontarget: Any,
    spoof: Any,
    threshold: float | None = None,
    rule: Literal["eer", "reference"] = "eer",
) -> ASVErrorRates:
    """Measure the ASV error rates that a t-DCF needs, at the ASV's EER threshold by default.

    ``target``, ``nontarget`` and ``spoof`` are the ASV scores of the three kinds of trial
    (higher = more like the claimed speaker); a trial is accepted when ``score >= threshold``.
    As in the ASVspoof t-DCF evaluation, the ASV is operated at its equal error rate threshold
    for targets against non-targets unless ``threshold`` is given:

    - ``rule="eer"``: the threshold of :func:`~dfa_lib.scoring.metrics.equal_error_rate`, the
      operating point nearest FRR = FAR.
    - ``rule="reference"``: the threshold the organisers' t-DCF code (2019 to ASVspoof 5)
      applies, the pooled target/non-target score just below that one, so one more trial is
      accepted. Use it to reproduce published min t-DCF values to the last digit (scores
      without ties); the two differ by about one trial in the ASV rates.

    Raises:
        MetricError: an empty class, a NaN or infinite score, or an unknown ``rule``.
    """
    if rule not in ("eer", "reference"):
        raise MetricError(f"rule must be 'eer' or 'reference', got {rule!r}")
    tar = _finite(target, "ASV target scores")
    non = _finite(nontarget, "ASV non-target scores")
    spf = _finite(spoof, "ASV spoof scores")
    if threshold is not None:
        used = float(threshold)
    else:
        used = equal_error_rate(tar, non).threshold
        below = np.concatenate([tar, non])
        below = below[below < used]
        if rule == "reference" and below.size:
            used = float(below.max())
    return ASVErrorRates(
        p_miss=float(np.mean(tar < used)),
        p_fa=float(np.mean(non >= used)),
        p_fa_spoof=float(np.mean(spf >= used)),
        threshold=used,
    )


def _rates_from_frame(
    frame: pd.DataFrame, rule: Literal["eer", "reference"] = "eer"
) -> ASVErrorRates:
    """ASV error rates of a frame with ``key`` (target/nontarget/spoof) and ``score`` columns."""
    missing = [c for c in ("key", "score") if c not in frame.columns]
    if missing:
        raise MetricError(
            f"ASV score frame lacks column(s) {missing} (it has {list(frame.columns)}); read it "
            "with read_asv_scores_asvspoof2019 or read_asv_scores_asvspoof2021"
        )
    by_key = {key: frame.loc[frame["key"] == key, "score"].to_numpy() for key in ASV_KEYS}
    empty = [key for key, scores in by_key.items() if scores.size == 0]
    if empty:
        raise MetricError(f"ASV score frame has no {' or '.join(empty)} trials")
    return asv_error_rates(by_key["target"], by_key["nontarget"], by_key["spoof"], rule=rule)


def tdcf_coefficients(
    asv: ASVErrorRates, cost_model: TDCFCostModel = ASVSPOOF2019_TDCF
) -> tuple[float, float, float]:
    """Return ``(C0, C1, C2)``: the t-DCF is ``C0 + C1 x Pmiss_cm + C2 x Pfa_cm``.

    ``C0`` is the cost of the ASV's own errors (what remains with an error-free CM), ``C1``
    weighs the CM rejecting bona fide targets and ``C2`` the CM passing spoofs that the ASV then
    accepts (Kinnunen et al. 2020, eq. for the revised t-DCF; with equal CM and ASV miss costs
    the 2019 ``C1`` and ``C2`` are the same numbers).
    """
    m = cost_model
    c0 = m.p_target * m.c_miss_asv * asv.p_miss + m.p_nontarget * m.c_fa_asv * asv.p_fa
    c1 = m.p_target * (m.c_miss_cm - m.c_miss_asv * asv.p_miss) - (
        m.p_nontarget * m.c_fa_asv * asv.p_fa
    )
    c2 = m.c_fa_cm * m.p_spoof * asv.p_fa_spoof
    return c0, c1, c2


def min_tdcf(
    bonafide_scores: Any,
    spoof_scores: Any,
    asv: ASVErrorRates | pd.DataFrame,
    cost_model: TDCFCostModel = ASVSPOOF2019_TDCF,
    formulation: Literal["asvspoof2019", "asvspoof2021"] = "asvspoof2019",
) -> MinDetectionCost:
    """Return the minimum normalised t-DCF of a CM and the CM threshold that reaches it.

    ``bonafide_scores`` / ``spoof_scores`` are the CM scores (higher = bona fide). ``asv`` is
    the paired ASV system: its error rates (:func:`asv_error_rates`) or a frame of its scores as
    :func:`read_asv_scores_asvspoof2019` / :func:`read_asv_scores_asvspoof2021` return them,
    measured at its EER threshold. With ``(C0, C1, C2)`` from :func:`tdcf_coefficients`:

    - ``"asvspoof2019"`` (the ASVspoof 2019 ranking; Kinnunen et al. 2018):
      ``(C1 Pmiss_cm + C2 Pfa_cm) / min(C1, C2)``. A perfect CM scores 0.
    - ``"asvspoof2021"`` (the revised t-DCF of ASVspoof 2021 and ASVspoof 5's secondary metric;
      Kinnunen et al. 2020): ``(C0 + C1 Pmiss_cm + C2 Pfa_cm) / (C0 + min(C1, C2))``, which
      keeps the ASV's own cost, so a perfect CM scores ``C0 / (C0 + min(C1, C2))``; it needs
      ``c_miss_cm == c_miss_asv`` (one miss cost for the tandem system).

    Both are at most 1 (a CM that accepts or rejects everything).

    The organisers' code walks the DET curve one sorted score at a time, so where scores tie it
    can also reach points between tied scores that no threshold gives; here tied scores move
    together, which can only raise the minimum. A frame of ASV scores is measured with
    ``asv_error_rates(rule="eer")``; the organisers' code sets the ASV threshold one score lower,
    so to reproduce their numbers exactly pass ``asv_error_rates(..., rule="reference")``.

    Raises:
        MetricError: bad scores, ASV error rates that leave a weight ``C1`` or ``C2`` at zero
            or below (an ASV that accepts no spoof, or one worse than chance), or an unknown
            ``formulation``.
    """
    if formulation not in ("asvspoof2019", "asvspoof2021"):
        raise MetricError(
            f"formulation must be 'asvspoof2019' or 'asvspoof2021', got {formulation!r}"
        )
    if formulation == "asvspoof2021" and cost_model.c_miss_cm != cost_model.c_miss_asv:
        raise MetricError(
            "the asvspoof2021 t-DCF has one miss cost for the tandem system: set c_miss_cm "
            f"equal to c_miss_asv (got {cost_model.c_miss_cm} and {cost_model.c_miss_asv})"
        )
    rates = _rates_from_frame(asv) if isinstance(asv, pd.DataFrame) else asv
    c0, c1, c2 = tdcf_coefficients(rates, cost_model)
    if c1 <= 0 or c2 <= 0:
        raise MetricError(
            f"t-DCF weights C1 = {c1:.6g} and C2 = {c2:.6g} must both be positive: C2 is 0 when "
            "the ASV accepts no spoof (the CM then cannot matter) and C1 <= 0 when the ASV errs "
            f"on more than it gets right; ASV error rates were {rates}"
        )
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores)
    if formulation == "asvspoof2019":
        curve = (c1 * frr + c2 * far) / min(c1, c2)
    else:
        curve = (c0 + c1 * frr + c2 * far) / (c0 + min(c1, c2))
    return _lowest(curve, thresholds)


# --------------------------------------------------------------------------------------
# CM-only detection cost (ASVspoof 5 track 1)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DCFCostModel:
    """Prior and costs of the CM-only detection cost function; defaults of ASVspoof 5.

    ``p_spoof`` is the prior of a spoof trial (bona fide: ``1 - p_spoof``); ``c_miss`` the cost
    of rejecting a bona fide trial, ``c_fa`` of accepting a spoof. Source: ASVspoof 5
    evaluation plan and the organisers' evaluation package (``calculate_metrics.py``):
    ``pi_spoof = 0.05``, ``C_miss = 1``, ``C_fa = 10``.

    Raises:
        MetricError: ``p_spoof`` outside [0, 1] or a negative cost.
    """

    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 10.0

    def __post_init__(self) -> None:
        _check_priors("DCFCostModel", p_spoof=self.p_spoof, p_bonafide=1.0 - self.p_spoof)
        _check_costs("DCFCostModel", c_miss=self.c_miss, c_fa=self.c_fa)


ASVSPOOF5_DCF = DCFCostModel()


def min_dcf(
    bonafide_scores: Any, spoof_scores: Any, cost_model: DCFCostModel = ASVSPOOF5_DCF
) -> MinDetectionCost:
    """Return the minimum normalised DCF of a CM (ASVspoof 5 track 1) and its threshold.

    ``DCF(t) = C_miss (1 - pi_spoof) Pmiss(t) + C_fa pi_spoof Pfa(t)``, divided by
    ``min(C_miss (1 - pi_spoof), C_fa pi_spoof)`` (the cheaper of accepting or rejecting
    everything), minimised over every threshold. With the ASVspoof 5 costs that is
    ``min over t of 1.9 Pmiss(t) + Pfa(t)``. 0 for perfectly separated scores, 1 when every
    score is equal.

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    m = cost_model
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores)
    weight_miss, weight_fa = m.c_miss * (1.0 - m.p_spoof), m.c_fa * m.p_spoof
    if min(weight_miss, weight_fa) <= 0:
        raise MetricError(f"{m}: both weighted costs must be positive to normalise the DCF")
    return _lowest((weight_miss * frr + weight_fa * far) / min(weight_miss, weight_fa), thresholds)


# --------------------------------------------------------------------------------------
# Architecture-agnostic DCF (ASVspoof 5 track 2)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ADCFCostModel:
    """Priors and costs of the a-DCF; the defaults are those ASVspoof 5 ranked track 2 with.

    Priors of a trial: ``p_target``, ``p_nontarget`` and ``p_spoof`` (summing to 1); costs of
    rejecting a target (``c_miss``), accepting a non-target (``c_fa_nontarget``) and accepting a
    spoof (``c_fa_spoof``). Source of the defaults: the organisers' ASVspoof 5 evaluation
    package (``calculate_metrics.py``), which reuses the t-DCF numbers: ``pi_tar = 0.9405``,
    ``pi_non = 0.0095``, ``pi_spf = 0.05``, ``C_miss = 1``, ``C_fa,non = C_fa,spf = 10``.
    :data:`SHIM2024_ADCF` is the a-DCF paper's default instead.

    Raises:
        MetricError: priors outside [0, 1] or not summing to 1, or a negative cost.
    """

    p_target: float = 0.9405
    p_nontarget: float = 0.0095
    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa_nontarget: float = 10.0
    c_fa_spoof: float = 10.0

    def __post_init__(self) -> None:
        _check_priors(
            "ADCFCostModel",
            p_target=self.p_target,
            p_nontarget=self.p_nontarget,
            p_spoof=self.p_spoof,
        )
        _check_costs(
            "ADCFCostModel",
            c_miss=self.c_miss,
            c_fa_nontarget=self.c_fa_nontarget,
            c_fa_spoof=self.c_fa_spoof,
        )


ASVSPOOF5_ADCF = ADCFCostModel()
# The default of Shim et al. 2024 and of their reference code ("a-DCF1"): a spoof accepted
# costs twice a non-target accepted.
SHIM2024_ADCF = ADCFCostModel(
    p_target=0.9, p_nontarget=0.05, p_spoof=0.05, c_miss=1.0, c_fa_nontarget=10.0, c_fa_spoof=20.0
)


def min_a_dcf(
    target_scores: Any,
    nontarget_scores: Any,
    spoof_scores: Any,
    cost_model: ADCFCostModel = ASVSPOOF5_ADCF,
) -> MinDetectionCost:
    """Return the minimum normalised a-DCF of one SASV score and the threshold that reaches it.

    The scores are one system's for target (accept), non-target and spoof (reject) trials.
    ``a-DCF(t) = C_miss pi_tar Pmiss(t) + C_fa,non pi_non Pfa,non(t) + C_fa,spf pi_spf
    Pfa,spf(t)``, divided by ``min(C_miss pi_tar, C_fa,non pi_non + C_fa,spf pi_spf)``
    (rejecting or accepting everything), minimised over every threshold (Shim et al. 2024).

    Raises:
        MetricError: a class is empty, or a score is NaN or infinite.
    """
    m = cost_model
    tar = _finite(target_scores, "target scores")
    non = _finite(nontarget_scores, "non-target scores")
    spf = _finite(spoof_scores, "spoof scores")
    miss, (fa_non, fa_spoof), thresholds = det_rates(tar, non, spf)
    reject_all = m.c_miss * m.p_target
    accept_all = m.c_fa_nontarget * m.p_nontarget + m.c_fa_spoof * m.p_spoof
    if min(reject_all, accept_all) <= 0:
        raise MetricError(f"{m}: accepting and rejecting everything must both cost something")
    cost = reject_all * miss + m.c_fa_nontarget * m.p_nontarget * fa_non
    cost = cost + m.c_fa_spoof * m.p_spoof * fa_spoof
    return _lowest(cost / min(reject_all, accept_all), thresholds)


# --------------------------------------------------------------------------------------
# The organisers' ASV and SASV score files
# --------------------------------------------------------------------------------------


def _table(path: str | Path, columns: tuple[int, ...], layout: str) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a whitespace-separated file as ``(line number, fields)``."""
    target = Path(path)
    if not target.is_file():
        raise ScoreFileError(f"score file not found: {target}")
    rows = []
    with target.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in columns:
                wanted = " or ".join(str(c) for c in columns)
                raise ScoreFileError(
                    f"{target}:{number}: expected {wanted} columns '{layout}', "
                    f"got {len(fields)}: {line.strip()!r}"
                )
            rows.append((number, fields))
    if not rows:
        raise ScoreFileError(f"{target}: the file holds no trials")
    return rows


def _number(token: str, path: str | Path, number: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ScoreFileError(f"{path}:{number}: score {token!r} is not a number") from None
    if not math.isfinite(value):
        raise ScoreFileError(f"{path}:{number}: score {token!r} is NaN or infinite")
    return value


def _asv_key(token: str, path: str | Path, number: int) -> str:
    if token not in ASV_KEYS:
        raise ScoreFileError(
            f"{path}:{number}: trial key {token!r} is not one of {', '.join(ASV_KEYS)}"
        )
    return token


def read_asv_scores_asvspoof2019(path: str | Path) -> pd.DataFrame:
    """Read an ASVspoof 2019 ASV score file (``ASVspoof2019.{LA,PA}.asv.{dev,eval}.gi.trl.scores.txt``).

    Each line is ``<cm key> <asv key> <score>`` (README of the ASVspoof 2019 database):
    the CM key is ``bonafide`` or the attack id (``A01`` ... ``A19``; the example file of the
    2019 t-DCF package writes ``-`` for bona fide), the ASV key ``target``, ``nontarget`` or
    ``spoof``. Returns columns ``attack`` (the CM key as written), ``key`` and ``score``.

    Raises:
        ScoreFileError: a missing or empty file, a line without three columns, an unknown key,
            a non-numeric score, or a line whose two keys disagree (a bona fide spoof, or an
            attack labelled target); the message gives the file and line.
    """
    rows = _table(path, (3,), "cm_key asv_key score")
    for number, (attack, key, _score) in rows:
        _asv_key(key, path, number)
        if (key == "spoof") == (attack in _BONA_FIDE_MARKS):
            raise ScoreFileError(
                f"{path}:{number}: CM key {attack!r} contradicts ASV key {key!r} (spoof trials "
                "name their attack, target and non-target trials are 'bonafide' or '-')"
            )
    return pd.DataFrame(
        {
            "attack": [fields[0] for _, fields in rows],
            "key": [fields[1] for _, fields in rows],
            "score": np.array([_number(f[2], path, n) for n, f in rows], dtype=np.float64),
        }
    )


def read_asv_scores_asvspoof2021(
    metadata_path: str | Path, score_path: str | Path, subset: str | None = None
) -> pd.DataFrame:
    """Read the ASVspoof 2021 ASV keys and scores (``keys/{LA,PA}/ASV/``), line by line aligned.

    ``metadata_path`` is ``ASV/trial_metadata.txt``: ``<speaker> <trial> ... <key> <trim>
    <subset>`` (8 columns for LA, where column 5 is the attack or ``bonafide``; 12 for PA), the
    key being ``target``, ``nontarget`` or ``spoof``. ``score_path`` is the organisers' ASV score
    file (``ASV/ASVTorch_Kaldi/score.txt``) or your own: ``<speaker> <trial> <score>``, one line
    per metadata line in the same order, as the organisers' evaluation package pairs them.
    ``subset`` (``eval``, ``progress`` or ``hidden``) keeps that subset only.

    Returns columns ``speaker``, ``trial``, ``key``, ``trim``, ``subset``, ``score`` (and
    ``attack`` for the 8-column LA layout).

    Raises:
        ScoreFileError: a missing file, a malformed line, an unknown key, files of different
            lengths or a score line naming another speaker or trial than its metadata line
            (the message gives the files and line), or a ``subset`` no line has.
    """
    meta = _table(metadata_path, (8, 12), "speaker trial ... key trim subset")
    scores = _table(score_path, (3,), "speaker trial score")
    if len(meta) != len(scores):
        raise ScoreFileError(
            f"{score_path} has {len(scores)} trials but {metadata_path} has {len(meta)}: the "
            "score file must have one line per metadata line, in the same order"
        )
    for (meta_no, fields), (score_no, score_fields) in zip(meta, scores, strict=True):
        _asv_key(fields[-3], metadata_path, meta_no)
        if score_fields[:2] != fields[:2]:
            raise ScoreFileError(
                f"{score_path}:{score_no} scores {' '.join(score_fields[:2])!r} but "
                f"{metadata_path}:{meta_no} is {' '.join(fields[:2])!r}: the two files are not "
                "aligned line by line"
            )
    frame = pd.DataFrame(
        {
            "speaker": [f[0] for _, f in meta],
            "trial": [f[1] for _, f in meta],
            "key": [f[-3] for _, f in meta],
            "trim": [f[-2] for _, f in meta],
            "subset": [f[-1] for _, f in meta],
            "score": np.array([_number(f[2], score_path, n) for n, f in scores], dtype=np.float64),
        }
    )
    if len(meta[0][1]) == 8:
        frame.insert(2, "attack", [f[4] for _, f in meta])
    if subset is not None:
        present = sorted(frame["subset"].unique())
        if subset not in present:
            raise ScoreFileError(
                f"{metadata_path}: no trial of subset {subset!r}; it has {present}"
            )
        frame = frame.loc[frame["subset"] == subset].reset_index(drop=True)
    return frame


def read_sasv_scores(path: str | Path) -> pd.DataFrame:
    """Read a spoofing-aware speaker verification score file: ``<speaker> <trial> <score> <key>``.

    The layout of the SASV 2022 challenge and of the a-DCF reference code; the key is
    ``target``, ``nontarget`` or ``spoof``. Returns columns ``speaker``, ``trial``, ``score``,
    ``key``.

    Raises:
        ScoreFileError: a missing or empty file, a line without four columns, an unknown key or
            a non-numeric score (the message gives the file and line).
    """
    rows = _table(path, (4,), "speaker trial score key")
    return pd.DataFrame(
        {
            "speaker": [f[0] for _, f in rows],
            "trial": [f[1] for _, f in rows],
            "score": np.array([_number(f[2], path, n) for n, f in rows], dtype=np.float64),
            "key": [_asv_key(f[3], path, n) for n, f in rows],
        }
    )


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.scoring.dcf",
        description="Challenge metrics from score files: CM EER and min DCF (ASVspoof 5), "
        "min t-DCF against an ASV score file (ASVspoof 2019/2021), min a-DCF of a SASV score "
        "file (ASVspoof 5 track 2).",
    )
    parser.add_argument(
        "--cm", type=Path, help="CM scores, ASVspoof 2019 layout: utt_id attack key score"
    )
    parser.add_argument(
        "--asv",
        type=Path,
        help="ASV scores: ASVspoof 2019 'cm_key asv_key score', or with --asv-metadata the "
        "2021 'speaker trial score' file",
    )
    parser.add_argument(
        "--asv-metadata", type=Path, help="ASVspoof 2021 ASV/trial_metadata.txt for --asv"
    )
    parser.add_argument("--subset", help="ASVspoof 2021 subset to keep (eval, progress, hidden)")
    parser.add_argument("--sasv", type=Path, help="SASV scores: speaker trial score key")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the challenge metrics of the given score files; 0 on success, 2 on bad input."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cm is None and args.sasv is None:
        parser.error("give --cm (with or without --asv) and/or --sasv")
    if args.asv is not None and args.cm is None:
        parser.error("--asv pairs an ASV system with the CM of --cm: give --cm too")
    if (args.asv_metadata is not None or args.subset is not None) and args.asv is None:
        parser.error("--asv-metadata and --subset describe the ASV scores of --asv: give --asv")
    try:
        if args.cm is not None:
            cm = read_scores_asvspoof2019(args.cm)
            bona = cm.loc[cm["label"] == "real", "score"].to_numpy()
            spoof = cm.loc[cm["label"] == "fake", "score"].to_numpy()
            print(f"CM EER           {equal_error_rate(bona, spoof).eer:.6f}")
            print(f"CM min DCF       {min_dcf(bona, spoof).cost:.6f}  (ASVspoof 5 costs)")
            if args.asv is not None:
                if args.asv_metadata is not None:
                    asv = read_asv_scores_asvspoof2021(args.asv_metadata, args.asv, args.subset)
                else:
                    asv = read_asv_scores_asvspoof2019(args.asv)
                # The organisers' ASV threshold, so that the numbers match published ones.
                rates = _rates_from_frame(asv, rule="reference")
                print(
                    f"ASV at threshold {rates.threshold:.6g}: Pmiss {rates.p_miss:.6f}, "
                    f"Pfa {rates.p_fa:.6f}, Pfa_spoof {rates.p_fa_spoof:.6f}"
                )
                for formulation in ("asvspoof2019", "asvspoof2021"):
                    value = min_tdcf(bona, spoof, rates, formulation=formulation).cost
                    print(f"min t-DCF        {value:.6f}  ({formulation} formulation)")
        if args.sasv is not None:
            sasv = read_sasv_scores(args.sasv)
            by_key = [sasv.loc[sasv["key"] == key, "score"].to_numpy() for key in ASV_KEYS]
            print(f"SASV min a-DCF   {min_a_dcf(*by_key).cost:.6f}  (ASVspoof 5 costs)")
            shim = min_a_dcf(*by_key, SHIM2024_ADCF).cost
            print(f"SASV min a-DCF   {shim:.6f}  (Shim et al. 2024 default costs)")
    except MetricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
