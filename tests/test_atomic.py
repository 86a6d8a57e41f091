"""Tests of the atomic writers every cache, marker and result file goes through."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from dfa_lib.core.atomic import (
    atomic_path,
    save_array,
    write_atomically,
    write_json_atomically,
    write_text_atomically,
)


def test_writers_create_folders_and_leave_only_the_target(tmp_path):
    write_text_atomically(tmp_path / "a" / "notes.txt", "é\nline\n")
    write_json_atomically(tmp_path / "a" / "record.json", {"name": "ü", "n": 1})
    save_array(tmp_path / "a" / "x.npy", np.arange(5, dtype=np.int16))
    assert (tmp_path / "a" / "notes.txt").read_bytes() == "é\nline\n".encode()
    assert json.loads((tmp_path / "a" / "record.json").read_text("utf-8")) == {"name": "ü", "n": 1}
    assert (tmp_path / "a" / "record.json").read_text("utf-8").endswith("}\n")
    assert np.load(tmp_path / "a" / "x.npy").tolist() == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "notes.txt",
        "record.json",
        "x.npy",
    ]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "scores.txt"
    target.write_text("old\n")

    def half_then_fail(handle):
        handle.write(b"new but incomp")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.txt"]
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("interrupted")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.txt"]


def test_object_arrays_are_refused_without_a_trace(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_array(tmp_path / "bad.npy", np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_temporary_path_keeps_the_suffix_and_is_hidden_and_unique(tmp_path):
    with (
        atomic_path(tmp_path / "clip.flac") as first,
        atomic_path(tmp_path / "clip.flac") as second,
    ):
        assert first.suffix == ".flac" and first.name.startswith(".")
        assert first != second and first.parent == tmp_path
        first.write_bytes(b"1")
        second.write_bytes(b"2")
    # Both renames happened; the last one wins, each with a whole file.
    assert (tmp_path / "clip.flac").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.flac"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_files_get_the_permissions_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomically(tmp_path / "shared.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp would have given 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_file_its_writer_made_private_gets_the_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "model.safetensors") as temporary:
            # As a writer that creates its file 0600 does (safetensors, mkstemp).
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(handle, b"weights")
            os.close(handle)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == mode
