"""Lossy codec round trips with FFmpeg's codecs: encode, decode, realign, cache on disk.

Two backends run the same FFmpeg encoders and decoders:

- ``av``: in-process through PyAV (the codec contexts only, no container), when PyAV is
  installed and its FFmpeg has the encoder. A 1.5-s clip takes 3-14 ms, where starting the
  ffmpeg program twice takes 95-120 ms (``make bench`` times both on every codec setting),
  which is what made codec augmentation the slow part of augmented training. Resampling to
  and from the codec's rate is scipy's polyphase filter.
- ``ffmpeg``: pipes raw float32 samples into the ``ffmpeg`` program's encoder and the bitstream
  into its decoder (no temporary files), which also resamples back to the input rate. It is
  used for codecs PyAV's build lacks (GSM) and when PyAV is absent.

The two do not give identical samples (other library builds, other resamplers), so the backend
is part of the cache key. Either way the codec's delay is removed, so the output lines up sample
for sample with the input and has the same length.

Delay: MP3 (LAME) adds about 1,100 samples of encoder and decoder delay, AAC a 1,024-sample
priming frame, G.722 a 22-sample QMF delay; Opus in Ogg signals its pre-skip and comes back
aligned. Rather than keeping a table that depends on encoder versions and rates, the delay is
measured: the lag (within +-0.25 s) that maximises the cross-correlation between input and
decoded output. The output is shifted by it, then cut or zero-padded at the end to the input
length.

Outputs are rounded to float16 precision (a relative step of 2**-11, about -66 dB, far below
any of these codecs' own noise) so that a result read back from the cache is bit-identical to a
freshly computed one. With ``cache_dir`` the decoded, aligned result is stored as
``<cache_dir>/<codec>-<bitrate>/<hash of backend and samples>.npy``, so training pays the
round trip once per clip and setting; delete the folder after changing ffmpeg or PyAV.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.fft import irfft, next_fast_len, rfft

from dfa_lib.core.atomic import write_atomically
from dfa_lib.data.audio import pad_or_crop

__all__ = [
    "CODECS",
    "CodecError",
    "CodecSpec",
    "CodecUnavailableError",
    "FFmpegNotFoundError",
    "BACKENDS",
    "available_encoders",
    "codec_available",
    "codec_round_trip",
    "content_hash",
    "decode",
    "encode",
    "estimate_delay",
    "in_process_available",
    "round_trip_in_process",
    "find_ffmpeg",
    "load_cached_wave",
    "store_cached_wave",
]

# Bump when the stored result of a round trip would change (alignment, rounding, arguments).
CACHE_VERSION = 1
MAX_DELAY_S = 0.25  # seconds of codec delay searched for when realigning


class CodecError(RuntimeError):
    """An ffmpeg encode or decode failed; the message carries ffmpeg's own complaint."""


class FFmpegNotFoundError(CodecError, FileNotFoundError):
    """No ``ffmpeg`` executable on PATH."""


class CodecUnavailableError(CodecError):
    """The installed ffmpeg has no encoder for the requested codec."""


@dataclass(frozen=True)
class CodecSpec:
    """How to drive one codec through ffmpeg.

    ``encoder`` is ffmpeg's encoder name, ``container`` the muxer written to the pipe and
    ``demuxer`` the format read back (the ffmpeg program's backend); ``decoder`` is the FFmpeg
    decoder the in-process backend uses. ``sample_rates`` are the rates the encoder accepts (audio
    at another rate is resampled by ffmpeg before encoding). ``fixed_bitrate`` (bit/s) is set
    for codecs with a single rate, which then accept only ``bitrate=None`` or that value.
    """

    name: str
    encoder: str
    container: str
    demuxer: str
    sample_rates: tuple[int, ...]
    decoder: str = ""
    default_bitrate: int | None = None
    fixed_bitrate: int | None = None
    description: str = ""


CODECS: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec(
            "mp3",
            "libmp3lame",
            "mp3",
            "mp3",
            (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
            decoder="mp3",
            default_bitrate=64000,
            description="MPEG-1/2 Layer III (LAME)",
        ),
        CodecSpec(
            "opus",
            "libopus",
            "ogg",
            "ogg",
            (8000, 12000, 16000, 24000, 48000),
            decoder="opus",
            default_bitrate=24000,
            description="Opus in Ogg (libopus)",
        ),
        CodecSpec(
            "aac",
            "aac",
            "adts",
            "aac",
            (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
            decoder="aac",
            default_bitrate=64000,
            description="AAC-LC in ADTS (ffmpeg's native encoder)",
        ),
        CodecSpec(
            "gsm",
            "libgsm",
            "gsm",
            "gsm",
            (8000,),
            decoder="gsm",
            fixed_bitrate=13200,
            description="GSM 06.10 full rate, 8 kHz (libgsm)",
        ),
        CodecSpec(
            "amr-nb",
            "libopencore_amrnb",
            "amr",
            "amr",
            (8000,),
            decoder="amrnb",
            default_bitrate=12200,
            description="AMR narrowband, 8 kHz (opencore-amr)",
        ),
        CodecSpec(
            "g722",
            "g722",
            "g722",
            "g722",
            (16000,),
            decoder="g722",
            fixed_bitrate=64000,
            description="G.722 sub-band ADPCM, 16 kHz",
        ),
    )
}


def find_ffmpeg() -> str:
    """Return the path of the ``ffmpeg`` executable, or raise :class:`FFmpegNotFoundError`."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FFmpegNotFoundError(
            "ffmpeg is not installed or not on PATH; codec round trips need it: "
            "run `make setup` (or `apt-get install ffmpeg`, `conda install ffmpeg`)"
        )
    return exe


@lru_cache(maxsize=8)
def _encoders_of(exe: str) -> frozenset[str]:
    proc = subprocess.run(
        [exe, "-hide_banner", "-encoders"], capture_output=True, check=False, text=True
    )
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        # Rows look like " A....D libmp3lame  description"; the flags column has 6 characters.
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "AVS":
            names.add(parts[1])
    return frozenset(names)


def available_encoders() -> frozenset[str]:
    """Return the encoder names of the installed ffmpeg (asked once per executable, then cached)."""
    return _encoders_of(find_ffmpeg())


def _spec(codec: str) -> CodecSpec:
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(CODECS)}") from None


BACKENDS = ("auto", "av", "ffmpeg")


@lru_cache(maxsize=1)
def _av_encoders() -> frozenset[str]:
    """The encoders of :data:`CODECS` that PyAV's own FFmpeg has; empty without PyAV."""
    try:
        import av
    except ImportError:
        return frozenset()
    found = set()
    for spec in CODECS.values():
        try:
            av.Codec(spec.encoder, "w")  # a name FFmpeg knows only as a decoder fails too
        except ValueError:
            continue
        found.add(spec.encoder)
    return frozenset(found)


def _backend(spec: CodecSpec, backend: str) -> str:
    """Resolve ``backend`` for one codec: ``auto`` is ``av`` when PyAV has the encoder."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "av" if spec.encoder in _av_encoders() else "ffmpeg"
    if backend == "av" and spec.encoder not in _av_encoders():
        raise CodecUnavailableError(
            f"PyAV is not installed or its FFmpeg has no {spec.encoder!r} encoder, which "
            f"{spec.name!r} needs; use backend='ffmpeg' or 'auto'"
        )
    return backend


def codec_available(codec: str) -> bool:
    """Return True when PyAV or the installed ffmpeg can encode ``codec`` (a key of :data:`CODECS`)."""
    spec = _spec(codec)
    if spec.encoder in _av_encoders():
        return True
    try:
        return spec.encoder in available_encoders()
    except FFmpegNotFoundError:
        return False


def _check_available(spec: CodecSpec) -> None:
    if spec.encoder not in available_encoders():
        usable = [name for name, s in CODECS.items() if s.encoder in available_encoders()]
        raise CodecUnavailableError(
            f"ffmpeg at {find_ffmpeg()} has no {spec.encoder!r} encoder, which {spec.name!r} "
            f"({spec.description}) needs; install an ffmpeg built with it "
            f"(--enable-{spec.encoder.replace('_', '-')}) or use one of {usable}"
        )


def _bitrate_bits(spec: CodecSpec, bitrate: str | int | None) -> int | None:
    """Normalise ``"32k"``, ``"32000"`` or ``32000`` to bit/s; None means the codec default."""
    if bitrate is None:
        return spec.fixed_bitrate or spec.default_bitrate
    if isinstance(bitrate, bool):
        raise TypeError(f"bitrate must be a string like '32k' or an int in bit/s, got {bitrate!r}")
    if isinstance(bitrate, int | np.integer):
        bits = int(bitrate)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", str(bitrate))
        if match is None:
            raise ValueError(f"bitrate must look like '32k' or '32000', got {bitrate!r}")
        bits = int(round(float(match.group(1)) * (1000 if match.group(2) else 1)))
    if bits < 1000:
        raise ValueError(
            f"bitrate {bitrate!r} is below 1 kbit/s; give bit/s (32000) or kbit/s with 'k' ('32k')"
        )
    if spec.fixed_bitrate is not None and bits != spec.fixed_bitrate:
        raise ValueError(
            f"{spec.name} has a fixed bit rate of {spec.fixed_bitrate} bit/s; "
            f"pass bitrate=None, got {bitrate!r}"
        )
    return bits


def _codec_rate(spec: CodecSpec, sr: int) -> int:
    """Pick the encoder's rate: the input's when supported, else the next one up (or the top)."""
    if sr in spec.sample_rates:
        return sr
    higher = [r for r in spec.sample_rates if r > sr]
    return min(higher) if higher else max(spec.sample_rates)


def _run_ffmpeg(args: list[str], data: bytes) -> bytes:
    """Run ffmpeg with ``data`` on stdin and return stdout; raise :class:`CodecError` on failure."""
    cmd = [find_ffmpeg(), "-v", "error", "-nostdin", *args]
    proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else "no output"
        raise CodecError(f"ffmpeg failed ({' '.join(args[-6:])}): {reason}")
    return proc.stdout


def _as_mono_float32(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D array), got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError("cannot encode an empty waveform")
    return np.ascontiguousarray(wave)


def encode(wave: np.ndarray, sr: int, codec: str, bitrate: str | int | None = None) -> bytes:
    """Encode a mono float32 waveform to the codec's bitstream (in its container) via ffmpeg."""
    spec = _spec(codec)
    bits = _bitrate_bits(spec, bitrate)
    _check_available(spec)
    wave = _as_mono_float32(wave)
    args = ["-f", "f32le", "-ar", str(int(sr)), "-ac", "1", "-i", "pipe:0"]
    args += ["-c:a", spec.encoder, "-ar", str(_codec_rate(spec, int(sr)))]
    if bits is not None and spec.fixed_bitrate is None:
        args += ["-b:a", str(bits)]
    args += ["-f", spec.container, "pipe:1"]
    return _run_ffmpeg(args, wave.tobytes())


def decode(data: bytes, codec: str, sr: int) -> np.ndarray:
    """Decode a bitstream made by :func:`encode` to mono float32 at ``sr`` (no realignment)."""
    spec = _spec(codec)
    args = ["-f", spec.demuxer, "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(int(sr))]
    raw = _run_ffmpeg([*args, "pipe:1"], data)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# PyAV sample formats and the scale of their integer samples (None: float samples).
_AV_FORMATS = {"flt": None, "fltp": None, "s16": 32767, "s16p": 32767, "s32": 2**31 - 1}
_AV_FORMATS["s32p"] = _AV_FORMATS["s32"]


def _resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    if orig_sr == target_sr:
        return wave
    g = int(np.gcd(int(orig_sr), int(target_sr)))
    return signal.resample_poly(wave, int(target_sr) // g, int(orig_sr) // g).astype(np.float32)


def in_process_available(codec: str) -> bool:
    """Return True when PyAV is installed and its FFmpeg can encode ``codec``."""
    return _spec(codec).encoder in _av_encoders()


def round_trip_in_process(
    wave: np.ndarray, sr: int, codec: str, bitrate: str | int | None = None
) -> np.ndarray:
    """Encode and decode with PyAV's codec contexts; float32 at ``sr``, delay kept.

    Integer-sample encoders get ``round(clip(x, -1, 1) * 32767)`` (16-bit), and their output is
    divided by 32768. Use :func:`codec_round_trip` for the realigned, cached result.
    """
    spec = _spec(codec)
    return _round_trip_av(_as_mono_float32(wave), sr, spec, _bitrate_bits(spec, bitrate))


def _round_trip_av(wave: np.ndarray, sr: int, spec: CodecSpec, bits: int | None) -> np.ndarray:
    import av

    try:
        encoder = av.CodecContext.create(spec.encoder, "w")
        offered = [f.name for f in encoder.codec.audio_formats or ()]
        fmt = next((f for f in _AV_FORMATS if f in offered), None)
        if fmt is None:
            raise CodecError(f"{spec.encoder} takes none of the sample formats {list(_AV_FORMATS)}")
        rate = _codec_rate(spec, int(sr))
        encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", fmt
        if bits is not None and spec.fixed_bitrate is None:
            encoder.bit_rate = bits
        encoder.open()
        x = _resample(wave, int(sr), rate)
        scale = _AV_FORMATS[fmt]
        if scale is not None:
            x = (
                (np.clip(x, -1.0, 1.0) * scale)
                .round()
                .astype(np.int16 if scale < 2**16 else np.int32)
            )
        block = encoder.frame_size or 4096
        packets = []
        for start in range(0, x.size, block):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[None, start : start + block]), format=fmt, layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            packets += encoder.encode(frame)
        packets += encoder.encode(None)
        decoder = av.CodecContext.create(spec.decoder, "r")
        decoder.sample_rate, decoder.layout = rate, "mono"
        if encoder.extradata:
            decoder.extradata = encoder.extradata
        frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    except av.FFmpegError as err:
        raise CodecError(f"{spec.name} round trip failed in PyAV: {err}") from err
    if not frames:
        raise CodecError(f"{spec.name} round trip decoded no audio")
    out_rate = frames[0].sample_rate
    chunks = []
    for f in frames:
        samples = f.to_ndarray()[0]  # first (only) channel, planar or packed mono
        scale = _AV_FORMATS.get(f.format.name)
        chunks.append(samples.astype(np.float32) / (scale + 1) if scale else samples)
    return _resample(np.concatenate(chunks).astype(np.float32), out_rate, int(sr))


def estimate_delay(reference: np.ndarray, delayed: np.ndarray, max_lag: int) -> int:
    """Return the lag in samples (within +-``max_lag``) by which ``delayed`` trails ``reference``.

    The lag maximises the cross-correlation. Silence on either side gives 0.
    """
    n_fft = next_fast_len(reference.size + delayed.size)
    spectrum = rfft(delayed.astype(np.float64), n_fft) * np.conj(
        rfft(reference.astype(np.float64), n_fft)
    )
    corr = irfft(spectrum, n_fft)
    max_lag = int(min(max_lag, n_fft // 2 - 1))
    # corr[k] pairs delayed[t + k] with reference[t]; negative lags wrap to the end.
    candidates = np.concatenate([corr[: max_lag + 1], corr[n_fft - max_lag :]])
    lags = np.concatenate([np.arange(max_lag + 1), np.arange(-max_lag, 0)])
    if not np.any(candidates > 0):
        return 0
    return int(lags[int(np.argmax(candidates))])


def _align(decoded: np.ndarray, reference: np.ndarray, sr: int) -> np.ndarray:
    lag = estimate_delay(reference, decoded, max_lag=int(MAX_DELAY_S * sr))
    if lag > 0:
        decoded = decoded[lag:]
    elif lag < 0:
        decoded = np.concatenate([np.zeros(-lag, dtype=np.float32), decoded])
    return pad_or_crop(decoded, reference.size, mode="start")


def content_hash(wave: np.ndarray, sr: int) -> str:
    """Return a SHA-256 hex digest of the float32 samples and the sample rate."""
    digest = hashlib.sha256(f"{int(sr)}:".encode())
    digest.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _round_to_storage(wave: np.ndarray) -> np.ndarray:
    return np.asarray(wave, dtype=np.float32).astype(np.float16).astype(np.float32)


def load_cached_wave(path: Path) -> np.ndarray | None:
    """Read a waveform stored by :func:`store_cached_wave`; None if absent or unreadable."""
    try:
        return np.load(path, allow_pickle=False).astype(np.float32)
    except (OSError, ValueError, EOFError):
        return None


def store_cached_wave(path: Path, wave: np.ndarray) -> None:
    """Write a waveform as float16 ``.npy`` atomically (temporary name, then rename).

    Atomic so that DataLoader workers racing on the same entry never read half a file.
    """
    data = np.asarray(wave).astype(np.float16)
    write_atomically(path, lambda handle: np.save(handle, data, allow_pickle=False))


def codec_round_trip(
    wave: np.ndarray,
    sr: int,
    codec: str,
    bitrate: str | int | None = None,
    cache_dir: Path | str | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Encode and decode ``wave`` with a lossy codec; same rate, length and alignment as the input.

    ``codec`` is a key of :data:`CODECS` (``mp3``, ``opus``, ``aac``, ``gsm``, ``amr-nb``,
    ``g722``); ``bitrate`` is ``"32k"``, ``32000`` or None for the codec's default (GSM and
    G.722 have a fixed rate). ``backend`` is ``auto`` (PyAV when it has the encoder, else the
    ffmpeg program), ``av`` or ``ffmpeg``. Raises :class:`CodecUnavailableError` when the
    backend lacks the encoder, :class:`FFmpegNotFoundError` when the ffmpeg program is needed
    and missing. With ``cache_dir`` the result is stored under a hash of the backend and the
    samples and read back on the next identical call.
    """
    spec = _spec(codec)
    bits = _bitrate_bits(spec, bitrate)
    wave = _as_mono_float32(wave)
    backend = _backend(spec, backend)
    path = None
    if cache_dir is not None:
        tag = f"v{CACHE_VERSION}:{spec.name}:{bits}:{content_hash(wave, sr)}"
        if backend == "av":
            tag += ":av"  # the ffmpeg program's entries keep their keys
        key = hashlib.sha256(tag.encode()).hexdigest()
        path = Path(cache_dir) / f"{spec.name}-{bits or 'default'}" / f"{key}.npy"
        cached = load_cached_wave(path)
        if cached is not None and cached.size == wave.size:
            return cached
    if backend == "av":
        decoded = _round_trip_av(wave, sr, spec, bits)
    else:
        decoded = decode(encode(wave, sr, codec, bits), codec, sr)
    out = _round_to_storage(_align(decoded, wave, sr))
    if path is not None:
        store_cached_wave(path, out)
    return out
