"""Decoded-clip store: every clip of a manifest decoded once, kept on disk, read by memory map.

Training reads the same clips every epoch. Decoding and resampling them each time (the
original notebook's way) dominates an epoch on a CPU, so :func:`decode_clips` decodes a
manifest once, in parallel, into one int16 array plus offsets under ``cache_dir``, keyed by
the clips' paths, the SHA-256 of each file's bytes and the sample rate. Later calls, in this
process or the next, map that file and return at once; a file whose bytes changed (even with
its size and modification time kept) gives a new key and is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dfa_lib.core.atomic import save_array, write_json_atomically
from dfa_lib.data.audio import AudioError, load_audio
from dfa_lib.data.manifest import HASH_MEMO, file_sha256s

CACHE_VERSION = 1

log = logging.getLogger(__name__)


@dataclass
class ClipStore:
    """Decoded clips addressed by manifest row: ``store[i]`` is a float32 waveform."""

    samples: np.ndarray  # int16, all clips concatenated
    offsets: np.ndarray  # int64, len(clips) + 1
    sample_rate: int
    errors: dict[int, str] = field(default_factory=dict)  # row -> message, for unreadable clips
    # SHA-256 of each clip's file as decoded (None: no file, or not hashed), when known.
    sha256: list[str | None] | None = None

    @classmethod
    def from_waves(cls, waves: list[np.ndarray], sample_rate: int = 16000) -> ClipStore:
        """Build a store from waveforms already in memory (float in [-1, 1])."""
        parts = [np.clip(np.round(w * 32767.0), -32768, 32767).astype(np.int16) for w in waves]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([p.size for p in parts], out=offsets[1:])
        samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return cls(samples=samples, offsets=offsets, sample_rate=sample_rate)

    def extended(self, waves: list[np.ndarray]) -> ClipStore:
        """Return a new store: these clips, then ``waves`` (float in [-1, 1]) at the end."""
        extra = ClipStore.from_waves(waves, self.sample_rate)
        return ClipStore(
            samples=np.concatenate([np.asarray(self.samples), extra.samples]),
            offsets=np.concatenate([self.offsets[:-1], self.offsets[-1] + extra.offsets]),
            sample_rate=self.sample_rate,
            errors=dict(self.errors),
            sha256=None if self.sha256 is None else [*self.sha256, *[None] * len(waves)],
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.samples[a:b].astype(np.float32) / 32768.0

    def crops(
        self, rows: np.ndarray, length: int, draws: np.ndarray, pad_mode: str = "constant"
    ) -> np.ndarray:
        """Return a ``(len(rows), length)`` float32 batch of windows, in one call.

        ``draws`` (floats in [0, 1), one per row) place each window: a clip longer than
        ``length`` starts at ``floor(draw * (n - length + 1))``, as
        :func:`~dfa_lib.data.audio.pad_or_crop`'s random mode would with that draw; a shorter one is
        padded at the end with zeros (``pad_mode="constant"``) or repeated (``"wrap"``).
        """
        if pad_mode not in {"constant", "wrap"}:
            raise ValueError(f"pad_mode must be 'constant' or 'wrap', got {pad_mode!r}")
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        rows = np.asarray(rows, dtype=np.int64)
        draws = np.asarray(draws, dtype=np.float64)
        if draws.shape != rows.shape:
            raise ValueError(f"need one draw per row, got {draws.shape} for {rows.shape}")
        first = self.offsets[rows]
        n = self.offsets[rows + 1] - first
        if rows.size and n.min() == 0:
            raise ValueError(f"row {int(rows[np.argmin(n)])} has no samples (a failed decode)")
        span = np.maximum(n - length, 0)
        start = first + np.minimum(np.floor(draws * (span + 1)).astype(np.int64), span)
        # One contiguous copy per clip (converted to float32 as it lands): a memcpy-speed
        # loop beats a vectorised gather of batch x length indices several times over.
        samples = np.asarray(self.samples)  # a plain view: slicing a memmap costs more
        out = np.zeros((len(rows), length), dtype=np.float32)
        for k, (a, m) in enumerate(
            zip(start.tolist(), np.minimum(n, length).tolist(), strict=True)
        ):
            out[k, :m] = samples[a : a + m]
            if m < length and pad_mode == "wrap":
                out[k] = np.resize(out[k, :m], length)
        out *= 1.0 / 32768.0
        return out

    def ok(self, i: int) -> bool:
        """Return whether row ``i`` decoded (failed rows are empty)."""
        return i not in self.errors

    @property
    def seconds(self) -> float:
        """Total duration in seconds."""
        return float(self.offsets[-1]) / self.sample_rate


def aligned_split(frame: pd.DataFrame, store: ClipStore) -> pd.DataFrame:
    """Return ``frame`` indexed 0..n-1, after checking it has one row per clip of ``store``."""
    if len(frame) != len(store):
        raise ValueError(
            f"the frame has {len(frame)} rows and the store {len(store)} clips: they must match"
        )
    return frame.reset_index(drop=True)


def extend_split(
    frame: pd.DataFrame, store: ClipStore, rows: pd.DataFrame, waves: list[np.ndarray]
) -> tuple[pd.DataFrame, ClipStore]:
    """Return the split ``(frame, store)`` with ``rows`` and their clips ``waves`` at the end.

    ``rows`` are manifest rows (``frame``'s columns; others are dropped), one per wave, such
    as copies of ``frame``'s own rows with new paths; the result is indexed 0..n-1.
    """
    frame = aligned_split(frame, store)
    if len(rows) != len(waves):
        raise ValueError(f"{len(rows)} rows for {len(waves)} clips: give one row per clip")
    added = pd.DataFrame(rows, columns=frame.columns)
    return pd.concat([frame, added], ignore_index=True), store.extended(waves)


def _clip_key(df: pd.DataFrame, root: Path, sample_rate: int, digests: list[str | None]) -> str:
    """The cache key: sample rate, root, and each clip's path with the hash of its bytes.

    The whole file is hashed rather than its size and modification time (which tools that
    copy or edit audio can keep) or samples of its first and last bytes (which miss an edit
    in the middle); the hash memo makes a warm start one ``stat`` per file. For an intact
    corpus the key is the one the manifest's ``sha256`` column gave, so caches built from
    hashed manifests stay valid.
    """
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{sample_rate}|{root.resolve()}".encode())
    for path, ident in zip(df["path"], digests, strict=True):
        digest.update(f"{path}|{ident or 'missing'}\n".encode())
    return digest.hexdigest()[:24]


def _warn_if_changed(df: pd.DataFrame, digests: list[str | None]) -> None:
    """Say when files differ from the content hash their manifest records."""
    if "sha256" not in df.columns:
        return
    changed = [
        path
        for path, claimed, actual in zip(df["path"], df["sha256"], digests, strict=True)
        if isinstance(claimed, str) and claimed and actual is not None and actual != claimed
    ]
    if changed:
        log.warning(
            "%d clip(s) differ from the sha256 their manifest records, e.g. %s: they changed "
            "after the manifest was written; what is on disk now is decoded (rebuild the "
            "manifest if the change is meant)",
            len(changed),
            changed[0],
        )


def _decode_one(args: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    path, sample_rate = args
    try:
        wave, _ = load_audio(path, target_sr=sample_rate)
    except AudioError as err:
        return None, str(err)
    return np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16), None


def decode_clips(
    df: pd.DataFrame,
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    sample_rate: int = 16000,
    workers: int | None = None,
    progress: bool = True,
) -> ClipStore:
    """Decode every clip of ``df`` (``path`` relative to ``root``) once and cache the result.

    Unreadable clips do not stop the run: they become empty entries listed in
    ``store.errors`` with the loader's message, for the caller to drop and report. With a
    ``cache_dir`` every file is hashed (the hashes are remembered in ``cache_dir``, see
    :func:`~dfa_lib.data.manifest.file_sha256s`) and ``store.sha256`` holds them.
    """
    root = Path(root)
    digests = None
    if cache_dir is not None:
        paths = [root / p for p in df["path"]]
        digests = file_sha256s(paths, memo=Path(cache_dir) / HASH_MEMO, progress=progress)
        _warn_if_changed(df, digests)
        folder = Path(cache_dir) / _clip_key(df, root, sample_rate, digests)
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            return ClipStore(
                samples=np.load(folder / "samples.npy", mmap_mode="r"),
                offsets=np.load(folder / "offsets.npy"),
                sample_rate=meta["sample_rate"],
                errors={int(k): v for k, v in meta["errors"].items()},
                sha256=digests,
            )
    jobs = [(str(root / p), sample_rate) for p in df["path"]]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    bar = dict(total=len(jobs), desc="decoding clips", disable=not progress, leave=False)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_decode_one, jobs, chunksize=32), **bar))
    else:
        results = [_decode_one(j) for j in tqdm(jobs, **bar)]
    errors = {i: err for i, (_, err) in enumerate(results) if err is not None}
    parts = [w if w is not None else np.zeros(0, np.int16) for w, _ in results]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([p.size for p in parts], out=offsets[1:])
    samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    if cache_dir is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in (("samples.npy", samples), ("offsets.npy", offsets)):
            save_array(folder / name, arr)
        meta = {"sample_rate": sample_rate, "errors": errors, "n_clips": len(parts)}
        # Written last: its presence marks a complete cache.
        write_json_atomically(meta_path, meta, indent=None)
    return ClipStore(
        samples=samples, offsets=offsets, sample_rate=sample_rate, errors=errors, sha256=digests
    )
