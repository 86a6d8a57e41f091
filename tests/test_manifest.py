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
