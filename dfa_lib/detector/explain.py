"""Where a detector listens: its score over time and an occlusion map of time and frequency.

:func:`explain` answers two questions about one clip: *when* does the detector hear a fake
(the per-window scores of :meth:`Detector.score_waveform`, the same windows and rule as
``dfa predict``, with each window's speech and silence flags), and *where in time and
frequency* is the evidence it reacts to (an occlusion saliency map).

Occlusion
    The clip's short-time Fourier transform (25 ms Hann windows every 10 ms) is cut into
    patches: ``bands`` frequency bands with edges evenly spaced on the mel scale from 0 Hz to
    half the sample rate, by ``patch_seconds`` of time from the start of the clip. For each
    model window and each patch inside it, the patch is removed from that window's STFT (set to
    zero, ``fill="zero"``, or to the window's median magnitude in each frequency bin with the
    original phase, ``fill="median"``), the rest is kept as it was, the signal is rebuilt by
    the inverse STFT with the original phase and the window is scored again through
    :meth:`Detector.score_batch` (every copy of a window in shared forward passes). Only the
    model's answer is used, never its gradients, so the map means the same thing for a network,
    a classical model, an encoder head or an ONNX runtime.

What the map means
    For a patch, the raw saliency is the **drop of the fake-vs-real score** ``-s`` (``s`` the
    bona fide score, ``logit_real - logit_fake``, before calibration) when the patch is removed:
    ``saliency = s(patch removed) - s(clip)``, averaged over the windows that contain the patch.
    **Positive: the patch pushes the verdict towards fake** (without it the window sounds more
    real); negative: it pushes towards real; zero: the detector ignores it. The unit is the
    bona fide score (a logit difference), so a raw saliency of 2 moves a window's log-odds of
    fake by 2. :attr:`Explanation.saliency` divides the raw values by :attr:`Explanation.scale`
    (the largest absolute raw value), so it lies in **[-1, 1]** with its sign kept; a map that is
    zero everywhere stays zero. Removing a patch is itself a change a detector may react to
    (a silent hole in the spectrum is not natural either); ``fill="median"`` is the gentler
    removal. Patches interact: the map shows what each one does alone.

Cost
    One model input per window, band and patch: ``bands * window_seconds / patch_seconds`` per
    window. With the defaults (8 bands, 0.5 s patches) a 4-s clip is 64 scored copies, 3-4 s
    for the LFCC-LCNN (width 16) on one CPU core (a plain score of the clip: 0.05 s). Clips longer than ``max_seconds`` (default
    60 s) get the saliency of their first ``max_seconds`` only; their per-window scores still
    cover the whole clip.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dfa_lib.data.audio import load_audio, resample, window_starts
from dfa_lib.detector.scorer import Detector, WindowedScore

__all__ = ["FILLS", "Explanation", "explain", "explain_path"]

FILLS = ("zero", "median")  # what a removed patch is replaced with
DEFAULT_BANDS = 8  # frequency bands of the occlusion grid, mel-spaced
DEFAULT_PATCH_SECONDS = 0.5  # time step of the occlusion grid
DEFAULT_MAX_SECONDS = 60.0  # longest stretch of a clip that gets a saliency map
N_MELS = 64  # bands of the log-mel spectrogram the map is drawn on
FRAME_SECONDS = 0.025  # STFT window
STEP_SECONDS = 0.010  # STFT hop: one spectrogram column every 10 ms
DYNAMIC_RANGE_DB = 80.0  # the spectrogram is clipped this far below its loudest cell
SALIENCY_MEANING = (
    "drop of the fake-vs-real score (logit_fake - logit_real) when the time-frequency patch is "
    "removed, averaged over the windows that contain it; > 0: the patch pushes towards fake, "
    "< 0: towards real; 'saliency' is divided by 'scale' into [-1, 1], 'saliency_logits' is not"
)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale (as torchaudio's and librosa's ``htk=True`` mel filters use)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@dataclass(frozen=True)
class _Grid:
    """The STFT the occlusion and the spectrogram share, at one sample rate."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int

    @classmethod
    def at(cls, sample_rate: int) -> _Grid:
        win = max(2, round(FRAME_SECONDS * sample_rate))
        return cls(
            sample_rate, 1 << (win - 1).bit_length(), win, max(1, round(STEP_SECONDS * sample_rate))
        )

    @property
    def window(self) -> torch.Tensor:
        return torch.hann_window(self.win_length)

    @property
    def bin_frequencies(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, 1.0 / self.sample_rate)

    def stft(self, wave: np.ndarray) -> torch.Tensor:
        """Complex STFT ``(bins, frames)``; frame ``j`` is centred on sample ``j * hop_length``."""
        return torch.stft(
            torch.from_numpy(np.asarray(wave, dtype=np.float32)),
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.window,
            center=True,
            pad_mode="constant",  # any length works, and the inverse is still exact
            return_complex=True,
        )

    def istft(self, spec: torch.Tensor, length: int) -> np.ndarray:
        """Signals ``(n, length)`` from complex STFTs ``(n, bins, frames)``."""
        out = torch.istft(
            spec,
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.window,
            center=True,
            length=length,
        )
        return out.numpy().astype(np.float32)


@dataclass(frozen=True)
class Explanation:
    """A clip's per-window scores and its occlusion saliency map (see the module docstring).

    ``patch_saliency[b, p]`` is the raw saliency of frequency band ``b`` (between
    ``band_edges[b]`` and ``band_edges[b + 1]`` Hz) and time patch ``p`` (between
    ``patch_edges[p]`` and ``patch_edges[p + 1]`` seconds), in bona fide score units; positive
    means the patch pushes the verdict towards fake. ``spectrogram_db`` is the log-mel
    spectrogram of the explained stretch (``N_MELS`` bands centred on ``mel_frequencies`` Hz,
    one column per ``frame_times`` entry, every 10 ms), in dB below its loudest cell.
    """

    result: WindowedScore  # the detector's verdict on the whole clip, with its window series
    sample_rate: int  # Hz, the detector's rate (the clip was resampled to it)
    explained_seconds: float  # the saliency covers [0, explained_seconds)
    fill: str  # what a removed patch was replaced with (one of FILLS)
    band_edges: np.ndarray  # (bands + 1,) Hz
    patch_edges: np.ndarray  # (patches + 1,) seconds
    patch_saliency: np.ndarray  # (bands, patches) raw saliency, bona fide score units
    mel_frequencies: np.ndarray  # (N_MELS,) centre of each spectrogram band, Hz
    frame_times: np.ndarray  # (frames,) centre of each spectrogram column, seconds
    spectrogram_db: np.ndarray  # (N_MELS, frames) log-mel power, dB re its loudest cell

    @property
    def scale(self) -> float:
        """Largest absolute raw saliency (bona fide score units); 0 when nothing mattered."""
        return float(np.max(np.abs(self.patch_saliency))) if self.patch_saliency.size else 0.0

    @property
    def saliency(self) -> np.ndarray:
        """Saliency per band and patch divided by :attr:`scale`: in [-1, 1], > 0 towards fake."""
        scale = self.scale
        if scale == 0.0:
            return np.zeros_like(self.patch_saliency)
        return self.patch_saliency / scale

    def saliency_map(self) -> np.ndarray:
        """The normalised saliency on the spectrogram's grid ``(N_MELS, frames)``, in [-1, 1].

        Each spectrogram cell takes the value of the patch that holds its centre (its mel
        band's centre frequency, its column's time).
        """
        bands = np.clip(
            np.searchsorted(self.band_edges, self.mel_frequencies, side="right") - 1,
            0,
            len(self.band_edges) - 2,
        )
        patches = np.clip(
            np.searchsorted(self.patch_edges, self.frame_times, side="right") - 1,
            0,
            len(self.patch_edges) - 2,
        )
        return self.saliency[np.ix_(bands, patches)]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: the verdict with its windows and the saliency per patch.

        The spectrogram itself is left out (it is a function of the audio); ``saliency`` is the
        normalised map ``[band][patch]``, ``saliency_logits`` the raw one.
        """
        verdict = self.result.to_dict(windows=True)
        for entry, score in zip(verdict["windows"], self.result.window_scores, strict=True):
            entry["score"] = score
        return {
            "method": "occlusion",
            "fill": self.fill,
            "saliency_meaning": SALIENCY_MEANING,
            "sample_rate": self.sample_rate,
            "explained_seconds": self.explained_seconds,
            "band_edges_hz": [float(x) for x in self.band_edges],
            "patch_edges_seconds": [float(x) for x in self.patch_edges],
            "scale": self.scale,
            "saliency": self.saliency.tolist(),
            "saliency_logits": self.patch_saliency.tolist(),
            "verdict": verdict,
        }


def _check_settings(bands: Any, patch_seconds: Any, fill: str, max_seconds: Any) -> None:
    if isinstance(bands, bool) or not isinstance(bands, int) or not 1 <= bands <= N_MELS:
        raise ValueError(f"bands must be a whole number from 1 to {N_MELS}, got {bands!r}")
    try:
        patch = float(patch_seconds)
    except (TypeError, ValueError):
        patch = math.nan
    if not (math.isfinite(patch) and patch >= 2 * STEP_SECONDS):
        raise ValueError(
            f"patch_seconds must be at least {2 * STEP_SECONDS:g} s (two spectrogram columns), "
            f"got {patch_seconds!r}"
        )
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {list(FILLS)}, got {fill!r}")
    if max_seconds is not None and not (isinstance(max_seconds, int | float) and max_seconds > 0):
        raise ValueError(
            f"max_seconds must be a positive number of seconds or None, got {max_seconds!r}"
        )


def _log_mel(grid: _Grid, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the mel band centres (Hz) and the log-mel spectrogram in dB of ``wave``."""
    power = grid.stft(wave).abs().pow(2).numpy()  # (bins, frames)
    top = _hz_to_mel(grid.sample_rate / 2)
    points = _mel_to_hz(np.linspace(0.0, float(top), N_MELS + 2))
    freqs = grid.bin_frequencies
    # Triangular filters between neighbouring points (the usual HTK mel filterbank).
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    filters = np.clip(np.minimum(rising, falling), 0.0, None)
    db = 10.0 * np.log10(filters @ power + 1e-10)
    db -= db.max()
    return points[1:-1], np.maximum(db, -DYNAMIC_RANGE_DB).astype(np.float32)


def explain(
    detector: Detector,
    wave: np.ndarray,
    sr: int,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    bands: int = DEFAULT_BANDS,
    patch_seconds: float = DEFAULT_PATCH_SECONDS,
    fill: str = "zero",
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    name: str = "the waveform",
    result: WindowedScore | None = None,
) -> Explanation:
    """Score a mono waveform and map where in time and frequency its verdict comes from.

    ``wave`` is resampled from ``sr`` to the detector's rate. The per-window series is the
    detector's own (:meth:`Detector.score_waveform` with ``window_seconds`` and
    ``hop_seconds``); pass ``result`` when that score is already at hand (it must be this
    waveform's, with the same window and hop) to skip scoring it again. ``bands``,
    ``patch_seconds`` and ``fill`` set the occlusion grid (module docstring); ``max_seconds``
    bounds the stretch that gets a map (None: the whole clip).

    Raises :class:`~dfa_lib.data.audio.SilentAudioError` for a clip with nothing audible (as
    scoring does), :class:`~dfa_lib.detector.scorer.UnscorableAudioError` when the model gives
    a copy no finite score, and ValueError for a setting out of range, naming it.
    """
    _check_settings(bands, patch_seconds, fill, max_seconds)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(
            f"{name}: a non-empty mono (1-D) waveform is needed, got shape {wave.shape}"
        )
    rate = detector.sample_rate
    if sr != rate:
        wave = resample(wave, sr, rate)
    window, hop = detector.window_and_hop(window_seconds, hop_seconds)
    if result is None:
        result = detector.score_waveform(wave, rate, window_seconds, hop_seconds, name)
    elif (
        abs(result.duration - wave.size / rate) > 1.0 / rate
        or abs(result.window_seconds - window / rate) > 1.0 / rate
        or abs(result.hop_seconds - hop / rate) > 1.0 / rate
    ):
        raise ValueError(
            f"{name}: the result given is not this waveform's ({result.duration:g} s in "
            f"{result.window_seconds:g}-s windows every {result.hop_seconds:g} s, against "
            f"{wave.size / rate:g} s in {window / rate:g}-s windows every {hop / rate:g} s)"
        )

    grid = _Grid.at(rate)
    explained = (
        wave.size if max_seconds is None else min(wave.size, max(1, round(max_seconds * rate)))
    )
    patch = round(float(patch_seconds) * rate)
    n_patches = -(-explained // patch)
    band_edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(rate / 2)), bands + 1))
    bin_band = np.clip(
        np.searchsorted(band_edges, grid.bin_frequencies, side="right") - 1, 0, bands - 1
    )
    band_masks = torch.from_numpy(np.stack([bin_band == b for b in range(bands)]))
    total = np.zeros((bands, n_patches))
    counts = np.zeros(n_patches)

    starts = window_starts(wave.size, window, hop)
    for index, start in enumerate(starts):
        if start >= explained:
            break
        if wave.size <= window:  # scored whole, padded the way training padded short clips
            segment, valid = wave, wave.size
        else:  # the window as the model reads it: a tail window is zero-padded
            piece = wave[start : start + window]
            segment = np.zeros(window, dtype=np.float32)
            segment[: piece.size] = piece
            valid = piece.size
        spec = grid.stft(segment)
        centres = start + np.arange(spec.shape[1]) * grid.hop_length
        inside = (centres < start + valid) & (centres < explained)
        frame_patch = np.where(inside, centres // patch, -1)
        here = [int(p) for p in np.unique(frame_patch[frame_patch >= 0])]
        if fill == "median":
            level = spec.abs()[:, torch.from_numpy(inside)].median(dim=1).values
            filler = torch.polar(level[:, None].expand_as(spec), spec.angle())
        else:
            filler = torch.zeros_like(spec)
        jobs = [(b, p) for p in here for b in range(bands)]
        reference = result.window_scores[index]
        for first in range(0, len(jobs), detector.batch_size):
            chunk = jobs[first : first + detector.batch_size]
            masks = torch.stack(
                [
                    band_masks[b][:, None] & torch.from_numpy(frame_patch == p)[None, :]
                    for b, p in chunk
                ]
            )
            copies = grid.istft(torch.where(masks, filler, spec), segment.size)
            copies[:, valid:] = 0.0  # the padding stays padding
            scored = detector.score_batch(
                list(copies),
                rate,
                window_seconds,
                None,
                input_checks=False,
                names=[name] * len(chunk),
            )
            for (b, p), occluded in zip(chunk, scored, strict=True):
                total[b, p] += occluded.window_scores[0] - reference
        for p in here:
            counts[p] += 1
    saliency = total / np.maximum(counts, 1)[None, :]

    frequencies, spectrogram = _log_mel(grid, wave[:explained])
    frame_times = np.arange(spectrogram.shape[1]) * grid.hop_length / rate
    return Explanation(
        result=result,
        sample_rate=rate,
        explained_seconds=explained / rate,
        fill=fill,
        band_edges=band_edges,
        patch_edges=np.minimum(np.arange(n_patches + 1) * patch, explained) / rate,
        patch_saliency=saliency,
        mel_frequencies=frequencies,
        frame_times=frame_times,
        spectrogram_db=spectrogram,
    )


def explain_path(detector: Detector, path: str | os.PathLike, **settings: Any) -> Explanation:
    """Decode a file as :meth:`Detector.score_path` does and :func:`explain` it.

    ``settings`` are :func:`explain`'s keyword arguments. Raises the
    :class:`~dfa_lib.data.audio.AudioError` of decoding for a file that cannot be read.
    """
    wave, rate = load_audio(path, target_sr=detector.sample_rate, max_seconds=detector.max_seconds)
    return explain(detector, wave, rate, name=str(path), **settings)
