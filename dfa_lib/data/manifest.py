"""The manifest: one row per clip, the single description of a corpus every step reads.

Columns (see ``MANIFEST_COLUMNS``): ``path`` relative to the corpus root (posix), ``label``
(real|fake), ``split`` (training|validation|testing), ``source``, ``speaker`` (speaker or
synthetic voice, globally unique), ``generator`` (``human`` for real clips), ``language``,
``transcript_id``, ``duration`` (seconds), ``sample_rate``, ``sha256`` (of the file bytes) and
``corpus``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from dfa_lib.core.atomic import atomic_path
from dfa_lib.core.labels import LABELS, SPLITS

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "split",
    "source",
    "speaker",
    "generator",
    "language",
    "transcript_id",
    "duration",
    "sample_rate",
    "sha256",
    "corpus",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label")


class ManifestError(ValueError):
    """A manifest is missing, malformed, or names clips that do not exist."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 of a file's bytes (the manifest's content hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def validate_manifest(df: pd.DataFrame, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Check columns and values; with ``root`` also check every file exists. Returns ``df``."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest lacks required column(s): {', '.join(missing)}")
    bad_labels = sorted(set(df["label"].astype(str)) - set(LABELS))
    if bad_labels:
        raise ManifestError(f"manifest has unknown labels {bad_labels}: expected 'real' or 'fake'")
    if "split" in df.columns:
        bad_splits = sorted(set(df["split"].dropna().astype(str)) - set(SPLITS))
        if bad_splits:
            raise ManifestError(f"manifest has unknown splits {bad_splits}: expected {SPLITS}")
    if df["path"].duplicated().any():
        dup = df.loc[df["path"].duplicated(), "path"].iloc[0]
        raise ManifestError(f"manifest lists {dup!r} more than once")
    if root is not None:
        root = Path(root)
        absent = [p for p in df["path"] if not (root / p).is_file()]
        if absent:
            raise ManifestError(
                f"{len(absent)} file(s) in the manifest are missing under {root}, "
                f"e.g. {absent[0]!r}: rebuild or re-download the dataset"
            )
    return df


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`write_manifest` and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}: build the data first (`make data`)")
    df = pd.read_csv(path, dtype={"transcript_id": str, "speaker": str, "sha256": str})
    return validate_manifest(df)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a manifest atomically, columns in the canonical order, rows sorted by path."""
    validate_manifest(df)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = [c for c in MANIFEST_COLUMNS if c in df.columns]
    ordered += [c for c in df.columns if c not in ordered]
    out = df[ordered].sort_values("path", kind="stable").reset_index(drop=True)
    with atomic_path(path) as temporary:
        out.to_csv(temporary, index=False, float_format="%.6f", lineterminator="\n")
    return path


def clip_ids(df: pd.DataFrame) -> pd.Series:
    """Return one identity per row: its content hash (``sha256``) where known, else its path.

    Caches keyed by clip (degraded audio, augmented copies) use it, so a clip keeps its key
    when it moves between splits or protocols.
    """
    paths = df["path"].astype(str)
    if "sha256" not in df.columns:
        return paths
    digests = df["sha256"]
    known = digests.map(lambda v: isinstance(v, str) and bool(v))
    return digests.where(known, paths).astype(str)


def manifest_checksum(df: pd.DataFrame) -> str:
    """Return a SHA-256 over the manifest's canonical CSV form (independent of row order)."""
    ordered = [c for c in MANIFEST_COLUMNS if c in df.columns]
    ordered += sorted(c for c in df.columns if c not in ordered)
    canon = df[ordered].sort_values("path", kind="stable").reset_index(drop=True)
    text = canon.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_checksum(df: pd.DataFrame) -> str:
    """Return a short hash of a split's paths, labels and content hashes."""
    cols = [c for c in ("path", "label", "sha256") if c in df.columns]
    text = df[cols].sort_values("path").to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
