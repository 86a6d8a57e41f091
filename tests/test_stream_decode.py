"""Decoding with a duration cap, in a stream of blocks: the same samples, bounded work."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfa_lib.data import stream_decode
from dfa_lib.data.audio import AudioDecodeError, EmptyAudioError, load_audio
from dfa_lib.data.stream_decode import (
    AudioProbe,
    DurationLimitError,
    decode_capped,
    format_duration,
    probe_audio,
)

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg is not installed (make setup)",
)


def _noise_wav(path: Path, seconds: float, sr: int, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    wave = (0.3 * rng.standard_normal((int(seconds * sr), channels))).astype(np.float32)
    sf.write(path, wave, sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize(("sr", "channels"), [(44100, 2), (16000, 1), (8000, 1)])
def test_blocks_give_the_samples_of_a_whole_decode(tmp_path, sr, channels):
    path = _noise_wav(tmp_path / "clip.wav", 2.3, sr, channels)
    whole, _ = load_audio(path, target_sr=16000)
    # 0.05-s blocks: dozens of block edges, each must be invisible in the output.
    streamed = decode_capped(path, 16000, max_seconds=60, block_seconds=0.05)
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, whole)


def test_bytes_and_compressed_input(tmp_path):
    src = _noise_wav(tmp_path / "src.wav", 1.5, 48000)
    opus = tmp_path / "clip.opus"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "libopus", "-b:a", "24k"]
    subprocess.run([*cmd, str(opus)], check=True)
    probe = probe_audio(opus)
    assert probe.sample_rate == 48000 and probe.channels == 1
    assert probe.duration == pytest.approx(1.5, abs=0.02)
    wave = decode_capped(opus.read_bytes(), 16000, max_seconds=60, name="clip.opus")
    assert wave.size == pytest.approx(1.5 * 16000, abs=0.02 * 16000)


def test_a_file_longer_than_the_cap_is_refused_before_decoding(tmp_path, monkeypatch):
    path = _noise_wav(tmp_path / "long.wav", 3.0, 16000)

    popen = subprocess.Popen

    def probe_only(cmd, *args, **kwargs):
        if Path(cmd[0]).name == "ffmpeg":
            raise AssertionError("ffmpeg decoded a file whose length is known to be too long")
        return popen(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", probe_only)
    with pytest.raises(
        DurationLimitError, match=r"^long\.wav: lasts 3\.0 s; the limit is 2\.0 s"
    ) as err:
        decode_capped(path.read_bytes(), 16000, max_seconds=2.0, name="long.wav")
    assert err.value.seconds == pytest.approx(3.0) and err.value.max_seconds == 2.0


def test_a_file_of_unknown_length_stops_at_the_cap(tmp_path, monkeypatch):
    path = _noise_wav(tmp_path / "long.wav", 20.0, 16000)
    # ffprobe knows every length these tests can write; pretend it does not.
    monkeypatch.setattr(stream_decode, "probe_audio", lambda p, n=None: AudioProbe(None, 16000, 1))
    received = []
    push = stream_decode._StreamResampler.push

    def counting_push(self, piece):
        received.append(piece.size)
        return push(self, piece)

    monkeypatch.setattr(stream_decode._StreamResampler, "push", counting_push)
    with pytest.raises(
        DurationLimitError, match=r"lasts longer than that; the limit is 1\.0 s"
    ) as err:
        decode_capped(path, 16000, max_seconds=1.0, block_seconds=0.25)
    assert err.value.seconds is None
    # Decoding stopped at the cap: at most 1 s of the 20 s went through the resampler.
    assert sum(received) <= 16000
    # Under the cap, the same file of unknown length decodes whole.
    assert decode_capped(path, 16000, max_seconds=25.0).size == 20 * 16000


def test_unreadable_input_says_what_is_wrong(tmp_path):
    with pytest.raises(AudioDecodeError, match=r"^notes\.wav: not a readable audio file \("):
        decode_capped(b"these are not the samples you are looking for" * 10, 16000, 60, "notes.wav")
    with pytest.raises(EmptyAudioError, match=r"^empty\.ogg: no bytes given"):
        decode_capped(b"", 16000, 60, "empty.ogg")
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        decode_capped(b"x", 16000, 0)


def test_format_duration():
    assert format_duration(7200) == "2 h 00 min"
    assert format_duration(1800) == "30 min"
    assert format_duration(250) == "4 min 10 s"
    assert format_duration(12.46) == "12.5 s"
