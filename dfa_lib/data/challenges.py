"""The public anti-spoofing benchmarks, read as distributed: ASVspoof 2019 LA, 2021 LA/DF, 5, In-the-Wild, MLAAD.

Each dataset is downloaded by hand (the licences ask for a form or a click-through) and
unpacked unchanged into ``<data_dir>/<name>``; ``DFA_<NAME>_DIR`` (see :data:`ROOT_VARIABLES`)
or ``root=`` points elsewhere. The loaders read the official protocol (key) files and give a
manifest (:mod:`dfa_lib.data.manifest`) like every other dataset's:

- ``split``: the official partition, ``train`` -> ``training``, ``dev`` -> ``validation``,
  ``eval`` -> ``testing``. ASVspoof 2021 has an evaluation set only: its training and
  validation splits are ASVspoof 2019 LA's train and dev, as the challenge prescribed.
  In-the-Wild and MLAAD have no official partition: every clip is in ``testing`` (an
  evaluation set for detectors trained elsewhere).
- ``generator``: the attack id (``A01`` ... ``A19`` for 2019 LA, ``A07`` ... ``A19`` and the
  VCC teams for 2021, ``A01`` ... ``A32`` for ASVspoof 5, the TTS model for MLAAD);
  ``human`` for bona fide clips, ``unknown`` for In-the-Wild's fakes (which name none).
- ``speaker``: the official speaker id (the target speaker for a spoofed trial), the
  celebrity for In-the-Wild, the M-AILABS reader for MLAAD's bona fide side and the TTS
  model for its fakes.
- ``codec``, ``subset`` (ASVspoof 2021), ``gender`` (ASVspoof 5): kept where the protocol
  gives them. ``source`` is the dataset's name, or for ASVspoof 2021 DF the corpus the
  trial comes from (``asvspoof``, ``vcc2018``, ``vcc2020``).

Every file a protocol lists must exist: a missing one is an error that counts them and
names the first few (``allow_missing=True`` drops them with a warning instead). ``path`` is
relative to the returned root.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from dfa_lib.data.audio import probe_headers
from dfa_lib.data.errors import (
    DatasetFormatError,
    DatasetLayoutError,
    DatasetNotFoundError,
    UnknownDatasetError,
)
from dfa_lib.data.manifest import MANIFEST_COLUMNS, file_sha256s, validate_manifest

__all__ = [
    "CHALLENGE_DATASETS",
    "DOWNLOAD_PAGES",
    "MAILABS_VARIABLE",
    "ROOT_VARIABLES",
    "challenge_root",
    "load_challenge",
    "prepare_asvspoof2019_la",
    "prepare_asvspoof2021",
    "prepare_asvspoof5",
    "prepare_in_the_wild",
    "prepare_mlaad",
]

log = logging.getLogger(__name__)

CHALLENGE_DATASETS: tuple[str, ...] = (
    "asvspoof2019-la",
    "asvspoof2021-la",
    "asvspoof2021-df",
    "asvspoof5",
    "in-the-wild",
    "mlaad",
)
# Where each dataset is published (the error for a missing file points here).
DOWNLOAD_PAGES: dict[str, str] = {
    "asvspoof2019-la": "https://datashare.ed.ac.uk/handle/10283/3336 (LA.zip)",
    "asvspoof2021-la": (
        "https://zenodo.org/records/4837263 (ASVspoof2021_LA_eval.tar.gz) and the keys "
        "LA-keys-full.tar.gz from https://www.asvspoof.org/index2021.html"
    ),
    "asvspoof2021-df": (
        "https://zenodo.org/records/4835108 (ASVspoof2021_DF_eval_part00-03.tar.gz) and the "
        "keys DF-keys-full.tar.gz from https://www.asvspoof.org/index2021.html"
    ),
    "asvspoof5": (
        "https://zenodo.org/records/14498691 (ASVspoof5_protocols.tar.gz, flac_T_*.tar, "
        "flac_D_*.tar, flac_E_*.tar)"
    ),
    "in-the-wild": "https://deepfake-total.com/in_the_wild (release_in_the_wild.zip)",
    "mlaad": "https://deepfake-total.com/mlaad (MLAAD; its bona fide side is M-AILABS)",
    "m-ailabs": "https://github.com/imdatceleste/m-ailabs-dataset (the M-AILABS Speech Dataset)",
}
# Environment variables that point a dataset's root somewhere other than <data_dir>/<name>.
ROOT_VARIABLES: dict[str, str] = {
    name: "DFA_" + re.sub(r"[^A-Z0-9]+", "_", name.upper()) + "_DIR" for name in CHALLENGE_DATASETS
}
MAILABS_VARIABLE = "DFA_MAILABS_DIR"  # the M-AILABS root, MLAAD's bona fide side
MAILABS_FOLDER = "m-ailabs"  # its default place: <data_dir>/m-ailabs

_SPLIT_OF_PARTITION = {"train": "training", "dev": "validation", "eval": "testing"}
_LABEL_OF_KEY = {"bonafide": "real", "spoof": "fake"}
_BONAFIDE_ATTACKS = {"-", "bonafide", "bona-fide"}
_SHOWN_MISSING = 5
_ASV19_PROTOCOLS = {
    "train": "ASVspoof2019.LA.cm.train.trn.txt",
    "dev": "ASVspoof2019.LA.cm.dev.trl.txt",
    "eval": "ASVspoof2019.LA.cm.eval.trl.txt",
}
_ASV5_PROTOCOLS = {
    "train": "ASVspoof5.train.tsv",
    "dev": "ASVspoof5.dev.track_1.tsv",
    "eval": "ASVspoof5.eval.track_1.tsv",
}
# The audio folders the ASVspoof 5 archives unpack to, first match wins.
_ASV5_AUDIO = {"train": ("flac_T",), "dev": ("flac_D",), "eval": ("flac_E_eval", "flac_E")}
_MAILABS_LANGUAGE = re.compile(r"^[a-z]{2}_[A-Z]{2}$")

OnUnreadable = Literal["drop", "keep", "raise"]


# --------------------------------------------------------------------------------------------
# Roots, protocol files and the checks every loader shares
# --------------------------------------------------------------------------------------------


def challenge_root(
    name: str, data_dir: str | os.PathLike, root: str | os.PathLike | None = None
) -> Path:
    """Return where dataset ``name`` is read from: ``root``, else ``$DFA_<NAME>_DIR``, else ``data_dir/name``.

    The folder must exist; the error names the places looked at and where to download it.
    """
    if name not in CHALLENGE_DATASETS:
        raise UnknownDatasetError(
            f"unknown challenge dataset {name!r}: choose {', '.join(CHALLENGE_DATASETS)}"
        )
    variable = ROOT_VARIABLES[name]
    if root is not None:
        chosen, how = Path(root).expanduser(), "root="
    elif os.environ.get(variable):
        chosen, how = Path(os.environ[variable]).expanduser(), f"${variable}"
    else:
        chosen, how = Path(data_dir).expanduser() / name, "data_dir"
    if not chosen.is_dir():
        raise DatasetNotFoundError(
            f"no {name} folder at {chosen} (from {how}): download it from "
            f"{DOWNLOAD_PAGES[name]}, unpack it unchanged into {chosen}, or set {variable} "
            "to the folder it is in"
        )
    return chosen


def _find_file(name: str, root: Path, candidates: Sequence[str], what: str) -> Path:
    """Return the first of ``candidates`` (relative to ``root``) that exists, else raise."""
    for relative in candidates:
        if (root / relative).is_file():
            return root / relative
    looked = ", ".join(str(root / c) for c in candidates)
    raise DatasetNotFoundError(
        f"{name}: no {what}; looked for {looked}. Download it from {DOWNLOAD_PAGES[name]} and "
        f"unpack it unchanged into {root}"
    )


def _find_folder(name: str, root: Path, candidates: Sequence[str], what: str) -> Path:
    """Return the first of the folders ``candidates`` (relative to ``root``) that exists."""
    for relative in candidates:
        if (root / relative).is_dir():
            return root / relative
    looked = ", ".join(str(root / c) for c in candidates)
    raise DatasetNotFoundError(
        f"{name}: no {what} folder; looked for {looked}. Download it from "
        f"{DOWNLOAD_PAGES[name]} and unpack it unchanged into {root}"
    )


def _protocol_lines(path: Path, min_columns: int, layout: str) -> list[tuple[int, list[str]]]:
    """Return ``(line number, columns)`` of each non-empty line; short lines are an error."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < min_columns:
                raise DatasetFormatError(
                    f"{path}:{number}: expected at least {min_columns} columns ({layout}), got "
                    f"{len(parts)}: {line.strip()!r}. Is this the official, unmodified file?"
                )
            rows.append((number, parts))
    if not rows:
        raise DatasetFormatError(f"{path} lists no trials: download the protocol file again")
    return rows


def _label_of_key(key: str, path: Path, number: int) -> str:
    try:
        return _LABEL_OF_KEY[key.lower()]
    except KeyError:
        raise DatasetFormatError(
            f"{path}:{number}: key {key!r} is neither 'bonafide' nor 'spoof'"
        ) from None


def _generator(label: str, attack: str) -> str:
    """The manifest's generator of a trial: ``human`` for bona fide, else its attack id."""
    if label == "real":
        return "human"
    return attack if attack not in _BONAFIDE_ATTACKS else "unknown"


def _keep_present(
    rows: pd.DataFrame,
    root: Path,
    name: str,
    listed_in: str,
    allow_missing: bool,
    download: str | None = None,
) -> pd.DataFrame:
    """Check every listed file exists under ``root``; drop the missing with a warning, or raise.

    ``download`` is where the files come from (default: dataset ``name``'s page).
    """
    present = np.array([(root / p).is_file() for p in rows["path"]], dtype=bool)
    if present.all():
        return rows
    missing = rows.loc[~present, "path"].tolist()
    shown = ", ".join(missing[:_SHOWN_MISSING]) + (" ..." if len(missing) > _SHOWN_MISSING else "")
    counts = f"{len(missing)} of the {len(rows)} files listed in {listed_in} are missing"
    if allow_missing:
        log.warning("%s: %s under %s (dropped): %s", name, counts, root, shown)
        return rows.loc[present].reset_index(drop=True)
    raise DatasetNotFoundError(
        f"{name}: {counts} under {root}: {shown}. Unpack every archive of "
        f"{download or DOWNLOAD_PAGES[name]} there, or pass allow_missing=True to leave them out"
    )


def _finish(
    rows: pd.DataFrame,
    root: Path,
    name: str,
    *,
    probe: bool,
    hash_files: bool,
    hash_cache: str | os.PathLike | None,
    on_unreadable: OnUnreadable,
    workers: int | None,
    progress: bool,
) -> pd.DataFrame:
    """Fill duration, sample rate and sha256 from the files; order and validate the manifest."""
    df = rows.copy()
    df["corpus"] = name
    df["duration"] = np.nan
    df["sample_rate"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["sha256"] = None
    absolute = [root / p for p in df["path"]]
    if probe:
        probed = probe_headers(absolute, workers, progress, f"read {name}")
        df["duration"] = [d for d, _, _ in probed]
        df["sample_rate"] = pd.array([s for _, s, _ in probed], dtype="Float64").astype("Int64")
        bad = [(p, err) for p, (_, _, err) in zip(df["path"], probed, strict=True) if err]
        if bad:
            example = f"{name}: {len(bad)} unreadable audio file(s), e.g. {bad[0][1]}"
            if on_unreadable == "raise":
                raise DatasetFormatError(example + " (on_unreadable='drop' skips them)")
            log.warning("%s: %s", example, "dropped" if on_unreadable == "drop" else "kept")
            if on_unreadable == "drop":
                keep = ~df["path"].isin({p for p, _ in bad})
                df = df[keep].reset_index(drop=True)
                absolute = [a for a, k in zip(absolute, keep, strict=True) if k]
    if hash_files:
        count = workers if workers and workers > 0 else None
        df["sha256"] = file_sha256s(absolute, memo=hash_cache, workers=count, progress=progress)
    ordered = [*MANIFEST_COLUMNS, *(c for c in df.columns if c not in MANIFEST_COLUMNS)]
    df = df.reindex(columns=ordered).sort_values("path", kind="stable").reset_index(drop=True)
    return validate_manifest(df)


def _relative(folder: Path, root: Path) -> str:
    return folder.relative_to(root).as_posix() if folder != root else ""


def _joined(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


# --------------------------------------------------------------------------------------------
# ASVspoof 2019 LA
# --------------------------------------------------------------------------------------------


def _asv19_layout(root: Path) -> Path:
    """Return the ``LA`` folder: ``root/LA`` as LA.zip unpacks, or ``root`` itself."""
    for folder in (root / "LA", root):
        if (folder / "ASVspoof2019_LA_cm_protocols").is_dir():
            return folder
    raise DatasetNotFoundError(
        f"asvspoof2019-la: no LA/ASVspoof2019_LA_cm_protocols folder under {root} (looked in "
        f"{root / 'LA'} and {root}). Download LA.zip from {DOWNLOAD_PAGES['asvspoof2019-la']} "
        f"and unzip it into {root}, so that {root / 'LA'} holds ASVspoof2019_LA_train, _dev, "
        "_eval and _cm_protocols"
    )


def _asv19_rows(root: Path, partitions: Sequence[str], allow_missing: bool) -> pd.DataFrame:
    """List ASVspoof 2019 LA trials of ``partitions`` (paths relative to ``root``)."""
    layout = _asv19_layout(root)
    prefix = _relative(layout, root)
    frames = []
    for partition in partitions:
        protocol = _find_file(
            "asvspoof2019-la",
            layout,
            [f"ASVspoof2019_LA_cm_protocols/{_ASV19_PROTOCOLS[partition]}"],
            f"{partition} protocol",
        )
        audio = _find_folder(
            "asvspoof2019-la", layout, [f"ASVspoof2019_LA_{partition}/flac"], f"{partition} audio"
        )
        folder = _joined(prefix, _relative(audio, layout))
        rows = []
        # SPEAKER FILE - ATTACK KEY, ATTACK '-' for bona fide.
        for number, parts in _protocol_lines(protocol, 5, "SPEAKER FILE - ATTACK KEY"):
            label = _label_of_key(parts[4], protocol, number)
            rows.append(
                {
                    "path": f"{folder}/{parts[1]}.flac",
                    "label": label,
                    "split": _SPLIT_OF_PARTITION[partition],
                    "source": "asvspoof2019-la",
                    "speaker": parts[0],
                    "generator": _generator(label, parts[3]),
                    "language": "en",
                    "transcript_id": parts[1],
                }
            )
        name = "asvspoof2019-la"
        frames.append(_keep_present(pd.DataFrame(rows), root, name, str(protocol), allow_missing))
    return pd.concat(frames, ignore_index=True)


def prepare_asvspoof2019_la(
    root: str | os.PathLike,
    *,
    allow_missing: bool = False,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Return the manifest of ASVspoof 2019 LA (train, dev and eval) unpacked in ``root``.

    Reads ``LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt``
    (lines ``SPEAKER FILE - ATTACK KEY``) and ``LA/ASVspoof2019_LA_{train,dev,eval}/flac``:
    25,380 train, 24,844 dev and 71,237 eval trials, attacks A01-A06 in train and dev and
    A07-A19 in eval. ``root`` may also be the ``LA`` folder itself. The remaining options are
    those of :func:`dfa_lib.data.datasets.load_for_layout`.
    """
    root = Path(root).expanduser()
    rows = _asv19_rows(root, ("train", "dev", "eval"), allow_missing)
    return _finish(
        rows, root, "asvspoof2019-la", probe=probe, hash_files=hash_files,
        hash_cache=hash_cache, on_unreadable=on_unreadable, workers=workers, progress=progress,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# ASVspoof 2021 LA and DF
# --------------------------------------------------------------------------------------------


def _asv21_rows(
    track: str, root: Path, eval_subset: str | None, allow_missing: bool
) -> pd.DataFrame:
    """List the ASVspoof 2021 ``track`` (``LA`` or ``DF``) evaluation trials under ``root``."""
    name = f"asvspoof2021-{track.lower()}"
    keys = _find_file(
        name,
        root,
        [f"keys/{track}/CM/trial_metadata.txt", f"{track}-keys-full/keys/{track}/CM/trial_metadata.txt"],
        f"key file (trial_metadata.txt of {track}-keys-full.tar.gz)",
    )  # fmt: skip
    audio = _find_folder(name, root, [f"ASVspoof2021_{track}_eval/flac"], "evaluation audio")
    folder = _relative(audio, root)
    # LA: SPEAKER FILE CODEC TRANSMISSION ATTACK KEY TRIM SUBSET
    # DF: SPEAKER FILE CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER - - - -
    middle = "TRANSMISSION" if track == "LA" else "SOURCE"
    lines = _protocol_lines(keys, 8, f"SPEAKER FILE CODEC {middle} ATTACK KEY TRIM SUBSET")
    rows = []
    for number, parts in lines:
        if eval_subset is not None and parts[7] != eval_subset:
            continue
        label = _label_of_key(parts[5], keys, number)
        row = {
            "path": f"{folder}/{parts[1]}.flac",
            "label": label,
            "split": "testing",
            "source": parts[3] if track == "DF" else name,
            "speaker": parts[0],
            "generator": _generator(label, parts[4]),
            "language": "en",
            "transcript_id": parts[1],
            "codec": parts[2],
            "subset": parts[7],
        }
        if track == "LA":
            row["transmission"] = parts[3]
        rows.append(row)
    if not rows:
        subsets = sorted({parts[7] for _, parts in lines})
        raise DatasetFormatError(
            f"{keys} has no trial of subset {eval_subset!r} (it has {', '.join(subsets)}): pass "
            "eval_subset= one of them, or None for every trial"
        )
    return _keep_present(pd.DataFrame(rows), root, name, str(keys), allow_missing)


def _under(rows: pd.DataFrame, root: Path, base: Path) -> pd.DataFrame:
    """``rows`` with paths relative to ``root`` rewritten relative to ``base`` (a parent of it)."""
    prefix = _relative(root, base)
    return rows.assign(path=[_joined(prefix, p) for p in rows["path"]])


def prepare_asvspoof2021(
    track: Literal["LA", "DF"],
    root: str | os.PathLike,
    asvspoof2019_root: str | os.PathLike,
    *,
    eval_subset: str | None = "eval",
    allow_missing: bool = False,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, base)`` of the ASVspoof 2021 ``track`` (``"LA"`` or ``"DF"``).

    ``testing`` is the 2021 evaluation set: ``ASVspoof2021_<track>_eval/flac`` under ``root``
    with the keys released after the challenge, ``keys/<track>/CM/trial_metadata.txt``
    (columns: speaker, trial, codec, transmission (LA) or source corpus (DF), attack, key,
    trim, subset, then for DF the vocoder type). ``eval_subset`` keeps the trials of one
    subset: ``"eval"`` (default) is the set the challenge's results are reported on,
    ``"progress"`` the leaderboard phase's, ``"hidden_track"`` (LA) the non-speech-trimmed
    one; None keeps all. ``training`` and ``validation`` are ASVspoof 2019 LA's train and dev
    (from ``asvspoof2019_root``), as the challenge prescribed. ``base`` is the deepest folder
    holding both roots; ``path`` is relative to it.
    """
    if track not in ("LA", "DF"):
        raise ValueError(f"track must be 'LA' or 'DF', got {track!r}")
    root, root19 = Path(root).expanduser(), Path(asvspoof2019_root).expanduser()
    base = Path(os.path.commonpath([root.resolve(), root19.resolve()]))
    train = _asv19_rows(root19, ("train", "dev"), allow_missing)
    test = _asv21_rows(track, root, eval_subset, allow_missing)
    rows = pd.concat(
        [_under(train, root19.resolve(), base), _under(test, root.resolve(), base)],
        ignore_index=True,
    )
    manifest = _finish(
        rows, base, f"asvspoof2021-{track.lower()}", probe=probe, hash_files=hash_files,
        hash_cache=hash_cache, on_unreadable=on_unreadable, workers=workers, progress=progress,
    )  # fmt: skip
    return manifest, base


# --------------------------------------------------------------------------------------------
# ASVspoof 5
# --------------------------------------------------------------------------------------------


def prepare_asvspoof5(
    root: str | os.PathLike,
    *,
    allow_missing: bool = False,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Return the manifest of ASVspoof 5 (track 1: train, dev and eval) unpacked in ``root``.

    Protocols ``ASVspoof5.train.tsv``, ``ASVspoof5.dev.track_1.tsv`` and
    ``ASVspoof5.eval.track_1.tsv`` (in ``root/ASVspoof5_protocols`` as the archive unpacks,
    or in ``root``), whitespace-separated despite the name: speaker, file, gender, codec,
    codec quality, codec seed, attack tag, attack label, key, and a spare column. Audio in
    ``flac_T``, ``flac_D`` and ``flac_E_eval`` (``flac_E``). The attack label (``A01`` ...
    ``A32``) is the generator; codec and gender are kept.
    """
    root = Path(root).expanduser()
    name = "asvspoof5"
    frames = []
    for partition, file in _ASV5_PROTOCOLS.items():
        protocol = _find_file(
            name, root, [f"ASVspoof5_protocols/{file}", file], f"{partition} protocol"
        )
        audio = _find_folder(name, root, _ASV5_AUDIO[partition], f"{partition} audio")
        folder = _relative(audio, root)
        layout = "SPEAKER FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY"
        rows = []
        for number, parts in _protocol_lines(protocol, 9, layout):
            label = _label_of_key(parts[8], protocol, number)
            rows.append(
                {
                    "path": f"{folder}/{parts[1]}.flac",
                    "label": label,
                    "split": _SPLIT_OF_PARTITION[partition],
                    "source": name,
                    "speaker": parts[0],
                    "generator": _generator(label, parts[7]),
                    "language": "en",
                    "transcript_id": parts[1],
                    "codec": parts[3],
                    "gender": parts[2],
                }
            )
        frames.append(_keep_present(pd.DataFrame(rows), root, name, str(protocol), allow_missing))
    return _finish(
        pd.concat(frames, ignore_index=True), root, name, probe=probe, hash_files=hash_files,
        hash_cache=hash_cache, on_unreadable=on_unreadable, workers=workers, progress=progress,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# In-the-Wild
# --------------------------------------------------------------------------------------------


def prepare_in_the_wild(
    root: str | os.PathLike,
    *,
    allow_missing: bool = False,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Return the manifest of In-the-Wild (Müller et al., 2022) unpacked in ``root``.

    ``release_in_the_wild/meta.csv`` (or ``meta.csv`` in ``root``) lists ``file,speaker,label``
    with labels ``bona-fide`` and ``spoof``; the wav files sit beside it. 31,779 clips of 58
    public figures. The dataset has no partition and names no generator: every clip is in
    ``testing``, fakes have generator ``unknown``, the speaker is kept.
    """
    root = Path(root).expanduser()
    name = "in-the-wild"
    meta = _find_file(name, root, ["release_in_the_wild/meta.csv", "meta.csv"], "meta.csv")
    folder = _relative(meta.parent, root)
    with meta.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        absent = [c for c in ("file", "speaker", "label") if c not in columns]
        if absent:
            raise DatasetFormatError(
                f"{meta} lacks column(s) {', '.join(absent)}: expected the header "
                f"'file,speaker,label' (found {', '.join(columns) or 'none'})"
            )
        rows = []
        for number, record in enumerate(reader, start=2):
            record = {k.strip(): (v or "").strip() for k, v in record.items() if k}
            key = record["label"].lower().replace("-", "")
            label = _label_of_key(key, meta, number)
            rows.append(
                {
                    "path": _joined(folder, record["file"]),
                    "label": label,
                    "split": "testing",
                    "source": name,
                    "speaker": record["speaker"] or "unknown",
                    "generator": "human" if label == "real" else "unknown",
                    "language": "en",
                    "transcript_id": PurePosixPath(record["file"]).stem,
                }
            )
    if not rows:
        raise DatasetFormatError(f"{meta} lists no clips: download the dataset again")
    rows = _keep_present(pd.DataFrame(rows), root, name, str(meta), allow_missing)
    return _finish(
        rows, root, name, probe=probe, hash_files=hash_files, hash_cache=hash_cache,
        on_unreadable=on_unreadable, workers=workers, progress=progress,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# MLAAD, with M-AILABS as its bona fide side
# --------------------------------------------------------------------------------------------


def _mailabs_relative(original: str) -> str:
    """An MLAAD ``original_file`` as a path under the M-AILABS root (from its language folder)."""
    parts = [p for p in original.replace("\\", "/").split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if _MAILABS_LANGUAGE.match(part):
            return "/".join(parts[i:])
    return "/".join(parts)


def _mailabs_language(relative: str) -> str:
    """The language code of an M-AILABS clip from its first folder (``en_US`` -> ``en``)."""
    first = relative.split("/", 1)[0]
    return first.split("_", 1)[0] if _MAILABS_LANGUAGE.match(first) else "und"


def _mailabs_speaker(relative: str) -> str:
    """The reader of an M-AILABS clip (``<lang>/by_book/<gender>/<reader>/...``), else ``mix``."""
    parts = relative.split("/")
    if len(parts) > 3 and parts[1] == "by_book" and parts[2] in ("female", "male"):
        return f"m-ailabs/{parts[3]}"
    return "m-ailabs/mix"


def _mlaad_meta(meta: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(meta, sep="|", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{meta} is not a readable '|'-separated table ({err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    absent = [c for c in ("path", "original_file") if c not in table.columns]
    if absent:
        raise DatasetFormatError(
            f"{meta} lacks column(s) {', '.join(absent)}: expected MLAAD's header "
            "'path|original_file|language|...|model_name|...' (found "
            f"{', '.join(table.columns)})"
        )
    return table


def prepare_mlaad(
    root: str | os.PathLike,
    bonafide_dir: str | os.PathLike,
    *,
    allow_missing: bool = False,
    probe: bool = True,
    hash_files: bool = True,
    hash_cache: str | os.PathLike | None = None,
    on_unreadable: OnUnreadable = "drop",
    workers: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, base)`` of MLAAD in ``root`` with its bona fide side from M-AILABS.

    MLAAD holds fakes only: ``fake/<language>/<model>/*.wav`` with a ``meta.csv`` per model
    folder, ``|``-separated (``path|original_file|language|is_original_language|duration|
    training_data|model_name|architecture|transcript``). The generator is ``model_name`` (the
    folder's name where the column is absent), the language is kept. Each fake reads aloud
    the transcript of an M-AILABS clip (``original_file``), or its translation into the
    model's language. The bona fide side is those clips, found under ``bonafide_dir`` (the
    M-AILABS root, holding ``en_US/by_book/...``), so that real and fake clips share their
    sentences; ``transcript_id`` links each fake to its original. MLAAD has no official partition: every clip is in ``testing``. ``base`` is the
    deepest folder holding both roots; ``path`` is relative to it.
    """
    root, bonafide = Path(root).expanduser(), Path(bonafide_dir).expanduser()
    name = "mlaad"
    if not bonafide.is_dir():
        raise DatasetNotFoundError(
            f"mlaad: no M-AILABS folder at {bonafide} for MLAAD's bona fide side; download it "
            f"from {DOWNLOAD_PAGES['m-ailabs']} and unpack it there (so that it holds "
            f"en_US/by_book/...), or set {MAILABS_VARIABLE}"
        )
    fake_root = _find_folder(name, root, ["fake"], "fake")
    metas = sorted(fake_root.glob("*/*/meta.csv"))
    if not metas:
        raise DatasetLayoutError(
            f"mlaad: no meta.csv under {fake_root}: expected fake/<language>/<model>/meta.csv "
            f"as MLAAD is distributed ({DOWNLOAD_PAGES[name]})"
        )
    fakes, reals = [], {}
    for meta in metas:
        table = _mlaad_meta(meta)
        model_dir = meta.parent
        language = model_dir.parent.name
        for record in table.to_dict(orient="records"):
            listed = record["path"].strip().replace("\\", "/").removeprefix("./")
            # The column holds the path from MLAAD's root; a bare file name is the folder's.
            in_root = root / listed
            relative = (
                listed
                if in_root.is_file()
                else _relative(model_dir / PurePosixPath(listed).name, root)
            )
            original = _mailabs_relative(str(record["original_file"]).strip())
            transcript = PurePosixPath(original or relative).stem
            model = (record.get("model_name") or "").strip() or model_dir.name
            fakes.append(
                {
                    "path": relative,
                    "label": "fake",
                    "split": "testing",
                    "source": name,
                    "speaker": model,
                    "generator": model,
                    "language": (record.get("language") or "").strip() or language,
                    "transcript_id": transcript,
                }
            )
            if not original:
                continue  # a fake without a recorded original has no bona fide twin
            reals[original] = {
                "path": original,
                "label": "real",
                "split": "testing",
                "source": "m-ailabs",
                "speaker": _mailabs_speaker(original),
                "generator": "human",
                "language": _mailabs_language(original),
                "transcript_id": transcript,
            }
    fake_rows = _keep_present(
        pd.DataFrame(fakes), root, name, f"{fake_root}/*/*/meta.csv", allow_missing
    )
    real_rows = _keep_present(
        pd.DataFrame(list(reals.values())), bonafide, name,
        f"the original_file column of {fake_root}/*/*/meta.csv", allow_missing,
        DOWNLOAD_PAGES["m-ailabs"],
    )  # fmt: skip
    base = Path(os.path.commonpath([root.resolve(), bonafide.resolve()]))
    rows = pd.concat(
        [_under(fake_rows, root.resolve(), base), _under(real_rows, bonafide.resolve(), base)],
        ignore_index=True,
    )
    manifest = _finish(
        rows, base, name, probe=probe, hash_files=hash_files, hash_cache=hash_cache,
        on_unreadable=on_unreadable, workers=workers, progress=progress,
    )  # fmt: skip
    return manifest, base


# --------------------------------------------------------------------------------------------
# The entry point load_dataset uses
# --------------------------------------------------------------------------------------------


def _mailabs_root(data_dir: Path, bonafide_dir: str | os.PathLike | None) -> Path:
    if bonafide_dir is not None:
        return Path(bonafide_dir).expanduser()
    if os.environ.get(MAILABS_VARIABLE):
        return Path(os.environ[MAILABS_VARIABLE]).expanduser()
    return data_dir / MAILABS_FOLDER


def load_challenge(
    name: str,
    data_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    asvspoof2019_root: str | os.PathLike | None = None,
    bonafide_dir: str | os.PathLike | None = None,
    eval_subset: str | None = "eval",
    **options,
) -> tuple[pd.DataFrame, Path]:
    """Return ``(manifest, root)`` of challenge dataset ``name`` (one of :data:`CHALLENGE_DATASETS`).

    The dataset is read from ``root``, else ``$DFA_<NAME>_DIR``, else ``data_dir/<name>``
    (:func:`challenge_root`). ASVspoof 2021 also reads ASVspoof 2019 LA (its training and
    validation splits) from ``asvspoof2019_root``, found the same way; MLAAD reads its bona
    fide side from ``bonafide_dir``, else ``$DFA_MAILABS_DIR``, else ``data_dir/m-ailabs``.
    ``eval_subset`` chooses ASVspoof 2021's evaluation subset (:func:`prepare_asvspoof2021`).
    ``options`` go to the loader: ``allow_missing``, ``probe``, ``hash_files``,
    ``hash_cache``, ``on_unreadable``, ``workers``, ``progress``.
    """
    data_dir = Path(data_dir).expanduser()
    folder = challenge_root(name, data_dir, root)
    if name == "asvspoof2019-la":
        return prepare_asvspoof2019_la(folder, **options), folder
    if name in ("asvspoof2021-la", "asvspoof2021-df"):
        root19 = challenge_root("asvspoof2019-la", data_dir, asvspoof2019_root)
        track = "LA" if name.endswith("-la") else "DF"
        return prepare_asvspoof2021(track, folder, root19, eval_subset=eval_subset, **options)
    if name == "asvspoof5":
        return prepare_asvspoof5(folder, **options), folder
    if name == "in-the-wild":
        return prepare_in_the_wild(folder, **options), folder
    return prepare_mlaad(folder, _mailabs_root(data_dir, bonafide_dir), **options)
