"""The manifest: one row per clip, the single description of a corpus every step reads.

Columns (see ``MANIFEST_COLUMNS``): ``path`` relative to the corpus root (posix), ``label``
(real|fake), ``split`` (training|validation|testing), ``source``, ``speaker`` (speaker or
synthetic voice, globally unique), ``generator`` (``human`` for real clips), ``language``,
``transcript_id``, ``duration`` (seconds), ``sample_rate``, ``sha256`` (of the file bytes) and
``corpus``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from dfa_lib.core.atomic import atomic_path, write_text_atomically
from dfa_lib.core.labels import LABELS, SPLITS

log = logging.getLogger(__name__)

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


HASH_MEMO = "file-hashes.json"  # the memo's name in a cache folder (<data_dir>/cache)
_MEMO_VERSION = 1
# A file whose status changed this shortly before it was hashed may change again within the
# same timestamp tick (file systems with coarse timestamps) without its status showing it:
# such a hash is used but not remembered.
_RACY_NS = 2_000_000_000


def _file_state(status: os.stat_result) -> list[int]:
    # The status change time (ctime) moves on every write and cannot be set back by tools that
    # preserve the modification time (cp -p, rsync -t, touch -r), so new bytes of the same size
    # under the same mtime still show here; the inode catches a file replaced by a rename.
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]


def _read_memo(memo: Path) -> dict[str, list]:
    try:
        data = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _MEMO_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def file_sha256s(
    paths: Sequence[str | os.PathLike],
    memo: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[str | None]:
    """Return the SHA-256 of each file's bytes (None for a file that cannot be read).

    With ``memo`` (a JSON file, created as needed), a hash computed earlier is reused while
    the file's size, modification time, status change time and inode are unchanged, so a
    second call costs one ``stat`` per unchanged file. Every file that changed is read again
    in full: the hash always describes the bytes, never a sample of them.
    """
    names = [os.path.abspath(p) for p in paths]
    memo = Path(memo) if memo is not None else None
    remembered = _read_memo(memo) if memo is not None else {}
    digests: list[str | None] = [None] * len(names)
    states: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        try:
            state = _file_state(os.stat(name))
        except OSError:
            continue  # missing or unreachable: no hash
        entry = remembered.get(name)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == state:
            digests[i] = str(entry[1])
        else:
            states[i] = state

    def one(i: int) -> str | None:
        try:
            return file_sha256(names[i])
        except OSError:
            return None

    started = time.time_ns()
    todo = list(states)
    # hashlib releases the GIL on large buffers, so threads hash several files at once.
    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), workers or 8))) as pool:
        computed = list(
            tqdm(pool.map(one, todo), total=len(todo), desc="sha256", unit="file",
                 disable=not progress or not todo)
        )  # fmt: skip
    fresh = 0
    for i, digest in zip(todo, computed, strict=True):
        digests[i] = digest
        if digest is not None and states[i][2] <= started - _RACY_NS:
            remembered[names[i]] = [states[i], digest]
            fresh += 1
    if memo is not None and fresh:
        try:
            # ASCII escapes keep file names that are not UTF-8 (surrogate escapes) writable.
            payload = {"version": _MEMO_VERSION, "files": remembered}
            write_text_atomically(memo, json.dumps(payload, ensure_ascii=True) + "\n")
        except OSError as error:
            log.warning(
                "could not remember file hashes in %s (%s): the next load hashes them again",
                memo,
                error,
            )
    return digests


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
