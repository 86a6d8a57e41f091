"""The baseline detectors of 02_cnn and 06_robustness: named once, trained protocol by protocol.

Each detector of :data:`BASELINE_NAMES` is a :class:`~dfa_lib.training.engine.TrainConfig`
built from the notebook parameters gathered in :class:`BaselineSettings`
(:func:`baseline_config`): the network, its front end and how it trains. 06's augmented LCNN
is the same network as 02's ``lcnn``, so a change to one front end reaches both.
:func:`train_on_protocols` loads each training protocol's clips once per cap on clips per
class and trains the configs planned for it (:func:`baseline_plan`), in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dfa_lib.data.augment import AugmentConfig
from dfa_lib.data.protocol_data import prepare_protocol, protocols_for
from dfa_lib.models.networks import phase_lcnn_kwargs
from dfa_lib.training.engine import RunResult, TrainConfig, choose_device, train
from dfa_lib.training.plan import models_to_train, training_groups

# In the order they train (02_cnn trains the ones its `models` parameter names, in this order).
BASELINE_NAMES: tuple[str, ...] = (
    "original_cnn",
    "lcnn",
    "lcnn_phase",
    "resnet",
    "lfcc_gmm",
    "ifd_logreg",
    "ifd_rps_logreg",
    "ifd_rps_logreg_aug",
    "lcnn_aug",
    "rawnet2",
    "aasist",
    "aasist_l",
)
# The raw-waveform reference systems (dfa_lib.models.aasist), trained as their papers train
# them: Adam at 1e-4 with a cosine schedule (the engine's), on fixed-length crops.
RAW_WAVEFORM_BASELINES: tuple[str, ...] = ("rawnet2", "aasist", "aasist_l")


class UnknownBaselineError(ValueError):
    """A notebook or profile names a baseline that :data:`BASELINE_NAMES` does not hold."""


@dataclass(frozen=True)
class BaselineSettings:
    """The notebook parameters the baselines' configs are built from (02_cnn's names).

    The defaults are 02_cnn's; 06_robustness passes the ones it declares (its augmented LCNN
    shares 02's front-end parameters).
    """

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    cnn_epochs: int = 20  # maximum epochs of the original CNN
    spectral_epochs: int = 20  # maximum epochs of the LCNN and the ResNet
    batch_size: int = 32  # clips per batch
    learning_rate: float = 0.001  # Adam learning rate of the LCNN and the ResNet
    cnn_learning_rate: float = 0.0001  # Adam learning rate of the original CNN
    spectral_clip_seconds: float = 1.5  # crop and scoring window of LCNN, ResNet, GMM (s)
    spectral_frontend: str = "mel"  # mel | lfcc | spec | ifd: the LCNN's and ResNet's front end
    spectral_normalize: bool = True  # per-utterance normalisation of magnitude features
    spectral_fmax: float = 4000.0  # top of every filterbank, Hz
    spec_augment: bool = False  # SpecAugment masking while training the LCNN and ResNet
    patience: int = 5  # epochs without a better validation EER before stopping
    cpu_bfloat16: bool = False  # bfloat16 training steps where the CPU has them
    vocoded_fakes: str = ""  # Codec 2 copies of real training clips as fakes (ifd_*logreg)
    aug_vocoded_fakes: str = "3200,1300,700C"  # the same for ifd_rps_logreg_aug
    aug_epochs: int = 12  # maximum epochs of the augmented LCNN
    aug_workers: int = 2  # DataLoader processes that augment its clips on the fly
    raw_epochs: int = 20  # maximum epochs of RawNet2, AASIST and AASIST-L
    raw_learning_rate: float = 0.0001  # their Adam learning rate (both papers: 1e-4)
    raw_clip_seconds: float = 4.0  # their crop and scoring window, s (papers: 64,600 samples)
    raw_max_batches: int = 0  # their batches per epoch at most (0: every batch)
    cache_dir: str = (
        "../data/cache"  # codec outputs of the augmentations go under <cache_dir>/codecs
    )


def spectral_kwargs(settings: BaselineSettings) -> dict[str, Any]:
    """Return the kwargs of the LCNN and ResNet on a magnitude front end (``lcnn``, ``resnet``).

    ``normalize`` and ``spec_augment`` enter only when they differ from the networks'
    defaults, so the default detectors' recorded configs (and their run-folder fingerprints)
    stay what they were.
    """
    kwargs: dict[str, Any] = {
        "frontend": settings.spectral_frontend,
        "frontend_settings": {"f_max": settings.spectral_fmax},
    }
    if not settings.spectral_normalize:
        kwargs["normalize"] = False
    if settings.spec_augment:
        kwargs["spec_augment"] = {}  # dfa_lib.models.networks.SpecAugment defaults
    return kwargs


def _augment(settings: BaselineSettings) -> dict:
    """The default augmentation mix, its codec outputs cached under the cache folder."""
    return AugmentConfig(codec_cache_dir=str(Path(settings.cache_dir) / "codecs")).to_dict()


def baseline_config(name: str, settings: BaselineSettings) -> TrainConfig:
    """Return the training config of the baseline ``name`` (one of :data:`BASELINE_NAMES`)."""
    s = settings
    spectral = spectral_kwargs(s)
    # The torch networks of 02 share these; the classical models fit once and take none.
    torch_training = {
        "batch_size": s.batch_size,
        "patience": s.patience,
        "seed": s.seed,
        "device": s.device,
        "cpu_bfloat16": s.cpu_bfloat16,
    }
    spectral_training = {
        **torch_training,
        "clip_seconds": s.spectral_clip_seconds,
        "epochs": s.spectral_epochs,
        "learning_rate": s.learning_rate,
    }
    phase_statistics = {"ifd": {"f_max": s.spectral_fmax}}
    if name == "original_cnn":
        return TrainConfig(
            name=name,
            model="original_cnn",
            clip_seconds=1.0,
            epochs=s.cnn_epochs,
            learning_rate=s.cnn_learning_rate,
            **torch_training,
        )
    if name in ("lcnn", "resnet"):
        return TrainConfig(name=name, model=name, model_kwargs=spectral, **spectral_training)
    if name == "lcnn_phase":
        kwargs = phase_lcnn_kwargs(s.spectral_fmax)
        return TrainConfig(name=name, model="lcnn", model_kwargs=kwargs, **spectral_training)
    if name == "lfcc_gmm":
        return TrainConfig(
            name=name,
            model=name,
            model_kwargs={"lfcc": {"f_max": s.spectral_fmax}},
            clip_seconds=s.spectral_clip_seconds,
            seed=s.seed,
        )
    if name in ("ifd_logreg", "ifd_rps_logreg"):
        return TrainConfig(
            name=name,
            model=name,
            model_kwargs=phase_statistics,
            clip_seconds=s.spectral_clip_seconds,
            seed=s.seed,
            # Only these two get the copies (the README measures what they change).
            vocoded_fakes=s.vocoded_fakes,
        )
    if name == "ifd_rps_logreg_aug":
        # The harmonic phase regression fitted once on one augmented copy of each training
        # clip, beside the clips and Codec 2 copies of the real ones.
        return TrainConfig(
            name=name,
            model="ifd_rps_logreg",
            model_kwargs=phase_statistics,
            clip_seconds=s.spectral_clip_seconds,
            seed=s.seed,
            augment=_augment(s),
            vocoded_fakes=s.aug_vocoded_fakes,
        )
    if name in RAW_WAVEFORM_BASELINES:
        return TrainConfig(
            name=name,
            model=name,
            clip_seconds=s.raw_clip_seconds,
            epochs=s.raw_epochs,
            learning_rate=s.raw_learning_rate,
            max_batches_per_epoch=s.raw_max_batches or None,
            **torch_training,
        )
    if name == "lcnn_aug":
        # 02's LCNN trained on augmented clips; the engine's default batch, learning rate and
        # patience, as 06_robustness has always trained it.
        return TrainConfig(
            name=name,
            model="lcnn",
            model_kwargs=spectral,
            clip_seconds=s.spectral_clip_seconds,
            epochs=s.aug_epochs,
            seed=s.seed,
            device=s.device,
            augment=_augment(s),
            num_workers=s.aug_workers,
            cpu_bfloat16=s.cpu_bfloat16,
        )
    raise UnknownBaselineError(f"unknown baseline {name!r}; choose from {list(BASELINE_NAMES)}")


def baseline_configs(names: Sequence[str], settings: BaselineSettings) -> list[TrainConfig]:
    """Return the configs of the named baselines in :data:`BASELINE_NAMES` order.

    Raises :class:`UnknownBaselineError` for a name that is not a baseline, so a misspelt
    model in a profile fails before any training instead of being skipped.
    """
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise UnknownBaselineError(
            f"unknown baseline(s) {unknown}; choose from {list(BASELINE_NAMES)}"
        )
    return [baseline_config(n, settings) for n in BASELINE_NAMES if n in names]


def selected_protocols(spec: str, dataset: str, exclude: Sequence[str] = ()) -> list[str]:
    """Return the comma-separated protocols of ``spec`` that ``dataset`` has, minus ``exclude``.

    A protocol the dataset lacks (the offline corpus's rotations on Fake-or-Real, say) is
    dropped rather than failing, so one profile serves every dataset.
    """
    available = protocols_for(dataset)
    return [p for p in spec.split(",") if p in available and p not in exclude]


@dataclass
class BaselinePlan:
    """Which baselines train on which protocol, in order, and why (for the report)."""

    protocols: dict[str, list[TrainConfig]]  # training protocol -> configs, in training order
    device_type: str  # torch.device.type the torch networks train on
    gpu_added: list[str] = field(default_factory=list)  # models gpu_models added off the CPU

    def describe(self) -> str:
        """Return what will train where, one line per group of protocols."""
        lines = [
            f"device: {self.device_type}"
            + (f" (gpu_models added: {self.gpu_added})" if self.gpu_added else "")
        ]
        groups: dict[tuple[str, ...], list[str]] = {}
        for protocol, configs in self.protocols.items():
            groups.setdefault(tuple(c.name for c in configs), []).append(protocol)
        for models, protocols in groups.items():
            lines.append(f"protocols {protocols}: models {list(models)}")
        return "\n".join(lines)


def baseline_plan(
    settings: BaselineSettings,
    dataset: str,
    protocols: str,
    models: str,
    gpu_models: str = "",
    extra_protocols: str = "",
    extra_models: str = "",
) -> BaselinePlan:
    """Plan 02_cnn's training: ``models`` on each of ``protocols``, ``extra_models`` on more.

    Every argument but ``settings`` and ``dataset`` is a comma-separated list. ``gpu_models``
    join ``models`` when the device is not the CPU (:func:`models_to_train`). The extra
    protocols train only the extra models that are also among the models (cheap ones, such as
    ``ifd_logreg``); a protocol named in both lists trains as a main one.
    """
    device_type = choose_device(settings.device).type
    names, added = models_to_train(models, gpu_models, device_type)
    extra_names, _ = models_to_train(extra_models, gpu_models, device_type)
    configs = baseline_configs(names, settings)
    extra_configs = [c for c in configs if c.name in extra_names]
    main = selected_protocols(protocols, dataset)
    extra = selected_protocols(extra_protocols, dataset, exclude=main) if extra_configs else []
    plan = {p: configs for p in main} | {p: extra_configs for p in extra}
    return BaselinePlan(plan, device_type, added)


@dataclass
class ProtocolTraining:
    """What :func:`train_on_protocols` trained: results and the clips each load counted."""

    results: dict[str, list[RunResult]]  # training protocol -> one result per config
    counts: list[tuple[str, list[str], pd.DataFrame]]  # (protocol, models, clips by split)

    def validation_table(self) -> pd.DataFrame:
        """One row per run: validation EER (%) at the best epoch, threshold, time, reuse."""
        return pd.DataFrame(
            [
                {
                    "protocol": protocol,
                    "model": r.config.name,
                    "best_epoch": r.best_epoch,
                    "val_eer_%": 100 * r.val_eer,
                    "threshold": r.threshold,
                    "train_s": round(r.seconds, 1),
                    "reused": r.reused,
                    "folder": str(r.folder),
                }
                for protocol, runs in self.results.items()
                for r in runs
            ],
            columns=[
                "protocol",
                "model",
                "best_epoch",
                "val_eer_%",
                "threshold",
                "train_s",
                "reused",
                "folder",
            ],
        )


def train_on_protocols(
    plan: dict[str, Sequence[TrainConfig]],
    dataset: str,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    runs_dir: str | os.PathLike,
    max_per_class: int = 0,
    logreg_max_per_class: int = -1,
    seed: int = 0,
) -> ProtocolTraining:
    """Train each protocol's configs into ``<runs_dir>/<protocol>/<name>``, protocol by protocol.

    A protocol's training and validation clips are loaded once per cap on clips per class
    (:func:`training_groups`: ``max_per_class``, 0 for every clip; ``logreg_max_per_class``
    for the logistic regressions, -1 for the same cap), then its configs of that cap train in
    order. A run folder already trained on the same config and clips is reused.
    """
    results: dict[str, list[RunResult]] = {}
    counts = []
    for protocol, configs in plan.items():
        results[protocol] = []
        for cap, group in training_groups(configs, max_per_class, logreg_max_per_class):
            data = prepare_protocol(
                dataset,
                protocol,
                data_dir,
                cache_dir,
                max_per_class=cap,
                seed=seed,
                splits=("training", "validation"),
            )
            table = pd.DataFrame(data.info["counts"]).T.rename_axis(f"{protocol} split")
            counts.append((protocol, [c.name for c in group], table))
            results[protocol] += train(
                group,
                data.frames["training"],
                data.frames["validation"],
                data.stores["training"],
                data.stores["validation"],
                Path(runs_dir) / protocol,
                dataset=data.info,
            )
    return ProtocolTraining(results, counts)
