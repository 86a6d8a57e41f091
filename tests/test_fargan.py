"""Building the FARGAN vocoder from a pinned source tarball, on tarballs made here."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import dfa_lib.data.corpus.__main__ as corpus_cli
from dfa_lib.data.corpus import fargan
from dfa_lib.data.corpus.__main__ import main as corpus_main
from dfa_lib.data.corpus.fargan import FarganUnavailableError, SourceArchive, install_fargan

# A stand-in source tree with the same build interface as opus: ./configure, then
# `make fargan_demo` leaves the program in the tree's top folder.
CONFIGURE = """#!/bin/sh
for flag in "$@"; do echo "$flag" >> configured.txt; done
"""
MAKEFILE = """fargan_demo:
\tprintf '#!/bin/sh\\necho built\\n' > fargan_demo
\tchmod +x fargan_demo
"""


def _tarball(path: Path, folder: str = "opus-9.9", configure: str = CONFIGURE) -> SourceArchive:
    with tarfile.open(path, "w:gz") as tar:
        for name, text, mode in (("configure", configure, 0o755), ("Makefile", MAKEFILE, 0o644)):
            data = text.encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return SourceArchive(url=path.as_uri(), sha256=digest, folder=folder)


def test_install_fetches_verifies_builds_and_installs(tmp_path: Path) -> None:
    source = _tarball(tmp_path / "opus_9.9.orig.tar.gz")
    target = install_fargan(tmp_path / "env", source=source, cache_dir=tmp_path / "cache", jobs=1)

    assert target == tmp_path / "env" / "bin" / "fargan_demo"
    assert target.stat().st_mode & stat.S_IXUSR
    # The tarball was downloaded (here from a file URL) into the cache, and kept.
    assert (tmp_path / "cache" / "opus_9.9.orig.tar.gz").is_file()


def test_the_installed_program_must_carry_this_code_s_build_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _tarball(tmp_path / "opus_9.9.orig.tar.gz")
    target = install_fargan(tmp_path / "env", source=source, cache_dir=tmp_path / "cache", jobs=1)
    stamp = target.with_name("fargan_demo.build")
    assert stamp.read_text().strip() == fargan.build_id(source)
    monkeypatch.delenv("DFA_FARGAN", raising=False)
    monkeypatch.setattr(fargan.sys, "prefix", str(tmp_path / "env"))
    monkeypatch.setenv("PATH", str(tmp_path))
    # Built from another tarball than the pinned opus source: refused, with the way out.
    with pytest.raises(FarganUnavailableError, match="another build .*install-fargan"):
        fargan.fargan_executable()
    stamp.unlink()  # a build from before the stamp existed is just as unknown
    with pytest.raises(FarganUnavailableError, match="build id none"):
        fargan.fargan_executable()
    stamp.write_text(fargan.build_id() + "\n")
    assert fargan.fargan_executable() == target


def test_the_build_id_follows_the_configure_flags() -> None:
    # A build with run-time CPU dispatch makes other waveforms, so it is another build.
    dispatching = tuple(f for f in fargan.CONFIGURE_FLAGS if f != "--disable-rtcd")
    assert "--disable-rtcd" in fargan.CONFIGURE_FLAGS
    assert fargan.build_id(flags=dispatching) != fargan.build_id()
    other = SourceArchive(url="file:///x", sha256="0" * 64, folder="opus")
    assert fargan.build_id(other) != fargan.build_id()


def test_a_tarball_with_another_checksum_is_refused(tmp_path: Path) -> None:
    source = _tarball(tmp_path / "opus_9.9.orig.tar.gz")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.filename).write_bytes(b"not the pinned source")
    with pytest.raises(FarganUnavailableError, match="SHA-256"):
        install_fargan(tmp_path / "env", source=source, cache_dir=cache)
    assert not (tmp_path / "env").exists()


def test_an_unreachable_source_says_where_to_put_the_file(tmp_path: Path) -> None:
    source = SourceArchive(url=(tmp_path / "missing.tar.gz").as_uri(), sha256="0" * 64, folder="x")
    with pytest.raises(FarganUnavailableError, match="could not download .*put it at"):
        install_fargan(tmp_path / "env", source=source, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # no partial file left behind


def test_a_failing_build_step_is_reported(tmp_path: Path) -> None:
    source = _tarball(tmp_path / "bad.tar.gz", configure="#!/bin/sh\necho 'no compiler'\nexit 3\n")
    with pytest.raises(FarganUnavailableError, match=r"(?s)failed at `./configure.*no compiler"):
        install_fargan(tmp_path / "env", source=source, cache_dir=tmp_path / "cache")


def test_a_tarball_without_the_expected_folder_is_reported(tmp_path: Path) -> None:
    source = _tarball(tmp_path / "other.tar.gz", folder="something-else")
    wrong = SourceArchive(url=source.url, sha256=source.sha256, folder="opus-9.9")
    with pytest.raises(FarganUnavailableError, match="does not unpack to opus-9.9"):
        install_fargan(tmp_path / "env", source=wrong, cache_dir=tmp_path / "cache")


def test_the_program_is_found_through_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = tmp_path / "fargan_demo"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("DFA_FARGAN", str(exe))
    assert fargan.fargan_executable() == exe
    monkeypatch.setenv("DFA_FARGAN", str(tmp_path / "missing"))
    with pytest.raises(FarganUnavailableError, match="not an executable file"):
        fargan.fargan_executable()


def test_a_missing_program_says_how_to_build_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("DFA_FARGAN", raising=False)
    monkeypatch.setattr(fargan.sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FarganUnavailableError, match="install-fargan"):
        fargan.fargan_executable()


def test_the_command_line_reports_a_failed_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(prefix):
        raise FarganUnavailableError("gcc is needed to build FARGAN")

    monkeypatch.setattr(corpus_cli, "install_fargan", refuse)
    assert corpus_main(["install-fargan", "--prefix", str(tmp_path)]) == 1
    assert "gcc is needed" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
