"""Dataset loaders: FoR layout, CSV lists, the Kaggle download (network call replaced) and errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from dfa_lib.data import datasets as ds
from dfa_lib.data.manifest import MANIFEST_COLUMNS, file_sha256, write_manifest

SR = 16000
_KAGGLE_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR")
# The Kaggle archive's published nesting: our version name, then the folder inside it.
_ARCHIVE_FOLDERS = {
    "for-2sec": "for-2sec/for-2seconds",
    "for-norm": "for-norm/for-norm",
    "for-original": "for-original/for-original",
    "for-rerec": "for-rerec/for-rerecorded",
}


def _clip(seconds: float, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, seconds: float = 0.25, sr: int = SR, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _clip(seconds), sr, format=fmt)
    return path


def _layout(root: Path, split_names=("training", "validation", "testing")) -> Path:
    """Two clips per split: one real wav, one fake flac of a different length."""
    for split in split_names:
        _write(root / split / "real" / f"{split}_r.wav", seconds=0.25)
        _write(root / split / "fake" / f"{split}_f.flac", seconds=0.5)
    return root


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A home folder of its own with no Kaggle credentials anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in _KAGGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def kaggle_net(sandbox, monkeypatch, tmp_path):
    """The real Kaggle client with only its network download replaced by a local archive."""
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key-0123")
    from kaggle.api.kaggle_api_extended import KaggleApi

    state = {"calls": 0, "archive": None, "error": None}

    def fake_download(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=()):
        assert self._authenticated and dataset == ds.FOR_KAGGLE_DATASET and not unzip
        state["calls"] += 1
        if state["error"] is not None:
            raise state["error"]
        out = Path(path) / "the-fake-or-real-dataset.zip"
        out.write_bytes(state["archive"].read_bytes())

    monkeypatch.setattr(KaggleApi, "dataset_download_files", fake_download)
    return state


def _archive(tmp_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip shaped like Kaggle's: four versions, each one folder deeper, with wav and mp3-less clips."""
    src = tmp_path / "archive-src"
    for folder in _ARCHIVE_FOLDERS.values():
        _layout(src / folder)
    out = tmp_path / "built.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(src.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def _leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


# ------------------------------------------------------------------ FoR layout


def test_layout_builds_a_full_manifest(tmp_path):
    root = _layout(tmp_path / "mine")
    df = ds.load_for_layout(root, progress=False)
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert len(df) == 6
    assert df["path"].iloc[0] == "testing/fake/testing_f.flac"  # relative, posix, sorted
    assert set(df["split"]) == {"training", "validation", "testing"}
    fake = df[df["label"] == "fake"]
    real = df[df["label"] == "real"]
    assert (fake["generator"] == "unknown").all() and (real["generator"] == "human").all()
    assert np.allclose(fake["duration"], 0.5) and np.allclose(real["duration"], 0.25)
    assert (df["sample_rate"] == SR).all()
    assert (df["corpus"] == "mine").all() and (df["source"] == "mine").all()
    assert (df["speaker"] == "unknown").all() and (df["language"] == "und").all()
    assert df["transcript_id"].iloc[0] == "testing_f"
    # Every clip carries its content hash, so checksums of a split cover its audio.
    assert df["sha256"].tolist() == [file_sha256(root / p) for p in df["path"]]
    assert ds.load_for_layout(root, hash_files=False, progress=False)["sha256"].isna().all()


def test_layout_is_case_insensitive_nested_and_hashes_on_request(tmp_path):
    root = tmp_path / "copy"
    _layout(root / "for-2seconds", split_names=("Training", "VALIDATION", "testing"))
    (root / "for-2seconds" / "Training" / "real" / "notes.txt").write_text("not audio")
    df = ds.load_for_layout(root, hash_files=True, progress=False)
    assert len(df) == 6 and df["path"].str.startswith("for-2seconds/").all()
    assert set(df["split"]) == {"training", "validation", "testing"}
    assert (df["corpus"] == "for-2sec").all()  # the archive's folder name maps to our version
    first = df.iloc[0]
    assert first["sha256"] == file_sha256(root / first["path"])


def test_unreadable_files_are_dropped_kept_or_raised(tmp_path):
    root = _layout(tmp_path / "d")
    (root / "training" / "fake" / "broken.wav").write_bytes(b"RIFF....not a wave file")
    assert len(ds.load_for_layout(root, progress=False)) == 6
    kept = ds.load_for_layout(root, on_unreadable="keep", progress=False)
    assert kept.loc[kept["path"].str.endswith("broken.wav"), "duration"].isna().all()
    with pytest.raises(ds.DatasetFormatError, match="1 unreadable audio file"):
        ds.load_for_layout(root, on_unreadable="raise", progress=False)


def test_missing_folder_empty_layout_and_ambiguous_root_are_explained(tmp_path):
    with pytest.raises(ds.DatasetNotFoundError, match=r"no folder at .*nowhere.*FoR layout"):
        ds.load_for_layout(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "training" / "real").mkdir(parents=True)
    (empty / "training" / "real" / "readme.txt").write_text("x")
    with pytest.raises(
        ds.DatasetLayoutError, match=r"no audio files .*training\|validation\|testing/real\|fake"
    ):
        ds.load_for_layout(empty)
    flat = tmp_path / "flat"
    _write(flat / "a.wav")
    with pytest.raises(ds.DatasetLayoutError, match=r"no FoR layout under .*expected"):
        ds.load_for_layout(flat)
    both = tmp_path / "both"
    _layout(both / "for-norm")
    _layout(both / "for-2sec")
    with pytest.raises(ds.DatasetLayoutError, match="several FoR-layout folders .*pass one"):
        ds.load_for_layout(both)


# ------------------------------------------------------------------ Kaggle download


def test_download_extracts_all_versions_once(kaggle_net, tmp_path):
    kaggle_net["archive"] = _archive(tmp_path)
    data_dir = tmp_path / "data"
    assert ds.download_for(data_dir, progress=False) == data_dir
    assert kaggle_net["calls"] == 1
    assert _leftovers(data_dir) == [".for-download-complete.json", *sorted(ds.FOR_VERSIONS)]
    marker = json.loads((data_dir / ".for-download-complete.json").read_text())
    assert marker["versions"] == sorted(ds.FOR_VERSIONS)
    assert "not-a-real-key" not in (data_dir / ".for-download-complete.json").read_text()
    assert (
        data_dir / "for-rerec" / "for-rerecorded" / "testing" / "fake" / "testing_f.flac"
    ).is_file()

    ds.download_for(data_dir, progress=False)  # idempotent: the marker says it is done
    df, root = ds.load_for("for-rerec", data_dir, progress=False)
    assert kaggle_net["calls"] == 1
    assert root == data_dir / "for-rerec" and len(df) == 6
    assert (df["corpus"] == "for-rerec").all() and (df["language"] == "en").all()
    assert df["path"].str.startswith("for-rerecorded/").all()

    ds.download_for(data_dir, force=True, progress=False)
    assert kaggle_net["calls"] == 2


def test_load_for_downloads_when_absent_and_load_dataset_routes_there(kaggle_net, tmp_path):
    kaggle_net["archive"] = _archive(tmp_path)
    df, root = ds.load_dataset("for-2sec", tmp_path / "data", progress=False)
    assert kaggle_net["calls"] == 1 and len(df) == 6
    assert (root / df["path"].iloc[0]).is_file()


def test_no_credentials_says_what_to_do(sandbox, tmp_path):
    with pytest.raises(ds.KaggleCredentialsError) as err:
        ds.download_for(tmp_path / "data")
    assert str(err.value) == (
        "no Kaggle credentials: put kaggle.json in ~/.kaggle or set KAGGLE_USERNAME/KAGGLE_KEY, "
        "or pass data_dir= pointing at a downloaded copy"
    )
    assert not (tmp_path / "data" / ".for-download-complete.json").exists()
    with pytest.raises(ds.DatasetNotFoundError, match="download=True"):
        ds.load_for("for-norm", tmp_path / "data", download=False)


def test_credentials_are_found_where_the_client_looks(sandbox, tmp_path, monkeypatch):
    assert ds.kaggle_credentials_source() is None
    (sandbox / ".kaggle").mkdir()
    (sandbox / ".kaggle" / "kaggle.json").write_text('{"username": "u"}')  # no key: not enough
    assert ds.kaggle_credentials_source() is None
    (sandbox / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "secret-123"}')
    assert ds.kaggle_credentials_source().endswith("kaggle.json")
    other = tmp_path / "cfg"
    other.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(other))
    assert ds.kaggle_credentials_source() is None  # the client reads only KAGGLE_CONFIG_DIR now
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-456")
    assert "secret" not in ds.kaggle_credentials_source()


def test_network_failure_is_reported_with_the_way_out(kaggle_net, tmp_path):
    kaggle_net["error"] = requests.exceptions.ConnectionError(
        "Max retries exceeded: not-a-real-key-0123"
    )
    with pytest.raises(ds.DatasetDownloadError) as err:
        ds.download_for(tmp_path / "data", progress=False)
    message = str(err.value)
    assert "failed (ConnectionError" in message and "data_dir=" in message
    assert "not-a-real-key" not in message  # never echo a credential
    assert _leftovers(tmp_path / "data") == []  # no marker, no empty download folder


def test_refused_credentials_are_a_credentials_error(kaggle_net, tmp_path):
    response = requests.Response()
    response.status_code = 401
    kaggle_net["error"] = requests.exceptions.HTTPError("401 Unauthorized", response=response)
    with pytest.raises(ds.KaggleCredentialsError, match=r"refused .*HTTP 401.*data_dir="):
        ds.download_for(tmp_path / "data", progress=False)


def _corrupt_crc(path: Path) -> Path:
    """Flip one byte of the last stored member's data so its CRC check fails mid-extraction."""
    with zipfile.ZipFile(path) as zf:
        last = zf.infolist()[-1]
    blob = bytearray(path.read_bytes())
    header = last.header_offset
    name_len = int.from_bytes(blob[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(blob[header + 28 : header + 30], "little")
    blob[header + 30 + name_len + extra_len + 100] ^= 0xFF
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("damage", ["crc", "truncated"])
def test_corrupt_archive_leaves_nothing_behind(kaggle_net, tmp_path, damage):
    archive = _archive(tmp_path)
    if damage == "crc":
        _corrupt_crc(archive)
    else:
        archive.write_bytes(archive.read_bytes()[:5000])
    kaggle_net["archive"] = archive
    data_dir = tmp_path / "data"
    with pytest.raises(ds.DatasetArchiveError, match="corrupt or truncated.*download again"):
        ds.download_for(data_dir, progress=False)
    # No version folder, no temporary folder, no marker, and the bad archive is gone.
    assert [p for p in _leftovers(data_dir) if p != ".for-download"] == []
    assert not list((data_dir / ".for-download").glob("*.zip"))


@pytest.mark.parametrize("member", ["../evil.wav", "/tmp/evil.wav", "for-2sec/../../evil.wav"])
def test_zip_slip_member_is_rejected_before_writing(kaggle_net, tmp_path, member):
    kaggle_net["archive"] = _archive(tmp_path, extra={member: b"x"})
    data_dir = tmp_path / "data"
    with pytest.raises(ds.DatasetArchiveError, match="unsafe archive member"):
        ds.download_for(data_dir, progress=False)
    assert not (tmp_path / "evil.wav").exists() and not Path("/tmp/evil.wav").exists()
    assert [p for p in _leftovers(data_dir) if p != ".for-download"] == []


def test_archive_without_the_dataset_is_rejected(kaggle_net, tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/else.wav", b"x")
    kaggle_net["archive"] = other
    with pytest.raises(ds.DatasetArchiveError, match="not the expected FoR archive"):
        ds.download_for(tmp_path / "data", versions=("for-norm",), progress=False)


# ------------------------------------------------------------------ CSV and entry point


def test_csv_resolves_paths_and_normalises_labels(tmp_path):
    _write(tmp_path / "audio" / "a.wav")
    _write(tmp_path / "audio" / "b.flac", seconds=0.5)
    _write(tmp_path / "audio" / "c.wav")
    csv = tmp_path / "lists" / "mine.csv"
    csv.parent.mkdir()
    csv.write_text(
        "path,label,split,speaker\na.wav,bonafide,train,s1\nb.flac,spoof,,s2\nc.wav,Fake,,\n"
    )
    df = ds.load_csv_dataset(csv, root=tmp_path / "audio", progress=False)
    assert df["label"].tolist() == ["real", "fake", "fake"]
    assert df["split"].iloc[0] == "training" and df["split"].iloc[1:].isna().all()
    assert df["speaker"].tolist() == ["s1", "s2", "unknown"]
    assert df["generator"].tolist() == ["human", "unknown", "unknown"]
    assert np.allclose(df["duration"], [0.25, 0.5, 0.25]) and (df["corpus"] == "mine").all()

    frame, root = ds.load_dataset(str(csv), tmp_path, root=tmp_path / "audio", progress=False)
    assert root == tmp_path / "audio" and len(frame) == 3


def test_csv_errors_name_the_problem(tmp_path):
    _write(tmp_path / "here.wav")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\nhere.wav,real\ngone1.wav,fake\nsub/gone2.wav,fake\n")
    with pytest.raises(
        ds.DatasetNotFoundError, match=r"2 of 3 file\(s\).*gone1.wav, sub/gone2.wav"
    ):
        ds.load_csv_dataset(csv)
    csv.write_text("path,label\nhere.wav,maybe\n")
    with pytest.raises(ds.DatasetFormatError, match=r"unknown label.*line 2: 'maybe'.*real/fake"):
        ds.load_csv_dataset(csv)
    csv.write_text("file,class\nhere.wav,real\n")
    with pytest.raises(ds.DatasetFormatError, match="lacks column.*path, label"):
        ds.load_csv_dataset(csv)
    csv.write_text("path,label,split\nhere.wav,real,holdout\n")
    with pytest.raises(ds.DatasetFormatError, match="unknown split"):
        ds.load_csv_dataset(csv)


def test_load_dataset_names_folders_and_errors(tmp_path):
    with pytest.raises(ds.UnknownDatasetError) as err:
        ds.load_dataset("asvspoof", tmp_path)
    for choice in ("offline", "for-2sec", "for-rerec", "FoR layout", ".csv"):
        assert choice in str(err.value)
    with pytest.raises(ds.DatasetNotFoundError, match="make data"):
        ds.load_dataset("offline", tmp_path)
    with pytest.raises(ds.DatasetNotFoundError, match="no folder or CSV file"):
        ds.load_dataset(str(tmp_path / "missing.csv"), tmp_path)

    folder = _layout(tmp_path / "folder")
    df, root = ds.load_dataset(str(folder), tmp_path, progress=False)
    assert root == folder and len(df) == 6

    corpus = tmp_path / "offline-main"
    write_manifest(df.assign(corpus="offline-main"), corpus / "manifest.csv")
    df2, root2 = ds.load_dataset("offline", tmp_path)
    assert root2 == corpus and df2["path"].tolist() == df["path"].tolist()


def test_numeric_labels_need_their_convention_stated(tmp_path):
    _write(tmp_path / "a.wav")
    _write(tmp_path / "b.wav")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\na.wav,0\nb.wav,1\n")
    # 1 means fake in some lists and bona fide in others (ASVspoof's key files say both ways).
    with pytest.raises(ds.DatasetFormatError) as err:
        ds.load_csv_dataset(csv, progress=False)
    message = str(err.value)
    for hint in ("numeric", "real/fake", "bonafide/spoof", "numeric_labels='1=fake'"):
        assert hint in message
    fake_is_one = ds.load_csv_dataset(csv, numeric_labels="1=fake", progress=False)
    assert fake_is_one["label"].tolist() == ["real", "fake"]
    real_is_one = ds.load_csv_dataset(csv, numeric_labels="1=real", progress=False)
    assert real_is_one["label"].tolist() == ["fake", "real"]
    with pytest.raises(ValueError, match="numeric_labels"):
        ds.load_csv_dataset(csv, numeric_labels="yes", progress=False)


def test_an_unknown_label_folder_is_refused_by_name(tmp_path):
    root = _layout(tmp_path / "d")
    _write(root / "testing" / "fakes" / "typo.wav")  # would silently lose these clips
    (root / "testing" / "notes").mkdir()  # no audio in it: nothing lost, nothing said
    with pytest.raises(ds.DatasetLayoutError) as err:
        ds.load_for_layout(root, progress=False)
    message = str(err.value)
    assert "testing/fakes" in message and "notes" not in message
    assert "real" in message and "fake" in message and "spoof" in message


def test_csv_clips_carry_content_hashes_remembered_between_loads(tmp_path, monkeypatch):
    import os

    from dfa_lib.data import manifest
    from dfa_lib.data.manifest import split_checksum

    monkeypatch.setattr(manifest, "_RACY_NS", 0)  # remember files written a moment ago
    hashed = []
    real_hash = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: hashed.append(p) or real_hash(p))
    a, b = _write(tmp_path / "a.wav"), _write(tmp_path / "b.wav")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\na.wav,real\nb.wav,fake\n")
    memo = tmp_path / "cache" / "hashes.json"
    first = ds.load_csv_dataset(csv, hash_cache=memo, progress=False)
    assert first["sha256"].tolist() == [real_hash(a), real_hash(b)] and len(hashed) == 2
    again = ds.load_csv_dataset(csv, hash_cache=memo, progress=False)
    assert len(hashed) == 2 and split_checksum(again) == split_checksum(first)
    # New samples, same length and modification time: the checksum still sees it.
    before = a.stat()
    sf.write(a, _clip(0.25, freq=700.0), SR)
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert a.stat().st_size == before.st_size
    changed = ds.load_csv_dataset(csv, hash_cache=memo, progress=False)
    assert changed["sha256"].iloc[0] == real_hash(a) != first["sha256"].iloc[0]
    assert split_checksum(changed) != split_checksum(first)
    # load_dataset remembers the hashes under <data_dir>/cache.
    ds.load_dataset(str(csv), tmp_path, progress=False)
    assert (tmp_path / "cache" / "file-hashes.json").is_file()


def test_a_file_name_that_is_not_utf8_is_refused_by_name(tmp_path):
    import os

    root = _layout(tmp_path / "d")
    odd = os.fsdecode(os.fsencode(root / "testing" / "real") + b"/caf\xe9.wav")
    try:
        Path(odd).write_bytes((root / "testing" / "real" / "testing_r.wav").read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    # A manifest is UTF-8 text: the name cannot be listed, so it is named, not a crash.
    with pytest.raises(ds.DatasetFormatError, match=r"not UTF-8 \('testing/real/caf\\\\xe9.wav'\)"):
        ds.load_for_layout(root, progress=False)
