"""Audio input and output: decode any file to 16 kHz mono float32, and the waveform helpers models need.

Decoding tries ``soundfile`` first (wav, flac, ogg, mp3 with no system library) and falls back
to an ``ffmpeg`` subprocess for everything else (m4a, opus, G.722, ...). Every failure is a
subclass of :class:`AudioError` whose message names the file and says what is wrong, so a batch
job can record it and move on. Pure silence decodes without error (corpora and augmentation
need it); :func:`loudest_frame_dbfs` and :class:`SilentAudioError` let a caller that must judge
the audio (``dfa predict``, the app) refuse a file with nothing audible in it.

Hostile or broken input is refused rather than scored: float samples far outside [-1, 1]
(:data:`MAX_FLOAT_PEAK`), and, when the caller sets ``max_seconds``, audio longer than that
(checked from the header before decoding). A WAV or FLAC file holding fewer samples than its
header promises is decoded as far as it goes, with a :class:`TruncatedAudioWarning`.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from dfa_lib.core.atomic import atomic_path

__all__ = [
    "AudioDecodeError",
    "AudioError",
    "AudioFileNotFoundError",
    "EmptyAudioError",
    "InvalidAudioError",
    "SILENCE_FLOOR_DBFS",
    "SilentAudioError",
    "AudioSource",
    "DurationLimitError",
    "MAX_FLOAT_PEAK",
    "OutOfRangeAudioError",
    "TruncatedAudioWarning",
    "audio_info",
    "check_duration",
    "check_samples",
    "frame_windows",
    "window_starts",
    "load_audio",
    "loudest_frame_dbfs",
    "pad_or_crop",
    "peak_normalize",
    "promised_frames",
    "resample",
    "rms_dbfs",
    "rms_normalize",
    "save_audio",
    "trim_silence",
    "truncation_warning",
]

AudioSource = str | os.PathLike | bytes

# G.722 files carry no header; ffmpeg needs the container named explicitly.
_RAW_FORMATS = {".g722": "g722", ".gsm": "gsm", ".ulaw": "mulaw", ".alaw": "alaw"}


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384_000  # Hz: what a header may claim


class AudioError(ValueError):
    """Base class of every audio input problem; the message names the file."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist."""


class EmptyAudioError(AudioError):
    """The file has zero bytes or decodes to zero samples."""


class AudioDecodeError(AudioError):
    """The file is corrupt, truncated, not audio at all, or a directory."""


class InvalidAudioError(AudioError):
    """The decoded samples contain NaN or infinite values, or values far outside [-1, 1]."""


class OutOfRangeAudioError(InvalidAudioError):
    """Float samples reach more than :data:`MAX_FLOAT_PEAK` times full scale: not audio."""


class UnsupportedSampleRateError(InvalidAudioError):
    """The file's header gives a sample rate no audio has (below 1 kHz or above 384 kHz)."""


class DurationLimitError(AudioError):
    """The audio lasts longer than the cap the caller set; it was refused, not decoded in full."""

    def __init__(self, message: str, seconds: float | None, max_seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds  # None: decoding stopped at the cap, the true length is unknown
        self.max_seconds = max_seconds


class TruncatedAudioWarning(UserWarning):
    """The file holds fewer samples than its header promises; what is there was decoded."""


class SilentAudioError(AudioError):
    """Nothing in the audio is louder than the silence floor, so there is nothing to judge."""


# A 20 ms frame whose RMS is under -60 dBFS is silence for a detector: 16-bit dither and the
# noise floor of a quiet room sit there, speech at any usable level sits 20-50 dB above it.
SILENCE_FLOOR_DBFS = -60.0

# Float files may go somewhat over full scale (a mix that clipped, gain added in an editor) and
# are decoded as they are. A peak a thousand times full scale is not audio in [-1, 1] at all (raw
# numbers, a broken export, a hostile file), and the models' features overflow on it.
MAX_FLOAT_PEAK = 1e3
# Bytes of a file's start searched for the WAV data chunk or the FLAC stream info.
_HEADER_BYTES = 1 << 20
# WAV format tags whose data size divided by the block size is the frame count (PCM, float,
# A-law, mu-law); compressed formats pack many frames into a block.
_WAV_PLAIN_FORMATS = {1, 3, 6, 7}
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# libsndfile's frame count for a stream whose length it does not know.
_UNKNOWN_FRAMES = 1 << 62


def _describe(source: AudioSource) -> str:
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes in memory>"
    return str(source)


def load_audio(
    source: AudioSource, target_sr: int | None = 16000, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode a file (or its bytes) to a float32 mono waveform, resampled to ``target_sr``.

    Channels are averaged, integer PCM of any width is scaled to [-1, 1], and the result is
    resampled with a polyphase filter when ``target_sr`` differs from the file's rate
    (``target_sr=None`` keeps the file's rate). Returns ``(waveform, sample_rate)``.

    Raises :class:`OutOfRangeAudioError` for float samples beyond :data:`MAX_FLOAT_PEAK` and,
    with ``max_seconds``, :class:`DurationLimitError` for audio longer than that: judged from
    the header before decoding where libsndfile reads the file, else by stopping ffmpeg just
    past the cap. Warns with :class:`TruncatedAudioWarning` when a WAV or FLAC file holds fewer
    samples than its header promises.
    """
    name = _describe(source)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        suffix = ""
    else:
        path = Path(source)
        if not path.exists():
            raise AudioFileNotFoundError(f"{name}: no such file")
        if path.is_dir():
            raise AudioDecodeError(f"{name}: is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{name}: file is empty (0 bytes)")
        data = path.read_bytes()
        suffix = path.suffix.lower()
    if not data:
        raise EmptyAudioError(f"{name}: no bytes given")

    wave, sr = None, 0
    if suffix not in _RAW_FORMATS:
        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                sr = f.samplerate
                check_sample_rate(name, sr)
                check_duration(name, f.frames, sr, max_seconds)
                wave = f.read(dtype="float32", always_2d=True)
        except AudioError:
            raise
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            wave = None
    if wave is None:
        wave, sr = _decode_with_ffmpeg(data, name, _RAW_FORMATS.get(suffix), max_seconds)
        if max_seconds is not None and wave.shape[0] > max_seconds * sr:
            raise DurationLimitError(
                f"{name}: lasts longer than the limit of {max_seconds:g} s of audio "
                "(decoding stopped there); cut it into shorter files",
                None,
                max_seconds,
            )

    check_sample_rate(name, sr)
    if wave.size == 0:
        raise EmptyAudioError(f"{name}: decodes to zero samples")
    check_samples(wave, name)
    promised = promised_frames(data)
    if promised is not None and wave.shape[0] < promised:
        warnings.warn(truncation_warning(name, promised, wave.shape[0], sr), stacklevel=2)
    wave = wave.mean(axis=1, dtype=np.float32) if wave.ndim == 2 else wave.astype(np.float32)
    if target_sr is not None and sr != target_sr:
        wave = resample(wave, sr, target_sr)
        sr = target_sr
    return np.ascontiguousarray(wave, dtype=np.float32), int(sr)


def check_sample_rate(name: str, sr: int) -> None:
    """Raise UnsupportedSampleRateError when a header's rate is outside what audio uses.

    The rate comes from the file and is not checked by the decoder: a 12 KB WAV claiming
    2 MHz takes seconds to resample, one claiming 1 Hz turns each sample into 16,000.
    """
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise UnsupportedSampleRateError(
            f"{name}: sample rate {sr} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; "
            "the header is wrong or this is not audio: re-export it at a usual rate"
        )


def check_samples(samples: np.ndarray, name: str) -> None:
    """Refuse decoded samples that are not audio: NaN or infinite, or beyond :data:`MAX_FLOAT_PEAK`.

    Raises :class:`InvalidAudioError` (:class:`OutOfRangeAudioError` for the peak), naming ``name``.
    """
    if not np.all(np.isfinite(samples)):
        raise InvalidAudioError(f"{name}: contains NaN or infinite samples")
    if samples.size == 0:
        return
    # max and -min rather than abs: no full-size copy of a long file.
    peak = max(float(samples.max()), -float(samples.min()))
    if peak > MAX_FLOAT_PEAK:
        raise OutOfRangeAudioError(
            f"{name}: peak sample {peak:.3g} (full scale is 1): this is not audio in the "
            f"[-1, 1] range (float samples are accepted up to {MAX_FLOAT_PEAK:g}); re-export "
            "it as PCM, or scale it to full scale"
        )


def check_duration(name: str, frames: int, sr: int, max_seconds: float | None) -> float | None:
    """Return the seconds ``frames`` at ``sr`` Hz last; raise DurationLimitError over ``max_seconds``.

    A header's count of 0 or libsndfile's "unknown" says nothing: None, and no error.
    ``max_seconds=None`` is no cap. The error's message names ``name``.
    """
    if sr <= 0 or not 0 < frames < _UNKNOWN_FRAMES:
        return None
    seconds = frames / sr
    if max_seconds is not None and seconds > max_seconds:
        raise DurationLimitError(
            f"{name}: lasts {seconds:.1f} s by its header; the limit is {max_seconds:g} s of "
            "audio: cut it into shorter files",
            seconds,
            max_seconds,
        )
    return seconds


def promised_frames(source: AudioSource) -> int | None:
    """Return the number of frames a WAV or FLAC header promises; None when it does not say.

    Reads the header only (the file's first megabyte, or that of the bytes given). WAV: the
    data chunk's size over the frame size, for PCM, float, A-law and mu-law data (a streamed
    WAV's size placeholder says nothing). FLAC: the total in its stream info (0: unknown).
    """
    if isinstance(source, bytes | bytearray):
        head = bytes(source[:_HEADER_BYTES])
    else:
        with open(source, "rb") as handle:
            head = handle.read(_HEADER_BYTES)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_promised_frames(head)
    if head[:4] == b"fLaC" and len(head) >= 42 and head[4] & 0x7F == 0:  # STREAMINFO first
        total = int.from_bytes(head[18:26], "big") & ((1 << 36) - 1)
        return total or None
    return None


def _wav_promised_frames(head: bytes) -> int | None:
    frame_bytes = None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 24 <= len(head):
            tag = int.from_bytes(head[pos + 8 : pos + 10], "little")
            if tag == _WAVE_FORMAT_EXTENSIBLE and pos + 34 <= len(head):
                tag = int.from_bytes(head[pos + 32 : pos + 34], "little")  # the sub-format
            if tag in _WAV_PLAIN_FORMATS:
                frame_bytes = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            if not frame_bytes or size in (0, 0xFFFFFFFF):
                return None
            return size // frame_bytes
        pos += 8 + size + (size & 1)
    return None


def truncation_warning(name: str, promised: int, found: int, sr: int) -> TruncatedAudioWarning:
    """The warning for a file whose header promises ``promised`` frames but holds ``found``."""
    return TruncatedAudioWarning(
        f"{name}: truncated: its header promises {promised / sr:.2f} s of audio but the file "
        f"holds {found / sr:.2f} s; only what is there was decoded"
    )


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioDecodeError(
            "ffmpeg is not installed, and this format needs it: run `make setup` "
            "(or `apt-get install ffmpeg`)"
        )
    return exe


def _decode_with_ffmpeg(
    data: bytes, name: str, input_format: str | None, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode through ffmpeg to float32 at the stream's own rate, downmixing later ourselves.

    With ``max_seconds``, ffmpeg stops one second past it, so the caller can tell that the
    audio is longer than the cap without decoding all of it.
    """
    exe = _ffmpeg()
    probe_args = ["-f", input_format] if input_format else []
    # Decode to a float WAV in memory: its header carries the sample rate and channel count.
    cmd = [exe, "-v", "error", "-nostdin", *probe_args, "-i", "pipe:0"]
    cmd += ["-map", "0:a:0", "-c:a", "pcm_f32le"]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds + 1.0:.3f}"]
    cmd += ["-f", "wav", "pipe:1"]
    proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = reason[-1] if reason else "no audio stream"
        if "does not contain any stream" in detail or "matches no streams" in detail:
            detail = "no audio stream"
        raise AudioDecodeError(f"{name}: not a readable audio file ({detail})")
    try:
        wave, sr = sf.read(
            io.BytesIO(_fix_streamed_wav(proc.stdout)), dtype="float32", always_2d=True
        )
    except sf.LibsndfileError as err:  # pragma: no cover - ffmpeg output is always WAV
        raise AudioDecodeError(f"{name}: ffmpeg produced unreadable output ({err})") from err
    if wave.shape[0] == 0:
        raise EmptyAudioError(f"{name}: decodes to zero samples")
    return wave, int(sr)


def _fix_streamed_wav(blob: bytes) -> bytes:
    """Patch the size fields of a WAV written to a pipe (ffmpeg cannot seek back to fill them)."""
    buf = bytearray(blob)
    if buf[:4] != b"RIFF":
        return blob
    buf[4:8] = (len(buf) - 8).to_bytes(4, "little")
    pos = 12
    while pos + 8 <= len(buf):
        chunk, size = bytes(buf[pos : pos + 4]), int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            buf[pos + 4 : pos + 8] = (len(buf) - pos - 8).to_bytes(4, "little")
            break
        pos += 8 + size + (size & 1)
    return bytes(buf)


def audio_info(source: str | os.PathLike) -> dict:
    """Return sample rate, channels, frames and duration (seconds) without decoding when possible."""
    path = Path(source)
    try:
        info = sf.info(str(path))
        return {
            "sample_rate": int(info.samplerate),
            "channels": int(info.channels),
            "frames": int(info.frames),
            "duration": float(info.frames) / info.samplerate,
        }
    except (sf.LibsndfileError, RuntimeError):
        wave, sr = load_audio(path, target_sr=None)
        return {"sample_rate": sr, "channels": 1, "frames": wave.size, "duration": wave.size / sr}


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with a polyphase Kaiser-windowed filter (exact rational ratio, no FFT wrap-around)."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    g = gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    out = resample_poly(wave.astype(np.float64), up, down, window=("kaiser", 8.6))
    return out.astype(np.float32)


def peak_normalize(wave: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the largest absolute sample equals ``peak``; silence is returned unchanged."""
    top = float(np.max(np.abs(wave))) if wave.size else 0.0
    if top == 0.0:
        return wave.astype(np.float32, copy=True)
    return (wave * (peak / top)).astype(np.float32)


def rms_dbfs(wave: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for silence)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def loudest_frame_dbfs(wave: np.ndarray, sr: int, frame_s: float = 0.02) -> float:
    """RMS level in dBFS of the loudest ``frame_s`` frame (-inf for digital silence).

    Frames do not overlap; a signal shorter than one frame is one frame. A single loud frame is
    enough, so a file that is mostly pause but holds one word is not called silent.
    """
    wave = np.asarray(wave)
    if wave.size == 0:
        return float("-inf")
    frame = max(1, min(wave.size, int(round(frame_s * sr))))
    n = wave.size // frame
    energy = np.square(wave[: n * frame], dtype=np.float64).reshape(n, frame).mean(axis=1)
    if wave.size > n * frame:  # the tail shorter than a frame is a frame of its own
        energy = np.append(energy, np.mean(np.square(wave[n * frame :], dtype=np.float64)))
    loudest = float(energy.max())
    return 10.0 * np.log10(loudest) if loudest > 0 else float("-inf")


def rms_normalize(
    wave: np.ndarray, target_dbfs: float = -23.0, max_peak: float = 0.99
) -> np.ndarray:
    """Scale to an RMS level of ``target_dbfs``, then limit the peak to ``max_peak`` if needed."""
    level = rms_dbfs(wave)
    if not np.isfinite(level):
        return wave.astype(np.float32, copy=True)
    out = wave * (10.0 ** ((target_dbfs - level) / 20.0))
    top = float(np.max(np.abs(out)))
    if top > max_peak:
        out = out * (max_peak / top)
    return out.astype(np.float32)


def trim_silence(
    wave: np.ndarray, sr: int, top_db: float = 40.0, pad_s: float = 0.0, frame_s: float = 0.02
) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame.

    ``pad_s`` seconds of the original signal are kept on each side of the voiced region. A
    clip that is silent throughout is returned unchanged.
    """
    frame = max(1, int(round(frame_s * sr)))
    n = wave.size // frame
    if n == 0:
        return wave.astype(np.float32, copy=True)
    energy = np.square(wave[: n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return wave.astype(np.float32, copy=True)
    loud = np.flatnonzero(10.0 * np.log10(np.maximum(energy, 1e-20) / peak) > -top_db)
    pad = int(round(pad_s * sr))
    start = max(0, loud[0] * frame - pad)
    stop = min(wave.size, (loud[-1] + 1) * frame + pad)
    return wave[start:stop].astype(np.float32, copy=True)


def pad_or_crop(
    wave: np.ndarray,
    length: int,
    mode: str = "center",
    rng: np.random.Generator | None = None,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Return exactly ``length`` samples: crop (centre, start or seeded random) or pad.

    Padding is zeros (``pad_mode="constant"``) or the clip repeated (``"wrap"``), always at
    the end so the start of speech stays aligned.
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if mode not in {"center", "random", "start"}:
        raise ValueError(f"mode must be 'center', 'random' or 'start', got {mode!r}")
    n = wave.size
    if n > length:
        if mode == "center":
            start = (n - length) // 2
        elif mode == "random":
            if rng is None:
                raise ValueError("mode='random' needs rng (a numpy Generator) for reproducibility")
            start = int(rng.integers(0, n - length + 1))
        else:
            start = 0
        return wave[start : start + length].astype(np.float32, copy=True)
    if n == length:
        return wave.astype(np.float32, copy=True)
    if pad_mode == "wrap" and n > 0:
        return np.resize(wave, length).astype(np.float32)
    if pad_mode not in {"constant", "wrap"}:
        raise ValueError(f"pad_mode must be 'constant' or 'wrap', got {pad_mode!r}")
    out = np.zeros(length, dtype=np.float32)
    out[:n] = wave
    return out


def window_starts(n: int, window: int, hop: int, pad_last: bool = True) -> list[int]:
    """Start offsets of the windows that cover ``n`` samples: every ``hop`` samples.

    A signal no longer than one window has one window at 0; with ``pad_last`` a tail that does
    not fill a window gets a last window of its own (zero-padded by whoever fills it), so no
    audio is left out. The one definition of the windows a clip is scored on.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window}, {hop}")
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if pad_last and starts[-1] + window < n:
        starts.append(starts[-1] + hop)
    return starts


def frame_windows(wave: np.ndarray, window: int, hop: int, pad_last: bool = True) -> np.ndarray:
    """Split a signal into windows of ``window`` samples every ``hop`` samples.

    Returns an array ``(n_windows, window)``. A signal shorter than one window gives one
    zero-padded window; with ``pad_last`` the tail that does not fill a window is kept as a
    final zero-padded window, so no audio is dropped.
    """
    n = wave.size
    starts = window_starts(n, window, hop, pad_last)
    if n <= window:
        return pad_or_crop(wave, window, mode="start")[None, :]
    need = starts[-1] + window
    padded = wave if need <= n else np.concatenate([wave, np.zeros(need - n, dtype=wave.dtype)])
    idx = np.asarray(starts)[:, None] + np.arange(window)[None, :]
    return padded[idx].astype(np.float32, copy=False)


def save_audio(path: str | os.PathLike, wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write a WAV/FLAC file atomically: to a temporary name first, then renamed into place."""
    path = Path(path)
    with atomic_path(path) as temporary:
        sf.write(temporary, np.clip(wave, -1.0, 1.0), sr, subtype=subtype)
    return path


def io_workers(workers: int | None) -> int:
    """Threads for disk-bound work over many files: ``workers`` if positive, else 4 per core (at most 16)."""
    return workers if workers and workers > 0 else min(16, 4 * (os.cpu_count() or 1))


def probe_headers(
    paths: Sequence[Path], workers: int | None, progress: bool, desc: str
) -> list[tuple[float, float, str | None]]:
    """Read duration and sample rate of each file from its header, in parallel threads."""

    def one(path: Path) -> tuple[float, float, str | None]:
        try:
            info = audio_info(path)
        except (AudioError, OSError) as err:
            return np.nan, np.nan, str(err)
        return float(info["duration"]), float(info["sample_rate"]), None

    # Header reads wait on the disk and libsndfile releases the GIL, so threads overlap them.
    with ThreadPoolExecutor(max_workers=io_workers(workers)) as pool:
        results = pool.map(one, paths)
        return list(tqdm(results, total=len(paths), desc=desc, unit="file", disable=not progress))
