"""load_audio across formats, rates, channel layouts and every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
import warnings
import wave as wavmod
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_tone

from dfa_lib.data.audio import (
    MAX_FLOAT_PEAK,
    AudioDecodeError,
    AudioError,
    AudioFileNotFoundError,
    DurationLimitError,
    EmptyAudioError,
    InvalidAudioError,
    OutOfRangeAudioError,
    TruncatedAudioWarning,
    frame_windows,
    load_audio,
    loudest_frame_dbfs,
    pad_or_crop,
    peak_normalize,
    promised_frames,
    resample,
    rms_dbfs,
    rms_normalize,
    save_audio,
    trim_silence,
)

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _ffmpeg_encode(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "tol"),
    [
        ("WAV", "PCM_16", ".wav", 1e-3),
        ("WAV", "PCM_24", ".wav", 1e-5),
        ("WAV", "PCM_32", ".wav", 1e-6),
        ("WAV", "FLOAT", ".wav", 1e-6),
        ("FLAC", "PCM_16", ".flac", 1e-3),
        ("OGG", "VORBIS", ".ogg", None),
        ("MP3", "MPEG_LAYER_III", ".mp3", None),
    ],
)
def test_soundfile_formats_decode_to_float_mono(tmp_path, fmt, subtype, suffix, tol):
    x = make_tone(1.0)
    path = tmp_path / f"tone{suffix}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == 16000
    assert y.dtype == np.float32 and y.ndim == 1
    if tol is not None:
        assert y.size == x.size
        np.testing.assert_allclose(y, x, atol=tol)
    else:  # lossy codecs: length within a frame, same level
        assert abs(y.size - x.size) < 2400
        assert abs(rms_dbfs(y) - rms_dbfs(x)) < 1.0


@needs_ffmpeg
@pytest.mark.parametrize(
    ("suffix", "args"),
    [
        (".m4a", ["-c:a", "aac", "-b:a", "64k"]),
        (".opus", ["-c:a", "libopus", "-b:a", "32k"]),
        (".g722", ["-ar", "16000", "-c:a", "g722", "-f", "g722"]),
    ],
)
def test_ffmpeg_fallback_formats(tmp_path, suffix, args):
    src = tmp_path / "src.wav"
    sf.write(src, make_tone(1.0), 16000)
    enc = _ffmpeg_encode(src, tmp_path / f"enc{suffix}", *args)
    y, sr = load_audio(enc)
    assert sr == 16000 and y.dtype == np.float32
    assert abs(y.size - 16000) < 2000
    assert rms_dbfs(y) > -12  # the tone survives, not silence


def test_bytes_input_matches_path(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, make_tone(0.5), 16000)
    a, _ = load_audio(path)
    b, _ = load_audio(path.read_bytes())
    np.testing.assert_array_equal(a, b)


def test_speech_from_espeak_resampled(speech_wav):
    y, sr = load_audio(speech_wav)  # espeak-ng writes 22.05 kHz
    assert sr == 16000
    assert 0.5 < y.size / sr < 10


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000, 11025])
def test_odd_rates_are_resampled_preserving_duration_and_pitch(tmp_path, orig_sr):
    x = make_tone(1.0, sr=orig_sr, freq=1000.0)
    path = tmp_path / "x.wav"
    sf.write(path, x, orig_sr)
    y, sr = load_audio(path, target_sr=16000)
    assert sr == 16000 and y.size == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / y.size - 1000.0) < 2.0


def test_keep_native_rate(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, make_tone(0.5, sr=44100), 44100)
    _, sr = load_audio(path, target_sr=None)
    assert sr == 44100


def test_multichannel_is_downmixed(tmp_path):
    left, right = make_tone(1.0, amplitude=0.4), np.zeros(16000, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000)
    y, _ = load_audio(path)
    np.testing.assert_allclose(y, left / 2, atol=1e-4)
    six = np.tile(left[:, None], (1, 6))
    sf.write(tmp_path / "six.wav", six, 16000)
    z, _ = load_audio(tmp_path / "six.wav")
    np.testing.assert_allclose(z, left, atol=1e-4)


def test_silence_is_valid_audio(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    y, _ = load_audio(path)
    assert y.size == 16000 and not y.any()


def test_missing_file(tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioDecodeError, match="is a directory"):
        load_audio(tmp_path)


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(EmptyAudioError, match=r"empty.wav: file is empty \(0 bytes\)"):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        load_audio(b"")


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="zero samples"):
        load_audio(path)


@needs_ffmpeg
def test_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is plain text, not a RIFF file\n" * 20)
    with pytest.raises(AudioDecodeError, match="notes.wav: not a readable audio file"):
        load_audio(path)
    png = tmp_path / "image.mp3"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(AudioDecodeError, match="image.mp3"):
        load_audio(png)


@needs_ffmpeg
def test_truncated_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, make_tone(1.0), 16000)
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:30])  # cut inside the fmt chunk
    with pytest.raises(AudioError, match="truncated.wav"):
        load_audio(bad)


def test_nan_and_inf_samples(tmp_path):
    x = make_tone(0.2)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        load_audio(path)
    x[100] = np.inf
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(InvalidAudioError):
        load_audio(path)


def test_float_samples_far_beyond_full_scale_are_refused(tmp_path):
    x = make_tone(0.5, amplitude=0.5)
    path = tmp_path / "scaled.wav"
    sf.write(path, x * 1e18, 16000, subtype="FLOAT")
    with pytest.raises(OutOfRangeAudioError, match=r"scaled.wav: peak sample 5e\+17 .*\[-1, 1\]"):
        load_audio(path)
    with pytest.raises(InvalidAudioError, match="<.* bytes in memory>: peak sample"):
        load_audio(path.read_bytes())  # what the app decodes
    # One loud channel is enough, even where the channel mean would cancel it.
    stereo = np.stack([x * 1e6, -x * 1e6], axis=1)
    sf.write(path, stereo, 16000, subtype="FLOAT")
    with pytest.raises(OutOfRangeAudioError):
        load_audio(path)
    # Somewhat over full scale is still audio, decoded as it is.
    hot = x * (0.9 * MAX_FLOAT_PEAK / 0.5)
    sf.write(path, hot, 16000, subtype="FLOAT")
    wave, _ = load_audio(path)
    np.testing.assert_array_equal(wave, hot)


def test_a_file_shorter_than_its_header_decodes_with_a_warning(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, make_tone(2.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    assert promised_frames(data) == promised_frames(path) == 32000
    cut = data[: data.index(b"data") + 8 + 2 * 8000]  # half a second of the two
    path.write_bytes(cut)
    with pytest.warns(TruncatedAudioWarning, match=r"cut.wav: truncated: .* promises 2.00 s"):
        wave, _ = load_audio(path)
    assert wave.size == 8000
    flac = tmp_path / "whole.flac"
    sf.write(flac, make_tone(1.0), 16000, format="FLAC")
    assert promised_frames(flac) == 16000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole file warns about nothing
        load_audio(flac)
        load_audio(flac.read_bytes())


def test_max_seconds_refuses_long_audio_from_the_header(tmp_path):
    path = tmp_path / "three.wav"
    sf.write(path, make_tone(3.0), 16000)
    with pytest.raises(DurationLimitError, match=r"three.wav: lasts 3.0 s by its header") as error:
        load_audio(path, max_seconds=2.0)
    assert error.value.seconds == 3.0 and error.value.max_seconds == 2.0
    assert load_audio(path, max_seconds=3.0)[0].size == 48000
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        load_audio(path, max_seconds=0)


@needs_ffmpeg
def test_max_seconds_stops_ffmpeg_for_formats_without_a_length(tmp_path):
    src = tmp_path / "src.wav"
    sf.write(src, make_tone(3.0), 16000)
    # Raw G.722 has no header: nothing says how long it is until it is decoded.
    path = _ffmpeg_encode(src, tmp_path / "phone.g722", "-c:a", "g722", "-f", "g722")
    with pytest.raises(DurationLimitError, match="phone.g722: lasts longer than the limit of 1 s"):
        load_audio(path, max_seconds=1.0)
    wave, sr = load_audio(path, max_seconds=10.0)
    assert sr == 16000 and wave.size == pytest.approx(48000, abs=200)


def test_int8_and_unsigned_wav(tmp_path):
    path = tmp_path / "u8.wav"
    data = ((make_tone(0.25) * 127) + 128).astype(np.uint8)
    with wavmod.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(data.tobytes())
    y, sr = load_audio(path)
    assert sr == 16000 and y.size == 8000
    assert 0.4 < np.abs(y).max() < 0.6


def test_errors_are_value_errors_naming_the_file(tmp_path):
    path = tmp_path / "named.wav"
    path.touch()
    with pytest.raises(ValueError, match="named.wav"):
        load_audio(path)


def test_resample_identity_and_length():
    x = make_tone(1.0)
    same = resample(x.astype(np.float64), 16000, 16000)
    assert same.dtype == np.float32 and np.array_equal(same, x)
    assert resample(x, 16000, 8000).size == 8000
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_normalisation():
    x = make_tone(1.0, amplitude=0.1)
    assert np.isclose(np.abs(peak_normalize(x, 0.5)).max(), 0.5)
    y = rms_normalize(x, -20.0)
    assert abs(rms_dbfs(y) - (-20.0)) < 0.01
    assert not peak_normalize(np.zeros(10, np.float32)).any()
    assert rms_dbfs(np.zeros(10, np.float32)) == float("-inf")


def test_trim_silence_keeps_the_voiced_part():
    sr = 16000
    x = np.concatenate([np.zeros(sr), make_tone(0.5), np.zeros(sr // 2)])
    y = trim_silence(x, sr, top_db=40)
    assert abs(y.size - sr // 2) <= 320
    assert trim_silence(np.zeros(100, np.float32), sr).size == 100


def test_loudest_frame_level():
    sr = 16000
    assert loudest_frame_dbfs(np.zeros(sr, np.float32), sr) == float("-inf")
    assert loudest_frame_dbfs(np.zeros(0, np.float32), sr) == float("-inf")
    sine = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    assert loudest_frame_dbfs(sine, sr) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    # One 20 ms burst in two seconds of silence sets the level; where it sits does not matter.
    for start in (0, 7919, 2 * sr - 320):
        x = np.zeros(2 * sr, np.float32)
        x[start : start + 320] = 0.1
        assert loudest_frame_dbfs(x, sr) > -27.0
    # Shorter than a frame: the whole signal is the frame; the tail counts as its own frame.
    assert loudest_frame_dbfs(np.full(100, 0.01, np.float32), sr) == pytest.approx(-40.0)
    tail = np.concatenate([np.zeros(320 * 3), np.full(50, 0.1)])
    assert loudest_frame_dbfs(tail, sr) == pytest.approx(-20.0)


def test_pad_or_crop_modes():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(pad_or_crop(x, 4, "center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(pad_or_crop(x, 4, "start"), [0, 1, 2, 3])
    a = pad_or_crop(x, 4, "random", rng=np.random.default_rng(1))
    b = pad_or_crop(x, 4, "random", rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pad_or_crop(x[:3], 5), [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(pad_or_crop(x[:3], 7, pad_mode="wrap"), [0, 1, 2, 0, 1, 2, 0])
    with pytest.raises(ValueError, match="rng"):
        pad_or_crop(x, 4, "random")


def test_frame_windows_covers_the_whole_signal():
    x = np.arange(25, dtype=np.float32)
    w = frame_windows(x, window=10, hop=10)
    assert w.shape == (3, 10)
    np.testing.assert_array_equal(w.reshape(-1)[:25], x)
    assert frame_windows(x[:4], 10, 5).shape == (1, 10)
    assert frame_windows(x, 10, 5).shape == (4, 10)


def test_save_audio_is_atomic_and_round_trips(tmp_path):
    x = make_tone(0.3)
    path = save_audio(tmp_path / "sub" / "out.wav", x, 16000)
    y, _ = load_audio(path)
    np.testing.assert_allclose(y, x, atol=1e-3)
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]


@pytest.mark.parametrize("rate", [1, 999, 1_999_993])
def test_a_header_sample_rate_no_audio_has_is_refused(tmp_path, rate):
    from dfa_lib.data.audio import UnsupportedSampleRateError

    path = tmp_path / "odd.wav"
    sf.write(path, np.zeros(600, dtype=np.float32), rate, subtype="PCM_16")
    with pytest.raises(UnsupportedSampleRateError, match=rf"odd\.wav: sample rate {rate} Hz"):
        load_audio(path)


def test_usual_sample_rates_at_the_edges_still_decode(tmp_path):
    for rate in (1000, 8000, 384_000):
        path = tmp_path / f"ok{rate}.wav"
        sf.write(path, 0.1 * np.ones(2 * rate, dtype=np.float32), rate, subtype="PCM_16")
        wave, sr = load_audio(path)
        assert sr == 16000 and wave.size == 32000
