"""Decode untrusted audio with a cap on its duration, in a stream of blocks, in bounded memory.

A few megabytes of low-bitrate Opus can hold hours of audio, so a cap on the upload's size says
nothing about the memory its decoding takes. :func:`decode_capped` first asks ``ffprobe`` how long
the file lasts and refuses one above the cap without decoding it. Otherwise (and when the file
does not say how long it is) ``ffmpeg`` decodes it to raw float32 samples on a pipe, read block
by block: each block is mixed down to mono and resampled to the target rate as it arrives, and
decoding stops as soon as the audio passes the cap, whatever the file's header claimed.

Peak memory is the output waveform (the target rate, mono, float32: 115 MB for 30 minutes at
16 kHz) plus one block, instead of several full-length copies at the file's own rate.

The samples are those of :func:`dfa_lib.data.audio.load_audio` for the same decoded signal: the
channel mean and the same polyphase Kaiser filter, each block resampled with enough context on
both sides that the blocks tile exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from dfa_lib.data.audio import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioSource,
    DurationLimitError,
    EmptyAudioError,
    InvalidAudioError,
)

__all__ = [
    "AudioProbe",
    "DurationLimitError",
    "decode_capped",
    "format_duration",
    "probe_audio",
]

BLOCK_SECONDS = 2.0  # input audio per block read from ffmpeg (a few MB of work memory)
PROBE_TIMEOUT_S = 60  # reading a header takes milliseconds; a file that stalls it is refused
_RESAMPLE_CONTEXT = 2048  # input samples of context each side: far beyond the filter's reach


@dataclass(frozen=True)
class AudioProbe:
    """What ``ffprobe`` says about a file's first audio stream; None where it cannot tell."""

    duration: float | None  # seconds
    sample_rate: int | None  # Hz
    channels: int | None


def format_duration(seconds: float) -> str:
    """Return a duration as people read it: ``2 h 05 min``, ``30 min``, ``4 min 10 s``, ``9.5 s``."""
    if seconds >= 3600:
        hours, minutes = divmod(int(round(seconds / 60)), 60)
        return f"{hours} h {minutes:02d} min"
    if seconds >= 60:
        minutes, rest = divmod(int(round(seconds)), 60)
        return f"{minutes} min" if rest == 0 else f"{minutes} min {rest:02d} s"
    return f"{seconds:.1f} s"


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise AudioDecodeError(
            f"{name} is not installed, and decoding uploads needs it: run `make setup` "
            "(or `apt-get install ffmpeg`)"
        )
    return exe


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # ffprobe writes "N/A" for what it does not know
    return number if math.isfinite(number) and number > 0 else None


def _last_error(stderr: bytes, path: Path | str, default: str) -> str:
    """Return the last line ffmpeg or ffprobe wrote, without the (temporary) file's path."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    detail = lines[-1].strip() if lines else default
    detail = detail.replace(f"{path}: ", "").replace(str(path), "the file")
    if "does not contain any stream" in detail or "matches no streams" in detail:
        return "no audio stream"
    return detail


def probe_audio(path: str | os.PathLike, name: str | None = None) -> AudioProbe:
    """Ask ``ffprobe`` for the duration, rate and channels of a file's first audio stream.

    Reads headers only (for Ogg, the last page too), never the whole stream. Raises
    :class:`dfa_lib.data.audio.AudioDecodeError` naming ``name`` when the file holds no audio
    stream ffprobe can read.
    """
    name = name or str(path)
    cmd = [_tool("ffprobe"), "-v", "error", "-select_streams", "a:0"]
    cmd += ["-show_entries", "stream=sample_rate,channels,duration:format=duration"]
    cmd += ["-of", "json", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise AudioDecodeError(
            f"{name}: not a readable audio file (ffprobe found no answer in {PROBE_TIMEOUT_S} s)"
        ) from error
    info = {}
    if proc.returncode == 0:
        try:
            info = json.loads(proc.stdout or b"{}")
        except json.JSONDecodeError:
            info = {}
    streams = info.get("streams") or []
    if not streams:
        detail = _last_error(proc.stderr, path, "no audio stream")
        raise AudioDecodeError(f"{name}: not a readable audio file ({detail})")
    stream = streams[0]
    duration = _number(stream.get("duration")) or _number(info.get("format", {}).get("duration"))
    rate = _number(stream.get("sample_rate"))
    channels = _number(stream.get("channels"))
    return AudioProbe(
        duration=duration,
        sample_rate=int(rate) if rate else None,
        channels=int(channels) if channels else None,
    )


class _StreamResampler:
    """Resample a signal that arrives in pieces, giving the samples of one whole-signal call.

    Output is emitted for input spans ``[start, start + step)``, ``step`` a multiple of the
    decimation factor so the spans' outputs tile; each span is resampled with ``context``
    input samples on both sides (zeros beyond the signal's ends, as ``resample_poly`` pads).
    """

    def __init__(self, orig_sr: int, target_sr: int, step: int) -> None:
        g = math.gcd(orig_sr, target_sr)
        self.up, self.down = target_sr // g, orig_sr // g
        self.step = self.down * max(1, step // self.down)
        self.context = self.down * math.ceil(_RESAMPLE_CONTEXT / self.down)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0  # index in the whole signal of buffer[0]
        self.start = 0  # first input sample whose output is not emitted yet
        self.total = 0  # input samples received

    def push(self, piece: np.ndarray) -> list[np.ndarray]:
        """Add input samples; return the output spans that are now complete."""
        self.buffer = np.concatenate([self.buffer, piece]) if self.buffer.size else piece
        self.total += piece.size
        out = []
        while self.start + self.step + self.context <= self.total:
            out.append(self._span(self.start + self.step))
        return out

    def finish(self) -> list[np.ndarray]:
        """Return the output of everything not emitted yet: the signal has ended."""
        out = []
        while self.start < self.total:
            out.append(self._span(min(self.total, self.start + self.step)))
        return out

    def _span(self, stop: int) -> np.ndarray:
        start = self.start
        lo, hi = max(0, start - self.context), min(self.total, stop + self.context)
        block = self.buffer[lo - self.buffer_start : hi - self.buffer_start]
        if self.up == self.down == 1:
            piece = block[start - lo : stop - lo].copy()
        else:
            y = resample_poly(block.astype(np.float64), self.up, self.down, window=("kaiser", 8.6))
            first = (start - lo) * self.up // self.down
            piece = y[first : first + (-(-(stop - start) * self.up // self.down))]
        self.start = stop
        # Keep only the context the next span needs.
        keep_from = max(0, stop - self.context)
        self.buffer = self.buffer[keep_from - self.buffer_start :].copy()
        self.buffer_start = keep_from
        return piece.astype(np.float32, copy=False)


class _Output:
    """A growing float32 array: preallocated when the length is known, doubled when it is not."""

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(1, capacity), dtype=np.float32)
        self.size = 0

    def extend(self, piece: np.ndarray) -> None:
        need = self.size + piece.size
        if need > self.data.size:
            grown = np.empty(max(need, 2 * self.data.size), dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = piece
        self.size = need

    def result(self) -> np.ndarray:
        if self.data.size - self.size > 0.01 * self.data.size + 16000:
            return self.data[: self.size].copy()  # a short file in a large guess: free the rest
        return self.data[: self.size]


def _too_long(name: str, seconds: float | None, max_seconds: float) -> DurationLimitError:
    length = f"lasts {format_duration(seconds)}" if seconds else "lasts longer than that"
    return DurationLimitError(
        f"{name}: {length}; the limit is {format_duration(max_seconds)} of audio",
        seconds,
        max_seconds,
    )


def decode_capped(
    source: AudioSource,
    target_sr: int,
    max_seconds: float,
    name: str | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> np.ndarray:
    """Decode a file (or its bytes) to mono float32 at ``target_sr``, refusing audio past a cap.

    Raises :class:`DurationLimitError` when ffprobe reports more than ``max_seconds`` (nothing
    is decoded) or when decoding passes ``max_seconds`` (it stops there), and the other
    :class:`dfa_lib.data.audio.AudioError` subclasses, naming ``name``, for an empty, unreadable
    or non-finite file. Memory: the output plus one ``block_seconds`` block.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    if isinstance(source, bytes | bytearray):
        name = name or f"<{len(source)} bytes in memory>"
        if not source:
            raise EmptyAudioError(f"{name}: no bytes given")
        # ffprobe needs a file it can seek in to read an Ogg or MP4 file's length.
        with tempfile.TemporaryDirectory(prefix="dfa-upload-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(source)
            return _decode_path(path, target_sr, max_seconds, name, block_seconds)
    path = Path(source)
    name = name or str(path)
    if not path.exists():
        raise AudioFileNotFoundError(f"{name}: no such file")
    if path.is_dir():
        raise AudioDecodeError(f"{name}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{name}: file is empty (0 bytes)")
    return _decode_path(path, target_sr, max_seconds, name, block_seconds)


def _decode_path(
    path: Path, target_sr: int, max_seconds: float, name: str, block_seconds: float
) -> np.ndarray:
    probe = probe_audio(path, name)
    if probe.duration is not None and probe.duration > max_seconds:
        raise _too_long(name, probe.duration, max_seconds)
    # Ask for the stream's own rate and layout explicitly, so that a stream whose format
    # changes midway still arrives as one rate and channel count (ffmpeg converts).
    rate = probe.sample_rate or target_sr
    channels = probe.channels or 1
    cmd = [_tool("ffmpeg"), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0"]
    cmd += ["-ac", str(channels), "-ar", str(rate), "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    cap = int(math.floor(max_seconds * rate))
    block = max(1, int(block_seconds * rate))
    resampler = _StreamResampler(rate, target_sr, block)
    expected = probe.duration * target_sr if probe.duration else 60 * target_sr
    out = _Output(int(min(expected, max_seconds * target_sr)) + target_sr)
    frame_bytes = 4 * channels
    with tempfile.TemporaryFile() as errors:
        # stderr goes to a file: a pipe nobody reads while stdout is read could fill and stall.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL
        )
        try:
            assert proc.stdout is not None
            pending = b""
            while True:
                chunk = proc.stdout.read(block * frame_bytes)
                if not chunk:
                    break
                chunk = pending + chunk
                usable = len(chunk) - len(chunk) % frame_bytes
                pending = chunk[usable:]
                frames = np.frombuffer(chunk[:usable], dtype="<f4").reshape(-1, channels)
                mono = frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0]
                if not np.all(np.isfinite(mono)):
                    raise InvalidAudioError(f"{name}: contains NaN or infinite samples")
                if resampler.total + mono.size > cap:
                    raise _too_long(name, None, max_seconds)
                for piece in resampler.push(mono):
                    out.extend(piece)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode != 0:
        detail = _last_error(stderr, path, f"ffmpeg exited with status {proc.returncode}")
        raise AudioDecodeError(f"{name}: not a readable audio file ({detail})")
    for piece in resampler.finish():
        out.extend(piece)
    if out.size == 0:
        raise EmptyAudioError(f"{name}: decodes to zero samples")
    return out.result()
