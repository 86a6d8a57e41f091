"""Live audio sources: a file, raw PCM on a pipe or a microphone, as a stream of mono chunks.

Each source is a :class:`LiveSource`: its name, the rate of its samples and an iterator of
float32 mono chunks (channels averaged, integer PCM scaled to [-1, 1]) that ends with the
stream. A scorer that reads them (``dfa stream``, the app's live mode) resamples them as they
come with a :class:`StreamResampler`, whose output is that of
:func:`dfa_lib.data.audio.resample` on the whole signal, sample for sample.

- :func:`file_source` decodes a file with :func:`dfa_lib.data.audio.load_audio` and hands it
  out a chunk at a time, as fast as it is read or, with ``realtime=True``, at the pace it
  would be played (each chunk when its last sample would have been heard).
- :func:`pcm_source` reads headerless PCM (``s16le`` or ``f32le``, one or more interleaved
  channels) from a binary stream such as standard input, so that
  ``ffmpeg -i in.mp3 -f s16le -ac 1 -ar 16000 -`` can feed it. Chunks are handed out as soon as
  the bytes arrive; bytes left at the end that do not make a whole frame are dropped with a
  :class:`~dfa_lib.data.audio.TruncatedAudioWarning`.
- :func:`microphone_source` records from an input device through ``sounddevice`` (PortAudio).
  That package is imported only here, because importing it fails outright on a machine
  without the PortAudio library; :class:`MicrophoneUnavailable` says which of the two is
  missing, the library or a device.
"""

from __future__ import annotations

import os
import queue
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from math import gcd
from typing import Any, BinaryIO

import numpy as np
from scipy.signal import firwin

from dfa_lib.data.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    TruncatedAudioWarning,
    check_samples,
    load_audio,
)

__all__ = [
    "DEFAULT_CHUNK_SECONDS",
    "PCM_FORMATS",
    "LiveSource",
    "MicrophoneUnavailable",
    "StreamResampler",
    "check_stream_rate",
    "file_source",
    "microphone_source",
    "pcm_source",
]

DEFAULT_CHUNK_SECONDS = 0.1  # audio per chunk: short against any hop, long against the overhead
# Sample encodings of headerless PCM: numpy dtype and the value of full scale.
PCM_FORMATS: dict[str, tuple[str, float]] = {"s16le": ("<i2", 32768.0), "f32le": ("<f4", 1.0)}
MAX_CHANNELS = 64


class MicrophoneUnavailable(RuntimeError):
    """No microphone can be opened: PortAudio is missing, no input device, or a wrong device."""


@dataclass
class LiveSource:
    """A stream of audio: what it is called, its sample rate and its mono float32 chunks."""

    name: str  # for messages: the file's path, "standard input", the device's name
    sample_rate: int  # Hz, of the chunks
    chunks: Iterator[np.ndarray]  # mono float32 arrays, in order; ends with the stream
    realtime: bool  # True when chunks arrive at the pace of the audio (microphone, --realtime)


def check_stream_rate(rate: Any, what: str = "--rate") -> int:
    """Return ``rate`` as an int in Hz, or raise ValueError saying what a usable rate is."""
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise ValueError(f"{what} must be a whole number of samples per second, got {rate!r}")
    if not MIN_SAMPLE_RATE <= int(rate) <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"{what} {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; give the rate "
            "the audio was encoded at (for instance 16000, 44100 or 48000)"
        )
    return int(rate)


class StreamResampler:
    """Resample a stream chunk by chunk, giving exactly what resampling it whole would give.

    The filter is :func:`dfa_lib.data.audio.resample`'s (``scipy.signal.resample_poly`` with a
    Kaiser window, beta 8.6, ``10 * max(up, down)`` taps each side of the centre), applied in
    polyphase form: output sample ``m`` is ``sum_i x[i] * h[m * down + half - i * up]``, so it
    needs ``half / up`` input samples past its own time (2 ms for 48 kHz to 16 kHz). Each
    :meth:`push` returns the output samples whose inputs have all arrived; :meth:`flush`
    returns the rest, reading zeros past the end as ``resample_poly`` does, so that the
    concatenated output has ``ceil(n * up / down)`` samples.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        source_rate = check_stream_rate(source_rate, "the source rate")
        target_rate = check_stream_rate(target_rate, "the target rate")
        g = gcd(source_rate, target_rate)
        self.up, self.down = target_rate // g, source_rate // g
        self.received = 0  # input samples pushed so far
        self.emitted = 0  # output samples returned so far
        self._flushed = False
        if self.up == self.down == 1:
            return
        most = max(self.up, self.down)
        self.half = 10 * most
        h = firwin(2 * self.half + 1, 1.0 / most, window=("kaiser", 8.6)) * self.up
        self.taps = -(-h.size // self.up)
        phases = np.zeros((self.up, self.taps))
        for p in range(self.up):
            row = h[p :: self.up]
            phases[p, : row.size] = row
        self._phases = phases
        # Input history; index 0 holds input sample ``self._offset`` (zeros before the start).
        self._history = np.zeros(self.taps, dtype=np.float64)
        self._offset = -self.taps

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Take the next input samples; return the output samples now complete (float32)."""
        if self._flushed:
            raise RuntimeError("this resampler was flushed; make a new one for another stream")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.received += chunk.size
        if self.up == self.down == 1:
            self.emitted += chunk.size
            return chunk.copy()
        self._history = np.concatenate([self._history, chunk.astype(np.float64)])
        # Output m is complete when its newest input, (m * down + half) // up, has arrived.
        ready = (self.received * self.up - self.half + self.down - 1) // self.down
        return self._emit(max(ready, self.emitted))

    def flush(self) -> np.ndarray:
        """Return the last output samples (zeros are read past the end of the input)."""
        if self._flushed or self.up == self.down == 1:
            self._flushed = True
            return np.zeros(0, dtype=np.float32)
        total = -(-self.received * self.up // self.down)
        self._history = np.concatenate([self._history, np.zeros(self.taps + 1)])
        out = self._emit(max(total, self.emitted))
        self._flushed = True
        return out

    def _emit(self, stop: int) -> np.ndarray:
        m = np.arange(self.emitted, stop, dtype=np.int64)
        if m.size == 0:
            return np.zeros(0, dtype=np.float32)
        centre = m * self.down + self.half
        newest = centre // self.up - self._offset  # index into the history
        idx = newest[:, None] - np.arange(self.taps)[None, :]
        out = np.einsum("ij,ij->i", self._history[idx], self._phases[centre % self.up])
        self.emitted = stop
        # Keep only the history the next output can reach.
        first_needed = (stop * self.down + self.half) // self.up - self.taps + 1
        drop = max(0, first_needed - self._offset)
        if drop:
            self._history = self._history[drop:]
            self._offset += drop
        return out.astype(np.float32)


def _paced(chunks: Iterator[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Hand out each chunk when its last sample would have been heard, counting from the first."""
    start = time.monotonic()
    played = 0
    for chunk in chunks:
        played += chunk.size
        delay = start + played / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


def _split(wave: np.ndarray, step: int) -> Iterator[np.ndarray]:
    for i in range(0, wave.size, step):
        yield wave[i : i + step]


def file_source(
    path: str | os.PathLike,
    sample_rate: int,
    realtime: bool = False,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    max_seconds: float | None = None,
) -> LiveSource:
    """Decode a file at ``sample_rate`` and stream it in chunks of ``chunk_seconds``.

    The file is decoded at once (by :func:`dfa_lib.data.audio.load_audio`, whose errors name
    the file), so the samples are exactly those ``dfa predict`` scores. ``realtime=True``
    paces the chunks at the speed of playback.
    """
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    wave, sr = load_audio(path, target_sr=sample_rate, max_seconds=max_seconds)
    chunks = _split(wave, max(1, round(chunk_seconds * sr)))
    return LiveSource(str(path), sr, _paced(chunks, sr) if realtime else chunks, realtime)


def pcm_source(
    stream: BinaryIO,
    sample_rate: int,
    sample_format: str = "s16le",
    channels: int = 1,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    name: str = "standard input",
) -> LiveSource:
    """Read headerless PCM from ``stream``: ``s16le`` or ``f32le``, ``channels`` interleaved.

    Raises ValueError for a rate outside what audio uses, an unknown sample format or a
    channel count below 1. The chunks are mono (channels averaged); reading stops at the end
    of the stream. Float samples that are not audio (NaN, far beyond full scale) stop the
    stream with :class:`~dfa_lib.data.audio.InvalidAudioError` naming ``name``.
    """
    sample_rate = check_stream_rate(sample_rate)
    if sample_format not in PCM_FORMATS:
        raise ValueError(
            f"unknown sample format {sample_format!r}; give one of {', '.join(PCM_FORMATS)}"
        )
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a whole number of at least 1, got {channels!r}")
    if channels > MAX_CHANNELS:
        raise ValueError(f"channels must be at most {MAX_CHANNELS}, got {channels}")
    if not chunk_seconds > 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    dtype, full_scale = PCM_FORMATS[sample_format]
    frame_bytes = np.dtype(dtype).itemsize * channels
    want = max(1, round(chunk_seconds * sample_rate)) * frame_bytes
    chunks = _read_pcm(stream, dtype, full_scale, channels, frame_bytes, want, name)
    return LiveSource(name, sample_rate, chunks, realtime=False)


def _read_pcm(
    stream: BinaryIO,
    dtype: str,
    full_scale: float,
    channels: int,
    frame_bytes: int,
    want: int,
    name: str,
) -> Iterator[np.ndarray]:
    # read1 returns what has arrived (at most ``want`` bytes) instead of waiting for all of it.
    read = getattr(stream, "read1", stream.read)
    pending = b""
    while True:
        data = read(want)
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % frame_bytes
        if not whole:
            continue
        frames = np.frombuffer(pending[:whole], dtype=dtype).reshape(-1, channels)
        pending = pending[whole:]
        samples = frames.astype(np.float32) / np.float32(full_scale)
        check_samples(samples, name)
        yield samples.mean(axis=1, dtype=np.float32) if channels > 1 else samples[:, 0]
    if pending:
        warnings.warn(
            TruncatedAudioWarning(
                f"{name}: the last {len(pending)} byte(s) do not make a whole frame "
                f"({frame_bytes} bytes: {channels} channel(s) of {np.dtype(dtype).itemsize} "
                "bytes); they were dropped"
            ),
            stacklevel=2,
        )


def _sounddevice() -> Any:
    """Import ``sounddevice`` (optional: it needs the PortAudio library) or say what is missing."""
    try:
        import sounddevice
    except ImportError as error:
        raise MicrophoneUnavailable(
            "recording needs the sounddevice package (pip install sounddevice)"
        ) from error
    except OSError as error:  # sounddevice raises this when libportaudio is not found
        raise MicrophoneUnavailable(
            f"recording needs the PortAudio library, which is not installed ({error}); install "
            "it (apt-get install libportaudio2, brew install portaudio) or stream a file or "
            "standard input instead"
        ) from error
    return sounddevice


def microphone_source(
    device: str | int | None = None,
    sample_rate: int | None = None,
    channels: int = 1,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
) -> LiveSource:
    """Record from an input device (None: the system's default) until the stream is closed.

    ``device`` is a PortAudio device index or a part of its name; ``sample_rate`` defaults to
    the device's own. Raises :class:`MicrophoneUnavailable` when PortAudio is missing, no
    input device exists, or ``device`` names none; the device is opened here, so a device that
    refuses the rate or the channel count is reported before any chunk is read.
    """
    sd = _sounddevice()
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as error:
        listed = [d for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
        if not listed:
            raise MicrophoneUnavailable(
                "no microphone found: PortAudio lists no input device on this machine; plug "
                "one in (or check its permissions), or stream a file or standard input instead"
            ) from error
        names = "; ".join(f"{d['index']}: {d['name']}" for d in listed)
        raise MicrophoneUnavailable(
            f"no input device matches {device!r} ({error}); the input devices are: {names}"
        ) from error
    rate = int(sample_rate or round(info["default_samplerate"]))
    rate = check_stream_rate(rate, "the microphone's rate")
    blocks: queue.Queue[np.ndarray] = queue.Queue()

    def on_audio(indata: np.ndarray, *_: Any) -> None:
        # PortAudio's thread, with a buffer it reuses: copy and hand over, nothing more.
        blocks.put(
            indata.mean(axis=1, dtype=np.float32) if indata.shape[1] > 1 else indata[:, 0].copy()
        )

    try:
        stream = sd.InputStream(
            device=device,
            samplerate=rate,
            channels=channels,
            dtype="float32",
            blocksize=max(1, round(chunk_seconds * rate)),
            callback=on_audio,
        )
    except (ValueError, sd.PortAudioError) as error:
        raise MicrophoneUnavailable(f"cannot open {info['name']}: {error}") from error
    return LiveSource(str(info["name"]), rate, _record(stream, blocks), realtime=True)


def _record(stream: Any, blocks: queue.Queue[np.ndarray]) -> Iterator[np.ndarray]:
    with stream:  # started here, stopped and closed however the reader stops
        while True:
            yield blocks.get()
