"""Relative phase shift (RPS) of the harmonics of voiced speech, a vocoder phase cue.

In a voiced frame with fundamental frequency ``f0``, let ``phi_k`` be the phase of the k-th
harmonic (frequency ``k * f0``) measured at the frame's centre. A delay of the whole signal by
``tau`` adds ``k * 2 pi f0 tau`` to ``phi_k``, so ``RPS_k = phi_k - k * phi_1`` (wrapped to
``(-pi, pi]``) does not depend on where the frame falls in the pitch cycle: it describes the
shape of the glottal pulse as the vocal tract and the channel leave it. Origin: Saratxaga,
Hernaez et al. (2009, 2016), who used it to detect vocoder-based synthetic speech. A human
voice keeps a consistent RPS from one pitch period to the next; a vocoder that invents phase
(zero, minimum, random or learned) keeps a different one, or none.

Per clip: F0 from WORLD's DIO (``pyworld``; optionally refined by StoneMask), one Hann window
of a few periods centred on each voiced frame, each harmonic's phase from a DFT evaluated at
exactly ``k * f0`` (with a symmetric window the phase at the centre is unbiased by a small
error in ``f0``, which is why the coarse, fast F0 settings of the defaults do as well on the
offline corpus's validation split as the refined ones: ``make ablation
STUDY=phase-statistics``). Harmonics above ``f_max`` are left out frame by frame, so the
statistics cover the band that every clip of the corpus keeps. :func:`rps_statistics`
summarises a clip by, for every harmonic k = 2..K, the circular mean of ``RPS_k`` over voiced
frames (cosine and sine), its resultant length (1: the same RPS in every frame; 0: none
consistent) and the resultant length of its change from one frame to the next. A clip without voiced frames (silence,
noise, a whisper) gets zeros, which no voiced clip produces, rather than an error.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import pyworld

STATISTICS = ("cos", "sin", "resultant", "frame_resultant")
_FRAMES_PER_BLOCK = 1024  # analysis frames per block of the harmonic DFT


class HarmonicsError(ValueError):
    """Raised for inconsistent harmonic analysis settings."""


@dataclass(frozen=True)
class RPSConfig:
    """Settings of the harmonic phase analysis (defaults: 16 kHz speech in a 0.1-3.6 kHz band)."""

    sample_rate: int = 16000  # Hz
    n_harmonics: int = 12  # harmonics analysed, the fundamental included
    f_max: float = 3600.0  # Hz; in each frame, harmonics above this are left out
    f0_floor: float = 60.0  # Hz, lowest fundamental searched
    f0_ceil: float = 500.0  # Hz, highest fundamental searched
    frame_period_ms: float = 10.0  # ms between analysis frames
    periods_per_window: float = 3.0  # window length in periods of a low fundamental of the clip
    dio_speed: int = 8  # DIO's internal decimation (1: none; 8: several times faster)
    refine_f0: bool = False  # refine DIO's F0 with StoneMask (costs more than DIO itself)

    def __post_init__(self) -> None:
        if self.n_harmonics < 2:
            raise HarmonicsError(f"n_harmonics must be at least 2, got {self.n_harmonics}")
        if not 0 < self.f0_floor < self.f0_ceil:
            raise HarmonicsError(
                f"need 0 < f0_floor < f0_ceil, got {self.f0_floor} and {self.f0_ceil}"
            )
        if not self.f0_ceil < self.f_max <= self.sample_rate / 2:
            raise HarmonicsError(
                f"need f0_ceil < f_max <= {self.sample_rate / 2} Hz, got f_max {self.f_max}"
            )
        if self.frame_period_ms <= 0 or self.periods_per_window <= 0:
            raise HarmonicsError("frame_period_ms and periods_per_window must be positive")
        if not 1 <= self.dio_speed <= 12:
            raise HarmonicsError(f"dio_speed must be 1..12, got {self.dio_speed}")

    @property
    def n_features(self) -> int:
        """Statistics per clip: four for each harmonic above the fundamental."""
        return len(STATISTICS) * (self.n_harmonics - 1)

    def feature_names(self) -> list[str]:
        """Name of every statistic, in the order :func:`rps_statistics` returns them."""
        return [f"{s}_{k}" for s in STATISTICS for k in range(2, self.n_harmonics + 1)]

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


def fundamental(wave: np.ndarray, config: RPSConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return F0 in Hz (0 where unvoiced) and the frame times in seconds."""
    x = np.ascontiguousarray(wave, dtype=np.float64).reshape(-1)
    f0, times = pyworld.dio(
        x,
        config.sample_rate,
        f0_floor=config.f0_floor,
        f0_ceil=config.f0_ceil,
        frame_period=config.frame_period_ms,
        speed=config.dio_speed,
    )
    if config.refine_f0:
        f0 = pyworld.stonemask(x, f0, times, config.sample_rate)
    return f0, times


def relative_phase_shifts(
    wave: np.ndarray, config: RPSConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(rps, f0)`` of the voiced frames of one clip.

    ``rps`` is ``(frames, n_harmonics - 1)`` in radians for harmonics 2..K, NaN where the
    harmonic lies above ``f_max``; ``f0`` is each voiced frame's fundamental. Both are empty
    when the clip has no voiced frame.
    """
    config = config or RPSConfig()
    x = np.ascontiguousarray(wave, dtype=np.float64).reshape(-1)
    empty = np.zeros((0, config.n_harmonics - 1)), np.zeros(0)
    if x.size == 0 or not np.all(np.isfinite(x)) or np.max(np.abs(x)) == 0:
        return empty
    f0, times = fundamental(x, config)
    voiced = f0 > 0
    if not voiced.any():
        return empty
    f0 = f0[voiced]
    centres = np.clip(np.round(times[voiced] * config.sample_rate).astype(int), 0, x.size - 1)
    low_f0 = np.percentile(f0, 10)
    half = int(round(config.periods_per_window * config.sample_rate / low_f0 / 2))
    offsets = np.arange(-half, half + 1)
    padded = np.pad(x, (half, half))
    window = np.hanning(offsets.size)
    harmonics = np.empty((f0.size, config.n_harmonics), dtype=np.complex128)
    # Blocks of frames bound the memory on long files (frames x window samples each).
    for start in range(0, f0.size, _FRAMES_PER_BLOCK):
        block = slice(start, start + _FRAMES_PER_BLOCK)
        frames = padded[centres[block, None] + half + offsets[None, :]] * window
        # DFT at k * f0 for k = 1..K, phase referred to the window centre: powers of a phasor.
        step = np.exp(-2j * np.pi * f0[block, None] * offsets[None, :] / config.sample_rate)
        term = frames * step
        for k in range(config.n_harmonics):
            harmonics[block, k] = term.sum(axis=1)
            term *= step
    phase = np.angle(harmonics)
    k = np.arange(2, config.n_harmonics + 1)
    rps = np.angle(np.exp(1j * (phase[:, 1:] - k[None, :] * phase[:, :1])))
    rps[f0[:, None] * k[None, :] > config.f_max] = np.nan
    return rps, f0


def _statistics_of(rps: np.ndarray, n_harmonics: int) -> np.ndarray:
    out = np.zeros((len(STATISTICS), n_harmonics - 1))
    if rps.shape[0] == 0:
        return out.reshape(-1)
    phasors = np.exp(1j * rps)  # NaN where a harmonic is out of band
    present = np.isfinite(rps)
    counts = present.sum(axis=0)
    mean = np.where(present, phasors, 0).sum(axis=0) / np.maximum(counts, 1)
    steps = phasors[1:] * np.conj(phasors[:-1])
    step_present = np.isfinite(steps)
    step_counts = step_present.sum(axis=0)
    step_mean = np.where(step_present, steps, 0).sum(axis=0) / np.maximum(step_counts, 1)
    out[0], out[1], out[2], out[3] = mean.real, mean.imag, np.abs(mean), np.abs(step_mean)
    return out.reshape(-1)


def rps_statistics(
    waves: Any, config: RPSConfig | None = None, workers: int | None = None
) -> np.ndarray:
    """Summarise each clip's relative phase shifts: ``(clips, config.n_features)`` float64.

    Per harmonic 2..K: circular mean (cosine, sine), resultant length, and resultant length
    of the frame-to-frame change (see the module docstring); zeros for a clip without voiced
    frames. ``workers`` threads share the clips (default: up to 4 CPUs); the result does not
    depend on it.
    """
    config = config or RPSConfig()
    clips = [np.asarray(w) for w in waves]
    if not clips:
        return np.zeros((0, config.n_features))

    def one(wave: np.ndarray) -> np.ndarray:
        return _statistics_of(relative_phase_shifts(wave, config)[0], config.n_harmonics)

    workers = workers or min(4, os.cpu_count() or 1)
    if workers == 1 or len(clips) < 8:
        rows = [one(c) for c in clips]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(one, clips))  # pyworld and numpy release the GIL
    return np.stack(rows)
