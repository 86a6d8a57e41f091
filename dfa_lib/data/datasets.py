"""Datasets as manifests: the Fake-or-Real corpus from Kaggle, any FoR-layout folder, any CSV.

The Fake-or-Real (FoR) dataset (Reimao and Tzerpos, 2019) holds about 195,000 English clips of
human speech and of text-to-speech output, published in four versions: ``for-original`` (the
files as collected), ``for-norm`` (balanced, resampled to 16 kHz mono, volume-normalised),
``for-2sec`` (``for-norm`` cut to 2 seconds) and ``for-rerec`` (``for-2sec`` played and
re-recorded, as through a voice channel). Each version comes with official ``training``,
``validation`` and ``testing`` partitions, each holding a ``real`` and a ``fake`` folder.

The Kaggle copy (``mohammedabdeldayem/the-fake-or-real-dataset``) is one zip archive in which
every version sits one folder deeper than its name::

    for-2sec/for-2seconds/training/real/*.wav
    for-norm/for-norm/...
    for-original/for-original/...          (fakes here include MP3 files)
    for-rerec/for-rerecorded/...

:func:`download_for` keeps that nesting as published under ``data_dir/<version>/``; the loaders
find the layout one or two folders down, so a copy unzipped by hand works the same way.

Every loader returns a manifest (:mod:`dfa_lib.data.manifest`) whose ``path`` column is relative to
the folder it was given (FoR, a layout folder) or to the CSV's root. Metadata the files do not
carry gets a fixed placeholder: ``speaker = "unknown"``, ``generator = "human"`` for real clips
and ``"unknown"`` for fakes, ``transcript_id`` = the file name without its extension,
``language = "und"`` (``"en"`` for FoR). ``duration`` and ``sample_rate`` come from the file
headers (no decoding where ``soundfile`` reads the format). ``sha256`` is the hash of each
file's bytes, so that checksums of a split (and the results reused under them) change when a
clip's audio does. Hashing FoR's 195,000 files reads every byte, several minutes on a laptop
disk, once: with ``hash_cache`` (which :func:`load_dataset` sets to
``<data_dir>/cache/file-hashes.json``) a file's hash is reused while the file is unchanged
(:func:`dfa_lib.data.manifest.file_sha256s`). ``hash_files=False`` leaves ``sha256`` empty.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal, get_args

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dfa_lib.core.atomic import write_json_atomically
from dfa_lib.core.labels import LABELS, SPLITS, label_to_index
from dfa_lib.data.audio import io_workers, probe_headers
from dfa_lib.data.challenges import CHALLENGE_DATASETS, load_challenge
from dfa_lib.data.errors import (
    DatasetArchiveError,
    DatasetDownloadError,
    DatasetError,
    DatasetFormatError,
    DatasetLayoutError,
    DatasetNotFoundError,
    KaggleCredentialsError,
    UnknownDatasetError,
)
from dfa_lib.data.manifest import (
    HASH_MEMO,
    MANIFEST_COLUMNS,
    ManifestError,
    file_sha256s,
    read_manifest,
    validate_manifest,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DATASET_NAMES",
    "FOR_KAGGLE_DATASET",
    "FOR_VERSIONS",
    "DatasetArchiveError",
    "DatasetDownloadError",
    "DatasetError",
    "DatasetFormatError",
    "DatasetLayoutError",
    "DatasetNotFoundError",
    "KaggleCredentialsError",
    "UnknownDatasetError",
    "add_sha256",
    "download_for",
    "extract_zip_safely",
    "find_for_root",
    "kaggle_credentials_source",
    "load_csv_dataset",
    "load_dataset",
    "load_for",
    "load_for_layout",
]

log = logging.getLogger(__name__)

FOR_KAGGLE_DATASET = "mohammedabdeldayem/the-fake-or-real-dataset"
FOR_KAGGLE_URL = f"https://www.kaggle.com/datasets/{FOR_KAGGLE_DATASET}"
FOR_VERSIONS: tuple[str, ...] = ("for-original", "for-norm", "for-2sec", "for-rerec")
# Folder names a version goes by: ours, the Kaggle archive's inner folders, the paper's spelling.
_FOR_FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "for-original": ("for-original",),
    "for-norm": ("for-norm",),
    "for-2sec": ("for-2sec", "for-2seconds"),
    "for-rerec": ("for-rerec", "for-rerecorded", "for-rerecording"),
}
_FOLDER_TO_VERSION = {name: v for v, names in _FOR_FOLDER_NAMES.items() for name in names}
OFFLINE_CORPORA: tuple[str, ...] = ("offline", "offline-main", "offline-cross")
DATASET_NAMES: tuple[str, ...] = (*OFFLINE_CORPORA, *FOR_VERSIONS, *CHALLENGE_DATASETS)

# Everything dfa_lib.data.audio.load_audio decodes (soundfile natively, the rest through ffmpeg).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au"}
    | {".webm", ".wma", ".g722", ".gsm", ".ulaw", ".alaw"}
)
_SPLIT_NAMES = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
    "dev": "validation",
    "testing": "testing",
    "test": "testing",
    "eval": "testing",
}
_EXPECTED_LAYOUT = "training|validation|testing/real|fake/<audio files>"
_MARKER = ".for-download-complete.json"
_EXTRACT_PREFIX = ".for-extract-"
_DOWNLOAD_FOLDER = ".for-download"
_NO_CREDENTIALS = (
    "no Kaggle credentials: put kaggle.json in ~/.kaggle or set KAGGLE_USERNAME/KAGGLE_KEY, "
    "or pass data_dir= pointing at a downloaded copy"
)

OnUnreadable = Literal["drop", "keep", "raise"]
# How a CSV's numeric labels read: which class 1 stands for (0 is the other one).
NumericLabels = Literal["1=fake", "1=real"]
_NUMERIC_LABELS: dict[str, dict[str, str]] = {
    "1=fake": {"0": "real", "1": "fake"},
    "1=real": {"0": "fake", "1": "real"},
}
_LABEL_NAMES = "real/fake (also bonafide/spoof, bona-fide, human, synthetic)"

# --------------------------------------------------------------------------------------------
# Kaggle credentials and download
# --------------------------------------------------------------------------------------------


def _kaggle_config_dir() -> Path:
    """Return the folder the Kaggle client reads kaggle.json from (mirrors the client's rule)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    home_dir = Path.home() / ".kaggle"
    if home_dir.exists():
        return home_dir
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "kaggle"


def _read_kaggle_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def kaggle_credentials_source() -> str | None:
    """Say where the Kaggle client would find credentials, or return None if there are none.

    Looks, like the client does, at ``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME``/``KAGGLE_KEY``,
    ``kaggle.json`` in the client's configuration folder (``KAGGLE_CONFIG_DIR``, ``~/.kaggle``
    or ``~/.config/kaggle``), ``~/.kaggle/access_token`` and the OAuth file
    ``~/.kaggle/credentials.json``. Only names are returned, never a secret.
    """
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "the KAGGLE_API_TOKEN environment variable"
    config_file = _kaggle_config_dir() / "kaggle.json"
    from_file = _read_kaggle_json(config_file) if config_file.is_file() else {}
    username = os.environ.get("KAGGLE_USERNAME") or from_file.get("username")
    key = os.environ.get("KAGGLE_KEY") or from_file.get("key")
    if username and key:
        if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
            return "the KAGGLE_USERNAME/KAGGLE_KEY environment variables"
        return str(config_file)
    home_kaggle = Path.home() / ".kaggle"
    for name in ("access_token", "access_token.txt", "credentials.json"):
        candidate = home_kaggle / name
        if candidate.is_file() and candidate.stat().st_size > 0:
            return str(candidate)
    return None


def _secrets() -> list[str]:
    """Return the credential values in use, so messages can be scrubbed of them."""
    values = [os.environ.get(k, "") for k in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")]
    values.append(_read_kaggle_json(_kaggle_config_dir() / "kaggle.json").get("key", ""))
    return [v for v in values if len(v) >= 4]


def _scrub(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _kaggle_api():
    """Authenticate a Kaggle client; only called once credentials are known to exist."""
    # Importing the package authenticates at once (and prints, never raises, on failure),
    # which is why credentials are checked before this import.
    from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    try:
        api.authenticate()
    except SystemExit as err:  # the client calls exit(1) when no method works
        raise KaggleCredentialsError(_NO_CREDENTIALS) from err
    except Exception as err:
        raise DatasetDownloadError(
            f"could not reach Kaggle to check the credentials ({type(err).__name__}: "
            f"{_scrub(str(err))}); check the network, or pass data_dir= pointing at a copy "
            f"downloaded from {FOR_KAGGLE_URL}"
        ) from err
    return api


def _http_status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _fetch_archive(download_dir: Path, force: bool) -> Path:
    """Download the Kaggle archive into ``download_dir`` and return the zip's path."""
    source = kaggle_credentials_source()
    if source is None:
        raise KaggleCredentialsError(_NO_CREDENTIALS)
    api = _kaggle_api()
    download_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "downloading %s from Kaggle into %s (credentials from %s)",
        FOR_KAGGLE_DATASET,
        download_dir,
        source,
    )
    try:
        # force=False lets the client resume a partial archive left by an interrupted run.
        api.dataset_download_files(
            FOR_KAGGLE_DATASET, path=str(download_dir), force=force, quiet=False, unzip=False
        )
    except Exception as err:
        with contextlib.suppress(OSError):  # only removes it when no partial download is inside
            download_dir.rmdir()
        status = _http_status(err)
        if status in (401, 403):
            raise KaggleCredentialsError(
                f"Kaggle refused the credentials from {source} (HTTP {status}): create a new API "
                "token at https://www.kaggle.com/settings/api, or pass data_dir= pointing at a "
                "downloaded copy"
            ) from err
        raise DatasetDownloadError(
            f"downloading {FOR_KAGGLE_DATASET} from Kaggle failed ({type(err).__name__}: "
            f"{_scrub(str(err))}). Check the network and call again (a partial download "
            f"resumes), or download the archive from {FOR_KAGGLE_URL}, unzip it and pass "
            "data_dir= pointing at the folder that holds for-2sec/, for-norm/, ..."
        ) from err
    expected = download_dir / (FOR_KAGGLE_DATASET.split("/")[1] + ".zip")
    if expected.is_file():
        return expected
    zips = sorted(download_dir.glob("*.zip"))
    if len(zips) != 1:
        raise DatasetDownloadError(
            f"the Kaggle client finished but left {len(zips)} zip files in {download_dir} "
            f"(expected {expected.name}); delete the folder and call again"
        )
    return zips[0]


# --------------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------------


def _member_relpath(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """Return a member's safe relative path, None for folders; raise for unsafe members."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DatasetArchiveError(f"unsafe archive member {info.filename!r}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetArchiveError(f"unsafe archive member {info.filename!r}: '..' in its path")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise DatasetArchiveError(f"unsafe archive member {info.filename!r}: symbolic link")
    if info.is_dir() or not parts:
        return None
    return PurePosixPath(*parts)


def extract_zip_safely(
    archive: str | os.PathLike,
    destination: str | os.PathLike,
    select: Callable[[PurePosixPath], bool] | None = None,
    progress: bool = True,
) -> list[PurePosixPath]:
    """Extract a zip into a fresh temporary folder, then rename it to ``destination``.

    Every member is checked first: absolute paths, ``..`` components and symbolic links are
    rejected before anything is written. ``select`` keeps only some members. CRC errors and
    truncated archives raise :class:`DatasetArchiveError` and leave nothing behind;
    ``destination`` must not exist yet. Returns the extracted relative paths.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists: extraction needs a fresh folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_EXTRACT_PREFIX, dir=destination.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            chosen = []
            for info in zf.infolist():
                rel = _member_relpath(info)
                if rel is not None and (select is None or select(rel)):
                    chosen.append((info, rel))
            total = sum(info.file_size for info, _ in chosen)
            free = shutil.disk_usage(tmp).free
            if total > free:
                # Not DatasetArchiveError: the archive is fine and must not be deleted.
                raise DatasetError(
                    f"extracting {archive.name} needs {total / 1e9:.1f} GB but {tmp.parent} has "
                    f"{free / 1e9:.1f} GB free: free some space or pass another data_dir="
                )
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"extract {archive.name}",
                disable=not progress,
            ) as bar:
                for info, rel in chosen:
                    target = tmp.joinpath(*rel.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    # Reading to the end makes zipfile compare the CRC, so corruption raises here.
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=1 << 20)
                    bar.update(info.file_size)
        os.replace(tmp, destination)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetArchiveError(
            f"{archive} is corrupt or truncated ({type(err).__name__}: {err}); delete it and "
            "download again"
        ) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [rel for _, rel in chosen]


def _version_of_member(rel: PurePosixPath) -> tuple[str, PurePosixPath] | None:
    """Return (version, the member's version folder) for a FoR archive member, else None."""
    parts = rel.parts
    # The version folder is the first component, or the second under a single wrapper folder.
    for depth in (0, 1):
        if len(parts) > depth + 1:
            version = _FOLDER_TO_VERSION.get(parts[depth].lower())
            if version is not None:
                return version, PurePosixPath(*parts[: depth + 1])
    return None


def _marked_versions(marker: Path) -> set[str]:
    """Return the versions a completion marker records (none when absent or unreadable)."""
    try:
        versions = json.loads(marker.read_text(encoding="utf-8")).get("versions", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(v) for v in versions}


def _check_versions(versions: Iterable[str]) -> tuple[str, ...]:
    versions = tuple(versions)
    unknown = [v for v in versions if v not in FOR_VERSIONS]
    if unknown or not versions:
        raise UnknownDatasetError(
            f"unknown FoR version(s) {unknown or '(none given)'}: choose from {', '.join(FOR_VERSIONS)}"
        )
    return versions


def download_for(
    data_dir: str | os.PathLike,
    versions: Sequence[str] = FOR_VERSIONS,
    force: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download the Fake-or-Real dataset from Kaggle into ``data_dir/<version>/``; return ``data_dir``.

    Idempotent: a completion marker (``.for-download-complete.json``) is written last, and a
    call that finds it (with every requested version present) returns at once. Versions whose
    folder already exists are kept as they are unless ``force``. The archive (many GB) is
    extracted member by member after safety checks into a temporary folder that is renamed
    into place, so an interrupted run leaves no half-written version; the archive is deleted
    afterwards unless ``keep_archive``. Needs Kaggle API credentials (see
    :func:`kaggle_credentials_source`); they are read by the Kaggle client and never stored or
    printed here.
    """
    data_dir = Path(data_dir).expanduser()
    versions = _check_versions(versions)
    marker = data_dir / _MARKER
    if not force:
        done = _marked_versions(marker)
        if set(versions) <= done and all((data_dir / v).is_dir() for v in versions):
            log.info("FoR already downloaded in %s", data_dir)
            return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob(f"{_EXTRACT_PREFIX}*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    needed = [v for v in versions if force or not (data_dir / v).is_dir()]
    if needed:
        download_dir = data_dir / _DOWNLOAD_FOLDER
        archive = _fetch_archive(download_dir, force=force)
        staging = data_dir / f"{_EXTRACT_PREFIX}staging"
        wanted = set(needed)

        def select(rel: PurePosixPath) -> bool:
            found = _version_of_member(rel)
            return found is not None and found[0] in wanted

        try:
            members = extract_zip_safely(archive, staging, select=select, progress=progress)
            folders: dict[str, set[PurePosixPath]] = {}
            for rel in members:
                version, folder = _version_of_member(rel) or ("", PurePosixPath())
                folders.setdefault(version, set()).add(folder)
            absent = [v for v in needed if v not in folders]
            doubled = {v: sorted(map(str, f)) for v, f in folders.items() if len(f) > 1}
            if absent or doubled:
                problem = f"no folder for {absent}" if absent else f"several folders for {doubled}"
                raise DatasetArchiveError(
                    f"{archive.name} is not the expected FoR archive ({problem}; expected top "
                    f"folders named {', '.join(sorted(_FOLDER_TO_VERSION))}); delete it and "
                    "download again"
                )
        except DatasetArchiveError:
            shutil.rmtree(staging, ignore_errors=True)
            # A corrupt archive would be found "complete" by the client next time: remove it.
            archive.unlink(missing_ok=True)
            raise
        for version in needed:
            (folder,) = folders[version]
            target = data_dir / version
            if target.exists():
                shutil.rmtree(target)  # only reached with force=True
            os.replace(staging.joinpath(*folder.parts), target)
        shutil.rmtree(staging, ignore_errors=True)
        if not keep_archive:
            archive.unlink(missing_ok=True)
            shutil.rmtree(download_dir, ignore_errors=True)
    previous = _marked_versions(marker)
    payload = {
        "dataset": FOR_KAGGLE_DATASET,
        "versions": sorted(previous | set(versions)),
        "completed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomically(marker, payload)
    return data_dir


# --------------------------------------------------------------------------------------------
# FoR layout
# --------------------------------------------------------------------------------------------


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return []
    return [c for c in children if c.is_dir() and not c.name.startswith((".", "__MACOSX"))]


def _split_dirs(folder: Path) -> dict[Path, str]:
    return {
        d: _SPLIT_NAMES[d.name.lower()]
        for d in _visible_dirs(folder)
        if d.name.lower() in _SPLIT_NAMES
    }


def find_for_root(root: str | os.PathLike, max_depth: int = 3) -> Path:
    """Return the folder under ``root`` that holds ``training|validation|testing`` folders.

    ``root`` itself, or a folder up to ``max_depth`` levels below it (the Kaggle archive nests
    each version one level down, e.g. ``for-2sec/for-2seconds/``). Folder names are matched
    case-insensitively. Raises :class:`DatasetLayoutError` when none or several are found.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"no folder at {root}: expected a dataset folder in FoR layout ({_EXPECTED_LAYOUT})"
        )
    level = [root]
    for _ in range(max_depth + 1):
        found = [folder for folder in level if _split_dirs(folder)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(str(f.relative_to(root)) for f in found)
            raise DatasetLayoutError(
                f"{root} holds several FoR-layout folders ({names}): pass one of them"
            )
        level = [child for folder in level for child in _visible_dirs(folder)]
    raise DatasetLayoutError(
        f"no FoR layout under {root}: expected {root}/{_EXPECTED_LAYOUT} (folder names in any "
        "case, optionally one or two folders further down as in the Kaggle archive's "
        "for-2sec/for-2seconds/)"
    )


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _is_utf8(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (a file name's undecodable bytes are surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    """``text`` with the bytes that are not UTF-8 written as \\xNN, for messages."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _label_of_folder(name: str) -> str | None:
    try:
        return LABELS[label_to_index(name)]
    except ValueError:
        return None


def _apply_probe(
    df: pd.DataFrame,
    absolute: Sequence[Path],
    on_unreadable: OnUnreadable,
    workers: int | None,
    progress: bool,
    desc: str,
) -> pd.DataFrame:
    probed = probe_headers(absolute, workers, progress, desc)
    df["duration"] = [d for d, _, _ in probed]
    df["sample_rate"] = pd.array([s for _, s, _ in probed], dtype="Float64").astype("Int64")
    bad = [(p, err) for p, (_, _, err) in zip(df["path"], probed, strict=True) if err]
    if bad:
        example = f"{len(bad)} unreadable audio file(s), e.g. {bad[0][1]}"
        if on_unreadable == "raise":
            raise DatasetFormatError(example + " (on_unreadable='drop' skips them)")
        log.warning("%s: %s", example, "dropped" if on_unreadable == "drop" else "kept")
        if on_unreadable == "drop":
            df = df[~df["path"].isin({p for p, _ in bad})].reset_index(drop=True)
    return df


def add_sha256(
    df: pd.DataFrame,
    root: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    hash_cache: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` with ``sha256`` filled from the bytes of each file under ``root``.

    With ``hash_cache`` (a JSON file) hashes of files unchanged since an earlier call are
    reused (:func:`dfa_lib.data.manifest.file_sha256s`). A file that cannot be read gets none.
    """
    root = Path(root)
    paths = [root / p for p in df["path"]]
    digests = file_sha256s(paths, memo=hash_cache, workers=io_workers(workers), progress=progress)
    out = df.copy()
    out["sha256"] = digests
    return out


def _order_columns(df: pd.DataFrame) -> pd.DataFrame:
    ordered = list(MANIFEST_COLUMNS) + [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df.reindex(columns=ordered)


def _corpus_name(root: Path, layout: Path) -> str:
    """Name a corpus after the FoR version one of its folders is named after, else ``root``."""
    for folder in (layout, *layout.parents):
        if folder.name.lower() in _FOLDER_TO_VERSION:
            return _FOLDER_TO_VERSION[folder.name.lower()]
        if folder == root:
            break
    return root.name


def load_for_layout(
    root: str | os.PathLike,
    corpus: str | None = None,
    *,
    language: str = "und",
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Build a manifest from a folder in FoR layout (``training|validation|testing/real|fake/``).

    The layout may sit in ``root`` or a few folders below it (see :func:`find_for_root`);
    ``path`` is relative to ``root``. Any audio extension :func:`dfa_lib.data.audio.load_audio`
    decodes is read; other files are ignored. ``corpus`` (default: the FoR version the folder
    is named after, else the folder's name) fills ``corpus`` and ``source``. With ``probe``
    duration and sample rate are read from the headers; files that cannot be read are dropped
    with a warning (``on_unreadable="keep"`` keeps them with empty values, ``"raise"`` stops).
    ``hash_files`` fills ``sha256`` from every file's bytes, reusing the hashes remembered in
    ``hash_cache`` for unchanged files. A folder beside ``real`` and ``fake`` that holds audio
    but names no label is an error (its clips would silently be left out).
    """
    root = Path(root).expanduser()
    layout = find_for_root(root)
    corpus = corpus or _corpus_name(root, layout)
    rows, absolute, unknown, undecodable = [], [], [], []
    for split_dir, split in _split_dirs(layout).items():
        for label_dir in _visible_dirs(split_dir):
            label = _label_of_folder(label_dir.name)
            if label is None:
                if _audio_files(label_dir):
                    unknown.append(label_dir.relative_to(layout).as_posix())
                continue
            for file in _audio_files(label_dir):
                relative = file.relative_to(root).as_posix()
                if not _is_utf8(relative):
                    undecodable.append(relative)
                    continue
                absolute.append(file)
                rows.append(
                    {
                        "path": relative,
                        "label": label,
                        "split": split,
                        "source": corpus,
                        "speaker": "unknown",
                        "generator": "human" if label == "real" else "unknown",
                        "language": language,
                        "transcript_id": file.stem,
                        "duration": np.nan,
                        "sample_rate": pd.NA,
                        "sha256": None,
                        "corpus": corpus,
                    }
                )
    if undecodable:
        shown = ", ".join(repr(_escaped(p)) for p in undecodable[:5])
        raise DatasetFormatError(
            f"{len(undecodable)} file name(s) under {layout} are not UTF-8 ({shown}): a "
            "manifest keeps paths as UTF-8 text, so these files cannot be listed. Rename them "
            "(for instance `convmv -f latin1 -t utf8 -r --notest <folder>`)"
        )
    if unknown:
        raise DatasetLayoutError(
            f"{layout} has audio in folder(s) that name no label: {', '.join(unknown)}. "
            f"Label folders are named {_LABEL_NAMES}, in any case; rename them, or move "
            "them out of the dataset"
        )
    if not rows:
        raise DatasetLayoutError(
            f"no audio files in {layout}: expected {layout}/{_EXPECTED_LAYOUT} with extensions "
            f"{', '.join(sorted(AUDIO_EXTENSIONS))}"
        )
    df = pd.DataFrame(rows)
    if probe:
        df = _apply_probe(df, absolute, on_unreadable, workers, progress, f"read {corpus}")
    if hash_files:
        df = add_sha256(df, root, workers=workers, progress=progress, hash_cache=hash_cache)
    df = df.sort_values("path", kind="stable").reset_index(drop=True)
    return validate_manifest(_order_columns(df))


def load_for(
    version: str,
    data_dir: str | os.PathLike,
    download: bool = True,
    **layout_kwargs,
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, root)`` for one FoR version, downloading the dataset if needed.

    ``data_dir/<version>`` is used as it is when it exists (downloaded earlier, or a copy put
    there by hand, with or without the archive's inner folder). Otherwise the dataset is
    downloaded with :func:`download_for` (all four versions, as published) when ``download``;
    with ``download=False`` a missing folder is an error. ``layout_kwargs`` go to
    :func:`load_for_layout`. ``path`` is relative to ``root``.
    """
    (version,) = _check_versions([version])
    data_dir = Path(data_dir).expanduser()
    root = data_dir / version
    if not root.is_dir():
        if not download:
            raise DatasetNotFoundError(
                f"no {version} folder in {data_dir}: call with download=True (needs Kaggle "
                f"credentials), or unzip the archive from {FOR_KAGGLE_URL} so that "
                f"{root}/ holds its {version} folder"
            )
        download_for(data_dir, progress=layout_kwargs.get("progress", True))
    layout_kwargs.setdefault("language", "en")  # FoR is English speech
    return load_for_layout(root, corpus=version, **layout_kwargs), root


# --------------------------------------------------------------------------------------------
# CSV of path,label
# --------------------------------------------------------------------------------------------


def _normalise_label(value: object) -> str:
    return LABELS[label_to_index(str(value))]


def load_csv_dataset(
    csv_path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    *,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    numeric_labels: NumericLabels | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Build a manifest from a CSV with columns ``path,label`` (plus any manifest column).

    Relative paths are resolved against ``root``, by default the CSV's folder; the returned
    ``path`` keeps them relative to that root. Labels may be ``real``/``fake`` or
    ``bonafide``/``spoof`` (any case); they become ``real``/``fake``. Labels ``0``/``1`` are
    refused unless ``numeric_labels`` says which class 1 stands for (``"1=fake"`` or
    ``"1=real"``): lists use both conventions, and a guess that is wrong inverts every
    result. ``sha256`` is computed from the files (see :func:`load_for_layout`; a hash the
    CSV gives is checked, not trusted). Without a ``split``
    column (or where it is empty) ``split`` is left empty (NaN): the caller assigns splits,
    e.g. with :func:`dfa_lib.data.protocols.apply_protocol`. Missing manifest columns get the same
    placeholders as :func:`load_for_layout`; ``corpus`` and ``source`` default to the CSV's
    name. Every file must exist: the error lists the missing ones.
    """
    csv_path = Path(csv_path).expanduser()
    if numeric_labels is not None and numeric_labels not in _NUMERIC_LABELS:
        raise ValueError(
            f"numeric_labels must be one of {', '.join(get_args(NumericLabels))} or None, "
            f"got {numeric_labels!r}"
        )
    if not csv_path.is_file():
        raise DatasetNotFoundError(f"no CSV file at {csv_path}")
    base = Path(root).expanduser() if root is not None else csv_path.parent
    text_columns = tuple(c for c in MANIFEST_COLUMNS if c not in ("duration", "sample_rate"))
    try:
        df = pd.read_csv(
            csv_path, dtype=dict.fromkeys(text_columns, str), keep_default_na=False, na_values=[""]
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{csv_path} is not a readable CSV ({err})") from err
    df.columns = [str(c).strip() for c in df.columns]
    missing_cols = [c for c in ("path", "label") if c not in df.columns]
    if missing_cols:
        raise DatasetFormatError(
            f"{csv_path} lacks column(s) {', '.join(missing_cols)}: expected a header "
            f"'path,label' (found: {', '.join(df.columns) or 'no columns'})"
        )
    if df.empty:
        raise DatasetFormatError(f"{csv_path} lists no files")
    if df["path"].isna().any():
        row = int(df.index[df["path"].isna()][0]) + 2  # header is line 1
        raise DatasetFormatError(f"{csv_path}: line {row} has an empty path")
    df["path"] = [PurePosixPath(p.strip().replace("\\", "/")).as_posix() for p in df["path"]]

    labels, bad, numeric = [], [], []
    for line, value in enumerate(df["label"], start=2):
        text = str(value).strip()
        if text in {"0", "1"}:
            numeric.append(f"line {line}: {text!r}")
            if numeric_labels is not None:
                labels.append(_NUMERIC_LABELS[numeric_labels][text])
            continue
        try:
            labels.append(_normalise_label(text))
        except ValueError:
            bad.append(f"line {line}: {value!r}")
    if bad:
        raise DatasetFormatError(
            f"{csv_path} has {len(bad)} unknown label(s) ({'; '.join(bad[:5])}): use {_LABEL_NAMES}"
        )
    if numeric and numeric_labels is None:
        raise DatasetFormatError(
            f"{csv_path} has {len(numeric)} numeric label(s) ({'; '.join(numeric[:3])}), and "
            "whether 1 means fake or real is a convention the file does not state. Write "
            f"{_LABEL_NAMES} in the label column, or (loading it from Python) pass "
            "numeric_labels='1=fake' or '1=real' to say which"
        )
    df["label"] = labels

    if "split" in df.columns:
        split_keys = df["split"].str.strip().str.lower()
        unknown = sorted(set(split_keys.dropna()) - set(_SPLIT_NAMES))
        if unknown:
            raise DatasetFormatError(
                f"{csv_path} has unknown split(s) {unknown}: use {', '.join(SPLITS)} or leave empty"
            )
        df["split"] = split_keys.map(_SPLIT_NAMES)
    else:
        df["split"] = np.nan

    absolute = [base / p for p in df["path"]]
    absent = [p for p, a in zip(df["path"], absolute, strict=True) if not a.is_file()]
    if absent:
        shown = ", ".join(absent[:10]) + (
            f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        )
        raise DatasetNotFoundError(
            f"{len(absent)} of {len(df)} file(s) listed in {csv_path} do not exist under {base}: "
            f"{shown}. Fix the paths, or pass root= (relative paths are resolved against it)"
        )

    name = csv_path.stem
    defaults = {
        "corpus": name,
        "speaker": "unknown",
        "language": "und",
    }
    for column, value in defaults.items():
        df[column] = df[column].fillna(value) if column in df.columns else value
    df["source"] = df["source"].fillna(df["corpus"]) if "source" in df.columns else df["corpus"]
    human = np.where(df["label"] == "real", "human", "unknown")
    df["generator"] = (
        df["generator"].fillna(pd.Series(human)) if "generator" in df.columns else human
    )
    stems = pd.Series([PurePosixPath(p).stem for p in df["path"]])
    df["transcript_id"] = (
        df["transcript_id"].fillna(stems) if "transcript_id" in df.columns else stems
    )
    if "sha256" not in df.columns:
        df["sha256"] = None

    has_info = {"duration", "sample_rate"} <= set(df.columns) and not (
        df[["duration", "sample_rate"]].isna().any().any()
    )
    if probe and not has_info:
        df = _apply_probe(df, absolute, on_unreadable, workers, progress, f"read {name}")
    else:
        for column in ("duration", "sample_rate"):
            if column not in df.columns:
                df[column] = np.nan
    if hash_files:
        given = df["sha256"]
        df = add_sha256(df, base, workers=workers, progress=progress, hash_cache=hash_cache)
        stale = [
            path
            for path, claimed, actual in zip(df["path"], given, df["sha256"], strict=True)
            if isinstance(claimed, str) and claimed.strip() and claimed.strip().lower() != actual
        ]
        if stale:
            log.warning(
                "%s: %d file(s) differ from the sha256 the CSV gives, e.g. %s; the hash of "
                "the file as it is now is used",
                csv_path,
                len(stale),
                stale[0],
            )
    try:
        return validate_manifest(_order_columns(df))
    except ManifestError as err:
        raise DatasetFormatError(f"{csv_path}: {err}") from err


# --------------------------------------------------------------------------------------------
# The single entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike = "data",
    *,
    download: bool = True,
    **kwargs,
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, root)`` for a dataset named the way notebooks and the CLI name it.

    - ``"offline"`` (or ``"offline-main"``), ``"offline-cross"``: the corpora ``make data``
      builds, read from ``data_dir/<corpus>/manifest.csv``;
    - ``"for-original"``, ``"for-norm"``, ``"for-2sec"``, ``"for-rerec"``: Fake-or-Real from
      ``data_dir``, downloaded from Kaggle if absent and ``download`` (see :func:`load_for`);
    - ``"asvspoof2019-la"``, ``"asvspoof2021-la"``, ``"asvspoof2021-df"``, ``"asvspoof5"``,
      ``"in-the-wild"``, ``"mlaad"``: the challenge datasets as distributed, downloaded by hand
      into ``data_dir/<name>`` (see :mod:`dfa_lib.data.challenges`);
    - a path to a folder: any dataset in FoR layout (:func:`load_for_layout`);
    - a path to a ``.csv`` file: a ``path,label`` list (:func:`load_csv_dataset`).

    ``path`` in the manifest is relative to ``root``. ``kwargs`` go to the loader (``probe``,
    ``hash_files``, ``workers``, ``progress`` ...). For a folder, a CSV or FoR, the file hashes
    are remembered in ``<data_dir>/cache/file-hashes.json`` when ``data_dir`` exists (pass
    ``hash_cache=`` to choose another file), and files whose header cannot be read are kept
    (``on_unreadable="keep"``) so that decoding reports them and an evaluation counts them
    instead of losing them here.
    """
    data_dir = Path(data_dir).expanduser()
    key = str(name).strip()
    if data_dir.is_dir():
        kwargs.setdefault("hash_cache", data_dir / "cache" / HASH_MEMO)
    kwargs.setdefault("on_unreadable", "keep")
    if key in OFFLINE_CORPORA:
        corpus = "offline-main" if key == "offline" else key
        root = data_dir / corpus
        manifest = root / "manifest.csv"
        if not manifest.is_file():
            raise DatasetNotFoundError(
                f"no {corpus} corpus: {manifest} does not exist. Build it with `make data` "
                f"(or pass the data_dir= it was built in)"
            )
        return read_manifest(manifest), root
    if key in FOR_VERSIONS:
        return load_for(key, data_dir, download=download, **kwargs)
    if key in CHALLENGE_DATASETS:
        return load_challenge(key, data_dir, **kwargs)
    path = Path(key).expanduser()
    if path.is_dir():
        return load_for_layout(path, **kwargs), path
    if path.is_file() and path.suffix.lower() == ".csv":
        df = load_csv_dataset(path, **kwargs)
        return df, Path(kwargs.get("root") or path.parent)
    choices = f"{', '.join(DATASET_NAMES)}, a folder in FoR layout, or a .csv file of path,label"
    if path.suffix.lower() == ".csv" or "/" in key or os.sep in key:
        raise DatasetNotFoundError(f"no folder or CSV file at {path}: choose {choices}")
    raise UnknownDatasetError(f"unknown dataset {key!r}: choose {choices}")
