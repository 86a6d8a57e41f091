"""Named degradations of the robustness sweep, applied deterministically and cached on disk.

Each entry of :data:`DEGRADATIONS` is one condition of the sweep (``mp3-32k``, ``noise-10db``,
``pitch+2``, ...) built from the augmentations of :mod:`dfa_lib.data.augment`. The randomness a
degradation needs (noise samples, the simulated room) comes from a generator seeded by the
clip and the degradation's name, so a clip gets the same degraded version in every run and on
every machine, while different clips get different noise.

All degradations keep the clip's length and alignment except ``speed-0.9`` and ``speed-1.1``,
which change tempo and pitch together by resampling (the "speed perturbation" of speech
recognition), so the clip becomes 11 % longer or 9 % shorter, as a sped-up upload would be.
``noise-*`` adds white Gaussian noise at the stated SNR over the whole clip.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfa_lib.data.audio import pad_or_crop, resample
from dfa_lib.data.augment import (
    add_noise,
    add_reverb,
    change_speed,
    pitch_shift,
    telephone_band,
)
from dfa_lib.data.codecs import codec_round_trip, content_hash, load_cached_wave, store_cached_wave

__all__ = [
    "DEGRADATIONS",
    "Degradation",
    "UnknownDegradationError",
    "apply_degradation",
    "degrade_cached",
]

# Bump when any degradation's definition changes, so stale cached audio is not reused.
CACHE_VERSION = 1


class UnknownDegradationError(KeyError):
    """The name is not a key of :data:`DEGRADATIONS`."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@dataclass(frozen=True)
class Degradation:
    """One condition of the sweep: a function of (wave, sr, rng) and what it represents.

    ``family`` groups conditions for plots (``codec``, ``channel``, ``noise``, ``reverb``,
    ``pitch``, ``speed``, ``clean``); ``strength`` is the condition's parameter in ``unit``
    (kbit/s, dB SNR, semitones, speed factor ...), None where there is no single number.
    """

    name: str
    family: str
    description: str
    apply: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
    strength: float | None = None
    unit: str = ""
    changes_length: bool = False
    codec: tuple[str, str | None] | None = None  # the (codec, bitrate) round trip it is, if any


def _clean(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    return np.array(wave, dtype=np.float32, copy=True)


def _codec(codec: str, bitrate: str | None) -> Callable[..., np.ndarray]:
    def run(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return codec_round_trip(wave, sr, codec, bitrate)

    return run


def _noise(snr_db: float) -> Callable[..., np.ndarray]:
    def run(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return add_noise(wave, snr_db, rng, kind="white")

    return run


def _telephone(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    return telephone_band(wave, sr)


def _reverb(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    # A medium room: RT60 0.5 s with the direct sound 5 dB above the reverberation.
    return add_reverb(wave, sr, rng, rt60=0.5, drr_db=5.0)


def _resample_8k(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = resample(resample(wave, sr, 8000), 8000, sr)
    return pad_or_crop(out, wave.size, mode="start")


def _pitch(semitones: float) -> Callable[..., np.ndarray]:
    def run(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return pitch_shift(wave, sr, semitones)

    return run


def _speed(factor: float) -> Callable[..., np.ndarray]:
    def run(wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return change_speed(wave, factor, keep_length=False)

    return run


def _registry() -> dict[str, Degradation]:
    items = [
        Degradation("clean", "clean", "untouched", _clean),
        *(
            Degradation(
                f"mp3-{k}k",
                "codec",
                f"MP3 (LAME) at {k} kbit/s",
                _codec("mp3", f"{k}k"),
                k,
                "kbit/s",
                codec=("mp3", f"{k}k"),
            )
            for k in (32, 64, 128)
        ),
        *(
            Degradation(
                f"opus-{k}k",
                "codec",
                f"Opus at {k} kbit/s",
                _codec("opus", f"{k}k"),
                k,
                "kbit/s",
                codec=("opus", f"{k}k"),
            )
            for k in (12, 24)
        ),
        Degradation(
            "gsm",
            "codec",
            "GSM 06.10 full rate (8 kHz, 13 kbit/s)",
            _codec("gsm", None),
            13.2,
            "kbit/s",
            codec=("gsm", None),
        ),
        Degradation(
            "telephone", "channel", "8 kHz, 300-3400 Hz band-pass, 8-bit mu-law", _telephone
        ),
        *(
            Degradation(
                f"noise-{db}db", "noise", f"white noise at {db} dB SNR", _noise(db), db, "dB SNR"
            )
            for db in (20, 10, 5)
        ),
        Degradation(
            "reverb",
            "reverb",
            "simulated room, RT60 0.5 s, direct-to-reverberant 5 dB",
            _reverb,
            0.5,
            "s RT60",
        ),
        Degradation(
            "resample-8k",
            "channel",
            "down to 8 kHz and back (no band-pass, no companding)",
            _resample_8k,
            8.0,
            "kHz",
        ),
        Degradation(
            "pitch+2", "pitch", "pitch up 2 semitones, tempo kept", _pitch(2.0), 2.0, "semitones"
        ),
        Degradation(
            "pitch-2",
            "pitch",
            "pitch down 2 semitones, tempo kept",
            _pitch(-2.0),
            -2.0,
            "semitones",
        ),
        *(
            Degradation(
                f"speed-{f}",
                "speed",
                f"played {f}x as fast (tempo and pitch), length changes",
                _speed(f),
                f,
                "x",
                changes_length=True,
            )
            for f in (0.9, 1.1)
        ),
    ]
    return {d.name: d for d in items}


DEGRADATIONS: dict[str, Degradation] = _registry()


def _get(name: str) -> Degradation:
    try:
        return DEGRADATIONS[name]
    except KeyError:
        raise UnknownDegradationError(
            f"unknown degradation {name!r}; choose one of {list(DEGRADATIONS)}"
        ) from None


def _seed_for(name: str, seed: int | str) -> list[int]:
    # crc32 is stable across processes (unlike hash()), so the streams are reproducible.
    if isinstance(seed, str):
        seed = int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16)
    return [int(seed), zlib.crc32(name.encode())]


def apply_degradation(name: str, wave: np.ndarray, sr: int, seed: int | str = 0) -> np.ndarray:
    """Apply the named degradation; the same (name, wave, seed) always gives the same output.

    Give each clip its own ``seed`` (an int, or a string such as the clip's sha256) so that the
    noise differs between clips; the degradation's name is mixed in, so conditions of one clip
    do not share noise either.
    """
    degradation = _get(name)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty mono waveform, got shape {wave.shape}")
    rng = np.random.default_rng(_seed_for(name, seed))
    out = degradation.apply(wave, int(sr), rng)
    return np.ascontiguousarray(out, dtype=np.float32)


def degrade_cached(
    name: str,
    wave: np.ndarray,
    sr: int,
    key: str | None,
    cache_dir: Path | str,
) -> np.ndarray:
    """Return the degraded clip, computed once and then read from ``cache_dir``.

    ``key`` identifies the clip (the manifest's ``sha256`` is the natural choice; None uses a
    hash of the samples) and seeds the degradation's randomness. The file name also hashes the
    samples, so a changed clip under an old key is never served stale. Entries live in
    ``<cache_dir>/<name>/<hash>.npy`` as float16; the returned array is float32 rounded to that
    precision (about -66 dB, far below every degradation here) whether it came from the cache
    or was just computed. ``clean`` is returned as is and never cached.
    """
    degradation = _get(name)
    wave = np.asarray(wave, dtype=np.float32)
    if degradation.family == "clean":
        return apply_degradation(name, wave, sr)
    digest = content_hash(wave, sr)
    key = digest if key is None else str(key)
    entry = hashlib.sha256(f"v{CACHE_VERSION}:{name}:{key}:{digest}".encode()).hexdigest()
    path = Path(cache_dir) / name / f"{entry}.npy"
    cached = load_cached_wave(path)
    if cached is not None:
        return cached
    out = apply_degradation(name, wave, sr, seed=key)
    out = out.astype(np.float16).astype(np.float32)
    store_cached_wave(path, out)
    return out
