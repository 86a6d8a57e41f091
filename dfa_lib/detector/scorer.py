"""A trained detector as a self-contained folder: load it, score waveforms and files, export it.

A detector folder (a run folder written by training, or one written by :func:`export_detector`)
holds ``config.json`` (``"format": "dfa-detector"``, the model name and keyword arguments, the
preprocessing and the decision threshold), the weights in ``model.safetensors`` (never a
pickle), ``metrics.json`` and a model card ``README.md``. :func:`load_detector` checks the
format, rebuilds the model and returns a :class:`Detector`.

Scores and threshold
    A network returns logits ``[real, fake]``. The bona fide score is
    ``s = logit_real - logit_fake`` (higher = real, as in ASVspoof) and the probability of fake
    is ``softmax(logits)[1] = sigmoid(-s)``. A folder stores its threshold ``tau`` on ``s``
    (taken at the validation equal error rate): fake iff ``s < tau``. Because ``sigmoid`` is
    increasing, that is the same decision as ``p_fake > sigmoid(-tau)``: the detector reports
    the probability threshold ``t = sigmoid(-tau)`` and, with the folder's threshold, decides on
    the score itself, as training and evaluation do (a clip scored exactly at ``tau`` is real
    everywhere). A threshold given as a probability ``t`` labels a clip fake when
    ``p_fake >= t``.
    Classical detectors (``lfcc_gmm``, ``lfcc_logreg``, ``ifd_logreg``, ``ifd_rps_logreg``
    from :mod:`dfa_lib.models.classical`) return a bona fide score directly (a log-likelihood ratio or
    log-odds); the same ``sigmoid(-s)`` maps it to a probability of fake (the posterior at
    equal priors for a log-likelihood ratio).
    A folder may carry a calibration fitted on its validation scores
    (:mod:`dfa_lib.scoring.calibration`): then ``p_fake = sigmoid(-(a * s + b))`` and
    ``t = sigmoid(-(a * tau + b))`` with ``a > 0``, so the decisions and the scores stay the
    same and only the probabilities change.

Long files
    The same windows as :mod:`dfa_lib.scoring.windows` (the rule validation and evaluation use, so
    ``dfa predict`` gives a test clip the score its score file records): windows of
    ``clip_seconds`` (the length the model was trained on) every ``hop`` seconds (default: the
    window length, no overlap); a tail that does not fill a window becomes a last window padded
    with zeros. A file no longer than one window is padded the way training padded clips
    (``preprocessing.pad_mode``). Each window gets its own bona fide score and probability.

Aggregation rule (file score)
    The file's bona fide score is the **mean of the window scores** (mean of the logit
    differences) over its audible windows that hold speech (see "Silence" and "Speech
    activity"; ``WindowedScore.in_mean`` says which), and its probability of fake is
    ``sigmoid(-mean)``. :meth:`Detector.aggregate_windows` is where the rule is written.
    Why the mean and not the maximum probability: the threshold was chosen on single
    training-length clips, and the mean of window scores stays on that scale whatever the file
    length, whereas the maximum over
    ``n`` windows drifts towards "fake" as ``n`` grows (one noisy window in an hour of genuine
    speech would flag the whole file). Averaging logits rather than probabilities keeps
    confident windows from being flattened by the sigmoid. The most suspicious window is still
    reported (``max_window_p_fake`` and the per-window timeline) so a partly synthetic file
    can be spotted by eye.

Silence
    Models normalise the level of every window, so a silent window would be scaled up and
    judged as if it were speech. A window whose loudest 20 ms frame is below ``silence_dbfs``
    (default -60 dBFS, :data:`dfa_lib.data.audio.SILENCE_FLOOR_DBFS`) is scored and listed but
    left out of the file's mean; a file with no audible window at all is refused with a
    :class:`dfa_lib.data.audio.SilentAudioError` by :meth:`Detector.score_path`,
    :meth:`Detector.score_paths` and :meth:`Detector.score_waveform` (``dfa predict`` and the
    app report it as that file's error); :meth:`Detector.score_batch` never refuses and
    averages every window of a silent clip. :meth:`Detector.score_waves`, which evaluation
    uses, averages every window of every clip, as training's validation scores did, so score
    files and thresholds keep one rule. ``silence_dbfs=None`` turns the floor off.

Speech activity
    Sound that is loud enough but is not speech (a tone, music, noise) still gets a verdict,
    and that verdict means nothing: the detector was trained on speech alone. The same three
    methods measure the seconds of speech in the file and in each window
    (:mod:`dfa_lib.features.vad`) and flag a file with less than ``min_speech_seconds`` (default 0.1 s)
    of speech: ``speech_found`` is False, ``dfa predict`` and the app warn. The verdict is
    kept, because the speech-activity model also misses some real speech (short words, shouted
    character voices). In a file where some audible windows hold at least
    ``min_speech_seconds`` of speech, only those count in the file's mean: a long pause filled
    with music, hum or room noise does not sway the verdict on the speech around it. With no
    such window, the audible windows count as before. ``min_speech_seconds=None`` skips the
    check; evaluation never runs it.

Memory: windows are cut from the decoded waveform one batch at a time, so scoring adds only a
batch of windows (``batch_size * window`` samples) on top of the waveform itself. Files longer
than ten minutes that libsndfile reads (wav, flac, ogg, mp3) are decoded block by block
(:func:`decode_long_file`), so a one-hour 44.1 kHz stereo file costs little more than its
16 kHz mono waveform (230 MB) instead of several full-length copies at the file's own rate.
Files longer than ``max_seconds`` (default :data:`MAX_DECODE_SECONDS`, four hours) are refused
with a :class:`~dfa_lib.data.audio.DurationLimitError`, judged from the header before decoding
where libsndfile reads the file; ffmpeg stops just past the cap for the other formats.

Hostile input
    No file gets a verdict it has not earned. Float samples far outside [-1, 1] are refused when
    decoding (:func:`dfa_lib.data.audio.check_samples`); a window whose score is not finite makes
    its file an :class:`UnscorableAudioError`, never a NaN probability compared with the
    threshold. :meth:`Detector.score_paths` isolates each file: a decoding error of any kind
    becomes that file's :class:`~dfa_lib.data.audio.AudioError`, and a batch the model fails on
    is scored again file by file, so only the file at fault loses its row. A WAV or FLAC file
    shorter than its header promises is scored as far as it goes, with a
    :class:`~dfa_lib.data.audio.TruncatedAudioWarning` that the result keeps in ``input_warnings``.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from dfa_lib.core.labels import FAKE, LABELS, REAL
from dfa_lib.data.audio import (
    SILENCE_FLOOR_DBFS,
    AudioDecodeError,
    AudioError,
    SilentAudioError,
    TruncatedAudioWarning,
    check_duration,
    check_samples,
    load_audio,
    loudest_frame_dbfs,
    pad_or_crop,
    promised_frames,
    resample,
    truncation_warning,
    window_starts,
)
from dfa_lib.detector.folder import DetectorFormatError, Preprocessing
from dfa_lib.features.vad import MIN_SPEECH_SECONDS, SpeechActivity, load_speech_activity
from dfa_lib.scoring.calibration import (
    Calibration,
    CalibrationError,
    probability_threshold,
    sigmoid,
    sigmoid_array,
)
from dfa_lib.scoring.metrics import labels_from_scores

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_DECODE_SECONDS",
    "MAX_WINDOW_SECONDS",
    "Detector",
    "DetectorFormatError",
    "Preprocessing",
    "UnscorableAudioError",
    "WindowedScore",
    "decode_long_file",
    "probability_threshold",
    "resolve_device",
]

DEFAULT_BATCH_SIZE = 32
# Longest audio a detector decodes for scoring: four hours is 920 MB at 16 kHz mono float32.
MAX_DECODE_SECONDS = 4 * 3600.0
# Longest window or hop: models are trained on seconds; ten minutes is far past any of them.
MAX_WINDOW_SECONDS = 600.0


class UnscorableAudioError(AudioError):
    """The detector could not give this file a finite score; the message names the file and why."""


@dataclass(frozen=True)
class WindowedScore:
    """The verdict on one waveform: file-level score and label, plus every window's score."""

    p_fake: float  # probability of fake of the file (sigmoid of minus the mean window score)
    score: float  # bona fide score: mean of the scores of the windows in_mean (higher = real)
    label: str  # "fake" when p_fake >= threshold, else "real"
    threshold: float  # probability-of-fake threshold used for the label
    duration: float  # seconds of audio scored
    window_seconds: float  # length of each window, seconds
    hop_seconds: float  # distance between window starts, seconds
    window_starts: tuple[float, ...] = field(repr=False)  # seconds from the start of the file
    window_scores: tuple[float, ...] = field(repr=False)  # bona fide score of each window
    window_p_fake: tuple[float, ...] = field(repr=False)  # probability of fake of each window
    # Whether each window holds a frame above the silence floor (all True with the floor off).
    window_audible: tuple[bool, ...] = field(repr=False)
    # Whether each window counts in the file score (see the module's "Speech activity").
    in_mean: tuple[bool, ...] = field(repr=False)
    # Seconds of speech in the file and in each window; None where the check did not run.
    speech_seconds: float | None = None
    window_speech_seconds: tuple[float, ...] | None = field(default=None, repr=False)
    min_speech_seconds: float | None = None  # the least speech that counts as "speech found"
    # What decoding warned about (a file shorter than its header promises); empty when nothing.
    input_warnings: tuple[str, ...] = ()

    @property
    def n_windows(self) -> int:
        """Number of windows the file was cut into."""
        return len(self.window_scores)

    @property
    def n_audible_windows(self) -> int:
        """Number of windows louder than the silence floor."""
        return sum(self.window_audible)

    @property
    def n_windows_in_mean(self) -> int:
        """Number of windows whose scores the file score averages."""
        return sum(self.in_mean)

    @property
    def silent(self) -> bool:
        """True when no window is louder than the silence floor."""
        return self.n_audible_windows == 0

    @property
    def speech_found(self) -> bool | None:
        """Whether the file holds at least ``min_speech_seconds`` of speech (None: unchecked)."""
        if self.speech_seconds is None or self.min_speech_seconds is None:
            return None
        return self.speech_seconds >= self.min_speech_seconds

    @property
    def max_window_p_fake(self) -> float:
        """Probability of fake of the most suspicious window."""
        return max(self.window_p_fake)

    def to_dict(self, windows: bool = True) -> dict[str, Any]:
        """Return a JSON-serialisable dict; ``windows=False`` leaves out the per-window lists."""
        out: dict[str, Any] = {
            "p_fake": self.p_fake,
            "score": self.score,
            "label": self.label,
            "threshold": self.threshold,
            "duration": self.duration,
            "n_windows": self.n_windows,
            "n_audible_windows": self.n_audible_windows,
            "n_windows_in_mean": self.n_windows_in_mean,
            "speech_seconds": self.speech_seconds,
            "speech_found": self.speech_found,
            "max_window_p_fake": self.max_window_p_fake,
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "warnings": list(self.input_warnings),
        }
        if windows:
            speech = self.window_speech_seconds or (None,) * self.n_windows
            out["windows"] = [
                {
                    "start": s,
                    "end": min(s + self.window_seconds, self.duration),
                    "p_fake": p,
                    "audible": a,
                    "speech_seconds": sp,
                    "in_mean": m,
                }
                for s, p, a, sp, m in zip(
                    self.window_starts,
                    self.window_p_fake,
                    self.window_audible,
                    speech,
                    self.in_mean,
                    strict=True,
                )
            ]
        return out


def resolve_device(device: str = "auto") -> Any:
    """Return the torch device for ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``."""

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use 'cpu'")
    return torch.device(device)


STREAM_ABOVE_SECONDS = 600.0  # files longer than this are decoded block by block
_BLOCK_SECONDS = 30.0  # input audio per decoding block
_RESAMPLE_CONTEXT = 2048  # input samples of context each side: far beyond the filter's reach


def decode_long_file(
    path: str | os.PathLike,
    target_sr: int,
    min_seconds: float = STREAM_ABOVE_SECONDS,
    max_seconds: float | None = MAX_DECODE_SECONDS,
) -> np.ndarray | None:
    """Decode a long file to mono float32 at ``target_sr`` block by block, or return None.

    Gives the same samples as :func:`dfa_lib.data.audio.load_audio` (channel mean, the same
    polyphase Kaiser filter) without holding the file at its own rate: each block is resampled
    with ``_RESAMPLE_CONTEXT`` samples of context on both sides and trimmed, and blocks start on
    multiples of the decimation factor so their outputs tile exactly. Returns None (the caller
    then uses ``load_audio``) for files libsndfile cannot open, shorter than ``min_seconds``, or
    that stop before their header says (load_audio decodes what is there and warns).

    Raises :class:`~dfa_lib.data.audio.DurationLimitError` when the header says the file lasts
    over ``max_seconds`` (None: no cap), before decoding anything, and the
    :class:`~dfa_lib.data.audio.InvalidAudioError` of :func:`~dfa_lib.data.audio.check_samples`
    for samples that are not audio. Warns with a
    :class:`~dfa_lib.data.audio.TruncatedAudioWarning` for a WAV file shorter than its header.
    """

    try:
        info = sf.info(str(path))
    except Exception:  # not for libsndfile: the caller's load_audio reports or decodes it
        return None
    frames, sr = int(info.frames), int(info.samplerate)
    seconds = check_duration(str(path), frames, sr, max_seconds)
    if seconds is None or seconds < min_seconds:  # unknown length, or short: load_audio's job
        return None
    g = math.gcd(sr, target_sr)
    up, down = target_sr // g, sr // g
    step = down * max(1, round(_BLOCK_SECONDS * sr / down))
    context = down * math.ceil(_RESAMPLE_CONTEXT / down)
    out = np.empty(-(-frames * up // down), dtype=np.float32)
    with sf.SoundFile(str(path)) as f:
        for start in range(0, frames, step):
            lo, stop = max(0, start - context), min(frames, start + step)
            hi = min(frames, stop + context)
            try:
                f.seek(lo)
                raw = f.read(hi - lo, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError):
                return None  # broken mid-stream (a cut FLAC frame): load_audio decodes the rest
            if raw.shape[0] != hi - lo:
                return None  # shorter than its header says: let load_audio handle it
            check_samples(raw, str(path))
            block = raw.mean(axis=1, dtype=np.float32)
            if up == down == 1:
                piece = block[start - lo : stop - lo]
            else:
                y = resample_poly(block.astype(np.float64), up, down, window=("kaiser", 8.6))
                first = (start - lo) * up // down
                piece = y[first : first + (-(-(stop - start) * up // down))]
            begin = start * up // down
            out[begin : begin + piece.size] = piece
    # libsndfile trims a WAV's frame count to the bytes there are; only the header still knows.
    promised = promised_frames(path)
    if promised is not None and promised > frames:
        warnings.warn(truncation_warning(str(path), promised, frames, sr), stacklevel=2)
    return out


def _decode(
    path: str | os.PathLike, target_sr: int, max_seconds: float | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Decode a file for scoring: block by block when it is long, else with load_audio.

    Returns the waveform and the messages of the truncation warnings decoding gave; every
    warning is also issued again as usual, so it reaches the console.
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wave = (
                decode_long_file(path, target_sr, max_seconds=max_seconds)
                if Path(path).is_file()
                else None
            )
            if wave is None:
                wave, _ = load_audio(path, target_sr=target_sr, max_seconds=max_seconds)
    finally:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, TruncatedAudioWarning))
    return wave, notes


def _check_seconds(value: Any, what: str, sr: int) -> int:
    """Return ``value`` seconds in samples at ``sr`` Hz, or raise ValueError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be positive and finite, got {value} s")
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError(
            f"{what} must be at most {MAX_WINDOW_SECONDS:g} s, got {seconds:g} s; score a long "
            "file in windows of the length the model was trained on"
        )
    samples = round(seconds * sr)
    if samples < 1:
        raise ValueError(
            f"{what} of {seconds:g} s rounds to 0 samples at {sr} Hz; give at least one sample "
            f"({1 / sr:.2g} s)"
        )
    return samples


class Detector:
    """A trained model with its preprocessing, decision threshold and metadata.

    Build it with :func:`load_detector`. ``threshold`` is the probability-of-fake threshold
    (default: the folder's validation-EER threshold converted with
    :func:`probability_threshold`). ``silence_dbfs`` is the silence floor (see the module's
    "Silence"); None scores every window. ``min_speech_seconds`` is the least speech a file
    must hold for its verdict to go unflagged (the module's "Speech activity"); None skips the
    check. ``max_seconds`` is the longest file :meth:`score_path` and :meth:`score_paths`
    decode (None: no cap).
    """

    def __init__(
        self,
        model: Any,
        config: dict[str, Any],
        folder: Path | None = None,
        device: str = "auto",
        threshold: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        metrics: dict[str, Any] | None = None,
        model_card: str | None = None,
        silence_dbfs: float | None = SILENCE_FLOOR_DBFS,
        min_speech_seconds: float | None = MIN_SPEECH_SECONDS,
        max_seconds: float | None = MAX_DECODE_SECONDS,
    ) -> None:

        self.config = config
        self.folder = folder
        self.metrics = metrics or {}
        self.model_card = model_card or ""
        self.preprocessing = Preprocessing.from_dict(config.get("preprocessing", {}))
        self.model_name: str = config["model"]["name"]
        # Networks return logits; other detectors (classical) return bona fide scores.
        self.is_torch = isinstance(model, torch.nn.Module)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self.score_threshold = float(config.get("threshold", 0.0))
        try:
            self.calibration = Calibration.from_config(config)
        except CalibrationError as error:
            raise DetectorFormatError(f"{folder or 'detector'}: {error}") from error
        self._folder_threshold = threshold is None
        self.threshold = (
            probability_threshold(self.calibration.apply(self.score_threshold))
            if threshold is None
            else float(threshold)
        )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a probability of fake in [0, 1], got {self.threshold}")
        self.silence_dbfs = None if silence_dbfs is None else float(silence_dbfs)
        if min_speech_seconds is not None and not min_speech_seconds >= 0:
            raise ValueError(f"min_speech_seconds must be >= 0 or None, got {min_speech_seconds}")
        self.min_speech_seconds = min_speech_seconds
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
        self.max_seconds = max_seconds
        self._speech_activity: SpeechActivity | None = None
        self.model = model
        self.device = None
        if self.is_torch:
            self.device = resolve_device(device)
            self.model = model.to(self.device).eval()

    def _label(self, score: float, p_fake: float) -> str:
        """The verdict on a file score: the folder's rule, or an explicit probability threshold.

        With the folder's own threshold the decision is taken on the bona fide score, exactly
        as training and evaluation take it (:func:`dfa_lib.scoring.metrics.labels_from_scores`:
        real iff ``score >= tau``), so a clip scored at the threshold gets the same verdict
        everywhere. A threshold given as a probability labels fake iff ``p_fake >= t``.
        """
        if self._folder_threshold:
            return str(labels_from_scores(np.array([score]), self.score_threshold)[0])
        return LABELS[FAKE] if p_fake >= self.threshold else LABELS[REAL]

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) every waveform is resampled to before scoring."""
        return self.preprocessing.sample_rate

    @property
    def input_samples(self) -> int | None:
        """Fixed input length of the model in samples, or None for variable-length models."""
        return getattr(self.model, "input_samples", None)

    @property
    def window_seconds(self) -> float:
        """Default window length in seconds: the model's fixed input, else ``clip_seconds``."""
        if self.input_samples:
            return self.input_samples / self.sample_rate
        return float(self.preprocessing.clip_seconds)

    @property
    def name(self) -> str:
        """Display name: the folder's name, else the model name."""
        return self.folder.name if self.folder is not None else self.model_name

    def window_and_hop(
        self, window_seconds: float | None, hop_seconds: float | None
    ) -> tuple[int, int]:
        """Return (window, hop) in samples for optional overrides in seconds; checks them.

        Each must be a finite number of seconds, positive, at most :data:`MAX_WINDOW_SECONDS`
        and at least one sample long; ValueError says which rule a value breaks.
        """
        sr = self.sample_rate
        window = _check_seconds(self.window_seconds, f"{self.model_name}'s window", sr)
        if window_seconds is not None:
            asked = _check_seconds(window_seconds, "window", sr)
            if self.input_samples and asked != self.input_samples:
                raise ValueError(
                    f"{self.model_name} takes exactly {self.input_samples / sr:g} s windows "
                    f"({self.input_samples} samples); leave out --window or pass "
                    f"{self.input_samples / sr:g}"
                )
            window = asked
        hop = window if hop_seconds is None else _check_seconds(hop_seconds, "hop", sr)
        return window, hop

    def _prepare(self, wave: np.ndarray, start: int, window: int, out: np.ndarray) -> None:
        """Write the model input for the window at ``start`` into ``out`` (no large copies)."""
        prep = self.preprocessing
        if wave.size <= window:
            # Short clips are padded exactly like training padded them.
            out[:] = pad_or_crop(wave, window, mode="start", pad_mode=prep.pad_mode)
        else:
            piece = wave[start : start + window]
            out[: piece.size] = piece
            out[piece.size :] = 0.0  # the zero-padded tail window of frame_windows
        if prep.normalization != "none":
            out[:] = prep.normalize(out)

    def _bonafide_scores(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch of model inputs ``(n, window)``; returns float64 bona fide scores."""
        if not self.is_torch:
            return np.asarray(self.model.score(batch), dtype=np.float64).reshape(-1)

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            logits = self.model(x).float()
            s = logits[:, REAL] - logits[:, FAKE]
        return s.cpu().numpy().astype(np.float64)

    def score_batch(
        self,
        waves: Sequence[np.ndarray],
        sr: int,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        input_checks: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[WindowedScore]:
        """Score several waveforms, pooling their windows into shared forward passes.

        ``waves`` are mono float arrays at ``sr`` Hz (resampled here when ``sr`` differs from
        the detector's rate). Returns one :class:`WindowedScore` per waveform, in order.
        ``input_checks=True`` applies the silence floor and the speech-activity check (the
        module's "Silence" and "Speech activity"); ``False`` counts every window and checks
        nothing (the evaluation rule). Raises :class:`UnscorableAudioError`, naming the
        waveform (``names[i]``, default ``waveform i``), when the model gives one of its
        windows a score that is not finite.
        """

        window, hop = self.window_and_hop(window_seconds, hop_seconds)
        prepared: list[np.ndarray] = []
        for i, wave in enumerate(waves):
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1:
                raise ValueError(f"waveform {i} must be mono (1-D), got shape {wave.shape}")
            if wave.size == 0:
                raise ValueError(f"waveform {i} is empty")
            if sr != self.sample_rate:
                wave = resample(wave, sr, self.sample_rate)
            prepared.append(wave)
        starts = [window_starts(w.size, window, hop) for w in prepared]

        def jobs() -> Iterator[tuple[int, int]]:
            for i, clip_starts in enumerate(starts):
                for start in clip_starts:
                    yield i, start

        scores: list[list[float]] = [[] for _ in prepared]
        batch_owner: list[int] = []
        rows = max(1, min(self.batch_size, sum(len(st) for st in starts)))
        batch: np.ndarray = np.empty((rows, window), dtype=np.float32)
        for i, start in jobs():
            self._prepare(prepared[i], start, window, batch[len(batch_owner)])
            batch_owner.append(i)
            if len(batch_owner) == rows:
                for owner, s in zip(batch_owner, self._bonafide_scores(batch), strict=True):
                    scores[owner].append(float(s))
                batch_owner = []
        if batch_owner:
            tail = self._bonafide_scores(batch[: len(batch_owner)])
            for owner, s in zip(batch_owner, tail, strict=True):
                scores[owner].append(float(s))

        sr_out = self.sample_rate
        for i, (clip_starts, clip_scores) in enumerate(zip(starts, scores, strict=True)):
            finite = np.isfinite(clip_scores)
            if not finite.all():
                name = names[i] if names is not None else f"waveform {i}"
                first = clip_starts[int(np.argmin(finite))] / sr_out
                raise UnscorableAudioError(
                    f"{name}: the model gave {int((~finite).sum())} of {finite.size} windows a "
                    f"score that is NaN or infinite (the first at {first:.1f} s), so there is "
                    "no verdict; the audio holds values this detector cannot handle "
                    "(check its level and format)"
                )
        results = []
        speech_checks = self._speech(prepared, starts, window, input_checks)
        for wave, clip_starts, clip_scores, (speech, window_speech) in zip(
            prepared, starts, scores, speech_checks, strict=True
        ):
            s = np.asarray(clip_scores, dtype=np.float64)
            audible = self._audible(wave, clip_starts, window, input_checks)
            in_mean, file_score, p_fake, label = self.aggregate_windows(s, audible, window_speech)
            results.append(
                WindowedScore(
                    p_fake=p_fake,
                    score=file_score,
                    label=label,
                    threshold=self.threshold,
                    duration=wave.size / sr_out,
                    window_seconds=window / sr_out,
                    hop_seconds=hop / sr_out,
                    window_starts=tuple(st / sr_out for st in clip_starts),
                    window_scores=tuple(float(x) for x in s),
                    window_p_fake=tuple(
                        float(x) for x in sigmoid_array(-self.calibration.apply(s))
                    ),
                    window_audible=tuple(bool(a) for a in audible),
                    in_mean=tuple(bool(m) for m in in_mean),
                    speech_seconds=speech,
                    window_speech_seconds=window_speech,
                    min_speech_seconds=self.min_speech_seconds if speech is not None else None,
                )
            )
        return results

    def aggregate_windows(
        self,
        scores: Sequence[float] | np.ndarray,
        audible: Sequence[bool] | np.ndarray,
        window_speech: Sequence[float] | None = None,
    ) -> tuple[np.ndarray, float, float, str]:
        """Return ``(in_mean, score, p_fake, label)``: the verdict on a set of scored windows.

        The module's aggregation rule, the one place it is written: the mean of the bona fide
        scores of the audible windows holding at least ``min_speech_seconds`` of speech (all
        audible windows when none does or ``window_speech`` is None, every window when none is
        audible), its calibrated probability of fake and the label. ``in_mean`` says which
        windows the mean took. :meth:`score_batch` and the running verdict of
        :class:`dfa_lib.detector.streaming.StreamScorer` both call it.
        """
        s = np.asarray(scores, dtype=np.float64)
        audible = np.asarray(audible, dtype=bool)
        in_mean = audible
        if window_speech is not None and self.min_speech_seconds is not None:
            speaking = audible & (np.asarray(window_speech) >= self.min_speech_seconds)
            if speaking.any():  # with no window of speech, the audible ones decide
                in_mean = speaking
        # A silent clip keeps the mean of all its windows: evaluation never loses a clip.
        if not in_mean.any():
            in_mean = np.ones_like(audible)
        file_score = float(s[in_mean].mean())
        p_fake = sigmoid(-self.calibration.apply(file_score))
        return in_mean, file_score, p_fake, self._label(file_score, p_fake)

    def _audible(
        self, wave: np.ndarray, starts: list[int], window: int, input_checks: bool = True
    ) -> np.ndarray:
        """Whether each window's loudest 20 ms frame reaches the silence floor."""
        if self.silence_dbfs is None or not input_checks:
            return np.ones(len(starts), dtype=bool)
        return np.asarray(
            [
                loudest_frame_dbfs(wave[start : start + window], self.sample_rate)
                >= self.silence_dbfs
                for start in starts
            ],
            dtype=bool,
        )

    @property
    def speech_activity(self) -> SpeechActivity:
        """The speech-activity model (loaded on first use; raises if it is not installed)."""
        if self._speech_activity is None:
            self._speech_activity = load_speech_activity()
        return self._speech_activity

    def _speech(
        self, waves: list[np.ndarray], starts: list[list[int]], window: int, input_checks: bool
    ) -> list[tuple[float | None, tuple[float, ...] | None]]:
        """Seconds of speech in each wave and in each of its windows (None when unchecked)."""
        if self.min_speech_seconds is None or not input_checks:
            return [(None, None)] * len(waves)
        spans = [
            [(start, min(start + window, wave.size)) for start in clip_starts]
            for wave, clip_starts in zip(waves, starts, strict=True)
        ]
        measured = self.speech_activity.speech_seconds_many(waves, self.sample_rate, spans)
        return [(total, tuple(per_window)) for total, per_window in measured]

    def _refuse_silence(self, result: WindowedScore, name: str) -> WindowedScore:
        """Return ``result``, or raise SilentAudioError when none of its windows is audible."""
        if result.silent:
            raise SilentAudioError(
                f"{name}: no audible signal (every 20 ms frame is below the "
                f"{self.silence_dbfs:g} dBFS silence floor); there is no speech to judge"
            )
        return result

    def score_waves(
        self,
        waves: Sequence[np.ndarray],
        sr: int | None = None,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> np.ndarray:
        """Return the file-level bona fide score (higher = real) of each waveform, as float64.

        ``sr`` defaults to the detector's sample rate; this is what evaluation calls. Every
        window counts, silent or not, as in the score files training writes.
        """
        results = self.score_batch(
            waves, sr or self.sample_rate, window_seconds, hop_seconds, input_checks=False
        )
        return np.asarray([r.score for r in results], dtype=np.float64)

    def score_waveform(
        self,
        wave: np.ndarray,
        sr: int,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        name: str = "the waveform",
    ) -> WindowedScore:
        """Score one mono waveform at ``sr`` Hz in windows (see the module's aggregation rule).

        Raises :class:`dfa_lib.data.audio.SilentAudioError`, whose message starts with ``name``,
        when no window is audible.
        """
        result = self.score_batch([wave], sr, window_seconds, hop_seconds, names=[name])[0]
        return self._refuse_silence(result, name)

    def score_path(
        self,
        path: str | os.PathLike,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> WindowedScore:
        """Decode a file with :func:`dfa_lib.data.audio.load_audio` and score it.

        Raises :class:`dfa_lib.data.audio.AudioError` (or a subclass) for a file that cannot be
        read or is longer than ``max_seconds``, :class:`dfa_lib.data.audio.SilentAudioError` for
        one with nothing audible in it and :class:`UnscorableAudioError` for one the model gives
        no finite score. Truncation warnings are kept in the result's ``input_warnings``.
        """
        wave, notes = _decode(path, self.sample_rate, self.max_seconds)
        result = self.score_waveform(wave, self.sample_rate, window_seconds, hop_seconds, str(path))
        return replace(result, input_warnings=notes) if notes else result

    def score_paths(
        self,
        paths: Iterable[str | os.PathLike],
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> Iterator[tuple[Path, WindowedScore | AudioError]]:
        """Score files one after another, yielding ``(path, result or AudioError)`` in order.

        Short files are grouped so that their windows share forward passes. Each file stands
        alone: one that cannot be decoded (for any reason), holds nothing audible, is longer
        than ``max_seconds`` or gets no finite score yields its
        :class:`~dfa_lib.data.audio.AudioError` and the others go on; a group the model fails
        on is scored again file by file, so only the file at fault loses its result.
        """
        window, _ = self.window_and_hop(window_seconds, hop_seconds)
        pending: list[tuple[Path, np.ndarray | AudioError, tuple[str, ...]]] = []
        pending_windows = 0

        def flush() -> Iterator[tuple[Path, WindowedScore | AudioError]]:
            decoded = [(p, w) for p, w, _ in pending if isinstance(w, np.ndarray)]
            try:
                together = self.score_batch(
                    [w for _, w in decoded],
                    self.sample_rate,
                    window_seconds,
                    hop_seconds,
                    names=[str(p) for p, _ in decoded],
                )
            except Exception:  # noqa: BLE001 - one file's failure must not cost the others
                together = None
            scored = iter(together or [])
            for p, w, notes in pending:
                if not isinstance(w, np.ndarray):
                    yield p, w
                    continue
                result = (
                    next(scored)
                    if together is not None
                    else self._score_alone(p, w, window_seconds, hop_seconds)
                )
                if isinstance(result, WindowedScore):
                    try:
                        result = self._refuse_silence(result, str(p))
                    except SilentAudioError as error:
                        result = error
                if isinstance(result, WindowedScore) and notes:
                    result = replace(result, input_warnings=notes)
                yield p, result

        for raw in paths:
            path = Path(raw)
            try:
                wave, notes = _decode(path, self.sample_rate, self.max_seconds)
            except AudioError as error:
                pending.append((path, error, ()))
                continue
            except OSError as error:  # unreadable (permissions, I/O error): report, go on
                reason = error.strerror or str(error)
                pending.append((path, AudioError(f"{path}: cannot read ({reason})"), ()))
                continue
            except Exception as error:  # noqa: BLE001 - a decoder's own error is this file's
                message = f"{path}: cannot decode ({type(error).__name__}: {error})"
                pending.append((path, AudioDecodeError(message), ()))
                continue
            pending.append((path, wave, notes))
            pending_windows += max(1, math.ceil(wave.size / window))
            # Keep at most about one batch of windows (or one long file) waiting.
            if pending_windows >= self.batch_size:
                yield from flush()
                pending, pending_windows = [], 0
        if pending:
            yield from flush()

    def _score_alone(
        self,
        path: Path,
        wave: np.ndarray,
        window_seconds: float | None,
        hop_seconds: float | None,
    ) -> WindowedScore | AudioError:
        """Score one decoded file; its failure comes back as an AudioError naming it."""
        try:
            return self.score_batch(
                [wave], self.sample_rate, window_seconds, hop_seconds, names=[str(path)]
            )[0]
        except AudioError as error:
            return error
        except Exception as error:  # noqa: BLE001 - the model's error on this file only
            return UnscorableAudioError(
                f"{path}: the detector failed on it ({type(error).__name__}: {error})"
            )
