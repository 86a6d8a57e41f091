"""Spectral front ends (LFCC, log-mel, log spectrogram, phase) as torch modules.

Every front end maps a batch of 16 kHz waveforms ``(batch, samples)`` to an "image"
``(batch, n_channels, n_feats, frames)`` for a 2-D CNN: one channel of magnitude features,
and for the ``ifd`` front end two more that carry the phase the others throw away. They run
on the model's device and hold no trainable parameters; their filterbanks and windows are
buffers, so ``model.to(device)`` moves them with the model. No augmentation happens here
(that lives in ``dfa_lib.data.augment``), so training and inference see the same features.

LFCC defaults follow the published ASVspoof 2019/2021 LFCC baselines (LFCC-GMM, LFCC-LCNN):
20 ms Hamming windows with a 10 ms shift (320 / 160 samples at 16 kHz), a 512-point FFT,
20 linearly spaced triangular filters over 0-8 kHz, 20 cepstral coefficients (c0 kept) and
their deltas and delta-deltas, i.e. 60 features per frame. The classical baseline in
``dfa_lib.models.classical`` computes its features with the same :class:`LFCCConfig`, so both
baselines see identical LFCCs.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn

SAMPLE_RATE = 16000

FRONTEND_NAMES: tuple[str, ...] = ("lfcc", "mel", "spec", "ifd")


class FrontendError(ValueError):
    """Raised for an unknown front end name or inconsistent front end settings."""


@dataclass(frozen=True)
class LFCCConfig:
    """LFCC settings (ASVspoof-baseline-like); the single definition used by every LFCC user."""

    sample_rate: int = SAMPLE_RATE  # Hz
    n_fft: int = 512  # FFT points (257 frequency bins)
    win_length: int = 320  # samples: 20 ms at 16 kHz
    hop_length: int = 160  # samples: 10 ms at 16 kHz
    n_filter: int = 20  # linear triangular filters
    n_lfcc: int = 20  # cepstral coefficients kept, c0 included
    f_min: float = 0.0  # Hz
    f_max: float | None = None  # Hz; None means Nyquist
    with_deltas: bool = True  # append delta and delta-delta (x3 features)
    delta_win: int = 5  # frames in the regression window of the deltas
    preemphasis: float | None = 0.97  # first-order pre-emphasis coefficient; None disables
    log_floor: float = 1e-6  # added to filterbank energies before the log

    @property
    def n_features(self) -> int:
        """Number of features per frame (coefficients, times 3 with deltas)."""
        return self.n_lfcc * (3 if self.with_deltas else 1)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel filterbank settings (80 bands, 25 ms windows, 10 ms shift at 16 kHz)."""

    sample_rate: int = SAMPLE_RATE  # Hz
    n_fft: int = 512  # FFT points
    win_length: int = 400  # samples: 25 ms at 16 kHz
    hop_length: int = 160  # samples: 10 ms at 16 kHz
    n_mels: int = 80  # mel bands
    f_min: float = 20.0  # Hz
    f_max: float | None = None  # Hz; None means Nyquist
    preemphasis: float | None = None  # first-order pre-emphasis coefficient; None disables
    log_floor: float = 1e-6  # added to band energies before the log

    @property
    def n_features(self) -> int:
        """Number of features per frame."""
        return self.n_mels

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class LogSpecConfig:
    """Log power spectrogram bins, unpooled: the fine frequency resolution filterbanks average.

    A 1,024-point FFT over 64 ms windows resolves 15.6 Hz, so single harmonics and narrow
    spectral lines stay apart; ``f_min``/``f_max`` keep the bins of the band that carries speech
    (257 bins for 0-4 kHz). The 20 ms shift halves the frames of the 10 ms front ends, which
    keeps the cost of a 2-D CNN near that of 128 mel bands.
    """

    sample_rate: int = SAMPLE_RATE  # Hz
    n_fft: int = 1024  # FFT points (n_fft / 2 + 1 bins over 0..Nyquist)
    win_length: int = 1024  # samples: 64 ms at 16 kHz
    hop_length: int = 320  # samples: 20 ms at 16 kHz
    f_min: float = 0.0  # Hz, lowest bin kept
    f_max: float | None = None  # Hz, highest bin kept; None means Nyquist
    preemphasis: float | None = None  # first-order pre-emphasis coefficient; None disables
    log_floor: float = 1e-6  # added to bin powers before the log

    def bins(self) -> tuple[int, int]:
        """Return the first and one-past-last FFT bin kept."""
        f_max = self.f_max if self.f_max is not None else self.sample_rate / 2
        step = self.sample_rate / self.n_fft
        return int(round(self.f_min / step)), int(round(f_max / step)) + 1

    @property
    def n_features(self) -> int:
        """Number of features per frame (bins kept)."""
        low, high = self.bins()
        return high - low

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class IFDConfig(LogSpecConfig):
    """Log power and instantaneous-frequency deviation of each spectrogram bin.

    The deviation is how far a bin's phase advance from one frame to the next departs from
    that of a steady sinusoid at the bin's centre frequency (``2 pi k hop / n_fft``), wrapped to
    ``(-pi, pi]``: the frequency of the component that dominates the bin, relative to the bin.
    A harmonic of a voiced sound gives a deviation that is steady across neighbouring bins and
    frames, noise one that is uniformly random. A vocoder generates the phase that a
    magnitude spectrogram leaves open, so its deviations need not follow a real voice's
    even where its magnitudes do. 32 ms windows every 10 ms keep the cost of the log-mel
    LCNN's frames; 129 bins reach 4 kHz.
    """

    n_fft: int = 512  # FFT points
    win_length: int = 512  # samples: 32 ms at 16 kHz
    hop_length: int = 160  # samples: 10 ms at 16 kHz


def _check_framing(n_fft: int, win_length: int, hop_length: int) -> None:
    if not 0 < win_length <= n_fft:
        raise FrontendError(f"win_length must be in 1..n_fft={n_fft}, got {win_length}")
    if hop_length <= 0:
        raise FrontendError(f"hop_length must be positive, got {hop_length}")


def _as_batch(waves: torch.Tensor) -> torch.Tensor:
    if waves.dim() == 1:
        waves = waves.unsqueeze(0)
    if waves.dim() != 2:
        raise FrontendError(
            f"expected waveforms shaped (batch, samples), got shape {tuple(waves.shape)}"
        )
    return waves


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    # Under mixed precision, log energies of quiet frames lose most of their digits in float16;
    # the front end is cheap, so it always runs in float32.
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return contextlib.nullcontext()


def _preemphasis(waves: torch.Tensor, coefficient: float | None) -> torch.Tensor:
    if not coefficient:
        return waves
    return torch.cat([waves[:, :1], waves[:, 1:] - coefficient * waves[:, :-1]], dim=1)


def _utterance_normalize(feats: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # Per utterance and per feature over time: removes a constant gain and a static channel,
    # which differ between sources and would otherwise be an easy shortcut.
    mean = feats.mean(dim=-1, keepdim=True)
    std = feats.std(dim=-1, keepdim=True, unbiased=False)
    return (feats - mean) / (std + eps)


class _Spectrogram(nn.Module):
    """Complex STFT with a fixed Hamming window, padded at both ends (centred frames)."""

    def __init__(self, n_fft: int, win_length: int, hop_length: int) -> None:
        super().__init__()
        _check_framing(n_fft, win_length, hop_length)
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.register_buffer(
            "window", torch.hamming_window(win_length, periodic=False), persistent=False
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # Constant (zero) padding instead of reflection so that clips shorter than half an
        # FFT frame still work.
        spec = torch.stft(
            waves,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return spec  # (batch, freq, frames), complex


class _Frontend(nn.Module):
    """Shared part: band check, spectrogram, full precision, normalisation, channel axis.

    A front end says how a power spectrogram ``(batch, freq, frames)`` becomes its magnitude
    features ``(batch, n_features, frames)`` (:meth:`_from_power`); one with more channels
    also builds them from the complex spectrogram (:meth:`_channels`). Per-utterance
    normalisation applies to the magnitude features only.
    """

    config: LFCCConfig | LogMelConfig | LogSpecConfig
    n_channels = 1  # channels of the output image

    def __init__(self, config: LFCCConfig | LogMelConfig | LogSpecConfig, normalize: bool) -> None:
        super().__init__()
        self.config = config
        self.normalize = normalize
        if not 0 <= config.f_min < self.f_max <= config.sample_rate / 2:
            raise FrontendError(
                f"need 0 <= f_min < f_max <= {config.sample_rate / 2} Hz, "
                f"got {config.f_min}, {self.f_max}"
            )
        self.spectrogram = _Spectrogram(config.n_fft, config.win_length, config.hop_length)

    @property
    def f_max(self) -> float:
        """Top of the band in Hz (the config's ``f_max``, else Nyquist)."""
        cfg = self.config
        return cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2

    @property
    def n_features(self) -> int:
        """Number of features per frame."""
        return self.config.n_features

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Compute the features of a batch of waveforms (float32 even under autocast)."""
        with _full_precision(waves.device):
            waves = _preemphasis(_as_batch(waves).float(), self.config.preemphasis)
            spec = self.spectrogram(waves)
            feats = self._from_power(spec.real.square() + spec.imag.square())
            if self.normalize:
                feats = _utterance_normalize(feats)
            return self._channels(feats, spec)

    def _from_power(self, power: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _channels(self, feats: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        return feats.unsqueeze(1)


class LFCCFrontend(_Frontend):
    """Linear-frequency cepstral coefficients: (batch, samples) -> (batch, 1, n_feats, frames)."""

    def __init__(self, config: LFCCConfig | None = None, normalize: bool = False) -> None:
        super().__init__(config or LFCCConfig(), normalize)
        cfg = self.config
        if not 0 < cfg.n_lfcc <= cfg.n_filter:
            raise FrontendError(f"n_lfcc must be in 1..n_filter={cfg.n_filter}, got {cfg.n_lfcc}")
        filterbank = AF.linear_fbanks(
            n_freqs=cfg.n_fft // 2 + 1,
            f_min=cfg.f_min,
            f_max=self.f_max,
            n_filter=cfg.n_filter,
            sample_rate=cfg.sample_rate,
        )  # (freq, n_filter)
        dct = AF.create_dct(cfg.n_lfcc, cfg.n_filter, norm="ortho")  # (n_filter, n_lfcc)
        self.register_buffer("filterbank", filterbank, persistent=False)
        self.register_buffer("dct", dct, persistent=False)

    def _from_power(self, power: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        energies = torch.matmul(power.transpose(1, 2), self.filterbank)  # (batch, frames, filt)
        cepstra = torch.matmul(torch.log(energies + cfg.log_floor), self.dct).transpose(1, 2)
        if cfg.with_deltas:
            delta = AF.compute_deltas(cepstra, win_length=cfg.delta_win)
            delta2 = AF.compute_deltas(delta, win_length=cfg.delta_win)
            cepstra = torch.cat([cepstra, delta, delta2], dim=1)
        return cepstra


class LogMelFrontend(_Frontend):
    """Log mel filterbank energies: (batch, samples) -> (batch, 1, n_mels, frames)."""

    def __init__(self, config: LogMelConfig | None = None, normalize: bool = False) -> None:
        super().__init__(config or LogMelConfig(), normalize)
        cfg = self.config
        filterbank = AF.melscale_fbanks(
            n_freqs=cfg.n_fft // 2 + 1,
            f_min=cfg.f_min,
            f_max=self.f_max,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (freq, n_mels)
        self.register_buffer("filterbank", filterbank, persistent=False)

    def _from_power(self, power: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(power.transpose(1, 2), self.filterbank).transpose(1, 2)
        return torch.log(mel + self.config.log_floor)


class LogSpecFrontend(_Frontend):
    """Log power spectrogram bins: (batch, samples) -> (batch, 1, n_bins, frames)."""

    def __init__(self, config: LogSpecConfig | None = None, normalize: bool = False) -> None:
        super().__init__(config or LogSpecConfig(), normalize)

    def _from_power(self, power: torch.Tensor) -> torch.Tensor:
        low, high = self.config.bins()
        return torch.log(power[:, low:high] + self.config.log_floor)


def phase_deviation(
    spec: torch.Tensor, n_fft: int, hop_length: int, first_bin: int = 0
) -> torch.Tensor:
    """Instantaneous-frequency deviation of a complex STFT ``(batch, bins, frames)``, radians.

    Row ``i`` holds FFT bin ``first_bin + i``. Each frame's value is its phase advance since
    the previous frame minus ``2 pi k hop / n_fft``, wrapped to ``[-pi, pi)``; the first frame,
    which has no predecessor, repeats the second's so the output keeps the input's shape.
    """
    phase = torch.angle(spec)
    if phase.shape[-1] < 2:
        return torch.zeros_like(phase)
    k = torch.arange(first_bin, first_bin + phase.shape[-2], device=phase.device, dtype=phase.dtype)
    expected = (2 * math.pi * hop_length / n_fft) * k[:, None]
    advance = phase[..., 1:] - phase[..., :-1] - expected
    deviation = torch.remainder(advance + math.pi, 2 * math.pi) - math.pi
    return torch.cat([deviation[..., :1], deviation], dim=-1)


class IFDFrontend(LogSpecFrontend):
    """Log power and phase: (batch, samples) -> (batch, 3, n_bins, frames).

    Channel 0 is the log power of each bin (per-utterance normalised when asked), channels 1
    and 2 the cosine and sine of its instantaneous-frequency deviation
    (:func:`phase_deviation`): a continuous encoding of an angle, bounded, so it needs no
    normalisation.
    """

    n_channels = 3

    def __init__(self, config: IFDConfig | None = None, normalize: bool = False) -> None:
        super().__init__(config or IFDConfig(), normalize)

    def _channels(self, feats: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        low, high = self.config.bins()
        cfg = self.config
        deviation = phase_deviation(spec[:, low:high], cfg.n_fft, cfg.hop_length, first_bin=low)
        return torch.stack([feats, torch.cos(deviation), torch.sin(deviation)], dim=1)


def build_frontend(name: str, normalize: bool = False, **settings: Any) -> nn.Module:
    """Build a front end by name (one of :data:`FRONTEND_NAMES`); ``settings`` override its config.

    For example ``build_frontend("lfcc", n_lfcc=20, with_deltas=False)`` or
    ``build_frontend("mel", n_mels=64, normalize=True)``.
    """
    configs: dict[str, type[LFCCConfig] | type[LogMelConfig] | type[LogSpecConfig]] = {
        "lfcc": LFCCConfig,
        "mel": LogMelConfig,
        "spec": LogSpecConfig,
        "ifd": IFDConfig,
    }
    if name not in configs:
        raise FrontendError(f"unknown front end {name!r}; choose one of {list(FRONTEND_NAMES)}")
    config_cls = configs[name]
    try:
        config = config_cls(**settings)
    except TypeError as error:
        known = sorted(config_cls.__dataclass_fields__)
        raise FrontendError(
            f"bad settings for front end {name!r}: {error}; known settings: {known}"
        ) from error
    frontends = {
        "lfcc": LFCCFrontend,
        "mel": LogMelFrontend,
        "spec": LogSpecFrontend,
        "ifd": IFDFrontend,
    }
    return frontends[name](config, normalize=normalize)  # type: ignore[arg-type]
