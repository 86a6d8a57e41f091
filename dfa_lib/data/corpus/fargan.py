"""FARGAN, the neural vocoder of Opus 1.5, built from Debian's source package.

FARGAN (framewise autoregressive GAN, Valin et al., 2023) is the vocoder Opus 1.5 uses for
deep packet-loss concealment and for its DRED redundancy: a GAN-trained network that rebuilds
16 kHz speech from 20 cepstral, pitch and voicing features per 10 ms frame. Its weights are
C tables in the Opus release tarball, which Debian ships as the orig tarball of its ``opus``
source package (BSD-3-Clause). Debian's binary ``libopus0`` is built without the tool that
runs the vocoder on its own, so :func:`install_fargan` downloads that tarball (pinned by its
SHA-256), compiles the upstream ``fargan_demo`` program with gcc and installs it as
``<prefix>/bin/fargan_demo``; ``make setup`` does this once. The copy synthesis that runs it
(:func:`dfa_lib.data.corpus.neural.fargan_vocode`) lives beside the other vocoders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OPUS_SOURCE",
    "FarganUnavailableError",
    "SourceArchive",
    "build_id",
    "fargan_executable",
    "install_fargan",
]

EXECUTABLE = "fargan_demo"


class FarganUnavailableError(RuntimeError):
    """The FARGAN program is not built here, or its source cannot be fetched or compiled."""


@dataclass(frozen=True)
class SourceArchive:
    """A source tarball: where it is published, its checksum and the folder it unpacks to."""

    url: str
    sha256: str
    folder: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# Debian's orig tarball of opus 1.5.2 (trixie), identical to the upstream release tarball,
# which carries the trained weights as dnn/*_data.c.
OPUS_SOURCE = SourceArchive(
    url="http://deb.debian.org/debian/pool/main/o/opus/opus_1.5.2.orig.tar.gz",
    sha256="65c1d2f78b9f2fb20082c38cbe47c951ad5839345876e46941612ee87f9a7ce1",
    folder="opus-1.5.2",
)
# --disable-rtcd: without it the build picks SSE4.1/AVX2 kernels by the CPU it runs on, and
# FARGAN's autoregression turns their rounding differences into other waveforms (20 of 20
# copies differed between an AVX2 machine's default build and this one). With it, every x86-64
# CPU runs the same SSE2 code and the corpus does not depend on the machine that built it.
CONFIGURE_FLAGS = (
    "--enable-deep-plc",
    "--disable-rtcd",
    "--disable-doc",
    "--disable-shared",
    "--quiet",
)


def build_id(source: SourceArchive = OPUS_SOURCE, flags: tuple[str, ...] = CONFIGURE_FLAGS) -> str:
    """Return the identity of a FARGAN build: its source tarball's checksum and configure flags."""
    text = source.sha256 + "|" + " ".join(flags)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _stamp(program: Path) -> Path:
    return program.with_name(program.name + ".build")


def fargan_executable() -> Path:
    """Return the installed FARGAN program, or raise :class:`FarganUnavailableError`.

    Looked up in ``$DFA_FARGAN`` (a file, taken as is), then this environment's ``bin`` folder,
    where it must carry the :func:`build_id` of this code (an older build is an error, not a
    silent source of other waveforms), then the ``PATH``.
    """
    if os.environ.get("DFA_FARGAN"):
        chosen = Path(os.environ["DFA_FARGAN"])
        if chosen.is_file() and os.access(chosen, os.X_OK):
            return chosen
        raise FarganUnavailableError(f"$DFA_FARGAN={chosen} is not an executable file")
    candidates = []
    installed = Path(sys.prefix) / "bin" / EXECUTABLE
    if installed.is_file():
        stamp = _stamp(installed)
        found_id = stamp.read_text().strip() if stamp.is_file() else "none"
        if found_id != build_id():
            raise FarganUnavailableError(
                f"{installed} is another build (build id {found_id}, this code wants "
                f"{build_id()}: other opus source or configure flags); rebuild it with "
                "`python -m dfa_lib.data.corpus install-fargan` (make setup does)"
            )
        candidates.append(installed)
    found = shutil.which(EXECUTABLE)
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FarganUnavailableError(
        f"{EXECUTABLE} not found (looked in $DFA_FARGAN, {Path(sys.prefix) / 'bin'} and PATH): "
        "build it with `python -m dfa_lib.data.corpus install-fargan` (make setup does)"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_source(source: SourceArchive, cache_dir: Path) -> Path:
    """Return the verified tarball in ``cache_dir``, downloading it when it is not there.

    A file whose checksum differs from the pinned one is an error (and a downloaded one is
    removed), never a silent rebuild from other code.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / source.filename
    if not path.is_file():
        partial = path.with_suffix(path.suffix + ".part")
        try:
            with (
                urllib.request.urlopen(source.url, timeout=60) as response,  # noqa: S310
                partial.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise FarganUnavailableError(
                f"could not download {source.url} ({err}); fetch it by other means and put it "
                f"at {path}"
            ) from err
        partial.replace(path)
    actual = _sha256(path)
    if actual != source.sha256:
        raise FarganUnavailableError(
            f"{path} has SHA-256 {actual}, expected {source.sha256}: not the pinned opus "
            "source; delete it and run again"
        )
    return path


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dfa"


def install_fargan(
    prefix: str | Path | None = None,
    source: SourceArchive = OPUS_SOURCE,
    cache_dir: str | Path | None = None,
    jobs: int | None = None,
) -> Path:
    """Build ``fargan_demo`` from the pinned opus source and install it in ``<prefix>/bin``.

    ``prefix`` defaults to this Python environment. Needs gcc and make; takes about 10 s on
    two cores, download included. Returns the installed program's path.
    """
    prefix = Path(prefix) if prefix is not None else Path(sys.prefix)
    tarball = fetch_source(source, Path(cache_dir) if cache_dir else _cache_dir())
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            raise FarganUnavailableError(
                f"{tool} is needed to build FARGAN: apt-get install {tool}"
            )
    with tempfile.TemporaryDirectory(prefix="dfa-opus-") as tmp:
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter="data")
        tree = Path(tmp) / source.folder
        if not tree.is_dir():
            raise FarganUnavailableError(f"{tarball} does not unpack to {source.folder}/")
        steps = (
            ["./configure", *CONFIGURE_FLAGS],
            ["make", f"-j{jobs or os.cpu_count() or 1}", EXECUTABLE],
        )
        for step in steps:
            done = subprocess.run(step, cwd=tree, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
                raise FarganUnavailableError(
                    f"building FARGAN failed at `{' '.join(step)}`:\n" + "\n".join(tail)
                )
        target = prefix / "bin" / EXECUTABLE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / EXECUTABLE, target)
    _stamp(target).write_text(build_id(source) + "\n")
    return target
