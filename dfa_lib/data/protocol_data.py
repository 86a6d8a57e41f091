"""From a dataset name and a protocol to decoded training, validation and test clips.

This is the data step every training and evaluation notebook shares: load the manifest
(:func:`dfa_lib.data.datasets.load_dataset`), apply a protocol (:mod:`dfa_lib.data.protocols`), take a
seeded stratified subset if asked, and decode each split once into a cached
:class:`~dfa_lib.data.clips.ClipStore`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfa_lib.core.labels import SPLITS
from dfa_lib.data.clips import ClipStore, decode_clips
from dfa_lib.data.datasets import load_dataset
from dfa_lib.data.manifest import manifest_checksum, read_manifest
from dfa_lib.data.protocols import PROTOCOLS, apply_protocol, make_subset

OFFLINE = "offline"
CROSS_CORPUS = "offline-cross"


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

    if dataset == OFFLINE:
        return list(PROTOCOLS)
    return ["in-domain"]


def load_protocol_frames(
    dataset: str, protocol: str, data_dir: str | os.PathLike, seed: int = 0
) -> tuple[Path, pd.DataFrame]:
    """Return ``(root, rows)``: the protocol's rows with ``split`` set and paths under ``root``."""

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

        cross = read_manifest(cross_manifest)
        cross = cross.assign(path=CROSS_CORPUS + "/" + cross["path"])
    main = main.assign(path=Path(main_root).name + "/" + main["path"])
    rows = apply_protocol(main, protocol, cross=cross, seed=seed)
    return Path(main_root).parent, rows


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

    root, rows = load_protocol_frames(dataset, protocol, data_dir, seed=seed)
    if "training" in splits and not (rows["split"] == "training").any():
        raise ProtocolUnavailableError(
            f"dataset {dataset!r} has no training clips (an evaluation set such as in-the-wild): "
            "train on another dataset (asvspoof2019-la, for instance) and test those detectors "
            f"here with `dfa evaluate <run folders> --dataset {dataset} --protocol {protocol}`"
        )
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


def protocol_labels(
    dataset: str, protocol: str, data_dir: str | os.PathLike, seed: int = 0
) -> pd.Series:
    """The labels of a protocol's validation clips, by path (what :func:`fit_fusion` takes)."""

    _, rows = load_protocol_frames(dataset, protocol, data_dir, seed=seed)
    validation = rows[rows["split"] == "validation"]
    return validation.set_index("path")["label"]
