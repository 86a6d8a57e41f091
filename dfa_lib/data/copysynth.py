"""Vocoded copies of the bona fide training clips, added to training as extra fakes.

A vocoder copy of a real clip ("copy synthesis") keeps its words, speaker, prosody and channel
and changes only what the vocoder rebuilds: how the harmonics line up, how the spectral
envelope moves from frame to frame, the noise between harmonics. Labelled fake, such copies of
a detector's own bona fide training clips teach it a vocoder's trace with everything else
held equal (Wang and Yamagishi, ICASSP 2023, made them with neural vocoders). The offline
corpus already copies real speakers through DSP, GAN and codec vocoders; the copies made here
come from another vocoder, Codec 2, a harmonic sinusoidal speech coder at 8 kHz from Debian's
``libcodec2-1.0`` (the library that brings LPCNet to the corpus). It is not one of the
corpus's generators, so the ``unseen-generator`` and ``lofo-<family>`` protocols hold out what
they held out before, and any dataset (FoR, a folder, a CSV) can be given the same copies.
Codec 2 is a speech codec like LPCNet, though: added to a ``lofo-codec-vocoder`` run, its
copies put a close relative of the held-out family in training.

:func:`with_vocoded_fakes` extends a training split (manifest rows and decoded clips) with one
copy per usable real clip, the Codec 2 modes taken in turn; ``TrainConfig.vocoded_fakes``
asks the training engine to do so. Validation and test splits are never touched.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from dfa_lib.data.audio import resample
from dfa_lib.data.clips import ClipStore, aligned_split, extend_split

__all__ = [
    "CODEC2_DELAY",
    "CODEC2_MODES",
    "CODEC2_RATE",
    "CopySynthesisError",
    "codec2_copy",
    "parse_modes",
    "with_vocoded_fakes",
]

# Codec 2's narrowband modes (bit/s) and their codes in codec2.h (1.0 dropped 700 and 700B).
CODEC2_MODES: dict[str, int] = {
    "3200": 0,
    "2400": 1,
    "1600": 2,
    "1400": 3,
    "1300": 4,
    "1200": 5,
    "700C": 8,
    "450": 10,
}
CODEC2_RATE = 8000
# Samples (at 8 kHz) by which each mode's output lags its input: the median lag of the
# energy envelopes of 60 offline-corpus training clips and their copies. The copy is advanced
# by it, so it stays aligned with the clip it copies.
CODEC2_DELAY: dict[str, int] = {
    "3200": 160,
    "2400": 160,
    "1600": 160,
    "1400": 160,
    "1300": 160,
    "1200": 160,
    "700C": 240,
    "450": 264,
}
# Codec 2 works on 16-bit samples; inputs are scaled to this peak first (and the copy back to
# the input's RMS), so quiet clips use the coder's range and loud ones do not clip.
_CODER_PEAK = 0.5


class CopySynthesisError(RuntimeError):
    """Codec 2 cannot be loaded, or refuses a mode."""


@functools.lru_cache(maxsize=1)
def _library_name() -> str:
    # find_library runs ldconfig in a subprocess: once per process is enough.
    return ctypes.util.find_library("codec2") or "libcodec2.so.1.0"


@contextlib.contextmanager
def _library() -> Iterator[ctypes.CDLL]:
    """Yield a freshly loaded libcodec2, unloaded again afterwards.

    Codec 2 draws the phases of unvoiced harmonics from a generator kept in a static
    variable of the library, so a copy would depend on every copy made before it in the
    process; a fresh load (about 0.1 ms) starts each copy from the same state.
    """

    try:
        lib = ctypes.CDLL(_library_name())
        create = lib.codec2_create
    except (OSError, AttributeError) as err:
        raise CopySynthesisError(
            f"Codec 2 library not found ({err}): apt-get install libcodec2-1.0 (`make setup` "
            "installs it)"
        ) from err
    create.restype = ctypes.c_void_p
    create.argtypes = [ctypes.c_int]
    for fn in (lib.codec2_samples_per_frame, lib.codec2_bytes_per_frame):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p]
    for fn in (lib.codec2_encode, lib.codec2_decode):
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.codec2_destroy.restype = None
    lib.codec2_destroy.argtypes = [ctypes.c_void_p]
    try:
        yield lib
    finally:
        _ctypes.dlclose(lib._handle)


def parse_modes(modes: str | Sequence[str]) -> tuple[str, ...]:
    """Return Codec 2 mode names from ``"3200,1300,700C"`` (or a list); ``""`` gives none."""
    names = [m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes)
    names = [m for m in names if m]
    unknown = [m for m in names if m not in CODEC2_MODES]
    if unknown:
        raise ValueError(
            f"unknown Codec 2 mode(s) {unknown}: choose from {', '.join(CODEC2_MODES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"Codec 2 modes repeat: {names}")
    return tuple(names)


def codec2_copy(wave: np.ndarray, sample_rate: int, mode: str) -> np.ndarray:
    """Return ``wave`` encoded and decoded by Codec 2 in ``mode``, at ``sample_rate``.

    The copy has the input's length and RMS level (silence stays silence) and is aligned
    with it (:data:`CODEC2_DELAY`; the coder runs on past the end over the clip's own start,
    so the copy ends with speech rather than the coder's silence). The input is resampled to
    Codec 2's 8 kHz and the copy back, so everything above 4 kHz is gone.
    """
    (mode,) = parse_modes([mode])
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the waveform holds NaN or infinite samples")
    if x.size == 0:
        return x.copy()
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        return np.zeros_like(x)
    narrow = resample(x * (_CODER_PEAK / peak), int(sample_rate), CODEC2_RATE)
    pcm = np.clip(np.round(narrow * 32767.0), -32768, 32767).astype(np.int16)
    delay = CODEC2_DELAY[mode]
    pcm = np.resize(pcm, len(pcm) + delay)  # np.resize repeats the clip from its start
    with _library() as lib:
        out = _encode_decode(lib, pcm, mode)
    copy = resample(out[delay:].astype(np.float32) / 32768.0, CODEC2_RATE, int(sample_rate))
    copy = np.pad(copy[: x.size], (0, max(0, x.size - copy.size)))
    level = float(np.sqrt(np.mean(copy.astype(np.float64) ** 2)))
    target = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return (copy * (target / level) if level > 0 else copy).astype(np.float32)


def _encode_decode(lib: ctypes.CDLL, pcm: np.ndarray, mode: str) -> np.ndarray:
    state = lib.codec2_create(CODEC2_MODES[mode])
    if not state:
        raise CopySynthesisError(f"this libcodec2 does not offer mode {mode}")
    try:
        n = lib.codec2_samples_per_frame(state)
        frame_bits = (ctypes.c_ubyte * lib.codec2_bytes_per_frame(state))()
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % n, np.int16)])
        out = np.empty_like(pcm)
        frame_out = np.empty(n, np.int16)
        for start in range(0, len(pcm), n):
            frame_in = np.ascontiguousarray(pcm[start : start + n])
            lib.codec2_encode(state, frame_bits, frame_in.ctypes.data)
            lib.codec2_decode(state, frame_out.ctypes.data, frame_bits)
            out[start : start + n] = frame_out
    finally:
        lib.codec2_destroy(state)
    return out


def with_vocoded_fakes(
    frame: pd.DataFrame, store: ClipStore, modes: str | Sequence[str]
) -> tuple[pd.DataFrame, ClipStore]:
    """Return the training split plus one Codec 2 copy, labelled fake, of each real clip.

    Real clips that failed to decode get no copy. The k-th copied clip uses ``modes[k % len]``.
    A copy's row is its source's with ``path`` ``<source path>#codec2-<mode>``, ``label``
    ``fake``, ``generator`` and ``source`` ``codec2-<mode>``, ``family`` ``classical``,
    ``speaker`` ``codec2-<mode>:<source speaker>`` (where those columns exist) and no content
    hash. With no modes, the split is returned as it is.
    """
    names = parse_modes(modes)
    split = aligned_split(frame, store)
    if not names:
        return frame, store
    real = [i for i in range(len(split)) if split["label"].iloc[i] == "real" and store.ok(i)]
    copies, rows = [], []
    for k, i in enumerate(real):
        mode = names[k % len(names)]
        copies.append(codec2_copy(store[i], store.sample_rate, mode))
        row = split.iloc[i].to_dict()
        generator = f"codec2-{mode}"
        row.update(path=f"{row['path']}#{generator}", label="fake")
        for column, value in (
            ("generator", generator),
            ("source", generator),
            ("family", "classical"),
            ("speaker", f"{generator}:{row.get('speaker', '')}"),
            ("sha256", ""),
        ):
            if column in split.columns:
                row[column] = value
        rows.append(row)
    return extend_split(split, store, pd.DataFrame(rows, columns=split.columns), copies)
