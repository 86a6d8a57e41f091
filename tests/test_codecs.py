"""Codec round trips (PyAV in-process and the ffmpeg program): length, alignment, fidelity,
caching and clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dfa_lib.data import codecs as C

SR = 16000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def program_has(codec: str) -> bool:
    return C.CODECS[codec].encoder in C.available_encoders()


needs_av = pytest.mark.skipif(not C._av_encoders(), reason="PyAV not installed")


def voiced(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A speech-like clip: gliding harmonics under a syllable-rate envelope, plus a little hiss."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(130.0 + 70.0 * t / seconds) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.5 + 0.5 * np.sin(8 * np.pi * t)) ** 2
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


CASES = [
    ("mp3", "32k"),
    ("mp3", 128000),
    ("opus", "12k"),
    ("aac", "48k"),
    ("gsm", None),
    ("g722", None),
]


@needs_ffmpeg
@pytest.mark.parametrize(("codec", "bitrate"), CASES)
@pytest.mark.parametrize("backend", ["auto", "ffmpeg"])
def test_round_trip_keeps_length_alignment_and_content(codec: str, bitrate, backend: str) -> None:
    x = voiced()
    y = C.codec_round_trip(x, SR, codec, bitrate, backend=backend)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.corrcoef(x, y)[0, 1] > 0.95
    # The codec delay has been removed: output and input line up to the sample.
    assert C.estimate_delay(x, y, max_lag=2000) == 0
    assert not np.array_equal(x, y)


@needs_ffmpeg
@pytest.mark.parametrize("backend", ["auto", "ffmpeg"])
def test_round_trip_at_another_rate_returns_that_rate(backend: str) -> None:
    x = C.codec_round_trip(voiced()[::2].copy(), 8000, "mp3", "24k", backend=backend)
    assert x.shape == (12000,)
    # G.722 only runs at 16 kHz: 22.05 kHz goes down and back up.
    y = C.codec_round_trip(voiced(), 22050, "g722", None, backend=backend)
    assert y.shape == voiced().shape


@needs_av
@pytest.mark.parametrize(
    ("codec", "bitrate"),
    [("mp3", "32k"), ("opus", "16k"), ("aac", "48k"), ("g722", None), ("amr-nb", "12.2k")],
)
def test_in_process_round_trip_matches_the_ffmpeg_program_in_fidelity(codec, bitrate) -> None:
    x = voiced()
    fast = C.codec_round_trip(x, SR, codec, bitrate, backend="av")
    assert fast.shape == x.shape and fast.dtype == np.float32
    assert C.estimate_delay(x, fast, max_lag=2000) == 0
    # AMR (CELP) keeps the spectral envelope, not the waveform: a looser bar.
    assert np.corrcoef(x, fast)[0, 1] > (0.5 if codec == "amr-nb" else 0.9)
    if not (shutil.which("ffmpeg") and program_has(codec)):
        return
    slow = C.codec_round_trip(x, SR, codec, bitrate, backend="ffmpeg")

    def snr(y: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2)))

    # Same codec, other library build and resampler: the same damage, within 1.5 dB.
    assert abs(snr(fast) - snr(slow)) < 1.5, (snr(fast), snr(slow))


@needs_av
def test_auto_uses_pyav_where_it_has_the_encoder_and_the_program_elsewhere(monkeypatch) -> None:
    def program(args, data):
        raise C.CodecError("the ffmpeg program was asked")

    monkeypatch.setattr(C, "_run_ffmpeg", program)
    C.codec_round_trip(voiced(0.5), SR, "mp3", "32k")  # in-process: the program is not asked
    monkeypatch.setattr(C, "_av_encoders", lambda: frozenset({"libmp3lame"}))
    with pytest.raises(C.CodecError, match="program was asked"):
        C.codec_round_trip(voiced(0.5), SR, "opus", "16k", backend="auto")
    with pytest.raises(C.CodecUnavailableError, match="'libopus'.*backend='ffmpeg'"):
        C.codec_round_trip(voiced(0.5), SR, "opus", "16k", backend="av")
    with pytest.raises(ValueError, match="backend must be one of"):
        C.codec_round_trip(voiced(0.5), SR, "opus", "16k", backend="sox")


@needs_av
def test_in_process_cache_is_keyed_apart_from_the_program(tmp_path) -> None:
    x = voiced(1.0)
    first = C.codec_round_trip(x, SR, "aac", "48k", cache_dir=tmp_path, backend="av")
    np.testing.assert_array_equal(first, C.codec_round_trip(x, SR, "aac", "48k", backend="av"))
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    if shutil.which("ffmpeg"):
        C.codec_round_trip(x, SR, "aac", "48k", cache_dir=tmp_path, backend="ffmpeg")
        assert len(list(tmp_path.rglob("*.npy"))) == 2


@needs_ffmpeg
def test_lower_bitrate_is_less_faithful() -> None:
    noise = 0.2 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    errors = [
        np.mean((C.codec_round_trip(noise, SR, "mp3", b) - noise) ** 2) for b in ("32k", "128k")
    ]
    assert errors[0] > 2 * errors[1]


def test_estimate_delay_finds_a_known_shift() -> None:
    x = voiced(0.5)
    delayed = np.concatenate([np.zeros(321, dtype=np.float32), x])[: x.size]
    assert C.estimate_delay(x, delayed, max_lag=1000) == 321
    assert C.estimate_delay(delayed, x, max_lag=1000) == -321
    assert C.estimate_delay(np.zeros(100), np.zeros(100), max_lag=10) == 0


@needs_ffmpeg
def test_missing_encoder_is_a_clear_error(monkeypatch) -> None:
    if "libopencore_amrnb" not in C.available_encoders():
        with pytest.raises(C.CodecUnavailableError, match="libopencore_amrnb"):
            C.codec_round_trip(voiced(0.3), SR, "amr-nb", "12.2k", backend="ffmpeg")
    # Whatever this ffmpeg has, an encoder it lacks gives the same error.
    monkeypatch.setattr(C, "available_encoders", lambda: frozenset({"libmp3lame"}))
    with pytest.raises(C.CodecUnavailableError, match=r"'libopus'.*\['mp3'\]"):
        C.codec_round_trip(voiced(0.3), SR, "opus", "12k", backend="ffmpeg")
    monkeypatch.setattr(C, "_av_encoders", lambda: frozenset())
    assert C.codec_available("mp3") and not C.codec_available("opus")


def test_ffmpeg_missing_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(C.FFmpegNotFoundError, match="ffmpeg is not installed"):
        C.codec_round_trip(voiced(0.3), SR, "mp3", "32k", backend="ffmpeg")
    if C._av_encoders():  # the in-process backend does not need the program
        assert C.codec_round_trip(voiced(0.3), SR, "mp3", "32k").shape == (4800,)


def test_bad_arguments() -> None:
    x = voiced(0.3)
    with pytest.raises(ValueError, match="unknown codec 'vorbis'"):
        C.codec_round_trip(x, SR, "vorbis")
    with pytest.raises(ValueError, match="fixed bit rate"):
        C.codec_round_trip(x, SR, "gsm", "32k")
    with pytest.raises(ValueError, match="below 1 kbit/s"):
        C.codec_round_trip(x, SR, "mp3", 32)
    with pytest.raises(ValueError, match="look like"):
        C.codec_round_trip(x, SR, "mp3", "32 kbps")
    with pytest.raises(ValueError, match="mono"):
        C.codec_round_trip(np.zeros((2, 100), dtype=np.float32), SR, "mp3")


@needs_ffmpeg
def test_cache_hit_does_not_run_ffmpeg(monkeypatch, tmp_path) -> None:
    calls = []
    real_run = C._run_ffmpeg

    def counting(args, data):
        calls.append(args)
        return real_run(args, data)

    monkeypatch.setattr(C, "_run_ffmpeg", counting)
    x = voiced(1.0)
    monkeypatch.setattr(C, "_av_encoders", lambda: frozenset())  # the program's backend
    first = C.codec_round_trip(x, SR, "opus", "24k", cache_dir=tmp_path)
    assert len(calls) == 2  # one encode, one decode
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and files[0].parent.name == "opus-24000"
    second = C.codec_round_trip(x, SR, "opus", "24000", cache_dir=tmp_path)
    assert len(calls) == 2
    np.testing.assert_array_equal(first, second)
    # Without the cache the result is bit-identical, so caching never changes an experiment.
    np.testing.assert_array_equal(first, C.codec_round_trip(x, SR, "opus", "24k"))
    # Other audio or another bit rate is a miss.
    C.codec_round_trip(x * 0.5, SR, "opus", "24k", cache_dir=tmp_path)
    C.codec_round_trip(x, SR, "opus", "12k", cache_dir=tmp_path)
    assert len(calls) == 8
    # A damaged entry is recomputed, not returned.
    files[0].write_bytes(b"not an array")
    np.testing.assert_array_equal(C.codec_round_trip(x, SR, "opus", "24k", tmp_path), first)
    assert len(calls) == 10
