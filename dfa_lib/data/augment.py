"""Seeded waveform augmentations for training, and the :class:`Augmenter` a DataLoader applies.

Every function takes and returns a mono float32 numpy array (the project rate is 16 kHz) and
draws its randomness from the ``rng`` it is given (a ``numpy.random.Generator`` or an int
seed), so the same seed gives the same output, bit for bit.

Length policy: every augmentation returns exactly as many samples as it was given, except
:func:`random_crop` (returns ``length``) and the two tempo changes called with
``keep_length=False`` (:func:`time_stretch`, :func:`change_speed`), which return
``round(len / rate)`` samples. Levels are not clipped by the functions themselves; the
:class:`Augmenter` scales its output down only when the peak would pass 1.0.

Time stretching is a phase vocoder written with numpy (no librosa, so no numba compilation in
fresh DataLoader workers); pitch shifting is that stretch followed by a polyphase resampling.
RawBoost follows the three noise families described by Tak et al., "RawBoost: a raw data
boosting and augmentation method applied to automatic speaker verification anti-spoofing"
(ICASSP 2022): linear and non-linear convolutive noise, impulsive signal-dependent noise and
stationary signal-independent coloured noise. This is an implementation from that
description, with its own filter design and parameter ranges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, convolve, fftconvolve, firwin2, resample_poly, sosfiltfilt

from dfa_lib.data.audio import pad_or_crop, resample
from dfa_lib.data.clips import aligned_split, extend_split
from dfa_lib.data.codecs import CODECS, codec_round_trip

__all__ = [
    "AUGMENTATIONS",
    "NOISE_TYPES",
    "RAWBOOST_STAGES",
    "AugmentConfig",
    "Augmenter",
    "RawBoostConfig",
    "add_noise",
    "add_reverb",
    "apply_codec",
    "apply_gain",
    "babble_noise",
    "change_speed",
    "mix_at_snr",
    "pink_noise",
    "pitch_shift",
    "random_crop",
    "rawboost",
    "rawboost_coloured_noise",
    "rawboost_convolutive",
    "rawboost_impulsive",
    "reverberate",
    "room_impulse_response",
    "telephone_band",
    "time_stretch",
    "white_noise",
]

NOISE_TYPES = ("white", "pink", "babble")
RAWBOOST_STAGES = ("convolutive", "impulsive", "coloured")
# The order the Augmenter applies its stages in (see Augmenter for why codecs come first).
AUGMENTATIONS = (
    "codec",
    "crop",
    "stretch",
    "pitch",
    "reverb",
    "noise",
    "rawboost",
    "telephone",
    "gain",
)

# Stages that have a ``<name>_p`` probability in AugmentConfig (the crop is set by length).
_STAGE_PROBABILITIES = tuple(name for name in AUGMENTATIONS if name != "crop")

RandomSource = np.random.Generator | int


def _as_rng(rng: RandomSource) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")


def _mono(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D array), got shape {wave.shape}")
    return wave


def _power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = np.sqrt(_power(x))
    return x / rms if rms > 0 else x


# --------------------------------------------------------------------------- additive noise


def white_noise(n: int, rng: RandomSource) -> np.ndarray:
    """Return ``n`` samples of Gaussian white noise with unit RMS."""
    return _unit_rms(_as_rng(rng).standard_normal(n)).astype(np.float32)


def pink_noise(n: int, rng: RandomSource) -> np.ndarray:
    """Return ``n`` samples of pink (1/f power, -3 dB per octave) noise with unit RMS."""
    gen = _as_rng(rng)
    bins = n // 2 + 1
    spectrum = gen.standard_normal(bins) + 1j * gen.standard_normal(bins)
    # Amplitude 1/sqrt(f) gives power 1/f; the DC bin is dropped so the noise has zero mean.
    scale = 1.0 / np.sqrt(np.maximum(np.arange(bins), 1))
    scale[0] = 0.0
    return _unit_rms(np.fft.irfft(spectrum * scale, n)).astype(np.float32)


def babble_noise(
    n: int, pool: Sequence[np.ndarray], rng: RandomSource, talkers: int = 5
) -> np.ndarray:
    """Return ``n`` samples of babble with unit RMS: ``talkers`` clips from ``pool`` summed.

    Each talker is a random clip of the pool (other training clips) started at a random offset,
    looped when shorter than ``n`` and brought to unit RMS before summing, so no one voice
    dominates.
    """
    gen = _as_rng(rng)
    clips = [np.asarray(c, dtype=np.float32) for c in pool if np.size(c) > 0]
    if not clips:
        raise ValueError("babble noise needs a non-empty pool of clips (noise_pool=[...])")
    out = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        clip = clips[int(gen.integers(len(clips)))]
        if clip.size >= n:
            start = int(gen.integers(clip.size - n + 1))
            part = clip[start : start + n]
        else:
            part = np.roll(np.resize(clip, n), int(gen.integers(n)))
        out += _unit_rms(part.astype(np.float64))
    return _unit_rms(out).astype(np.float32)


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` scaled so that the clip's signal-to-noise ratio is exactly ``snr_db``.

    Powers are means over the whole clip (pauses included). A silent clip is returned
    unchanged, since no noise level gives it a finite SNR.
    """
    wave = _mono(wave)
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != wave.shape:
        raise ValueError(f"noise has {noise.size} samples, the clip {wave.size}")
    signal_power, noise_power = _power(wave), _power(noise)
    if signal_power == 0.0 or noise_power == 0.0:
        return wave.copy()
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (wave + gain * noise).astype(np.float32)


def add_noise(
    wave: np.ndarray,
    snr_db: float,
    rng: RandomSource,
    kind: str = "white",
    noise_pool: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Add white, pink or babble noise at ``snr_db`` (babble needs ``noise_pool``)."""
    wave = _mono(wave)
    gen = _as_rng(rng)
    if kind == "white":
        noise = white_noise(wave.size, gen)
    elif kind == "pink":
        noise = pink_noise(wave.size, gen)
    elif kind == "babble":
        if not noise_pool:
            raise ValueError("kind='babble' mixes other clips: pass noise_pool=[clip, ...]")
        noise = babble_noise(wave.size, noise_pool, gen)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_TYPES}")
    return mix_at_snr(wave, noise, snr_db)


def apply_gain(wave: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale the level by ``gain_db`` decibels."""
    return (_mono(wave) * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


# --------------------------------------------------------------------------- tempo and pitch


def _resample_by(wave: np.ndarray, factor: float) -> np.ndarray:
    """Resample so the output has ``len / factor`` samples (factor > 1 plays faster)."""
    # A bounded denominator keeps the polyphase filter short; the ratio error is < 0.01 %.
    ratio = Fraction(factor).limit_denominator(200)
    out = resample_poly(wave.astype(np.float64), ratio.denominator, ratio.numerator)
    return out.astype(np.float32)


def change_speed(wave: np.ndarray, factor: float, keep_length: bool = False) -> np.ndarray:
    """Play the clip ``factor`` times faster by resampling: tempo and pitch change together.

    This is the "speed perturbation" of speech recognition: 1.1 is 10 % shorter and 1.65
    semitones higher. Returns ``round(len / factor)`` samples, or the input length with
    ``keep_length`` (cut, or zero-padded at the end).
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    wave = _mono(wave)
    out = _resample_by(wave, factor)
    target = wave.size if keep_length else max(1, int(round(wave.size / factor)))
    return pad_or_crop(out, target, mode="start")


_N_FFT = 512  # 32 ms at 16 kHz: resolves speech harmonics without smearing onsets too much
_HOP = 128


def _stft(x: np.ndarray) -> np.ndarray:
    window = np.hanning(_N_FFT + 1)[:-1]
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2))
    if padded.size < _N_FFT:
        padded = np.pad(padded, (0, _N_FFT - padded.size))
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    window = np.hanning(_N_FFT + 1)[:-1]
    frames = np.fft.irfft(spec, _N_FFT, axis=1) * window
    # Overlap-add in hop-sized blocks: frame i's block j lands on output block i + j.
    per_frame = _N_FFT // _HOP
    blocks = frames.reshape(len(frames), per_frame, _HOP)
    out = np.zeros((len(frames) + per_frame - 1, _HOP))
    norm = np.zeros_like(out)
    square = (window**2).reshape(per_frame, _HOP)
    for j in range(per_frame):
        out[j : j + len(frames)] += blocks[:, j]
        norm[j : j + len(frames)] += square[j]
    out, norm = out.ravel(), norm.ravel()
    out /= np.where(norm > 1e-8, norm, 1.0)
    out = out[_N_FFT // 2 :]
    return pad_or_crop(out.astype(np.float32), length, mode="start")


def time_stretch(wave: np.ndarray, rate: float, keep_length: bool = True) -> np.ndarray:
    """Change the tempo by ``rate`` (> 1 faster) and keep the pitch, with a phase vocoder.

    With ``keep_length`` the result is cut or zero-padded at the end to the input length;
    otherwise it has ``round(len / rate)`` samples.
    """
    if rate <= 0:
        raise ValueError(f"stretch rate must be positive, got {rate}")
    wave = _mono(wave)
    target = max(1, int(round(wave.size / rate)))
    if wave.size == 0 or rate == 1.0:
        return pad_or_crop(wave, wave.size if keep_length else target, mode="start")
    spec = _stft(wave)
    n_frames = spec.shape[0]
    if n_frames < 2:
        return pad_or_crop(wave, wave.size if keep_length else target, mode="start")
    steps = np.arange(0.0, n_frames - 1, rate)
    base = steps.astype(int)
    frac = (steps - base)[:, None]
    magnitude = (1.0 - frac) * np.abs(spec[base]) + frac * np.abs(spec[base + 1])
    # Each bin's phase advances by its own frequency per hop; the measured deviation from that
    # expected advance is the bin's true frequency offset, accumulated along the output frames.
    expected = 2.0 * np.pi * _HOP * np.arange(spec.shape[1]) / _N_FFT
    deviation = np.angle(spec[base + 1]) - np.angle(spec[base]) - expected
    deviation -= 2.0 * np.pi * np.round(deviation / (2.0 * np.pi))
    advance = expected + deviation
    phase = np.angle(spec[0]) + np.vstack([np.zeros((1, spec.shape[1])), np.cumsum(advance, 0)])
    out = _istft(magnitude * np.exp(1j * phase[:-1]), target)
    return pad_or_crop(out, wave.size, mode="start") if keep_length else out


def pitch_shift(wave: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift the pitch by ``semitones`` and keep tempo and length (phase vocoder + resampling)."""
    del sr  # the shift is a ratio; kept in the signature so callers need not special-case it
    wave = _mono(wave)
    if semitones == 0 or wave.size == 0:
        return wave.copy()
    ratio = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(wave, 1.0 / ratio, keep_length=False)
    return pad_or_crop(_resample_by(stretched, ratio), wave.size, mode="start")


def random_crop(
    wave: np.ndarray, length: int, rng: RandomSource, pad_mode: str = "wrap"
) -> np.ndarray:
    """Return ``length`` samples from a random offset; shorter clips are looped (or zero-padded)."""
    return pad_or_crop(_mono(wave), int(length), mode="random", rng=_as_rng(rng), pad_mode=pad_mode)


# --------------------------------------------------------------------------- reverberation


def room_impulse_response(
    sr: int,
    rt60: float,
    drr_db: float,
    rng: RandomSource,
    length_s: float | None = None,
) -> np.ndarray:
    """Simulate a room impulse response: a direct impulse plus an exponentially decaying tail.

    The tail is Gaussian noise whose energy falls by 60 dB in ``rt60`` seconds (a statistical
    model of late reverberation), starting 2.5 ms after the direct sound, scaled so the
    direct-to-reverberant energy ratio is ``drr_db``. The direct sound is sample 0 with value
    1, so convolving does not delay the speech. Default length: 1.5 x ``rt60`` (90 dB of decay).
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive (seconds), got {rt60}")
    gen = _as_rng(rng)
    n = max(2, int(round((1.5 * rt60 if length_s is None else length_s) * sr)))
    t = np.arange(n) / sr
    tail = gen.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail[: max(1, int(round(0.0025 * sr)))] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response; same length, RMS level of the dry clip kept."""
    wave = _mono(wave)
    if wave.size == 0:
        return wave.copy()
    wet = fftconvolve(wave.astype(np.float64), np.asarray(rir, dtype=np.float64))[: wave.size]
    dry_power, wet_power = _power(wave), _power(wet)
    if wet_power > 0:
        wet *= np.sqrt(dry_power / wet_power)
    return wet.astype(np.float32)


def add_reverb(
    wave: np.ndarray, sr: int, rng: RandomSource, rt60: float = 0.5, drr_db: float = 5.0
) -> np.ndarray:
    """Reverberate with a freshly simulated room (see :func:`room_impulse_response`)."""
    return reverberate(wave, room_impulse_response(sr, rt60, drr_db, rng))


# --------------------------------------------------------------------------- channels


def _mu_law_8bit(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    x = np.clip(x, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((compressed + 1.0) * 127.5) / 127.5 - 1.0
    return np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu


def telephone_band(
    wave: np.ndarray,
    sr: int,
    low_hz: float = 300.0,
    high_hz: float = 3400.0,
    mu_law: bool = True,
) -> np.ndarray:
    """Simulate a narrowband telephone channel: 8 kHz, 300-3400 Hz band-pass, G.711 mu-law.

    The clip is resampled to 8 kHz, band-passed (zero-phase 4th-order Butterworth, so speech is
    not delayed), optionally companded and quantised to 8-bit mu-law, and resampled back to
    ``sr``. Samples beyond +-1 are clipped by the mu-law step, as a real line would.
    """
    wave = _mono(wave)
    if wave.size == 0:
        return wave.copy()
    narrow = resample(wave, sr, 8000).astype(np.float64)
    sos = butter(4, [low_hz, high_hz], btype="bandpass", fs=8000, output="sos")
    if narrow.size > 27:  # sosfiltfilt's edge padding needs a few dozen samples
        narrow = sosfiltfilt(sos, narrow)
    if mu_law:
        narrow = _mu_law_8bit(narrow)
    return pad_or_crop(resample(narrow.astype(np.float32), 8000, sr), wave.size, mode="start")


def apply_codec(
    wave: np.ndarray,
    sr: int,
    codec: str,
    bitrate: str | int | None = None,
    cache_dir: Path | str | None = None,
) -> np.ndarray:
    """Pass the clip through a lossy codec (see :func:`dfa_lib.data.codecs.codec_round_trip`)."""
    return codec_round_trip(_mono(wave), sr, codec, bitrate, cache_dir)


# --------------------------------------------------------------------------- RawBoost


@dataclass(frozen=True)
class RawBoostConfig:
    """Parameter ranges of the RawBoost-style noise; each value is drawn uniformly per call."""

    n_bands: tuple[int, int] = (1, 5)  # notches per multi-band filter
    centre_hz: tuple[float, float] = (20.0, 8000.0)  # notch centre frequencies
    bandwidth_hz: tuple[float, float] = (100.0, 1000.0)  # notch widths
    taps: tuple[int, int] = (10, 100)  # FIR length: short filters give broad, soft notches
    n_orders: int = 5  # highest power of the signal in the non-linear convolutive noise
    order_gain_db: tuple[float, float] = (-20.0, 0.0)  # level of each power above the first
    impulsive_fraction: tuple[float, float] = (0.0, 0.10)  # share of samples hit by impulses
    impulsive_gain: tuple[float, float] = (0.5, 2.0)  # impulse size relative to the sample
    coloured_snr_db: tuple[float, float] = (10.0, 40.0)  # SNR of the stationary coloured noise


def _multiband_filter(sr: int, gen: np.random.Generator, cfg: RawBoostConfig) -> np.ndarray:
    """Design a random FIR filter that is flat except for a few random notches."""
    nyquist = sr / 2.0
    grid = np.linspace(0.0, nyquist, 257)
    gain = np.ones_like(grid)
    for _ in range(int(gen.integers(cfg.n_bands[0], cfg.n_bands[1] + 1))):
        centre = gen.uniform(cfg.centre_hz[0], min(cfg.centre_hz[1], nyquist))
        half = gen.uniform(*cfg.bandwidth_hz) / 2.0
        gain[(grid >= centre - half) & (grid <= centre + half)] = 0.0
    taps = (
        int(gen.integers(cfg.taps[0], cfg.taps[1] + 1)) | 1
    )  # odd: linear phase, any gain at Nyquist
    return firwin2(taps, grid, gain, fs=sr)


def _match_peak(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    peak_out, peak_ref = np.max(np.abs(out)), np.max(np.abs(reference))
    if peak_out == 0 or peak_ref == 0:
        return out.astype(np.float32)
    return (out * (peak_ref / peak_out)).astype(np.float32)


def rawboost_convolutive(
    wave: np.ndarray, sr: int, rng: RandomSource, config: RawBoostConfig | None = None
) -> np.ndarray:
    """Linear and non-linear convolutive noise: filtered powers of the signal, summed.

    The output is sum over j = 1..n_orders of g_j * (h_j * x^j), where x is the clip at unit
    peak, each h_j is a random multi-band notch filter and g_1 = 1 while the higher-order gains
    are drawn from ``order_gain_db``. It models a chain of coloured, slightly non-linear
    channel stages. The result is brought back to the input's peak level.
    """
    cfg = config or RawBoostConfig()
    gen = _as_rng(rng)
    wave = _mono(wave)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave.copy()
    x = wave.astype(np.float64) / peak
    out = np.zeros_like(x)
    term = np.ones_like(x)
    for order in range(1, cfg.n_orders + 1):
        term *= x  # x**order by repeated products: np.power is slow for integer exponents
        gain = 1.0 if order == 1 else 10.0 ** (gen.uniform(*cfg.order_gain_db) / 20.0)
        out += gain * convolve(term, _multiband_filter(sr, gen, cfg), mode="same")
    out -= out.mean()  # even powers add a DC offset that no microphone chain would pass
    return _match_peak(out, wave)


def rawboost_impulsive(
    wave: np.ndarray, rng: RandomSource, config: RawBoostConfig | None = None
) -> np.ndarray:
    """Impulsive signal-dependent noise: a random few samples get a random multiple of themselves.

    A random fraction of the samples (``impulsive_fraction``) becomes x[n] * (1 + g * u[n])
    with u uniform in [-1, 1] and g drawn from ``impulsive_gain``. The noise follows the
    signal: silence stays silent, loud passages crackle (clipping, bad contacts, quantisation).
    """
    cfg = config or RawBoostConfig()
    gen = _as_rng(rng)
    wave = _mono(wave)
    out = wave.astype(np.float64)
    count = int(round(gen.uniform(*cfg.impulsive_fraction) * wave.size))
    if count:
        where = gen.choice(wave.size, size=count, replace=False)
        gain = gen.uniform(*cfg.impulsive_gain)
        out[where] += gain * gen.uniform(-1.0, 1.0, size=count) * out[where]
    return out.astype(np.float32)


def rawboost_coloured_noise(
    wave: np.ndarray, sr: int, rng: RandomSource, config: RawBoostConfig | None = None
) -> np.ndarray:
    """Stationary signal-independent noise: white noise through a random multi-band filter.

    The coloured noise is added at an SNR drawn from ``coloured_snr_db`` (background hum and
    hiss of a recording chain that does not depend on what is said).
    """
    cfg = config or RawBoostConfig()
    gen = _as_rng(rng)
    wave = _mono(wave)
    noise = convolve(gen.standard_normal(wave.size), _multiband_filter(sr, gen, cfg), "same")
    return mix_at_snr(wave, noise, gen.uniform(*cfg.coloured_snr_db))


def rawboost(
    wave: np.ndarray,
    sr: int,
    rng: RandomSource,
    stages: Sequence[str] = RAWBOOST_STAGES,
    config: RawBoostConfig | None = None,
) -> np.ndarray:
    """Apply the chosen RawBoost stages in series (``convolutive``, ``impulsive``, ``coloured``)."""
    gen = _as_rng(rng)
    out = _mono(wave)
    for stage in stages:
        if stage == "convolutive":
            out = rawboost_convolutive(out, sr, gen, config)
        elif stage == "impulsive":
            out = rawboost_impulsive(out, gen, config)
        elif stage == "coloured":
            out = rawboost_coloured_noise(out, sr, gen, config)
        else:
            raise ValueError(f"unknown RawBoost stage {stage!r}; choose from {RAWBOOST_STAGES}")
    return out


# --------------------------------------------------------------------------- the Augmenter


def _check_range(name: str, bounds: Sequence[float], low: float, high: float) -> None:
    if len(bounds) != 2 or not (low <= bounds[0] <= bounds[1] <= high):
        raise ValueError(
            f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {bounds}"
        )


@dataclass
class AugmentConfig:
    """Which augmentations a training run applies, how often, and with what parameter ranges.

    Each ``*_p`` is the probability that the stage runs on a clip; ranges are (min, max) drawn
    uniformly. The defaults are the recommended training mix; :meth:`off` turns every stage
    off (only the crop, if set, remains). ``noise_types`` containing ``"babble"`` needs a
    ``noise_pool`` of training clips given to :class:`Augmenter`.
    """

    sample_rate: int = 16000  # Hz
    crop_seconds: float | None = None  # random crop to this many seconds; None keeps the length
    codec_p: float = 0.2
    codecs: tuple[tuple[str, str | None], ...] = (
        ("mp3", "32k"),
        ("mp3", "64k"),
        ("opus", "16k"),
        ("aac", "48k"),
        ("gsm", None),
        ("g722", None),
    )
    codec_cache_dir: str | None = None  # folder for decoded codec outputs; None: no cache
    stretch_p: float = 0.1
    stretch_range: tuple[float, float] = (0.9, 1.1)  # tempo factor, > 1 faster
    pitch_p: float = 0.1
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    reverb_p: float = 0.2
    rt60_range: tuple[float, float] = (0.2, 0.8)  # seconds
    drr_db_range: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant ratio, dB
    noise_p: float = 0.3
    noise_types: tuple[str, ...] = NOISE_TYPES
    snr_db_range: tuple[float, float] = (5.0, 30.0)
    rawboost_p: float = 0.2
    rawboost_stages: tuple[str, ...] = RAWBOOST_STAGES
    telephone_p: float = 0.1
    gain_p: float = 0.3
    gain_db_range: tuple[float, float] = (-6.0, 6.0)
    rawboost: RawBoostConfig = field(default_factory=RawBoostConfig)

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; normalise so equality and hashing behave.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                setattr(self, f.name, tuple(tuple(v) if isinstance(v, list) else v for v in value))
        if isinstance(self.codec_cache_dir, Path):
            self.codec_cache_dir = str(self.codec_cache_dir)  # keeps to_dict() JSON-ready
        if isinstance(self.rawboost, dict):
            self.rawboost = RawBoostConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in self.rawboost.items()}
            )
        for name in _STAGE_PROBABILITIES:
            p = getattr(self, f"{name}_p")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}_p must be a probability in [0, 1], got {p}")
        if self.crop_seconds is not None and self.crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be positive or None, got {self.crop_seconds}")
        _check_range("stretch_range", self.stretch_range, 0.25, 4.0)
        _check_range("pitch_semitones", self.pitch_semitones, -12.0, 12.0)
        _check_range("rt60_range", self.rt60_range, 0.01, 10.0)
        _check_range("drr_db_range", self.drr_db_range, -30.0, 60.0)
        _check_range("snr_db_range", self.snr_db_range, -30.0, 100.0)
        _check_range("gain_db_range", self.gain_db_range, -60.0, 60.0)
        unknown = set(self.noise_types) - set(NOISE_TYPES)
        if unknown or (self.noise_p > 0 and not self.noise_types):
            raise ValueError(f"noise_types must be a non-empty subset of {NOISE_TYPES}")
        if set(self.rawboost_stages) - set(RAWBOOST_STAGES):
            raise ValueError(f"rawboost_stages must come from {RAWBOOST_STAGES}")
        for codec, _ in self.codecs:
            if codec not in CODECS:
                raise ValueError(f"unknown codec {codec!r} in codecs; choose from {sorted(CODECS)}")
        if self.codec_p > 0 and not self.codecs:
            raise ValueError("codec_p > 0 needs at least one (codec, bitrate) pair in codecs")

    @classmethod
    def off(cls, **overrides: Any) -> AugmentConfig:
        """Return a config with every stage's probability at 0 (then apply ``overrides``)."""
        probs = {f"{name}_p": 0.0 for name in _STAGE_PROBABILITIES}
        return cls(**(probs | overrides))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists) for run folders' config.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Build from :meth:`to_dict` output; unknown keys raise with the list of valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ValueError(
                f"unknown AugmentConfig keys {sorted(unknown)}; valid: {sorted(valid)}"
            )
        return cls(**data)


class Augmenter:
    """Apply an :class:`AugmentConfig` to one clip at a time, reproducibly.

    Stages run in the order of :data:`AUGMENTATIONS`: the codec first, on the clip as given, so
    that its cached result can be reused every epoch (a codec after random noise or cropping
    would see new samples every time and never hit the cache); then the random crop, tempo,
    pitch, room, noise, RawBoost, telephone line and gain. Each stage draws from its own
    generator seeded from ``rng``, so changing one stage's probability does not change what the
    others do. If the peak of the result exceeds 1.0 the clip is scaled down to peak 1.0.

    Output length: ``round(crop_seconds * sample_rate)`` samples when ``crop_seconds`` is set
    (the tempo stage reads a longer or shorter window so its output fills exactly that),
    otherwise the input length.

    Seeding in a DataLoader: derive the generator from the run seed, the epoch and the item
    index, never from the worker, so results do not depend on ``num_workers``::

        def __getitem__(self, index):
            wave = ...
            return self.augmenter(wave, self.augmenter.rng_for(self.epoch, index))

    with ``dataset.epoch`` set by the training loop before each epoch (workers are recreated per
    epoch unless ``persistent_workers=True``, in which case pass the epoch through a sampler).
    """

    def __init__(
        self,
        config: AugmentConfig | None = None,
        seed: int = 0,
        noise_pool: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.config = config or AugmentConfig()
        self.seed = int(seed)
        self.noise_pool = [np.asarray(c, dtype=np.float32) for c in (noise_pool or [])]
        if self.config.noise_p > 0 and "babble" in self.config.noise_types and not self.noise_pool:
            raise ValueError(
                "AugmentConfig.noise_types includes 'babble', which mixes other training clips: "
                "pass noise_pool=[...] (a few dozen training clips) or set "
                "noise_types=('white', 'pink')"
            )

    @classmethod
    def for_training(
        cls,
        config: AugmentConfig,
        store,
        rows: Sequence[int],
        seed: int = 0,
        pool_size: int = 64,
    ) -> Augmenter:
        """An augmenter whose babble noise mixes a seeded pool of ``pool_size`` training clips.

        ``store`` is the training :class:`~dfa_lib.data.clips.ClipStore` and ``rows`` the positions
        the pool is drawn from; clips that failed to decode are left out.
        """
        picked = np.random.default_rng(seed).permutation(np.asarray(rows))[:pool_size]
        pool = [store[int(r)] for r in picked if store.ok(int(r))]
        return cls(config, seed=seed, noise_pool=pool)

    def rng_for(self, epoch: int, index: int) -> np.random.Generator:
        """Return the generator for item ``index`` in ``epoch`` (independent of the worker)."""
        return np.random.default_rng([self.seed, int(epoch), int(index)])

    def __call__(self, wave: np.ndarray, rng: RandomSource) -> np.ndarray:
        """Return the augmented clip (see the class docstring for order and length)."""
        return self.apply(wave, rng)[0]

    def apply(self, wave: np.ndarray, rng: RandomSource) -> tuple[np.ndarray, list[str]]:
        """Augment and also return the names of the stages that ran, e.g. ``["noise:pink"]``."""
        cfg = self.config
        sr = cfg.sample_rate
        wave = _mono(wave)
        stage_seeds = _as_rng(rng).integers(0, 2**63, size=len(AUGMENTATIONS))
        gens = {
            name: np.random.default_rng(s)
            for name, s in zip(AUGMENTATIONS, stage_seeds, strict=True)
        }
        applied: list[str] = []

        def chosen(name: str) -> bool:
            return bool(gens[name].random() < getattr(cfg, f"{name}_p"))

        x = wave
        if chosen("codec") and x.size:
            codec, bitrate = cfg.codecs[int(gens["codec"].integers(len(cfg.codecs)))]
            x = apply_codec(x, sr, codec, bitrate, cfg.codec_cache_dir)
            applied.append(f"codec:{codec}-{bitrate or 'default'}")
        target = int(round(cfg.crop_seconds * sr)) if cfg.crop_seconds else wave.size
        rate = float(gens["stretch"].uniform(*cfg.stretch_range)) if chosen("stretch") else 1.0
        if cfg.crop_seconds:
            x = random_crop(x, max(1, int(round(target * rate))), gens["crop"])
            applied.append("crop")
        if rate != 1.0:
            x = pad_or_crop(time_stretch(x, rate, keep_length=False), target, mode="start")
            applied.append(f"stretch:{rate:.3f}")
        if chosen("pitch"):
            semitones = float(gens["pitch"].uniform(*cfg.pitch_semitones))
            x = pitch_shift(x, sr, semitones)
            applied.append(f"pitch:{semitones:+.2f}")
        if chosen("reverb"):
            g = gens["reverb"]
            x = add_reverb(x, sr, g, g.uniform(*cfg.rt60_range), g.uniform(*cfg.drr_db_range))
            applied.append("reverb")
        if chosen("noise"):
            g = gens["noise"]
            kind = cfg.noise_types[int(g.integers(len(cfg.noise_types)))]
            x = add_noise(x, g.uniform(*cfg.snr_db_range), g, kind, self.noise_pool)
            applied.append(f"noise:{kind}")
        if chosen("rawboost"):
            x = rawboost(x, sr, gens["rawboost"], cfg.rawboost_stages, cfg.rawboost)
            applied.append("rawboost")
        if chosen("telephone"):
            x = telephone_band(x, sr)
            applied.append("telephone")
        if chosen("gain"):
            x = apply_gain(x, gens["gain"].uniform(*cfg.gain_db_range))
            applied.append("gain")
        x = pad_or_crop(x, target, mode="start") if x.size != target else x
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > 1.0:
            x = x / peak
        return np.ascontiguousarray(x, dtype=np.float32), applied


def with_augmented_copies(
    frame,
    store,
    config: AugmentConfig,
    seed: int = 0,
    rows: Sequence[int] | None = None,
):
    """Return a training split plus one augmented copy of each of its decodable clips.

    For models that fit once on fixed clips (the logistic regressions), where the torch models
    draw new augmentations every epoch. ``rows`` (default: every row) are the clips copied;
    copy ``k`` of row ``i`` is ``Augmenter(...)(clip, rng_for(0, i))``, so the same split,
    config and seed give the same copies. A copy's row is its source's, label included, with
    ``path`` ``<source path>#aug`` and no content hash. Returns ``(frame, store)``.
    """

    frame = aligned_split(frame, store)
    chosen = [int(i) for i in (range(len(frame)) if rows is None else rows) if store.ok(int(i))]
    augmenter = Augmenter.for_training(config, store, chosen, seed=seed)
    copies = [augmenter(store[i], augmenter.rng_for(0, i)) for i in chosen]
    added = frame.iloc[chosen].copy()
    added["path"] = added["path"].astype(str) + "#aug"
    if "sha256" in added.columns:
        added["sha256"] = ""
    return extend_split(frame, store, added, copies)
