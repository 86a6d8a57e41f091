"""Calibration of a detector's scores: the probability of fake it reports should mean what it says.

Every detector here scores a clip with the log-odds of bona fide at equal priors, and
``dfa predict`` turns a score ``s`` into ``p_fake = sigmoid(-s)``. Trained networks are often
overconfident (their log-odds are too large) and some heads are biased, which the
log-likelihood-ratio cost of :func:`dfa_lib.scoring.metrics.cllr` shows on test data. A detector folder
may therefore carry an affine calibration fitted on its own validation scores, the split that
also chose its threshold:

    calibrated log-likelihood ratio = scale * s + offset,   p_fake = sigmoid(-(scale * s + offset))

fitted as a class-balanced logistic regression of the label on the score (equal priors), the
usual linear calibration of speaker and spoofing detection. ``scale`` is positive, so the order
of the scores, their EER, the threshold's decisions and the score files are unchanged: only the
probabilities move. The map is stored in ``config.json`` under ``"calibration"`` with the
fingerprint of the validation scores it was fitted on; a folder without one reports
``sigmoid(-s)`` as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import minimize

if TYPE_CHECKING:
    pass

CALIBRATION_KEY = "calibration"
# How the map is fitted (stored with it): a stored map fitted another way is fitted again.
CALIBRATION_METHOD = "class-balanced logistic regression, Platt targets"


class CalibrationError(ValueError):
    """A calibration cannot be fitted or read; the message says which folder and why."""


@dataclass(frozen=True)
class Calibration:
    """The affine map from a bona fide score to a calibrated log-likelihood ratio."""

    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and np.isfinite(self.offset) and self.scale > 0):
            raise CalibrationError(
                f"a calibration needs a finite positive scale and a finite offset, got "
                f"scale={self.scale}, offset={self.offset}"
            )

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def apply(self, scores: Any) -> Any:
        """Calibrated log-likelihood ratios of bona fide scores (float or array)."""
        if np.ndim(scores) == 0:
            return self.scale * float(scores) + self.offset
        return self.scale * np.asarray(scores, dtype=np.float64) + self.offset

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Calibration:
        """The calibration a detector config carries (the identity when it has none)."""
        entry = config.get(CALIBRATION_KEY)
        if entry is None:
            return cls()
        if not isinstance(entry, Mapping) or not {"scale", "offset"} <= set(entry):
            raise CalibrationError(f'"{CALIBRATION_KEY}" needs "scale" and "offset", got {entry!r}')
        return cls(float(entry["scale"]), float(entry["offset"]))


def fit_calibration(bonafide: Any, spoof: Any) -> Calibration:
    """Fit ``scale * s + offset`` as a class-balanced logistic regression (equal priors).

    Each class carries half the weight whatever its size, so the result is a log-likelihood
    ratio, not a posterior at the split's class ratio. The targets are Platt's
    ``(n + 1) / (n + 2)`` for bona fide and ``1 / (n + 2)`` for spoof clips rather than 1 and 0,
    so scores that separate the classes perfectly still get a finite scale. Raises
    :class:`CalibrationError` when a class is empty or the scores rank the classes the wrong
    way round (no positive scale).
    """

    bona = np.asarray(bonafide, dtype=np.float64).reshape(-1)
    spf = np.asarray(spoof, dtype=np.float64).reshape(-1)
    if bona.size == 0 or spf.size == 0:
        raise CalibrationError("a calibration needs scores of real and of fake clips")
    if not (np.isfinite(bona).all() and np.isfinite(spf).all()):
        raise CalibrationError("a score is NaN or infinite")
    target_bona = (bona.size + 1.0) / (bona.size + 2.0)
    target_spoof = 1.0 / (spf.size + 2.0)
    # Standardise for a well-conditioned fit, then map the solution back.
    pooled = np.concatenate([bona, spf])
    centre, spread = float(pooled.mean()), float(pooled.std()) or 1.0
    zb, zs = (bona - centre) / spread, (spf - centre) / spread

    def cost(params: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = params
        lb, ls = a * zb + b, a * zs + b
        # Cross-entropy against soft targets t: t * softplus(-l) + (1 - t) * softplus(l).
        value = np.mean(
            target_bona * np.logaddexp(0.0, -lb) + (1 - target_bona) * np.logaddexp(0.0, lb)
        ) + np.mean(
            target_spoof * np.logaddexp(0.0, -ls) + (1 - target_spoof) * np.logaddexp(0.0, ls)
        )
        gb, gs = _sigmoid(lb) - target_bona, _sigmoid(ls) - target_spoof  # d cost / d llr
        grad = np.array(
            [np.mean(gb * zb) + np.mean(gs * zs), np.mean(gb) + np.mean(gs)], dtype=np.float64
        )
        return float(value), grad

    result = minimize(cost, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in result.x)
    if not a > 0:
        raise CalibrationError(
            "the validation scores rank fakes above real clips on the whole; no calibration "
            "with a positive scale fits them"
        )
    return Calibration(scale=a / spread, offset=b - a * centre / spread)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def describe(config: Mapping[str, Any]) -> str:
    """One line for a model card: the calibration, or that there is none."""
    entry = config.get(CALIBRATION_KEY)
    if not entry:
        return "none: the probability of fake is the sigmoid of minus the raw score"
    return (
        f"{entry['scale']:.4g} x score {entry['offset']:+.4g}, fitted on "
        f"{entry.get('fitted_on', '?')} scores ({entry.get('n_real', '?')} real, "
        f"{entry.get('n_fake', '?')} fake clips)"
    )


def probability_threshold(score_threshold: float) -> float:
    """Convert a threshold on the bona fide score ``s`` into one on the probability of fake.

    ``s < tau`` (fake) is equivalent to ``sigmoid(-s) > sigmoid(-tau)``.
    """
    return sigmoid(-float(score_threshold))


def score_threshold(probability: float) -> float:
    """Convert a threshold on the probability of fake into one on the bona fide score.

    Inverse of :func:`probability_threshold`: ``tau = log((1 - p) / p)``; ``p = 0`` gives
    ``+inf`` (everything fake) and ``p = 1`` gives ``-inf``.
    """
    p = float(probability)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability threshold must lie in [0, 1], got {p}")
    if p == 0.0:
        return math.inf
    if p == 1.0:
        return -math.inf
    return math.log1p(-p) - math.log(p)


def sigmoid_array(x: np.ndarray) -> np.ndarray:
    """The logistic function of each element, computed per sign so that no element overflows."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    z = np.exp(x[~pos])
    out[~pos] = z / (1.0 + z)
    return out


def sigmoid(x: float) -> float:
    """The logistic function of one number (``sigmoid(-score)`` is the probability of fake)."""
    # Written per sign so that large |x| neither overflows nor loses the small tail.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
