"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Every cache, marker and result file of the project is written the same way: to a unique
hidden name in the target's folder (so the final rename stays on one file system), then
renamed over the target with :func:`os.replace`. A write that fails, or is interrupted,
removes its temporary file and leaves the target as it was. Parallel writers of the same
target (DataLoader workers, corpus build processes) each use their own temporary name; the
last rename wins, with a complete file either way.

The renamed file gets the permissions an ordinary ``open(path, "w")`` would give it (``0666``
less the umask, ``0644`` usually), whoever created the temporary file: some writers (the
safetensors library among them) create theirs ``0600``, which would leave a weights file
unreadable to the other users of a shared run folder.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_path",
    "save_array",
    "write_atomically",
    "write_json_atomically",
    "write_text_atomically",
]


def _umask() -> int:
    """Return the process's umask without changing it where the system allows."""
    try:  # Linux 4.7+: read it, so no other thread ever sees a changed umask
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_name(target: Path) -> Path:
    # Hidden, unique, and ending in the target's suffix so that writers which pick a format
    # from the file name (soundfile) still do.
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place when the block succeeds.

    The block must create the file at the yielded path. If the block raises, the temporary
    file is removed and the exception propagates; ``path`` is untouched. The file ends up with
    the permissions the umask allows (``0666`` less the umask), however the block created it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(target)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Create ``path`` through ``write(binary_handle)``, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary, temporary.open("xb") as handle:
        write(handle)
    return Path(path)


def save_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array as an ``.npy`` file (no pickled objects), atomically."""
    return write_atomically(path, lambda handle: np.save(handle, array, allow_pickle=False))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 with ``\\n`` line ends, atomically."""
    return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomically(path: str | os.PathLike, payload: Any, indent: int | None = 2) -> Path:
    """Write ``payload`` as JSON (non-ASCII kept, trailing newline), atomically."""
    return write_text_atomically(
        path, json.dumps(payload, indent=indent, ensure_ascii=False) + "\n"
    )
