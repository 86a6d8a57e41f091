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
    increasing, that is the same decision as ``p_fake > sigmoid(-tau)``, so the detector works
    with the probability threshold ``t = sigmoid(-tau)`` and labels a clip fake when
    ``p_fake >= t`` (the two rules differ only when ``s == tau`` exactly).
    Classical detectors (``lfcc_gmm``, ``lfcc_logreg``, ``ifd_logreg``, ``ifd_rps_logreg``
    from :mod:`dfa_lib.classical`) return a bona fide score directly (a log-likelihood ratio or
    log-odds); the same ``sigmoid(-s)`` maps it to a probability of fake (the posterior at
    equal priors for a log-likelihood ratio).
    A folder may carry a calibration fitted on its validation scores
    (:mod:`dfa_lib.calibration`): then ``p_fake = sigmoid(-(a * s + b))`` and
    ``t = sigmoid(-(a * tau + b))`` with ``a > 0``, so the decisions and the scores stay the
    same and only the probabilities change.

Long files
    The same windows as :mod:`dfa_lib.scoring` (the rule validation and evaluation use, so
    ``dfa predict`` gives a test clip the score its score file records): windows of
    ``clip_seconds`` (the length the model was trained on) every ``hop`` seconds (default: the
    window length, no overlap); a tail that does not fill a window becomes a last window padded
    with zeros. A file no longer than one window is padded the way training padded clips
    (``preprocessing.pad_mode``). Each window gets its own bona fide score and probability.

Aggregation rule (file score)
    The file's bona fide score is the **mean of the window scores** (mean of the logit
    differences) over its audible windows that hold speech (see "Silence" and "Speech
    activity"; ``WindowedScore.in_mean`` says which), and its probability of fake is
    ``sigmoid(-mean)``.
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
    (default -60 dBFS, :data:`dfa_lib.audio.SILENCE_FLOOR_DBFS`) is scored and listed but
    left out of the file's mean; a file with no audible window at all is refused with a
    :class:`dfa_lib.audio.SilentAudioError` by :meth:`Detector.score_path`,
    :meth:`Detector.score_paths` and :meth:`Detector.score_waveform` (``dfa predict`` and the
    app report it as that file's error); :meth:`Detector.score_batch` never refuses and
    averages every window of a silent clip. :meth:`Detector.score_waves`, which evaluation
    uses, averages every window of every clip, as training's validation scores did, so score
    files and thresholds keep one rule. ``silence_dbfs=None`` turns the floor off.

Speech activity
    Sound that is loud enough but is not speech (a tone, music, noise) still gets a verdict,
    and that verdict means nothing: the detector was trained on speech alone. The same three
    methods measure the seconds of speech in the file and in each window
    (:mod:`dfa_lib.vad`) and flag a file with less than ``min_speech_seconds`` (default 0.1 s)
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
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfa_lib import __version__
from dfa_lib.atomic import atomic_path, write_text_atomically
from dfa_lib.audio import (
    SILENCE_FLOOR_DBFS,
    AudioError,
    InvalidAudioError,
    SilentAudioError,
    load_audio,
    loudest_frame_dbfs,
    pad_or_crop,
    peak_normalize,
    rms_normalize,
)
from dfa_lib.calibration import Calibration, CalibrationError
from dfa_lib.calibration import describe as describe_calibration
from dfa_lib.labels import FAKE, LABELS, REAL
from dfa_lib.vad import MIN_SPEECH_SECONDS, SpeechActivity, load_speech_activity

__all__ = [
    "CLASSICAL_MODELS",
    "CONFIG_FILE",
    "DEFAULT_BATCH_SIZE",
    "Detector",
    "DetectorFormatError",
    "FOLDER_LOADERS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MODEL_CARD_FILE",
    "Preprocessing",
    "WEIGHTS_FILE",
    "WindowedScore",
    "decode_long_file",
    "export_detector",
    "is_detector_folder",
    "load_detector",
    "model_card",
    "probability_threshold",
    "read_detector_config",
    "resolve_device",
    "score_threshold",
    "write_model_card",
]

FORMAT_NAME = "dfa-detector"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "README.md"
CLASSICAL_MODELS: tuple[str, ...] = ("lfcc_gmm", "lfcc_logreg", "ifd_logreg", "ifd_rps_logreg")
# Models whose folder is not one build_model state dict: their own module loads the folder
# ("module:function", called as function(folder)). A loader returns either a torch module
# mapping waveforms (batch, samples) to logits [real, fake], or an object whose
# ``score(waves)`` returns bona fide scores (higher = real).
FOLDER_LOADERS: dict[str, str] = {
    "lfcc_gmm": "dfa_lib.classical:load_classical",
    "lfcc_logreg": "dfa_lib.classical:load_classical",
    "ifd_logreg": "dfa_lib.classical:load_classical",
    "ifd_rps_logreg": "dfa_lib.classical:load_classical",
    "ssl_head": "dfa_lib.ssl_pipeline:load_head_detector",
    "fusion": "dfa_lib.fusion:load_fusion",
}
DEFAULT_BATCH_SIZE = 32
NORMALIZATIONS: tuple[str, ...] = ("none", "peak", "rms")


class DetectorFormatError(ValueError):
    """The folder is not a detector this version of dfa can load; the message says why."""


def probability_threshold(score_threshold: float) -> float:
    """Convert a threshold on the bona fide score ``s`` into one on the probability of fake.

    ``s < tau`` (fake) is equivalent to ``sigmoid(-s) > sigmoid(-tau)``.
    """
    return _sigmoid(-float(score_threshold))


def score_threshold(probability: float) -> float:
    """Convert a threshold on the probability of fake into one on the bona fide score.

    Inverse of :func:`probability_threshold`: ``tau = log((1 - p) / p)``; ``p = 0`` gives
    ``+inf`` (everything fake) and ``p = 1`` gives ``-inf``.
    """
    p = float(probability)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability threshold must lie in [0, 1], got {p}")
    if p == 0.0:
        return math.inf
    if p == 1.0:
        return -math.inf
    return math.log1p(-p) - math.log(p)


def _sigmoid(x: float) -> float:
    # Written per sign so that large |x| neither overflows nor loses the small tail.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _sigmoid_array(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    z = np.exp(x[~pos])
    out[~pos] = z / (1.0 + z)
    return out


@dataclass(frozen=True)
class Preprocessing:
    """How a waveform becomes a model input; the same settings training used."""

    sample_rate: int = 16000  # Hz
    clip_seconds: float = 4.0  # seconds per model input (the window length at inference)
    crop: str = "center"  # how training cut longer clips: center | random | start
    pad_mode: str = "wrap"  # how shorter clips were padded: wrap (repeat) | constant (zeros)
    normalization: str = "none"  # level normalisation of each model input: none | peak | rms
    peak: float = 0.95  # target peak for normalization="peak"
    target_dbfs: float = -23.0  # target RMS level (dBFS) for normalization="rms"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Build from a config's ``preprocessing`` dict, ignoring keys this version does not use."""
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        prep = cls(**known)
        if prep.normalization not in NORMALIZATIONS:
            raise DetectorFormatError(
                f"preprocessing.normalization must be one of {list(NORMALIZATIONS)}, "
                f"got {prep.normalization!r}"
            )
        if prep.pad_mode not in {"wrap", "constant"}:
            raise DetectorFormatError(
                f"preprocessing.pad_mode must be 'wrap' or 'constant', got {prep.pad_mode!r}"
            )
        if prep.sample_rate <= 0 or prep.clip_seconds <= 0:
            raise DetectorFormatError(
                "preprocessing.sample_rate and preprocessing.clip_seconds must be positive, "
                f"got {prep.sample_rate} and {prep.clip_seconds}"
            )
        return prep

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)

    def normalize(self, window: np.ndarray) -> np.ndarray:
        """Apply the level normalisation to one model input."""
        if self.normalization == "peak":
            return peak_normalize(window, peak=self.peak)
        if self.normalization == "rms":
            return rms_normalize(window, target_dbfs=self.target_dbfs)
        return window


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
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use 'cpu'")
    return torch.device(device)


STREAM_ABOVE_SECONDS = 600.0  # files longer than this are decoded block by block
_BLOCK_SECONDS = 30.0  # input audio per decoding block
_RESAMPLE_CONTEXT = 2048  # input samples of context each side: far beyond the filter's reach


def decode_long_file(
    path: str | os.PathLike, target_sr: int, min_seconds: float = STREAM_ABOVE_SECONDS
) -> np.ndarray | None:
    """Decode a long file to mono float32 at ``target_sr`` block by block, or return None.

    Gives the same samples as :func:`dfa_lib.audio.load_audio` (channel mean, the same
    polyphase Kaiser filter) without holding the file at its own rate: each block is resampled
    with ``_RESAMPLE_CONTEXT`` samples of context on both sides and trimmed, and blocks start on
    multiples of the decimation factor so their outputs tile exactly. Returns None (the caller
    then uses ``load_audio``) for files libsndfile cannot open or shorter than ``min_seconds``.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        info = sf.info(str(path))
    except Exception:  # not for libsndfile: the caller's load_audio reports or decodes it
        return None
    frames, sr = int(info.frames), int(info.samplerate)
    if frames <= 0 or sr <= 0 or frames < min_seconds * sr:
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
            f.seek(lo)
            block = f.read(hi - lo, dtype="float32", always_2d=True).mean(axis=1, dtype=np.float32)
            if block.size != hi - lo:
                return None  # shorter than its header says: let load_audio handle it
            if up == down == 1:
                piece = block[start - lo : stop - lo]
            else:
                y = resample_poly(block.astype(np.float64), up, down, window=("kaiser", 8.6))
                first = (start - lo) * up // down
                piece = y[first : first + (-(-(stop - start) * up // down))]
            begin = start * up // down
            out[begin : begin + piece.size] = piece
    if not np.isfinite(out).all():
        raise InvalidAudioError(f"{path}: contains NaN or infinite samples")
    return out


def _decode(path: str | os.PathLike, target_sr: int) -> np.ndarray:
    """Decode a file for scoring: block by block when it is long, else with load_audio."""
    wave = decode_long_file(path, target_sr) if Path(path).is_file() else None
    if wave is None:
        wave, _ = load_audio(path, target_sr=target_sr)
    return wave


def _window_starts(n: int, window: int, hop: int) -> list[int]:
    """Window start offsets covering ``n`` samples, as :func:`dfa_lib.audio.frame_windows`."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(starts[-1] + hop)
    return starts


class Detector:
    """A trained model with its preprocessing, decision threshold and metadata.

    Build it with :func:`load_detector`. ``threshold`` is the probability-of-fake threshold
    (default: the folder's validation-EER threshold converted with
    :func:`probability_threshold`). ``silence_dbfs`` is the silence floor (see the module's
    "Silence"); None scores every window. ``min_speech_seconds`` is the least speech a file
    must hold for its verdict to go unflagged (the module's "Speech activity"); None skips the
    check.
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
    ) -> None:
        import torch

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
        self._speech_activity: SpeechActivity | None = None
        self.model = model
        self.device = None
        if self.is_torch:
            self.device = resolve_device(device)
            self.model = model.to(self.device).eval()

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
        """Return (window, hop) in samples for optional overrides in seconds; checks them."""
        sr = self.sample_rate
        window = round(self.window_seconds * sr)
        if window_seconds is not None:
            asked = round(window_seconds * sr)
            if asked <= 0:
                raise ValueError(f"window must be positive, got {window_seconds} s")
            if self.input_samples and asked != self.input_samples:
                raise ValueError(
                    f"{self.model_name} takes exactly {self.input_samples / sr:g} s windows "
                    f"({self.input_samples} samples); leave out --window or pass "
                    f"{self.input_samples / sr:g}"
                )
            window = asked
        hop = window if hop_seconds is None else round(hop_seconds * sr)
        if hop <= 0:
            raise ValueError(f"hop must be positive, got {hop_seconds} s")
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
        import torch

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
    ) -> list[WindowedScore]:
        """Score several waveforms, pooling their windows into shared forward passes.

        ``waves`` are mono float arrays at ``sr`` Hz (resampled here when ``sr`` differs from
        the detector's rate). Returns one :class:`WindowedScore` per waveform, in order.
        ``input_checks=True`` applies the silence floor and the speech-activity check (the
        module's "Silence" and "Speech activity"); ``False`` counts every window and checks
        nothing (the evaluation rule).
        """
        from dfa_lib.audio import resample

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
        starts = [_window_starts(w.size, window, hop) for w in prepared]

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
        results = []
        speech_checks = self._speech(prepared, starts, window, input_checks)
        for wave, clip_starts, clip_scores, (speech, window_speech) in zip(
            prepared, starts, scores, speech_checks, strict=True
        ):
            s = np.asarray(clip_scores, dtype=np.float64)
            audible = self._audible(wave, clip_starts, window, input_checks)
            in_mean = audible
            if window_speech is not None:
                speaking = audible & (np.asarray(window_speech) >= self.min_speech_seconds)
                if speaking.any():  # with no window of speech, the audible ones decide
                    in_mean = speaking
            # A silent clip keeps the mean of all its windows: evaluation never loses a clip.
            if not in_mean.any():
                in_mean = np.ones_like(audible)
            file_score = float(s[in_mean].mean())
            p_fake = _sigmoid(-self.calibration.apply(file_score))
            results.append(
                WindowedScore(
                    p_fake=p_fake,
                    score=file_score,
                    label=LABELS[FAKE] if p_fake >= self.threshold else LABELS[REAL],
                    threshold=self.threshold,
                    duration=wave.size / sr_out,
                    window_seconds=window / sr_out,
                    hop_seconds=hop / sr_out,
                    window_starts=tuple(st / sr_out for st in clip_starts),
                    window_scores=tuple(float(x) for x in s),
                    window_p_fake=tuple(
                        float(x) for x in _sigmoid_array(-self.calibration.apply(s))
                    ),
                    window_audible=tuple(bool(a) for a in audible),
                    in_mean=tuple(bool(m) for m in in_mean),
                    speech_seconds=speech,
                    window_speech_seconds=window_speech,
                    min_speech_seconds=self.min_speech_seconds if speech is not None else None,
                )
            )
        return results

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

        Raises :class:`dfa_lib.audio.SilentAudioError`, whose message starts with ``name``,
        when no window is audible.
        """
        result = self.score_batch([wave], sr, window_seconds, hop_seconds)[0]
        return self._refuse_silence(result, name)

    def score_path(
        self,
        path: str | os.PathLike,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> WindowedScore:
        """Decode a file with :func:`dfa_lib.audio.load_audio` and score it.

        Raises :class:`dfa_lib.audio.AudioError` (or a subclass) for a file that cannot be read,
        and :class:`dfa_lib.audio.SilentAudioError` for one with nothing audible in it.
        """
        wave = _decode(path, self.sample_rate)
        return self.score_waveform(wave, self.sample_rate, window_seconds, hop_seconds, str(path))

    def score_paths(
        self,
        paths: Iterable[str | os.PathLike],
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> Iterator[tuple[Path, WindowedScore | AudioError]]:
        """Score files one after another, yielding ``(path, result or AudioError)`` in order.

        Short files are grouped so that their windows share forward passes; a file that cannot
        be decoded, or holds nothing audible, yields its :class:`~dfa_lib.audio.AudioError`
        and the others go on.
        """
        window, _ = self.window_and_hop(window_seconds, hop_seconds)
        pending: list[tuple[Path, np.ndarray | AudioError]] = []
        pending_windows = 0

        def flush() -> Iterator[tuple[Path, WindowedScore | AudioError]]:
            waves = [w for _, w in pending if isinstance(w, np.ndarray)]
            scored = iter(self.score_batch(waves, self.sample_rate, window_seconds, hop_seconds))
            for p, w in pending:
                if not isinstance(w, np.ndarray):
                    yield p, w
                    continue
                try:
                    yield p, self._refuse_silence(next(scored), str(p))
                except SilentAudioError as error:
                    yield p, error

        for raw in paths:
            path = Path(raw)
            try:
                wave = _decode(path, self.sample_rate)
            except AudioError as error:
                pending.append((path, error))
                continue
            except OSError as error:  # unreadable (permissions, I/O error): report, go on
                pending.append((path, AudioError(f"{path}: cannot read ({error.strerror})")))
                continue
            pending.append((path, wave))
            pending_windows += max(1, math.ceil(wave.size / window))
            # Keep at most about one batch of windows (or one long file) waiting.
            if pending_windows >= self.batch_size:
                yield from flush()
                pending, pending_windows = [], 0
        if pending:
            yield from flush()


def is_detector_folder(folder: str | os.PathLike) -> bool:
    """Return True when ``folder`` has a ``config.json`` declaring the dfa-detector format."""
    config = Path(folder) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def read_detector_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Return a detector folder's checked ``config.json`` (DetectorFormatError when it is not one)."""
    return _read_config(Path(folder))


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise DetectorFormatError(f"{folder}: no such detector folder")
    if not folder.is_dir():
        raise DetectorFormatError(
            f"{folder}: is a file; a detector is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise DetectorFormatError(
            f"{folder}: not a detector folder (no {CONFIG_FILE}); train one with `make reports` "
            "or write one with dfa_lib.detector.export_detector"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DetectorFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise DetectorFormatError(
            f"{path}: not a dfa detector config (format is {found!r}, expected {FORMAT_NAME!r})"
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        written_by = config.get("dfa_version", "an unknown dfa version")
        hint = (
            "upgrade dfa to read it"
            if isinstance(version, int) and version > FORMAT_VERSION
            else "re-export it with this version (dfa_lib.detector.export_detector) or retrain"
        )
        raise DetectorFormatError(
            f"{folder}: detector format_version {version!r} (written by dfa {written_by}); "
            f"this dfa {__version__} reads format_version {FORMAT_VERSION}: {hint}"
        )
    dfa_version = config.get("dfa_version")
    if dfa_version is not None and _major(dfa_version) != _major(__version__):
        raise DetectorFormatError(
            f"{folder}: written by dfa {dfa_version}, whose major version differs from this "
            f"dfa {__version__}; load it with dfa {_major(dfa_version)}.x or retrain"
        )
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise DetectorFormatError(
            f'{path}: missing "model": {{"name": ..., "kwargs": {{...}}}} entry'
        )
    if not isinstance(model.get("kwargs", {}), dict):
        raise DetectorFormatError(f"{path}: model.kwargs must be a JSON object")
    return config


def _load_torch_model(folder: Path, config: dict[str, Any]) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from dfa_lib.models import ModelConfigError, build_model

    name = config["model"]["name"]
    kwargs = config["model"].get("kwargs", {})
    try:
        model = build_model(name, **kwargs)
    except ModelConfigError as error:
        raise DetectorFormatError(f"{folder}: cannot rebuild the model: {error}") from error
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise DetectorFormatError(
            f"{folder}: missing {WEIGHTS_FILE} (the weights); the folder is incomplete"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise DetectorFormatError(
            f"{weights}: not a readable safetensors file ({error})"
        ) from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} with another shape ({few(wrong_shape)})")
        raise DetectorFormatError(
            f"{folder}: the weights in {WEIGHTS_FILE} do not fit model {name!r} with kwargs "
            f"{kwargs}: {'; '.join(parts)}. The config names a different model type or size "
            "than the one that was trained; re-export the folder from its training run"
        )
    model.load_state_dict(state, strict=True)
    return model


def _load_with_folder_loader(folder: Path, config: dict[str, Any]) -> Any:
    import importlib

    name = config["model"]["name"]
    module_name, _, function = FOLDER_LOADERS[name].partition(":")
    try:
        loader = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        raise DetectorFormatError(
            f"{folder}: model {name!r} is loaded by {module_name}.{function}(folder), which "
            f"this installation lacks ({error}); update dfa"
        ) from error
    try:
        model = loader(folder)
    except (ValueError, OSError, KeyError) as error:  # ClassicalModelError is a ValueError
        raise DetectorFormatError(f"{folder}: cannot load model {name!r}: {error}") from error
    found = getattr(model, "model_type", name)
    if found != name:
        raise DetectorFormatError(
            f"{folder}: config.json names model {name!r} but the saved classifier is {found!r}; "
            "re-export the folder from its training run"
        )
    return model


def load_detector(
    folder: str | os.PathLike,
    device: str = "auto",
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    silence_dbfs: float | None = SILENCE_FLOOR_DBFS,
    min_speech_seconds: float | None = MIN_SPEECH_SECONDS,
) -> Detector:
    """Load a detector folder (a run folder or an exported detector) and return a Detector.

    Raises :class:`DetectorFormatError` for a missing or non-detector folder, another format
    version, weights that do not fit the configured model, or missing files. Weights are read
    with safetensors only, never by unpickling. ``threshold`` (probability of fake) overrides
    the folder's validation-EER threshold; ``silence_dbfs`` is the silence floor (None: off);
    ``min_speech_seconds`` is the least speech a file needs to go unflagged (None: no check).
    """
    folder = Path(folder)
    config = _read_config(folder)
    name = config["model"]["name"]
    if name in FOLDER_LOADERS:
        model = _load_with_folder_loader(folder, config)
    else:
        model = _load_torch_model(folder, config)
    metrics: dict[str, Any] = {}
    metrics_path = folder / METRICS_FILE
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DetectorFormatError(f"{metrics_path}: not valid JSON ({error})") from error
    card_path = folder / MODEL_CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    return Detector(
        model,
        config,
        folder=folder,
        device=device,
        threshold=threshold,
        batch_size=batch_size,
        metrics=metrics,
        model_card=card,
        silence_dbfs=silence_dbfs,
        min_speech_seconds=min_speech_seconds,
    )


def load_detectors(
    folders: Iterable[str | os.PathLike], device: str = "auto"
) -> tuple[dict[str, Detector], dict[str, str]]:
    """Load several detector folders, keyed by folder name; one that fails does not stop the rest.

    Returns ``(detectors, failed)``: the loaded detectors, and for each folder that could not be
    loaded the error :func:`load_detector` raised (missing, another format version, broken
    weights ...), naming the folder.
    """
    detectors: dict[str, Detector] = {}
    failed: dict[str, str] = {}
    for folder in map(Path, folders):
        try:
            detectors[folder.name] = load_detector(folder, device=device)
        except (DetectorFormatError, OSError, ValueError, RuntimeError) as error:
            message = str(error) or type(error).__name__
            failed[folder.name] = message if str(folder) in message else f"{folder}: {message}"
    return detectors, failed


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        elif not isinstance(value, list):
            out[name] = value
    return out


def _metrics_section(metrics: dict[str, Any]) -> list[str]:
    if not metrics:
        return [
            "No metrics recorded yet: evaluation writes metrics.json; regenerate this card "
            "with dfa_lib.detector.write_model_card(folder)."
        ]
    lines = []
    for protocol, values in metrics.items():
        lines.append(f"### {protocol}")
        # Only the headline numbers; tables by generator or language stay in metrics.json.
        flat = {
            k: v
            for k, v in (values.items() if isinstance(values, dict) else [("value", values)])
            if isinstance(v, int | float | str) and not (isinstance(v, str) and len(v) > 60)
        }
        if not flat:
            lines += ["", "(see metrics.json)", ""]
            continue
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
        lines.append("")
    return lines


def model_card(config: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """Write the model card (Markdown) of a detector from its config and metrics."""
    metrics = metrics or {}
    model = config.get("model", {})
    prep = Preprocessing.from_dict(config.get("preprocessing", {}))
    tau = float(config.get("threshold", 0.0))
    try:
        calibration = Calibration.from_config(config)
    except CalibrationError:
        calibration = Calibration()
    dataset = config.get("dataset", {}) or {}
    training = config.get("training", {}) or {}
    name = model.get("name", "unknown")
    kwargs = model.get("kwargs", {})
    if name == "fusion" and isinstance(kwargs.get("members"), list):
        members = ", ".join(
            f"`{m.get('name')}` (weight {_fmt(w)})"
            for m, w in zip(kwargs["members"], kwargs.get("weights", []), strict=False)
        )
        settings = (
            f"combining the detector folders {members} beside it: their bona fide scores, "
            "standardised on the validation split, weighted by a logistic regression fitted "
            "there"
        )
        window_score = "the fusion's log-odds of real"
    else:
        settings = f"with settings {_fmt(kwargs)}"
        window_score = "logit real minus logit fake"
    lines = [
        f"# Audio deepfake detector: `{name}`",
        "",
        "## What it is",
        f'A binary classifier that tells genuine ("real") speech from synthetic ("fake") '
        f"speech. Model `{name}` {settings}, written by "
        f"dfa {config.get('dfa_version', __version__)} (detector format "
        f"{config.get('format_version', FORMAT_VERSION)}).",
        "",
        f"- Input: mono audio resampled to {prep.sample_rate} Hz, scored in "
        f"{prep.clip_seconds:g}-second windows; shorter files are padded "
        f"({prep.pad_mode}), level normalisation: {prep.normalization}.",
        "- Output: probability of fake per window; the file's score is the mean of the "
        f"window bona fide scores ({window_score}) and its probability of fake "
        "is the sigmoid of minus that mean, calibrated.",
        f"- Calibration: {describe_calibration(config)}.",
        f"- Decision threshold: bona fide score {tau:.4g} (validation equal error rate), i.e. "
        f'"fake" when the probability of fake is at least '
        f"{probability_threshold(calibration.apply(tau)):.4g}.",
    ]
    if isinstance(config.get("val_eer"), int | float):
        lines.append(f"- Validation equal error rate: {100 * float(config['val_eer']):.2f} %.")
    lines += [
        "",
        "## Training data",
    ]
    if dataset:
        lines += [f"- {k}: {_fmt(v)}" for k, v in _flatten(dataset).items()]
    else:
        lines.append("Not recorded in the config.")
    if training:
        keys = ("epochs", "batch_size", "learning_rate", "clip_seconds", "seed", "augment")
        shown = {k: training[k] for k in keys if k in training}
        if shown:
            lines += [
                "",
                "Training settings: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) + ".",
            ]
    lines += ["", "## Metrics per protocol", ""]
    lines += _metrics_section(metrics)
    lines += [
        "",
        "## Intended use",
        "Research and teaching: comparing detection methods, and screening recordings to "
        "decide which deserve a closer look by a person. Score files with "
        "`dfa predict FILE --model <this folder>` or in the app (`make app`).",
        "",
        "## Known limits",
        "- It knows only the kinds of synthetic speech in its training data; speech from "
        "other generators (modern neural TTS, voice conversion) may be missed. See the "
        "unseen-generator and cross-source metrics above for how far it generalises.",
        "- Channel effects (codec, bandwidth, level, background noise, silence) can change the "
        "score; the threshold was set on the validation data and may need recalibration on "
        "other recordings.",
        "- The file score averages windows: a short synthetic passage inside a long genuine "
        "recording can stay below the threshold; look at the window timeline.",
        "- Not a forensic tool: do not base legal, employment or security decisions on its "
        "output alone.",
        "",
    ]
    return "\n".join(lines)


def _full_config(config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
        raise ValueError('config needs "model": {"name": ..., "kwargs": {...}}')
    if "threshold" not in config:
        raise ValueError('config needs "threshold" (bona fide score at the validation EER)')
    full = dict(config)
    full["format"] = FORMAT_NAME
    full["format_version"] = FORMAT_VERSION
    full["dfa_version"] = __version__
    full["model"] = {"name": config["model"]["name"], "kwargs": config["model"].get("kwargs", {})}
    full["preprocessing"] = Preprocessing.from_dict(config.get("preprocessing", {})).to_dict()
    return full


def export_detector(
    folder: str | os.PathLike,
    model: Any,
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a detector folder: weights (safetensors), ``config.json``, metrics and model card.

    ``config`` needs ``model`` (``{"name", "kwargs"}``, so :func:`dfa_lib.models.build_model`
    rebuilds the architecture) and ``threshold`` (bona fide score at the validation EER);
    ``preprocessing``, ``training``, ``dataset`` and any other keys are copied as given. The
    format fields are filled in here. Classical models are written with their own
    ``save(folder)``; with ``model=None`` no weights are written (a fusion, whose parameters
    are in the config and whose members keep their own folders). Returns the folder.

    Re-exporting into a detector folder replaces it (retraining a run in place), unless
    ``overwrite=False``, which raises FileExistsError instead. New weights make the old
    ``metrics.json`` meaningless, so it is replaced by ``metrics`` or removed when that is None;
    evaluation then adds protocols and calls :func:`write_model_card`.
    """
    folder = Path(folder)
    full = _full_config(config)
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{folder} already holds a detector; pass overwrite=True to replace it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if model is None or full["model"]["name"] in CLASSICAL_MODELS:
        if model is not None:
            model.save(folder)
        (folder / WEIGHTS_FILE).unlink(missing_ok=True)  # left by an earlier network, if any
    else:
        from safetensors.torch import save_file

        # Cloned so that tensors sharing storage can still be written one by one.
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as temporary:
            save_file(state, str(temporary), metadata={"format": FORMAT_NAME})
    write_text_atomically(folder / CONFIG_FILE, json.dumps(full, indent=2) + "\n")
    if metrics is not None:
        write_text_atomically(folder / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    else:
        (folder / METRICS_FILE).unlink(missing_ok=True)
    write_text_atomically(folder / MODEL_CARD_FILE, model_card(full, metrics))
    return folder


def write_model_card(folder: str | os.PathLike) -> Path:
    """Regenerate a detector folder's ``README.md`` from its config.json and metrics.json.

    Call it after evaluation adds protocols to ``metrics.json``.
    """
    folder = Path(folder)
    config = _read_config(folder)
    metrics_path = folder / METRICS_FILE
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    path = folder / MODEL_CARD_FILE
    write_text_atomically(path, model_card(config, metrics))
    return path
