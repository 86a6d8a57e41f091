"""The common channel every corpus clip passes through, real or fake.

Sources differ in sample rate, bandwidth, codec, level, noise floor and silence. A detector
trained on them learns those differences instead of the traces of synthesis, so every clip
goes through one chain before it is written:

1. mono, resampled to 16 kHz;
2. leading and trailing silence trimmed (frame energy relative to the loudest frame), and
   pauses inside the utterance shortened to at most 0.2 s;
3. band-limited to the telephone band and equalised to a common long-term spectrum (one
   linear-phase FIR), so the energy above 4 kHz, the spectral tilt and the roll-off no longer
   reflect the microphone or the synthesiser;
4. speech level set to a fixed RMS, peaks limited to a fixed ceiling (crest factor is a level
   cue too), then a faint seeded white-noise floor added so digital silence (synthesisers)
   and room noise (recordings) look alike;
5. G.722 encoded and decoded (FFmpeg's codec, in-process through PyAV when installed, else
   the ffmpeg program), the codec the real prompts were delivered in;
6. cut into fixed-length segments (the length policy: 1.5 s, the shortest clip kept), each
   limited to a crest factor and set to a level drawn from the same ranges for every clip,
   then low-passed once more to remove what the limiter added above the band.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from scipy import signal
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

from dfa_lib.data.codecs import in_process_available, round_trip_in_process

SAMPLE_RATE = 16000


class ChannelError(RuntimeError):
    """Raised when the channel cannot process a clip (ffmpeg missing or failing)."""


@dataclass(frozen=True)
class ChannelConfig:
    """Parameters of the common channel; one instance is used for a whole corpus."""

    sample_rate: int = SAMPLE_RATE  # Hz, output rate of every clip
    band_hz: tuple[float, float] = (100.0, 3600.0)  # pass band, Hz
    trim_top_db: float = 35.0  # frames this far below the loudest frame count as silence
    max_pause_seconds: float | None = 0.2  # longer pauses inside an utterance are shortened
    equalise: bool = True  # bring each utterance's long-term spectrum to a common shape
    max_eq_db: float = 15.0  # largest boost or cut of the equaliser, dB
    level_dbfs: float = -26.0  # RMS of the trimmed utterance before the codec, dBFS
    ceiling_dbfs: float = 0.0  # peak limiter ceiling before the codec, dBFS (0: none)
    noise_dbfs: float = -52.0  # RMS of the added white-noise floor, dBFS
    codec: str = "g722"  # "g722" or "none"
    segment_seconds: float = 1.5  # length policy: every clip is exactly this long
    max_segments: int = 8  # at most this many segments are cut from one utterance
    output_dbfs: tuple[float, float] = (-26.0, -20.0)  # RMS of a written clip: uniform, dBFS
    crest_db: tuple[float, float] = (9.0, 12.0)  # its peak ceiling above that RMS: uniform, dB

    @property
    def segment_samples(self) -> int:
        """Length of one output clip in samples."""
        return int(round(self.segment_seconds * self.sample_rate))

    def describe(self) -> dict[str, object]:
        """Return the configuration as a JSON-friendly dict (recorded in the build marker)."""
        return {
            "sample_rate": self.sample_rate,
            "band_hz": list(self.band_hz),
            "trim_top_db": self.trim_top_db,
            "max_pause_seconds": self.max_pause_seconds,
            "equalise": self.equalise,
            "max_eq_db": self.max_eq_db,
            "level_dbfs": self.level_dbfs,
            "ceiling_dbfs": self.ceiling_dbfs,
            "noise_dbfs": self.noise_dbfs,
            "codec": self.codec,
            "segment_seconds": self.segment_seconds,
            "max_segments": self.max_segments,
            "output_dbfs": list(self.output_dbfs),
            "crest_db": list(self.crest_db),
        }


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise ChannelError("ffmpeg not found: install it (Debian package `ffmpeg`)")
    return path


def _run_ffmpeg(args: list[str], data: bytes) -> bytes:
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]
    proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ChannelError(f"ffmpeg failed ({' '.join(args)}): {proc.stderr.decode()[-400:]}")
    return proc.stdout


def to_pcm16(wave: np.ndarray) -> bytes:
    """Return the wave as little-endian 16-bit PCM bytes (clipped to [-1, 1])."""
    return (np.clip(wave, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    """Return float32 samples in [-1, 1] from little-endian 16-bit PCM bytes."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def decode_file(path: str, sample_rate: int = SAMPLE_RATE, fmt: str | None = None) -> np.ndarray:
    """Decode any file ffmpeg reads (G.722 needs ``fmt="g722"``) to mono float32."""
    args = ["-f", fmt] if fmt else []
    pcm = _run_ffmpeg(
        [*args, "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(sample_rate), "pipe:1"],
        b"",
    )
    return from_pcm16(pcm)


def g722_roundtrip(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encode a 16 kHz wave to G.722 and decode it again (what a G.722 phone line does).

    FFmpeg's codec runs in-process through PyAV when it is installed (starting the ffmpeg
    program costs about 0.1 s, more than coding the clip); both give identical samples.
    """
    if in_process_available("g722"):
        out = round_trip_in_process(wave, sample_rate, "g722")
    else:
        raw = ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1"]
        encoded = _run_ffmpeg(
            [*raw, "-i", "pipe:0", "-c:a", "g722", "-f", "g722", "pipe:1"], to_pcm16(wave)
        )
        out = from_pcm16(_run_ffmpeg(["-f", "g722", "-i", "pipe:0", *raw, "pipe:1"], encoded))
    # The codec may add or drop a few samples; keep the input's length so segments line up.
    if len(out) >= len(wave):
        return out[: len(wave)]
    return np.pad(out, (0, len(wave) - len(out)))


def decode_g722_file(path: str) -> np.ndarray:
    """Decode a raw G.722 file (16 kHz) to float32, in-process with PyAV when installed."""
    try:
        import av
    except ImportError:
        return decode_file(path, SAMPLE_RATE, fmt="g722")
    with av.open(str(path), format="g722") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    if not frames:
        raise ChannelError(f"{path}: no audio in this G.722 file")
    return np.concatenate(frames).astype(np.float32) / 32768.0


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with a polyphase filter (deterministic, no extra dependency)."""
    if orig_sr == target_sr:
        return wave.astype(np.float32)
    g = np.gcd(int(orig_sr), int(target_sr))
    return signal.resample_poly(wave, target_sr // g, orig_sr // g).astype(np.float32)


def frame_rms_db(wave: np.ndarray, frame: int = 320, hop: int = 160) -> np.ndarray:
    """Return the RMS of each frame in dB (relative to full scale, floor at -120 dB)."""
    if len(wave) < frame:
        wave = np.pad(wave, (0, frame - len(wave)))
    n = 1 + (len(wave) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(wave[idx].astype(np.float64) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def trim_silence(wave: np.ndarray, top_db: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame."""
    hop = sample_rate // 100
    db = frame_rms_db(wave, frame=2 * hop, hop=hop)
    active = np.flatnonzero(db > db.max() - top_db)
    if len(active) == 0:
        return wave[:0]
    start = active[0] * hop
    end = min(len(wave), (active[-1] + 2) * hop)
    return wave[start:end]


def shorten_pauses(
    wave: np.ndarray, top_db: float, max_pause: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Shorten every pause longer than ``max_pause`` seconds to that length.

    Read sentences, game lines and synthesisers pause for very different lengths, and the
    pauses (their share of a clip, the noise in them) would tell the sources apart. The cut
    keeps half of ``max_pause`` at each side of a pause and joins the two with a 5 ms fade.
    """
    hop = sample_rate // 100
    db = frame_rms_db(wave, frame=2 * hop, hop=hop)
    quiet = db <= db.max() - top_db
    keep_frames = max(2, int(round(max_pause * 100)))
    pieces, start, i = [], 0, 0
    while i < len(quiet):
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < len(quiet) and quiet[j]:
            j += 1
        if j - i > keep_frames and j < len(quiet):
            cut_from = (i + keep_frames // 2) * hop
            cut_to = (j - keep_frames // 2) * hop
            pieces.append(wave[start:cut_from])
            start = cut_to
        i = j
    if not pieces:
        return wave
    pieces.append(wave[start:])
    fade = sample_rate // 200
    out = pieces[0].astype(np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for piece in pieces[1:]:
        n = min(fade, len(out), len(piece))
        joined = out[len(out) - n :] * ramp[::-1][-n:] + piece[:n] * ramp[-n:] if n else []
        out = np.concatenate([out[: len(out) - n], joined, piece[n:]]).astype(np.float32)
    return out


def set_rms(wave: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale the wave to the given RMS level, then keep its peak below full scale."""
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    if rms < 1e-8:
        return wave.astype(np.float32)
    out = wave * (10.0 ** (dbfs / 20.0) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def target_spectrum_db(freqs: np.ndarray) -> np.ndarray:
    """Return the common long-term spectrum shape, in dB: flat to 500 Hz, then -6 dB/octave
    (roughly the long-term average spectrum of speech)."""
    return -6.0 * np.log2(np.maximum(freqs, 500.0) / 500.0)


def long_term_spectrum_db(
    wave: np.ndarray, n_fft: int = 512, smooth_hz: float = 250.0, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Return the smoothed power spectrum (dB) of the wave's louder frames."""
    hop = n_fft // 2
    if len(wave) < n_fft:
        wave = np.pad(wave, (0, n_fft - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    loud = energy > energy.max() * 10 ** (-30 / 10)  # speech frames, not pauses
    ltas = power[loud].mean(axis=0) + 1e-12
    width = max(1, int(round(smooth_hz / (sample_rate / n_fft))))
    ltas = np.convolve(
        np.pad(ltas, width, mode="edge"), np.ones(2 * width + 1) / (2 * width + 1), "same"
    )
    return 10.0 * np.log10(ltas[width:-width])


def shape_spectrum(wave: np.ndarray, config: ChannelConfig, numtaps: int = 511) -> np.ndarray:
    """Band-limit the wave and, when ``config.equalise``, equalise its long-term spectrum.

    One linear-phase FIR does both: its response is the pass band times the gain that
    brings the utterance's smoothed long-term spectrum to :func:`target_spectrum_db`
    (limited to +-``max_eq_db``). Spectral tilt and roll-off then say nothing about the
    microphone or the synthesiser's voicing model.
    """
    sr = config.sample_rate
    n_fft = 512
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    low, high = config.band_hz
    band = (freqs >= low) & (freqs <= high)
    gain_db = np.zeros_like(freqs)
    if config.equalise:
        diff = target_spectrum_db(freqs) - long_term_spectrum_db(wave, n_fft, sample_rate=sr)
        diff -= np.mean(diff[band])
        gain_db = np.clip(diff, -config.max_eq_db, config.max_eq_db)
    response = np.where(band, 10.0 ** (gain_db / 20.0), 0.0)
    # A Kaiser window keeps the stop band ~90 dB down: strong high bands (espeak-ng) must not
    # leak above 4 kHz.
    taps = signal.firwin2(numtaps, freqs, response, fs=sr, window=("kaiser", 9.0))
    return signal.fftconvolve(wave, taps, mode="same").astype(np.float32)


def limit_peaks(
    wave: np.ndarray, ceiling_dbfs: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Lower the gain smoothly around peaks above the ceiling (a look-ahead peak limiter)."""

    if ceiling_dbfs >= 0 or len(wave) == 0:
        return wave
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    window = max(1, int(0.01 * sample_rate))  # 10 ms: no audible pumping, no clipping
    envelope = maximum_filter1d(np.abs(wave), size=window)
    gain = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-9))
    gain = uniform_filter1d(minimum_filter1d(gain, size=window), size=window)
    return np.clip(wave * gain, -ceiling, ceiling).astype(np.float32)


def clip_seed(key: str) -> int:
    """Return a stable 32-bit seed for a clip key (same key, same noise, any process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def prepare(wave: np.ndarray, sample_rate: int, config: ChannelConfig, key: str) -> np.ndarray:
    """Run the channel up to the codec: resample, trim, band-limit, level and noise floor.

    ``key`` seeds the noise floor so the result is a pure function of its inputs. The result
    is cut to a whole number of segments (at most ``max_segments``); it is empty when the
    trimmed utterance is shorter than one segment.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim > 1:
        wave = wave.mean(axis=1) if wave.shape[1] < wave.shape[0] else wave.mean(axis=0)
    wave = resample(wave, sample_rate, config.sample_rate)
    wave = trim_silence(wave, config.trim_top_db, config.sample_rate)
    if config.max_pause_seconds is not None and len(wave):
        wave = shorten_pauses(
            wave, config.trim_top_db, config.max_pause_seconds, config.sample_rate
        )
    seg = config.segment_samples
    n = min(config.max_segments, len(wave) // seg)
    if n == 0:
        return wave[:0]
    wave = shape_spectrum(wave, config)
    wave = limit_peaks(set_rms(wave, config.level_dbfs), config.ceiling_dbfs, config.sample_rate)
    wave = wave[: n * seg]
    rng = np.random.default_rng(clip_seed(key))
    noise = rng.standard_normal(len(wave)).astype(np.float32) * 10.0 ** (config.noise_dbfs / 20.0)
    return wave + noise


def codec_many(waves: list[np.ndarray], config: ChannelConfig) -> list[np.ndarray]:
    """Pass several prepared waves through the codec in one ffmpeg round trip.

    Starting ffmpeg costs more than coding a few seconds of speech, so the waves are joined
    with a short gap of silence (enough for the ADPCM state to settle) and split again.
    """
    if config.codec == "none":
        return [w.copy() for w in waves]
    if config.codec != "g722":
        raise ChannelError(f"unknown codec {config.codec!r}: use 'g722' or 'none'")
    waves = [w for w in waves]
    if not any(len(w) for w in waves):
        return waves
    gap = np.zeros(config.sample_rate // 4, dtype=np.float32)
    joined: list[np.ndarray] = []
    for w in waves:
        joined += [w, gap]
    coded = g722_roundtrip(np.concatenate(joined), config.sample_rate)
    out, pos = [], 0
    for w in waves:
        out.append(coded[pos : pos + len(w)])
        pos += len(w) + len(gap)
    return out


def segment(wave: np.ndarray, config: ChannelConfig, key: str) -> list[np.ndarray]:
    """Cut a coded wave into fixed-length clips and set each one's level and peak ceiling.

    Level and crest factor (peak over RMS) carry over from the source, and synthesisers are
    peakier than voices. Every clip is therefore limited to a crest factor and set to an
    RMS level both drawn, seeded by ``key`` and the clip's index, from the same ranges for
    every clip, real or fake: what is left of the difference hides in that spread. A last
    low-pass removes what the limiter adds above the band.
    """
    seg = config.segment_samples
    rng = np.random.default_rng(clip_seed(f"{key}:levels"))
    high = min(config.band_hz[1] + 200.0, config.sample_rate / 2 - 100.0)
    # A steep edge: where the spectrum ends should be the filter's doing, not the source's.
    lowpass = signal.firwin(511, high, fs=config.sample_rate, window=("kaiser", 9.0))
    out = []
    for i in range(len(wave) // seg):
        level = float(rng.uniform(*config.output_dbfs))
        ceiling = 10.0 ** ((level + float(rng.uniform(*config.crest_db))) / 20.0)
        clip = wave[i * seg : (i + 1) * seg]
        # Limiting spreads energy above the band and the low-pass that removes it brings
        # back some overshoot: a few rounds converge on both the level and the ceiling.
        # (No final clipping: its distortion would put energy back above the band.)
        clip = signal.fftconvolve(clip, lowpass, mode="same")  # the codec's noise above the band
        ceiling_db = 20.0 * np.log10(ceiling)
        for _ in range(8):
            clip = limit_peaks(set_rms(clip, level), ceiling_db)
        # The limiter's slow gain changes add little above the band; one more low-pass takes
        # it out, and a last limiting pass (not clipping) keeps the ceiling exact.
        clip = signal.fftconvolve(clip, lowpass, mode="same")
        out.append(limit_peaks(clip, ceiling_db))
    return out


def apply_channel(
    wave: np.ndarray, sample_rate: int, config: ChannelConfig, key: str
) -> list[np.ndarray]:
    """Pass one utterance through the whole channel and return its fixed-length segments."""
    return segment(codec_many([prepare(wave, sample_rate, config, key)], config)[0], config, key)
