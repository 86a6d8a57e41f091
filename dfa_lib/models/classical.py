"""Classical baselines (per-class GMMs, logistic regressions) with pickle-free storage.

Two detectors in the spirit of the ASVspoof 2019/2021 LFCC-GMM baseline, on the same LFCCs
as the neural front end (:class:`dfa_lib.features.frontends.LFCCConfig`, 60 features per 10 ms frame):

- :class:`LFCCGMMClassifier`: one Gaussian mixture per class fitted on frame-level LFCCs; a
  clip's score is the mean over its frames of ``log p(frame | real) - log p(frame | fake)``.
- :class:`LFCCLogRegClassifier`: each clip summarised by the mean and standard deviation of
  its LFCCs over time, standardised, then a logistic regression.
- :class:`IFDLogRegClassifier`: the same regression on the mean and standard deviation of
  every spectrogram bin's log power and phase (the ``ifd`` front end's three channels).
- :class:`IFDRPSLogRegClassifier`: those statistics plus the relative phase shift of each
  harmonic of voiced frames (:mod:`dfa_lib.features.harmonics`).

All follow the project's score convention: :meth:`score` returns the bona fide score, higher
means real. ``save(folder)`` writes ``classifier.json`` (format name and version, model type,
settings) and ``classifier.safetensors`` (the fitted arrays); nothing is pickled, so loading
a folder never executes code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from dfa_lib.core.atomic import atomic_path, write_text_atomically
from dfa_lib.core.labels import FAKE, LABELS, REAL, label_to_index
from dfa_lib.features.frontends import IFDConfig, IFDFrontend, LFCCConfig, LFCCFrontend
from dfa_lib.features.harmonics import RPSConfig, rps_statistics

CLASSICAL_FORMAT = "dfa-classical"
CLASSICAL_FORMAT_VERSION = 1
CONFIG_FILE = "classifier.json"
ARRAYS_FILE = "classifier.safetensors"

Waves = Sequence[np.ndarray] | np.ndarray


class ClassicalModelError(ValueError):
    """Raised when a saved classical model folder is missing, foreign, corrupt or mismatched."""


def lfcc_features(
    waves: Waves, config: LFCCConfig | None = None, batch_size: int = 64
) -> list[np.ndarray]:
    """Compute LFCCs for each clip: a list of float32 arrays shaped (frames, n_features).

    ``waves`` is a 2-D array (clips of equal length) or a sequence of 1-D float arrays at the
    config's sample rate. The features are those of :class:`dfa_lib.features.frontends.LFCCFrontend`
    (no per-utterance normalisation), computed on the CPU.
    """
    frontend = LFCCFrontend(config or LFCCConfig(), normalize=False).eval()
    features: list[np.ndarray] = []
    with torch.no_grad():
        for group in _equal_length_batches(_as_clips(waves), batch_size):
            batch = torch.as_tensor(np.stack(group), dtype=torch.float32)
            feats = frontend(batch)[:, 0].transpose(1, 2).numpy()
            features.extend(np.ascontiguousarray(f) for f in feats)
    return features


def _as_clips(waves: Waves) -> list[np.ndarray]:
    if isinstance(waves, np.ndarray) and waves.ndim == 2:
        return list(waves)
    clips = []
    for index, wave in enumerate(waves):
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(
                f"clip {index}: expected a non-empty 1-D waveform, got shape {wave.shape}"
            )
        clips.append(wave)
    return clips


def _equal_length_batches(clips: list[np.ndarray], batch_size: int) -> Iterator[list[np.ndarray]]:
    # Equal-length clips (the usual fixed-length crops) go through in one batch; a chunk of
    # mixed lengths goes clip by clip.
    for start in range(0, len(clips), batch_size):
        chunk = clips[start : start + batch_size]
        yield from ([chunk] if len({len(c) for c in chunk}) == 1 else [[c] for c in chunk])


def _class_indices(labels: Sequence[Any] | np.ndarray, n_clips: int) -> np.ndarray:
    values = [v.item() if isinstance(v, np.generic) else v for v in labels]
    if len(values) != n_clips:
        raise ValueError(f"got {n_clips} clips but {len(values)} labels")
    result = np.asarray([label_to_index(v) for v in values], dtype=np.int64)
    if len(np.unique(result)) != 2:
        raise ValueError("training needs clips of both classes (real and fake)")
    return result


def _read_folder(folder: str | Path, model_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and check a saved folder; return its JSON document and its arrays."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    arrays_path = folder / ARRAYS_FILE
    if not folder.is_dir():
        raise ClassicalModelError(f"{folder}: no such model folder")
    if not config_path.is_file():
        raise ClassicalModelError(
            f"{folder}: no {CONFIG_FILE}; this is not a saved classical model folder "
            "(neural run folders are loaded with dfa_lib.detector.scorer)"
        )
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClassicalModelError(f"{config_path}: corrupt JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != CLASSICAL_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise ClassicalModelError(
            f"{config_path}: format is {found!r}, expected {CLASSICAL_FORMAT!r}"
        )
    version = document.get("format_version")
    if version != CLASSICAL_FORMAT_VERSION:
        raise ClassicalModelError(
            f"{config_path}: format version {version!r} is not supported by this dfa "
            f"(reads version {CLASSICAL_FORMAT_VERSION}); retrain or use a matching dfa version"
        )
    found_type = document.get("model_type")
    if found_type != model_type:
        owner = _CLASSES_BY_TYPE.get(str(found_type))
        hint = f"; load it with {owner.__name__}.load" if owner else ""
        raise ClassicalModelError(
            f"{folder}: holds a {found_type!r} model, not {model_type!r}{hint}"
        )
    if not arrays_path.is_file():
        raise ClassicalModelError(f"{folder}: {ARRAYS_FILE} is missing")
    try:
        arrays = load_file(str(arrays_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ClassicalModelError(f"{arrays_path}: corrupt or truncated ({error})") from error
    return document, arrays


def _write_folder(
    folder: str | Path, model_type: str, document: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = {
        "format": CLASSICAL_FORMAT,
        "format_version": CLASSICAL_FORMAT_VERSION,
        "model_type": model_type,
    }
    with atomic_path(folder / ARRAYS_FILE) as temporary:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(temporary))
    write_text_atomically(folder / CONFIG_FILE, json.dumps({**header, **document}, indent=2) + "\n")
    return folder


def _as_config(value: Any, config_cls: type, name: str) -> Any:
    # Run configs store the feature settings as a JSON object.
    if isinstance(value, config_cls):
        return value
    if isinstance(value, dict):
        return config_cls(**value)
    raise TypeError(
        f"{name} must be a {config_cls.__name__} or a dict of its fields, got {type(value)}"
    )


def _take(arrays: dict[str, Any], key: str, folder: str | Path) -> np.ndarray:
    if key not in arrays:
        raise ClassicalModelError(f"{folder}: {ARRAYS_FILE} lacks the array {key!r}")
    return np.asarray(arrays[key])


def _rebuild(cls, folder: str | Path):
    """Read a classifier folder; return an unfitted ``cls`` with its settings, and its arrays."""
    document, arrays = _read_folder(folder, cls.model_type)
    keys = (cls.features_key, *getattr(cls, "extra_configs", {}))
    try:
        model = cls(**document["settings"], **{key: document[key] for key in keys})
    except (KeyError, TypeError) as error:
        raise ClassicalModelError(f"{folder}: bad settings in {CONFIG_FILE} ({error})") from error
    return model, arrays


@dataclass
class LFCCGMMClassifier:
    """Per-class Gaussian mixtures on frame-level LFCCs (ASVspoof LFCC-GMM baseline style).

    The published baseline uses 512 diagonal components trained on all frames; the defaults
    here (64 components, at most 100,000 randomly chosen frames per class) fit in seconds on
    a 2-core CPU for a few thousand clips. Score of a clip = mean frame log-likelihood ratio
    real vs fake (higher = bona fide).
    """

    model_type: ClassVar[str] = "lfcc_gmm"
    features_key: ClassVar[str] = "lfcc"  # the field (and saved entry) of the LFCC settings

    n_components: int = 64  # mixture components per class
    covariance_type: str = "diag"  # sklearn covariance type
    max_frames_per_class: int = 100_000  # random subsample of training frames per class
    max_iter: int = 100  # EM iterations
    reg_covar: float = 1e-3  # variance floor: keeps components on near-constant frames finite
    normalize: bool = False  # per-utterance mean/variance normalisation of the LFCCs
    seed: int = 0
    score_chunk: int = 256  # clips scored together
    lfcc: LFCCConfig = field(default_factory=LFCCConfig)
    gmms: dict[str, GaussianMixture] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.lfcc = _as_config(self.lfcc, LFCCConfig, "lfcc")

    def _features(self, waves: Waves) -> list[np.ndarray]:
        feats = lfcc_features(waves, self.lfcc)
        if self.normalize:
            feats = [(f - f.mean(0)) / (f.std(0) + 1e-5) for f in feats]
        return feats

    def fit(self, waves: Waves, labels: Sequence[Any] | np.ndarray) -> LFCCGMMClassifier:
        """Fit one mixture per class on the clips' frames; returns self."""
        targets = _class_indices(labels, len(waves))
        feats = self._features(waves)
        rng = np.random.default_rng(self.seed)
        self.gmms = {}
        for name, index in zip(LABELS, (REAL, FAKE), strict=True):
            frames = np.concatenate([f for f, t in zip(feats, targets, strict=True) if t == index])
            if len(frames) > self.max_frames_per_class:
                keep = rng.choice(len(frames), self.max_frames_per_class, replace=False)
                frames = frames[np.sort(keep)]
            if len(frames) < self.n_components:
                raise ValueError(
                    f"{len(frames)} {name} frames cannot fit {self.n_components} components; "
                    "give more audio or lower n_components"
                )
            gmm = GaussianMixture(
                n_components=self.n_components,
                covariance_type=self.covariance_type,
                max_iter=self.max_iter,
                reg_covar=self.reg_covar,
                random_state=self.seed,
            )
            self.gmms[name] = gmm.fit(frames.astype(np.float64))
        return self

    def score(self, waves: Waves) -> np.ndarray:
        """Return the bona fide score of each clip (mean frame log-likelihood ratio)."""
        if set(self.gmms) != set(LABELS):
            raise NotFittedError("LFCCGMMClassifier is not fitted: call fit() or load() first")
        scores = []
        # Chunks bound the memory of the per-frame, per-component likelihoods.
        for start in range(0, len(waves), self.score_chunk):
            feats = self._features(waves[start : start + self.score_chunk])
            frames = np.concatenate(feats).astype(np.float64)
            real = self.gmms["real"].score_samples(frames)
            ratio = real - self.gmms["fake"].score_samples(frames)
            bounds = np.cumsum([len(f) for f in feats])[:-1]
            scores.extend(chunk.mean() for chunk in np.split(ratio, bounds))
        return np.asarray(scores, dtype=np.float64)

    def save(self, folder: str | Path) -> Path:
        """Write the fitted mixtures and settings to ``folder`` (JSON + safetensors)."""
        if set(self.gmms) != set(LABELS):
            raise NotFittedError("LFCCGMMClassifier is not fitted: nothing to save")
        arrays: dict[str, np.ndarray] = {}
        for name, gmm in self.gmms.items():
            for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
                arrays[f"{name}.{attr.rstrip('_')}"] = getattr(gmm, attr)
        settings = {k: v for k, v in asdict(self).items() if k not in ("gmms", "lfcc")}
        return _write_folder(
            folder, self.model_type, {"settings": settings, "lfcc": self.lfcc.to_dict()}, arrays
        )

    @classmethod
    def load(cls, folder: str | Path) -> LFCCGMMClassifier:
        """Load a folder written by :meth:`save`; raises ClassicalModelError if it is not one."""
        model, arrays = _rebuild(cls, folder)
        for name in LABELS:
            gmm = GaussianMixture(
                n_components=model.n_components,
                covariance_type=model.covariance_type,
                random_state=model.seed,
            )
            gmm.weights_ = _take(arrays, f"{name}.weights", folder)
            gmm.means_ = _take(arrays, f"{name}.means", folder)
            gmm.covariances_ = _take(arrays, f"{name}.covariances", folder)
            gmm.precisions_cholesky_ = _take(arrays, f"{name}.precisions_cholesky", folder)
            if gmm.means_.shape != (model.n_components, model.lfcc.n_features):
                raise ClassicalModelError(
                    f"{folder}: {name} means have shape {gmm.means_.shape}, expected "
                    f"{(model.n_components, model.lfcc.n_features)}"
                )
            # precisions_ is what sklearn derives after fitting; rebuild it for completeness.
            if model.covariance_type in ("diag", "spherical"):
                gmm.precisions_ = gmm.precisions_cholesky_**2
            elif model.covariance_type == "full":
                gmm.precisions_ = np.einsum(
                    "kij,klj->kil", gmm.precisions_cholesky_, gmm.precisions_cholesky_
                )
            else:
                gmm.precisions_ = gmm.precisions_cholesky_ @ gmm.precisions_cholesky_.T
            gmm.n_features_in_ = gmm.means_.shape[1]
            gmm.converged_ = True
            gmm.n_iter_ = 0
            gmm.lower_bound_ = float("nan")
            model.gmms[name] = gmm
        return model


def utterance_statistics(features: Sequence[np.ndarray]) -> np.ndarray:
    """Summarise each clip's frames by their mean and standard deviation: (clips, 2 n_feats)."""
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in features])


def phase_statistics(
    waves: Waves, config: IFDConfig | None = None, batch_size: int = 64
) -> np.ndarray:
    """Summarise each clip by the mean and standard deviation over time of every bin's log
    power and of the cosine and sine of its instantaneous-frequency deviation: (clips, 6 bins).

    The features are those of :class:`dfa_lib.features.frontends.IFDFrontend` (no normalisation),
    computed on the CPU; equal-length clips go through in batches.
    """
    frontend = IFDFrontend(config or IFDConfig(), normalize=False).eval()
    clips = _as_clips(waves)
    rows: list[np.ndarray] = []
    with torch.no_grad():
        for group in _equal_length_batches(clips, batch_size):
            feats = frontend(torch.as_tensor(np.stack(group), dtype=torch.float32))
            stats = torch.cat([feats.mean(-1).flatten(1), feats.std(-1).flatten(1)], dim=1)
            rows.extend(stats.numpy())
    return np.stack(rows) if rows else np.zeros((0, 6 * frontend.n_features), np.float32)


@dataclass
class _StatisticsLogReg:
    """Logistic regression on standardised utterance statistics; subclasses say which.

    Score of a clip = the regression's log-odds of real vs fake (higher = bona fide).
    """

    model_type: ClassVar[str]
    features_key: ClassVar[str]  # the field (and saved entry) that holds the feature settings
    features_config: ClassVar[type]  # its dataclass
    stats_per_feature: ClassVar[int]  # statistics per feature of that config
    extra_configs: ClassVar[dict[str, type]] = {}  # more feature settings: field -> dataclass

    C: float = 1.0  # inverse L2 regularisation strength
    max_iter: int = 1000  # solver iterations
    seed: int = 0
    scaler: StandardScaler | None = field(default=None, repr=False)
    regression: LogisticRegression | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        settings = getattr(self, self.features_key)
        setattr(
            self, self.features_key, _as_config(settings, self.features_config, self.features_key)
        )
        for key, config_cls in self.extra_configs.items():
            setattr(self, key, _as_config(getattr(self, key), config_cls, key))

    @property
    def n_statistics(self) -> int:
        """Number of statistics per clip."""
        return self.stats_per_feature * getattr(self, self.features_key).n_features

    def _statistics(self, waves: Waves) -> np.ndarray:
        raise NotImplementedError

    def fit(self, waves: Waves, labels: Sequence[Any] | np.ndarray):
        """Fit the scaler and the regression on the clips; returns self."""
        targets = _class_indices(labels, len(waves))
        stats = self._statistics(waves)
        self.scaler = StandardScaler().fit(stats)
        self.regression = LogisticRegression(
            C=self.C, max_iter=self.max_iter, random_state=self.seed
        ).fit(self.scaler.transform(stats), targets)
        return self

    def score(self, waves: Waves) -> np.ndarray:
        """Return the bona fide score of each clip (log-odds of real)."""
        name = type(self).__name__
        if self.scaler is None or self.regression is None:
            raise NotFittedError(f"{name} is not fitted: call fit() or load() first")
        if len(waves) == 0:
            return np.zeros(0, dtype=np.float64)
        stats = self.scaler.transform(self._statistics(waves))
        # classes_ is [0, 1] = [real, fake]; the decision function is the log-odds of fake.
        return -self.regression.decision_function(stats)

    def save(self, folder: str | Path) -> Path:
        """Write the fitted scaler, regression and settings to ``folder``."""
        if self.scaler is None or self.regression is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: nothing to save")
        arrays = {
            "scaler.mean": self.scaler.mean_,
            "scaler.scale": self.scaler.scale_,
            "scaler.var": self.scaler.var_,
            "regression.coef": self.regression.coef_,
            "regression.intercept": self.regression.intercept_,
        }
        settings = {"C": self.C, "max_iter": self.max_iter, "seed": self.seed}
        document = {
            "settings": settings,
            **{
                key: getattr(self, key).to_dict()
                for key in (self.features_key, *self.extra_configs)
            },
        }
        return _write_folder(folder, self.model_type, document, arrays)

    @classmethod
    def load(cls, folder: str | Path):
        """Load a folder written by :meth:`save`; raises ClassicalModelError if it is not one."""
        model, arrays = _rebuild(cls, folder)
        n_stats = model.n_statistics
        scaler = StandardScaler()
        scaler.mean_ = _take(arrays, "scaler.mean", folder)
        scaler.scale_ = _take(arrays, "scaler.scale", folder)
        scaler.var_ = _take(arrays, "scaler.var", folder)
        scaler.n_features_in_ = n_stats
        regression = LogisticRegression(C=model.C, max_iter=model.max_iter, random_state=model.seed)
        regression.coef_ = _take(arrays, "regression.coef", folder)
        regression.intercept_ = _take(arrays, "regression.intercept", folder)
        regression.classes_ = np.array([0, 1])
        regression.n_features_in_ = n_stats
        if scaler.mean_.shape != (n_stats,) or regression.coef_.shape != (1, n_stats):
            raise ClassicalModelError(
                f"{folder}: array shapes {scaler.mean_.shape}, {regression.coef_.shape} do not "
                f"match {n_stats} {cls.features_key} statistics"
            )
        model.scaler, model.regression = scaler, regression
        return model


@dataclass
class LFCCLogRegClassifier(_StatisticsLogReg):
    """Logistic regression on standardised utterance-level LFCC mean/std statistics."""

    model_type: ClassVar[str] = "lfcc_logreg"
    features_key: ClassVar[str] = "lfcc"
    features_config: ClassVar[type] = LFCCConfig
    stats_per_feature: ClassVar[int] = 2  # mean and standard deviation

    lfcc: LFCCConfig = field(default_factory=LFCCConfig)

    def _statistics(self, waves: Waves) -> np.ndarray:
        return utterance_statistics(lfcc_features(waves, self.lfcc)).astype(np.float64)


@dataclass
class IFDLogRegClassifier(_StatisticsLogReg):
    """Logistic regression on each bin's log power and phase statistics (:func:`phase_statistics`).

    A cheap detector of the cue the ``ifd`` LCNN learns: where a vocoder's phase, or its
    power, departs from a real voice's on average over the clip. The defaults (129 bins to
    4 kHz, 10 ms frames, ``C=0.01``) had the lowest validation EER on the offline corpus's
    in-domain protocol of six settings tried once (5 or 10 ms frames; C of 0.01, 0.1 or 1).
    """

    model_type: ClassVar[str] = "ifd_logreg"
    features_key: ClassVar[str] = "ifd"
    features_config: ClassVar[type] = IFDConfig
    stats_per_feature: ClassVar[int] = 6  # mean and standard deviation of three channels

    C: float = 0.01
    ifd: IFDConfig = field(default_factory=lambda: IFDConfig(f_max=4000.0))

    def _statistics(self, waves: Waves) -> np.ndarray:
        return phase_statistics(waves, self.ifd).astype(np.float64)


@dataclass
class IFDRPSLogRegClassifier(IFDLogRegClassifier):
    """Logistic regression on the phase statistics of :class:`IFDLogRegClassifier` and on the
    relative phase shift of each harmonic (:func:`dfa_lib.features.harmonics.rps_statistics`).

    The STFT phase statistics say how each bin's phase advances on average; the relative
    phase shifts say how the harmonics of one pitch period line up with each other and how
    steadily they keep doing so, which is what a vocoder has to invent. ``C`` is that of
    ``ifd_logreg``; on the offline corpus's in-domain validation split, C of 0.01 and 0.1
    were within 0.5 points of each other.
    """

    model_type: ClassVar[str] = "ifd_rps_logreg"
    extra_configs: ClassVar[dict[str, type]] = {"rps": RPSConfig}

    rps: RPSConfig = field(default_factory=RPSConfig)

    @property
    def n_statistics(self) -> int:
        """Number of statistics per clip."""
        return super().n_statistics + self.rps.n_features

    def _statistics(self, waves: Waves) -> np.ndarray:
        clips = _as_clips(waves)
        return np.concatenate([super()._statistics(clips), rps_statistics(clips, self.rps)], 1)


Classifier = LFCCGMMClassifier | LFCCLogRegClassifier | IFDLogRegClassifier | IFDRPSLogRegClassifier

_CLASSES_BY_TYPE: dict[str, type[Classifier]] = {
    LFCCGMMClassifier.model_type: LFCCGMMClassifier,
    LFCCLogRegClassifier.model_type: LFCCLogRegClassifier,
    IFDLogRegClassifier.model_type: IFDLogRegClassifier,
    IFDRPSLogRegClassifier.model_type: IFDRPSLogRegClassifier,
}

CLASSICAL_MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES_BY_TYPE)

# The logistic regressions on utterance statistics: they fit in seconds on every clip.
LOGREG_MODEL_NAMES: tuple[str, ...] = tuple(
    name for name, cls in _CLASSES_BY_TYPE.items() if issubclass(cls, _StatisticsLogReg)
)


def build_classical(name: str, seed: int = 0, **kwargs: Any) -> Classifier:
    """Build an unfitted classical classifier by name (one of :data:`CLASSICAL_MODEL_NAMES`).

    ``kwargs`` are the classifier's settings as plain JSON values; ``lfcc`` (``ifd``) may be a
    dict of :class:`~dfa_lib.features.frontends.LFCCConfig` (:class:`~dfa_lib.features.frontends.IFDConfig`)
    fields.
    """
    if name not in _CLASSES_BY_TYPE:
        raise ValueError(
            f"unknown classical model {name!r}; choose one of {list(CLASSICAL_MODEL_NAMES)}"
        )
    cls = _CLASSES_BY_TYPE[name]
    try:
        return cls(seed=seed, **kwargs)
    except TypeError as error:
        raise ValueError(f"bad settings for classical model {name!r}: {error}") from error


def load_classical(folder: str | Path) -> Classifier:
    """Load any saved classical classifier, choosing the class from the folder's model type."""
    config_path = Path(folder) / CONFIG_FILE
    model_type = None
    if config_path.is_file():
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            model_type = None
    cls = _CLASSES_BY_TYPE.get(str(model_type), LFCCGMMClassifier)
    # An unknown or unreadable folder falls through to load(), which names the problem.
    return cls.load(folder)
