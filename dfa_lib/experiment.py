"""From a dataset name and a protocol to decoded training, validation and test clips.

This is the data step every training and evaluation notebook shares: load the manifest
(:func:`dfa_lib.datasets.load_dataset`), apply a protocol (:mod:`dfa_lib.protocols`), take a
seeded stratified subset if asked, and decode each split once into a cached
:class:`~dfa_lib.clips.ClipStore`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from dfa_lib.clips import ClipStore, decode_clips
from dfa_lib.labels import SPLITS
from dfa_lib.manifest import manifest_checksum

if TYPE_CHECKING:
    from dfa_lib.train import TrainConfig

OFFLINE = "offline"
MAIN_CORPUS, CROSS_CORPUS = "offline-main", "offline-cross"


class ProtocolUnavailableError(ValueError):
    """The dataset lacks the metadata or the second corpus that a protocol needs."""


@dataclass
class ProtocolData:
    """The three splits of one protocol: manifest rows and their decoded clips."""

    dataset: str
    protocol: str
    root: Path
    frames: dict[str, pd.DataFrame]
    stores: dict[str, ClipStore] = field(default_factory=dict)

    @property
    def info(self) -> dict:
        """Describe the data for run folders and reports (name, protocol, checksums, counts)."""
        counts = {
            split: df["label"].value_counts().reindex(["real", "fake"], fill_value=0).to_dict()
            for split, df in self.frames.items()
        }
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "checksums": {s: manifest_checksum(df) for s, df in self.frames.items()},
            "counts": counts,
        }


def protocols_for(dataset: str) -> list[str]:
    """Return the protocols a dataset supports (FoR and user data: its own split only)."""
    from dfa_lib.protocols import PROTOCOLS

    if dataset == OFFLINE:
        return list(PROTOCOLS)
    return ["in-domain"]


def models_to_train(models: str, gpu_models: str, device_type: str) -> tuple[list[str], list[str]]:
    """Return the model names a notebook trains, and those it adds on any device but the CPU.

    ``models`` and ``gpu_models`` are comma-separated names (empty entries ignored);
    ``device_type`` is ``torch.device.type`` of the device the run trains on. Models that cost
    too much on a CPU are named in ``gpu_models`` and join the list only elsewhere, so one
    profile serves both. The second list is what ``gpu_models`` added (for the report).
    """
    names = [m for m in models.split(",") if m]
    extra = [m for m in gpu_models.split(",") if m] if device_type != "cpu" else []
    added = [m for m in dict.fromkeys(extra) if m not in names]
    return names + added, added


def load_protocol_frames(
    dataset: str, protocol: str, data_dir: str | os.PathLike, seed: int = 0
) -> tuple[Path, pd.DataFrame]:
    """Return ``(root, rows)``: the protocol's rows with ``split`` set and paths under ``root``."""
    from dfa_lib.datasets import load_dataset
    from dfa_lib.protocols import apply_protocol

    data_dir = Path(data_dir)
    if protocol not in protocols_for(dataset):
        raise ProtocolUnavailableError(
            f"protocol {protocol!r} needs the offline corpus's metadata; "
            f"dataset {dataset!r} supports {protocols_for(dataset)}"
        )
    if dataset != OFFLINE:
        df, root = load_dataset(dataset, data_dir)
        if df["split"].isna().any():
            raise ProtocolUnavailableError(
                f"dataset {dataset!r} has rows without a split: give it a `split` column "
                "(training/validation/testing) or use FoR's folder layout"
            )
        return Path(root), df
    main, main_root = load_dataset(OFFLINE, data_dir)
    cross = None
    if protocol == "cross-source":
        cross_manifest = Path(main_root).parent / CROSS_CORPUS / "manifest.csv"
        from dfa_lib.manifest import read_manifest

        cross = read_manifest(cross_manifest)
        cross = cross.assign(path=CROSS_CORPUS + "/" + cross["path"])
    main = main.assign(path=Path(main_root).name + "/" + main["path"])
    rows = apply_protocol(main, protocol, cross=cross, seed=seed)
    return Path(main_root).parent, rows


def training_groups(
    configs: Sequence[TrainConfig], max_per_class: int, logreg_max_per_class: int = -1
) -> list[tuple[int | None, list[TrainConfig]]]:
    """Group training configs by the cap on clips per class each trains on.

    ``max_per_class`` caps every model (0: every clip); ``logreg_max_per_class`` overrides it
    for the logistic regressions of :data:`dfa_lib.classical.LOGREG_MODEL_NAMES`, which fit in
    seconds on every clip (-1: the same cap as the others). Returns ``(cap, configs)`` pairs,
    ``cap`` None for every clip, in the order their first config appears; a notebook loads a
    protocol's clips once per pair (:func:`prepare_protocol`'s ``max_per_class``).
    """
    from dfa_lib.classical import LOGREG_MODEL_NAMES

    if max_per_class < 0:
        raise ValueError(
            f"max_per_class must be 0 (every clip) or a positive cap, got {max_per_class}"
        )
    if logreg_max_per_class < -1:
        raise ValueError(
            "logreg_max_per_class must be -1 (as max_per_class), 0 (every clip) or a positive "
            f"cap, got {logreg_max_per_class}"
        )
    logreg_cap = max_per_class if logreg_max_per_class == -1 else logreg_max_per_class
    groups: dict[int | None, list[TrainConfig]] = {}
    for config in configs:
        cap = logreg_cap if config.model in LOGREG_MODEL_NAMES else max_per_class
        groups.setdefault(cap or None, []).append(config)
    return list(groups.items())


def prepare_protocol(
    dataset: str,
    protocol: str,
    data_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    max_per_class: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
    progress: bool = True,
) -> ProtocolData:
    """Load, split, subset and decode a protocol's clips (cached under ``cache_dir``).

    ``max_per_class`` / ``fraction`` take a seeded stratified subset of the training and
    validation splits; the test split is always complete.
    """
    from dfa_lib.protocols import make_subset

    root, rows = load_protocol_frames(dataset, protocol, data_dir, seed=seed)
    frames = {}
    for split in splits:
        part = rows[rows["split"] == split]
        # Subsets are for quick training; test splits stay whole so results stay comparable.
        if split != "testing" and (max_per_class is not None or fraction is not None):
            part = make_subset(part, max_per_class=max_per_class, fraction=fraction, seed=seed)
        frames[split] = part.sort_values("path").reset_index(drop=True)
    data = ProtocolData(dataset=dataset, protocol=protocol, root=root, frames=frames)
    for split, part in frames.items():
        data.stores[split] = decode_clips(part, root, cache_dir, progress=progress)
    return data
