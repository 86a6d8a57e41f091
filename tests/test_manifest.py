"""Manifest validation, atomic writing and the order-independent checksum."""

from __future__ import annotations

import pandas as pd
import pytest

from dfa_lib.data.manifest import (
    ManifestError,
    file_sha256,
    manifest_checksum,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": ["training/real/a.wav", "training/fake/b.wav"],
            "label": ["real", "fake"],
            "split": ["training", "training"],
            "duration": [1.5, 2.25],
            "transcript_id": ["001", "001"],
        }
    )


def test_round_trip_and_checksum_ignores_row_order(tmp_path):
    df = _frame()
    path = write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(path)
    assert list(back["path"]) == sorted(df["path"])
    assert back["transcript_id"].tolist() == ["001", "001"]  # ids stay strings
    assert manifest_checksum(back) == manifest_checksum(df.iloc[::-1])
    changed = df.copy()
    changed.loc[0, "duration"] = 1.6
    assert manifest_checksum(changed) != manifest_checksum(df)


def test_validation_errors(tmp_path):
    with pytest.raises(ManifestError, match="required column"):
        validate_manifest(pd.DataFrame({"path": ["x"]}))
    bad = _frame()
    bad.loc[0, "label"] = "bonafide?"
    with pytest.raises(ManifestError, match="unknown labels"):
        validate_manifest(bad)
    bad = _frame()
    bad.loc[0, "split"] = "train"
    with pytest.raises(ManifestError, match="unknown splits"):
        validate_manifest(bad)
    with pytest.raises(ManifestError, match="missing under"):
        validate_manifest(_frame(), root=tmp_path)
    with pytest.raises(ManifestError, match="make data"):
        read_manifest(tmp_path / "absent.csv")


def test_file_sha256(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert file_sha256(p).startswith("ba7816bf")


def test_clip_ids_are_content_hashes_where_known_else_paths():
    from dfa_lib.data.manifest import clip_ids

    df = pd.DataFrame(
        {"path": ["a.wav", "b.wav", "c.wav"], "sha256": ["f" * 64, None, ""], "label": "real"}
    )
    assert clip_ids(df).tolist() == ["f" * 64, "b.wav", "c.wav"]
    assert clip_ids(df.drop(columns="sha256")).tolist() == ["a.wav", "b.wav", "c.wav"]


def test_file_sha256s_remember_unchanged_files_and_see_changed_bytes(tmp_path, monkeypatch):
    import os

    from dfa_lib.data import manifest

    monkeypatch.setattr(manifest, "_RACY_NS", 0)  # remember files written a moment ago
    hashed = []
    real_hash = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: hashed.append(p) or real_hash(p))
    a, b, memo = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "cache" / "memo.json"
    a.write_bytes(b"abc")
    b.write_bytes(b"xyz")
    first = manifest.file_sha256s([a, b, tmp_path / "gone.bin"], memo=memo)
    assert first == [real_hash(a), real_hash(b), None] and len(hashed) == 2
    assert manifest.file_sha256s([b, a], memo=memo) == first[1::-1]
    assert len(hashed) == 2  # both remembered: nothing read again
    # Same size, and the modification time put back, as `cp -p` or `rsync -t` would.
    before = a.stat()
    a.write_bytes(b"abd")
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert a.stat().st_size == before.st_size and a.stat().st_mtime_ns == before.st_mtime_ns
    again = manifest.file_sha256s([a, b], memo=memo)
    assert again == [real_hash(a), first[1]] and again[0] != first[0] and len(hashed) == 3
    memo.write_text("{not json")  # a damaged memo is rebuilt, not trusted
    assert manifest.file_sha256s([a], memo=memo) == [real_hash(a)]


def test_split_checksum_follows_the_content_hash():
    from dfa_lib.data.manifest import split_checksum

    df = _frame().assign(sha256=["a" * 64, "b" * 64])
    assert split_checksum(df) != split_checksum(df.assign(sha256=["a" * 64, "c" * 64]))
    assert split_checksum(df) == split_checksum(df.iloc[::-1])
