"""Ablations: one detector trained in several variants on the same data, tested side by side.

``python -m dfa_lib.studies.ablation <study> --data-dir data`` trains every variant of a study on
one protocol's training split (capped per class), keeps the best validation epoch, scores the
complete test split (and that of every protocol answered by the same training, such as
``cross-source`` for ``in-domain``: a choice that helps in-domain can hurt elsewhere) and
writes ``<out>/ablation_<study>.json`` and ``.md`` (other settings, fusions or a subset of the
variants add themselves to the name: :func:`report_stem`; run folders under
``runs/ablation/<study>/``, or ``runs/ablation/<settings>/<study>/`` for other settings:
:func:`runs_folder`): the table behind a design choice (which front end, which
regularisation), reproducible from the repository. Variants of a study differ only in the
settings they name; seed, data and budget are shared.

Studies (:data:`STUDIES`):

- ``lcnn-frontend``: the LCNN on LFCC or log-mel features, with filterbanks to 8 or 4 kHz;
- ``lcnn-specaugment``: the log-mel LCNN without and with SpecAugment feature masking;
- ``lcnn-resolution``: 80 mel bands against 257 log-spectrogram bins (15.6 Hz apart) to 4 kHz,
  each with and without per-utterance normalisation (which removes each bin's mean over time,
  the long-term spectrum);
- ``lcnn-phase``: log-mel against the same STFT's log power bins alone and with their
  instantaneous-frequency deviation (the ``ifd`` front end: phase, which magnitude features
  discard), with and without per-utterance normalisation, and with SpecAugment;
- ``lcnn-pooling``: mean and standard deviation over time against attentive statistics
  pooling (attention-weighted ones), on log-mel and on unnormalised phase features;
- ``cpu-bfloat16``: the log-mel and the unnormalised phase LCNN trained in float32 and with
  bfloat16 training steps (``cpu_bfloat16``; on a CPU without native bfloat16 both train in
  float32). ``--cpu-bfloat16`` trains every variant of any study that way;
- ``phase-statistics``: the logistic regression on STFT phase statistics (``ifd_logreg``)
  against the same with the relative phase shift of each harmonic (``ifd_rps_logreg``), with
  a refined F0, fewer harmonics, sparser frames or weaker regularisation (seconds each);
- ``vocoded-fakes``: the phase regressions and the log-mel LCNN trained as they are and with
  one Codec 2 copy of each real training clip added as a fake (``TrainConfig.vocoded_fakes``,
  :mod:`dfa_lib.data.copysynth`); and the harmonic phase regression fitted on one augmented copy of
  each clip beside it (``augment``), without and with the copies.

One run per variant is one draw of the training: another seed (another subset of clips and
another initialisation), or another machine, can move an LCNN's EER by several points.
``--seeds 0,1,2`` runs the study once per seed, exactly as ``--seed`` runs it, and adds a
table of every variant's EERs under each seed, their mean and spread, and in how many seeds
each variant beat the first (:func:`seed_summary`).

A variant can also be judged by what it adds to detectors already trained: ``--fuse-with
FOLDER[,FOLDER...]`` (repeatable; run folders trained on the same protocol's split, such as
``runs/default/offline/in-domain/whisper-base_probe``) fuses each variant with those folders
(:mod:`dfa_lib.detector.fusion`, fitted on validation as in ``05_evaluation``) and adds the fusion's
test EER, with its interval, and its EER on the other protocols the folders were scored on.

On a GPU the variants train with mixed precision, so their numbers are not the CPU's: the
device type joins the settings in the names (``runs/ablation/cuda/lcnn-phase/``,
``ablation_lcnn-phase_cuda``). ``--own-test-only`` scores the protocol's own test split alone,
for a machine that holds only that protocol's corpus; ``dfa evaluate`` scores the folders on
the other protocols later, where their corpora are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dfa_lib.data.protocol_data import prepare_protocol, protocol_labels, protocols_for
from dfa_lib.data.protocols import TRAINED_ON
from dfa_lib.detector.fusion import FusionError, fit_fusion
from dfa_lib.detector.validation import validation_scores
from dfa_lib.evaluation.evaluate import (
    eer_intervals,
    evaluate_run,
    format_interval,
    paired_difference,
)
from dfa_lib.evaluation.fusions import evaluate_fusion
from dfa_lib.features.frontends import IFDConfig
from dfa_lib.models.networks import phase_lcnn_kwargs
from dfa_lib.training.engine import TrainConfig, TrainingError, choose_device, train

__all__ = [
    "STUDIES",
    "Variant",
    "build_parser",
    "check_fusable",
    "main",
    "markdown_table",
    "parse_seeds",
    "report_stem",
    "run_study",
    "runs_folder",
    "seed_summary",
    "select_variants",
    "setting_names",
    "with_codec_cache",
]


@dataclass(frozen=True)
class Variant:
    """One trained variant: a name and the TrainConfig fields it sets."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)


def _lcnn(
    frontend: str, f_max: float, framing: dict[str, int] | None = None, **model: Any
) -> dict[str, Any]:
    settings = {"f_max": f_max, **(framing or {})}
    return {
        "model": "lcnn",
        "model_kwargs": {"frontend": frontend, "frontend_settings": settings, **model},
    }


def _ifd_grid() -> dict[str, int]:
    # The ifd front end's STFT grid (32 ms windows every 10 ms), for log power alone.

    grid = IFDConfig()
    return {"n_fft": grid.n_fft, "win_length": grid.win_length, "hop_length": grid.hop_length}


def _phase(model: str, C: float | None = None, **rps: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ifd": {"f_max": 4000.0}}
    if rps:
        kwargs["rps"] = rps
    if C is not None:
        kwargs["C"] = C
    return {"model": model, "model_kwargs": kwargs}


# dfa_lib.data.augment.AugmentConfig's defaults (a non-empty dict: an empty one means no augmentation);
# the study's command line points the codec stage at the cache folder (with_codec_cache).
DEFAULT_AUGMENT: dict[str, Any] = {"codec_cache_dir": None}

# The Codec 2 modes whose copies of the real training clips the vocoded-fakes study adds.
CODEC2_COPIES = "3200,1300,700C"

STUDIES: dict[str, tuple[Variant, ...]] = {
    "lcnn-frontend": (
        Variant("lfcc-8k", _lcnn("lfcc", 8000.0)),
        Variant("lfcc-4k", _lcnn("lfcc", 4000.0)),
        Variant("mel-8k", _lcnn("mel", 8000.0)),
        Variant("mel-4k", _lcnn("mel", 4000.0)),
    ),
    "lcnn-specaugment": (
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("mel-4k+specaugment", _lcnn("mel", 4000.0, spec_augment={})),
    ),
    "lcnn-resolution": (
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("mel-4k-unnormalised", _lcnn("mel", 4000.0, normalize=False)),
        Variant("spec-4k", _lcnn("spec", 4000.0)),
        Variant("spec-4k-unnormalised", _lcnn("spec", 4000.0, normalize=False)),
    ),
    "lcnn-phase": (
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("spec512-4k", _lcnn("spec", 4000.0, _ifd_grid())),
        Variant("ifd-4k", _lcnn("ifd", 4000.0)),
        Variant("ifd-4k-unnormalised", _lcnn("ifd", 4000.0, normalize=False)),
        Variant(
            "ifd-4k-unnormalised-20ms", _lcnn("ifd", 4000.0, {"hop_length": 320}, normalize=False)
        ),
        Variant(
            "ifd-4k-unnormalised+specaugment",
            {"model": "lcnn", "model_kwargs": phase_lcnn_kwargs(4000.0)},
        ),
    ),
    "lcnn-pooling": (
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("mel-4k-attentive", _lcnn("mel", 4000.0, pooling="attentive")),
        Variant("ifd-4k-unnormalised", _lcnn("ifd", 4000.0, normalize=False)),
        Variant(
            "ifd-4k-unnormalised-attentive",
            _lcnn("ifd", 4000.0, normalize=False, pooling="attentive"),
        ),
    ),
    "cpu-bfloat16": (
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("mel-4k-bfloat16", {**_lcnn("mel", 4000.0), "cpu_bfloat16": True}),
        Variant("ifd-4k-unnormalised", _lcnn("ifd", 4000.0, normalize=False)),
        Variant(
            "ifd-4k-unnormalised-bfloat16",
            {**_lcnn("ifd", 4000.0, normalize=False), "cpu_bfloat16": True},
        ),
    ),
    "phase-statistics": (
        Variant("ifd", _phase("ifd_logreg")),
        Variant("ifd+rps", _phase("ifd_rps_logreg")),
        Variant("ifd+rps-refined-f0", _phase("ifd_rps_logreg", dio_speed=4, refine_f0=True)),
        Variant("ifd+rps-6-harmonics", _phase("ifd_rps_logreg", n_harmonics=6)),
        Variant("ifd+rps-20ms", _phase("ifd_rps_logreg", frame_period_ms=20.0)),
        Variant("ifd+rps-C0.1", _phase("ifd_rps_logreg", C=0.1)),
    ),
    "vocoded-fakes": (
        Variant("ifd+rps", _phase("ifd_rps_logreg")),
        Variant("ifd+rps+codec2", {**_phase("ifd_rps_logreg"), "vocoded_fakes": CODEC2_COPIES}),
        Variant("ifd", _phase("ifd_logreg")),
        Variant("ifd+codec2", {**_phase("ifd_logreg"), "vocoded_fakes": CODEC2_COPIES}),
        Variant("mel-4k", _lcnn("mel", 4000.0)),
        Variant("mel-4k+codec2", {**_lcnn("mel", 4000.0), "vocoded_fakes": CODEC2_COPIES}),
        # The regression fitted once on one augmented copy of each clip, without and with the
        # copies: the second is 02_cnn's ifd_rps_logreg_aug.
        Variant("ifd+rps+aug", {**_phase("ifd_rps_logreg"), "augment": DEFAULT_AUGMENT}),
        Variant(
            "ifd+rps+aug+codec2",
            {
                **_phase("ifd_rps_logreg"),
                "augment": DEFAULT_AUGMENT,
                "vocoded_fakes": CODEC2_COPIES,
            },
        ),
    ),
}


def with_codec_cache(variants: Sequence[Variant], cache_dir: str | Path) -> list[Variant]:
    """Return ``variants`` with the augmentation of those that augment caching its codec outputs
    under ``cache_dir`` (as ``02_cnn`` and ``06_robustness`` do), unless they name a folder."""
    out = []
    for variant in variants:
        augment = variant.settings.get("augment")
        if augment and augment.get("codec_cache_dir") is None:
            augment = {**augment, "codec_cache_dir": str(cache_dir)}
            variant = replace(variant, settings={**variant.settings, "augment": augment})
        out.append(variant)
    return out


def select_variants(study: str, names: str | None = None) -> tuple[Variant, ...]:
    """Return the variants of ``study`` named in ``names`` (comma-separated), in that order.

    ``None`` or an empty string selects every variant; an unknown study or variant is a
    ``KeyError`` that lists the choices.
    """
    if study not in STUDIES:
        raise KeyError(f"unknown study {study!r}; choose from {sorted(STUDIES)}")
    variants = STUDIES[study]
    wanted = [name.strip() for name in (names or "").split(",") if name.strip()]
    if not wanted:
        return variants
    known = {variant.name: variant for variant in variants}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise KeyError(f"study {study!r} has no variant {unknown}; it has {sorted(known)}")
    return tuple(known[name] for name in wanted)


def run_study(
    study: str,
    data,
    test,
    runs_dir: str | Path,
    epochs: int = 15,
    patience: int = 4,
    clip_seconds: float = 1.5,
    seed: int = 0,
    device: str = "auto",
    n_boot: int = 200,
    variants: Sequence[Variant] | None = None,
    also: Sequence = (),
    fuse_with: Sequence[Sequence[Path]] = (),
    labels: pd.Series | None = None,
    cpu_bfloat16: bool = False,
) -> pd.DataFrame:
    """Train and test every variant of ``study``; return one row per variant.

    ``data`` holds the training and validation splits, ``test`` the testing split (both
    :class:`~dfa_lib.data.protocol_data.ProtocolData`); each of ``also`` (testing splits of other
    protocols) adds a ``<protocol>_eer_%`` column. Run folders go to ``<runs_dir>/<study>/``.

    Beside the test EER and its interval over clips: its interval over fake voices
    (``test_eer_voice_ci_%``), and the difference from the first variant,
    ``vs_<first>_%`` (negative: lower EER), with paired bootstrap intervals over clips and
    over voices (:func:`dfa_lib.evaluation.evaluate.paired_difference`). A difference whose interval
    holds 0 is not one this test split can show.

    Each group of ``fuse_with`` (detector folders trained on the same split) is fused with
    every variant on the validation ``labels`` (:func:`dfa_lib.detector.fusion.protocol_labels`); the
    fusion folders go to ``<runs_dir>/<study>/`` and add ``+<group>_eer_%`` and
    ``+<group>_ci_%`` columns, and ``+<group>_<protocol>_eer_%`` for each of ``also`` that
    every member of the group was scored on (see :func:`check_fusable`).
    """

    if variants is None:
        variants = select_variants(study)
    base = TrainConfig(
        name="base",
        model="lcnn",
        clip_seconds=clip_seconds,
        epochs=epochs,
        patience=patience,
        seed=seed,
        device=device,
        cpu_bfloat16=cpu_bfloat16,
    )
    rows, reference = [], None
    for variant in variants:
        config = replace(base, name=variant.name, **variant.settings)
        start = time.perf_counter()
        (result,) = train(
            [config],
            data.frames["training"],
            data.frames["validation"],
            data.stores["training"],
            data.stores["validation"],
            Path(runs_dir) / study,
            dataset=data.info,
        )
        metrics = evaluate_run(result.folder, test, n_boot=n_boot, seed=seed)
        scored = pd.read_csv(Path(result.folder) / "scores" / f"{test.protocol}.scored.csv")
        voices = eer_intervals(scored, n_boot=n_boot, seed=seed)["ci_voices_%"]
        if reference is None:
            reference = (variant.name, scored)
        versus = paired_difference(reference[1], scored, n_boot=n_boot, seed=seed)
        rows.append(
            {
                "variant": variant.name,
                "best_epoch": result.best_epoch,
                "val_eer_%": 100 * result.val_eer,
                "test_eer_%": 100 * metrics["eer"],
                "test_eer_ci_%": f"{100 * metrics['eer_ci_low']:.1f}-"
                f"{100 * metrics['eer_ci_high']:.1f}",
                "test_eer_voice_ci_%": format_interval(voices),
                f"vs_{reference[0]}_%": versus["diff_%"],
                "vs_ci_clips_%": format_interval(versus["ci_clips_%"]),
                "vs_ci_voices_%": format_interval(versus["ci_voices_%"]),
                "test_auc": metrics["auc"],
                **{
                    f"{other.protocol}_eer_%": 100
                    * evaluate_run(result.folder, other, n_boot=n_boot, seed=seed)["eer"]
                    for other in also
                },
                **_fused_columns(result.folder, fuse_with, labels, test, also, n_boot, seed),
                "seconds": round(time.perf_counter() - start, 1),
                "reused": result.reused,
            }
        )
    return pd.DataFrame(rows)


def check_fusable(groups: Sequence[Sequence[Path]], data) -> None:
    """Raise ValueError unless every folder of ``groups`` can be fused with this study's runs.

    A member must be a trained run folder whose validation scores cover exactly the validation
    clips of ``data`` (the split the variants will be trained on) and that was scored on the
    test protocol; checked before any training.
    """

    wanted = set(data.frames["validation"]["path"])
    for group in groups:
        for folder in group:
            if not Path(folder).is_dir():
                raise ValueError(f"--fuse-with {folder}: no such folder")
            try:
                clips = set(validation_scores(folder).index)
            except FusionError as error:  # its message starts with the folder
                raise ValueError(f"--fuse-with {error}") from error
            if clips != wanted:
                raise ValueError(
                    f"--fuse-with {folder}: its validation scores cover {len(clips)} clips, "
                    f"{len(clips & wanted)} of them among the {len(wanted)} validation clips "
                    f"of {data.protocol}; fuse folders trained on the same protocol's split"
                )
            scored = Path(folder) / "scores" / f"{data.protocol}.scored.csv"
            if not scored.is_file():
                raise ValueError(
                    f"--fuse-with {folder}: not evaluated on {data.protocol} (no {scored.name}); "
                    "run 05_evaluation (or dfa evaluate) on it first"
                )


def _fused_columns(
    folder: Path,
    groups: Sequence[Sequence[Path]],
    labels: pd.Series | None,
    test,
    also: Sequence,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Fit each group's fusion with ``folder``; return its EER columns (see run_study)."""

    columns: dict[str, Any] = {}
    for group in groups:
        if labels is None:
            raise ValueError("fusing needs the validation labels (fusion.protocol_labels)")
        name = "+".join(Path(f).name for f in group)
        fused = fit_fusion([Path(folder), *map(Path, group)], labels, out_dir=Path(folder).parent)
        metrics = evaluate_fusion(fused, test.protocol, n_boot=n_boot, seed=seed)
        columns[f"+{name}_eer_%"] = 100 * metrics["eer"]
        columns[f"+{name}_ci_%"] = (
            f"{100 * metrics['eer_ci_low']:.1f}-{100 * metrics['eer_ci_high']:.1f}"
        )
        for other in also:
            if all((Path(f) / "scores" / f"{other.protocol}.scored.csv").is_file() for f in group):
                other_metrics = evaluate_fusion(fused, other.protocol, n_boot=n_boot, seed=seed)
                columns[f"+{name}_{other.protocol}_eer_%"] = 100 * other_metrics["eer"]
    return columns


def markdown_table(table: pd.DataFrame) -> str:
    """Render a table as GitHub Markdown (floats to two decimals)."""

    def cell(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(map(str, table.columns)) + " |",
        "|" + "---|" * len(table.columns),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)),
    ]
    return "\n".join(lines) + "\n"


def setting_names(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """Name each training setting of ``args`` that differs from the parser's default.

    In a fixed order: dataset, protocol, clips per class, epochs, patience, seed, bfloat16,
    then the device type where it is not the CPU (``cuda``: mixed-precision training, so other
    numbers than the CPU's float32 ones; ``--device auto`` is named by what it resolves to).
    """

    parts = []

    def changed(name: str) -> bool:
        return getattr(args, name) != parser.get_default(name)

    for name in ("dataset", "protocol"):
        if changed(name):
            parts.append(str(getattr(args, name)))
    if changed("max_per_class"):
        parts.append("all-clips" if not args.max_per_class else f"{args.max_per_class}-per-class")
    for name, text in (("epochs", "{}-epochs"), ("patience", "patience{}"), ("seed", "seed{}")):
        if changed(name):
            parts.append(text.format(getattr(args, name)))
    if args.cpu_bfloat16:
        parts.append("bfloat16")
    device = choose_device(args.device).type
    if device != "cpu":
        parts.append(device)
    return parts


def runs_folder(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Return where the study's run folders go: ``<runs-dir>[/<settings>]/<study>/``.

    Runs under the default settings keep ``<runs-dir>/<study>/``; other settings get a folder
    of their own (``runs/ablation/lofo-gan-vocoder_bfloat16/lcnn-phase/``), so that a run
    on another protocol or seed never replaces the default run's models.
    """
    settings = setting_names(args, parser)
    root = Path(args.runs_dir)
    return (root / "_".join(settings) if settings else root) / args.study


def report_stem(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """Return the tables' file name without suffix: ``ablation_<study>`` plus what differs.

    The study's whole set of variants under the default settings writes
    ``ablation_<study>``; a run with other settings, fusions or a subset of the variants adds
    them to the name (``ablation_lcnn-phase_all-clips_seed1_mel-4k``), so that it never
    overwrites the full study's tables.
    """
    parts = [f"ablation_{args.study}", *setting_names(args, parser)]
    if args.own_test_only:
        parts.append("own-test-only")
    if args.fuse_with:
        parts.append("fused")
    chosen = [v.name for v in select_variants(args.study, args.variants)]
    if chosen != [v.name for v in STUDIES[args.study]]:
        parts.append(",".join(chosen))
    return "_".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """Return the command line's parser."""
    parser = argparse.ArgumentParser(prog="python -m dfa_lib.studies.ablation", description=__doc__)
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--dataset", default="offline")
    parser.add_argument("--protocol", default="in-domain")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--cache-dir", default=None, help="decoded audio (default: <data>/cache)")
    parser.add_argument("--out", default="reports", help="folder for the tables")
    parser.add_argument("--runs-dir", default="runs/ablation", help="folder for the run folders")
    parser.add_argument("--max-per-class", type=int, default=1000, help="0 keeps every clip")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds: the study once per seed (as --seed), then a table of all",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--cpu-bfloat16",
        action="store_true",
        help="bfloat16 training steps on a CPU that has them natively (TrainConfig.cpu_bfloat16)",
    )
    parser.add_argument(
        "--variants", default=None, help="comma-separated subset of the study's variants"
    )
    parser.add_argument(
        "--own-test-only",
        action="store_true",
        help="score the protocol's own test split only, not the other protocols it answers "
        "(such as cross-source for in-domain), e.g. where their corpora are not on the machine",
    )
    parser.add_argument(
        "--fuse-with",
        action="append",
        default=[],
        metavar="FOLDER[,FOLDER]",
        help="also fuse each variant with these trained run folders (repeatable: one fusion each)",
    )
    return parser


def parse_seeds(text: str) -> list[int]:
    """Return the distinct seeds of a comma-separated list, in order; at least two."""
    try:
        seeds = list(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError as error:
        raise ValueError(f"--seeds takes comma-separated integers, got {text!r}") from error
    if len(seeds) < 2:
        raise ValueError(f"--seeds needs at least two different seeds, got {text!r}")
    return seeds


def seed_summary(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Summarise one study run under several seeds: one row per variant.

    ``tables`` maps each seed to its :func:`run_study` table (same variants, same columns).
    For each EER column (the test split's, each other protocol's and each fusion's) the row
    gives the value under every seed (``<column>_per_seed``, text), their mean and their
    spread (largest minus smallest). Against the first variant it gives the difference under
    every seed, its mean and in how many seeds the variant had the lower EER (``lower_in``).
    A difference that changes sign from seed to seed is one that another training run would
    not repeat, whatever its bootstrap interval under any single seed.
    """
    seeds = list(tables)
    if not seeds:
        raise ValueError("no tables to summarise")
    first = tables[seeds[0]]
    for seed in seeds[1:]:
        if tables[seed]["variant"].tolist() != first["variant"].tolist():
            raise ValueError(f"seed {seed} ran other variants than seed {seeds[0]}")
    indexed = {seed: table.set_index("variant") for seed, table in tables.items()}
    reference = first["variant"].iloc[0]
    versus = f"vs_{reference}_%"
    columns = [c for c in first.columns if c.endswith("eer_%") and not c.startswith("vs_")]
    rows = []
    for variant in first["variant"]:
        row: dict[str, Any] = {"variant": variant}
        for column in columns:
            values = [float(indexed[seed].loc[variant, column]) for seed in seeds]
            name = column.removesuffix("_%")
            row[f"{name}_per_seed"] = " / ".join(f"{v:.1f}" for v in values)
            row[f"{name}_mean_%"] = sum(values) / len(values)
            row[f"{name}_spread"] = max(values) - min(values)
        diffs = [float(indexed[seed].loc[variant, versus]) for seed in seeds]
        row[f"vs_{reference}_per_seed"] = " / ".join(f"{d:+.1f}" for d in diffs)
        row[f"vs_{reference}_mean_%"] = sum(diffs) / len(diffs)
        row["lower_in"] = (
            "-" if variant == reference else f"{sum(d < 0 for d in diffs)} of {len(diffs)} seeds"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, variants) -> pd.DataFrame:
    """Run the study under ``args`` (one seed); write its tables and return its table."""

    cache = args.cache_dir or str(Path(args.data_dir) / "cache")
    variants = with_codec_cache(variants, Path(cache) / "codecs")
    common = {"data_dir": args.data_dir, "cache_dir": cache, "seed": args.seed}
    data = prepare_protocol(
        args.dataset,
        args.protocol,
        max_per_class=args.max_per_class or None,
        splits=("training", "validation"),
        **common,
    )
    test = prepare_protocol(args.dataset, args.protocol, splits=("testing",), **common)
    groups = [[Path(f) for f in spec.split(",") if f] for spec in args.fuse_with]
    labels = None
    if groups:
        try:
            check_fusable(groups, data)
        except ValueError as error:
            parser.error(str(error))
        labels = protocol_labels(args.dataset, args.protocol, args.data_dir, seed=args.seed)
    also = [
        prepare_protocol(args.dataset, other, splits=("testing",), **common)
        for other in protocols_for(args.dataset)
        if other != args.protocol
        and TRAINED_ON.get(other) == args.protocol
        and not args.own_test_only
    ]
    table = run_study(
        args.study,
        data,
        test,
        runs_folder(args, parser).parent,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        cpu_bfloat16=args.cpu_bfloat16,
        variants=variants,
        also=also,
        fuse_with=groups,
        labels=labels,
    )
    record = {
        "study": args.study,
        "arguments": vars(args),
        "data": data.info,
        "variants": {v.name: v.settings for v in variants},
        "results": table.to_dict("records"),
    }
    _write_tables(Path(args.out), report_stem(args, parser), table, record)
    return table


def _write_tables(out: Path, stem: str, table: pd.DataFrame, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown_table(table))
    print(table.to_string(index=False))
    print(f"tables: {out / stem}.md and .json")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one study from the command line and write its JSON and Markdown tables.

    With ``--seeds`` the study runs once per seed, exactly as ``--seed`` would run it (same
    run folders and tables), and :func:`seed_summary` of the runs goes to
    ``<stem>_seeds<a>-<b>...``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        variants = select_variants(args.study, args.variants)
    except KeyError as error:
        parser.error(error.args[0])

    try:
        setting_names(args, parser)  # resolves --device: a missing GPU fails before any data
    except TrainingError as error:
        parser.error(str(error))
    if args.seeds is None:
        _run(args, parser, variants)
        return 0
    if args.seed != parser.get_default("seed"):
        parser.error("give either --seed or --seeds, not both")
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as error:
        parser.error(str(error))
    tables = {
        seed: _run(
            argparse.Namespace(**{**vars(args), "seed": seed, "seeds": None}), parser, variants
        )
        for seed in seeds
    }
    summary = seed_summary(tables)
    record = {
        "study": args.study,
        "arguments": vars(args),
        "seeds": seeds,
        "variants": {v.name: v.settings for v in variants},
        "summary": summary.to_dict("records"),
        "per_seed": {str(seed): table.to_dict("records") for seed, table in tables.items()},
    }
    stem = f"{report_stem(args, parser)}_seeds{'-'.join(map(str, seeds))}"
    _write_tables(Path(args.out), stem, summary, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
