"""``dfa stream``: window scores equal ``dfa predict``'s, and every source behaves.

The stream scores each window through the detector's own ``score_batch``; these tests check
the consequence on real files and bytes: the windows a stream completes are predict's windows
(same sample ranges, same scores to 1e-6), standard input is read as PCM of any layout, a file
can be paced at real time, and odd input gets a clear message and exit status.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_detector import make_detector_folder, noise

from dfa_lib.cli import _summary_line, main
from dfa_lib.data.audio import InvalidAudioError, TruncatedAudioWarning, load_audio, resample
from dfa_lib.data.live import (
    MicrophoneUnavailable,
    StreamResampler,
    file_source,
    microphone_source,
    pcm_source,
)
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.streaming import HopScore, StreamScorer, StreamSummary

SR = 16000
HOP_KEYS = {"event", *HopScore.__dataclass_fields__}
SUMMARY_KEYS = {"event", "source", *StreamSummary.__dataclass_fields__}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return make_detector_folder(tmp_path_factory.mktemp("model") / "lcnn", clip_seconds=1.0)


@pytest.fixture(scope="module")
def detector(model_folder):
    return load_detector(model_folder, device="cpu")


@pytest.fixture(scope="module")
def gapped_wav(tmp_path_factory) -> Path:
    """3.3 s of noise with 1.3 s of digital silence from 1.0 s: two 1-s windows are silent."""
    wave = noise(3.3, seed=7)
    wave[SR : int(2.3 * SR)] = 0.0
    path = tmp_path_factory.mktemp("audio") / "gapped.wav"
    sf.write(path, wave, SR, subtype="PCM_16")
    return path


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _stream(argv: list[str], capsys, stdin: bytes | None = None, monkeypatch=None):
    """Run ``dfa stream`` in this process; return (status, stdout records or text, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        status = main(["stream", *argv])
    except SystemExit as exit_info:
        status = exit_info.code
    out, err = capsys.readouterr()
    return status, out, err


def test_stream_windows_are_predicts_windows_with_the_same_scores(
    model_folder, detector, gapped_wav, capsys
):
    common = ["--model", str(model_folder), "--window", "1", "--hop", "0.25", "--format", "jsonl"]
    assert main(["predict", str(gapped_wav), *common]) == 0
    predicted = _jsonl(capsys.readouterr().out)[0]
    status, out, _ = _stream([str(gapped_wav), *common], capsys)
    assert status == 0
    records = _jsonl(out)
    hops, summary = records[:-1], records[-1]
    assert all(set(r) == HOP_KEYS and r["event"] == "hop" for r in hops)
    assert set(summary) == SUMMARY_KEYS and summary["event"] == "summary"
    windows = predicted["windows"]
    # 3.3 s in 1-s windows every 0.25 s: starts 0 ... 2.25 and a padded tail window at 2.5.
    assert len(hops) == len(windows) == 11
    for hop, window in zip(hops, windows, strict=True):
        assert hop["start"] == pytest.approx(window["start"], abs=1e-9)
        assert hop["end"] == pytest.approx(window["end"], abs=1e-9)
        assert hop["p_fake"] == pytest.approx(window["p_fake"], abs=1e-6)
        assert hop["audible"] == window["audible"]
    assert [h["padded"] for h in hops] == [False] * 10 + [True]
    # The silent windows (1.0-2.0 and 1.25-2.25 s) are scored, listed and left out of the
    # running verdict.
    silent = [h for h in hops if not h["audible"]]
    assert [h["start"] for h in silent] == [1.0, 1.25]
    assert not any(h["in_verdict"] for h in silent)
    assert summary["verdict_p_fake"] == pytest.approx(predicted["p_fake"], abs=1e-6)
    assert summary["verdict"] == predicted["label"]
    assert summary["windows_in_verdict"] == predicted["n_windows_in_mean"] == 9

    # The bona fide scores themselves, through the Python API, chunk sizes at random.
    reference = detector.score_path(gapped_wav, window_seconds=1.0, hop_seconds=0.25)
    wave, _ = load_audio(gapped_wav, target_sr=SR)
    scorer = StreamScorer(detector, SR, 1.0, 0.25)
    rng = np.random.default_rng(0)
    streamed, i = [], 0
    while i < wave.size:
        n = int(rng.integers(1, 6000))
        streamed += scorer.feed(wave[i : i + n])
        i += n
    streamed += scorer.finish()
    scores = np.array([h.score for h in streamed])
    np.testing.assert_allclose(scores, reference.window_scores, atol=1e-6, rtol=0)
    assert [h.start for h in streamed] == pytest.approx(list(reference.window_starts))
    assert streamed[-1].verdict_score == pytest.approx(reference.score, abs=1e-6)


def test_a_stream_shorter_than_a_window_is_padded_as_predict_pads_it(detector):
    wave = noise(0.6, seed=3)
    reference = detector.score_waveform(wave, SR)
    scorer = StreamScorer(detector, SR)
    assert scorer.feed(wave) == []  # no window is complete yet
    (only,) = scorer.finish()
    assert only.padded and only.end == pytest.approx(0.6)
    assert only.score == pytest.approx(reference.window_scores[0], abs=1e-6)
    assert scorer.finish() == []  # finishing twice adds nothing
    with pytest.raises(RuntimeError, match="finished"):
        scorer.feed(wave)


def test_speech_gate_leaves_out_windows_without_speech_once_speech_arrives(detector, speech_wav):
    speech, _ = load_audio(speech_wav, target_sr=SR)
    wave = np.concatenate([noise(2.0, seed=4, amplitude=0.05), speech[: int(1.5 * SR)]])
    scorer = StreamScorer(detector, SR, 1.0, 0.5)
    hops = scorer.feed(wave) + scorer.finish()
    noisy = [h for h in hops if h.end <= 2.0]
    spoken = [h for h in hops if h.start >= 2.0 and h.speech_seconds >= 0.1]
    assert noisy and spoken, [(h.start, h.speech_seconds) for h in hops]
    assert all(h.speech_seconds < 0.1 for h in noisy)
    # Before speech arrives, the audible noise windows decide; after, only windows with speech.
    assert all(h.in_verdict for h in noisy)
    assert hops[-1].windows_in_verdict == sum(h.audible and h.speech_seconds >= 0.1 for h in hops)
    expected = np.mean([h.score for h in hops if h.audible and h.speech_seconds >= 0.1])
    assert hops[-1].verdict_score == pytest.approx(expected, abs=1e-9)
    assert scorer.summary().speech_found is True


@pytest.mark.slow
def test_stdin_pcm_through_a_subprocess(model_folder, gapped_wav, tmp_path):
    """``dfa stream -`` reads s16le stereo at 8 kHz from a pipe, as ffmpeg writes it."""
    wave, _ = load_audio(gapped_wav, target_sr=8000)
    left = np.round(np.clip(wave, -1, 1) * 32767).astype("<i2")
    stereo = np.stack([left, left], axis=1)  # identical channels: the mean is the channel
    cmd = [sys.executable, "-m", "dfa_lib", "stream", "-", "--rate", "8000", "--channels", "2"]
    cmd += ["--model", str(model_folder), "--format", "jsonl", "--hop", "0.5"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        cmd, input=stereo.tobytes(), capture_output=True, env=env, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    records = _jsonl(proc.stdout.decode())
    assert records[-1]["event"] == "summary" and records[-1]["source"] == "standard input"
    assert records[-1]["seconds"] == pytest.approx(3.3, abs=1e-3)
    hops = records[:-1]
    assert [h["start"] for h in hops] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    # The same bytes scored directly: 8 kHz int16 -> float -> 16 kHz, window by window.
    detector = load_detector(model_folder, device="cpu")
    reference = detector.score_waveform(
        resample(left.astype(np.float32) / 32768.0, 8000, SR), SR, 1.0, 0.5
    )
    np.testing.assert_allclose(
        [h["p_fake"] for h in hops], reference.window_p_fake, atol=1e-6, rtol=0
    )


def test_stereo_interleaved_pcm_is_mixed_down(detector):
    t = np.arange(SR) / SR
    left, right = 0.5 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 1100 * t)
    frames = np.stack([left, right], axis=1).astype("<f4")
    source = pcm_source(io.BytesIO(frames.tobytes()), SR, "f32le", channels=2)
    mixed = np.concatenate(list(source.chunks))
    np.testing.assert_allclose(mixed, (left + right) / 2, atol=1e-6)


def test_odd_byte_count_drops_the_broken_frame_with_a_warning(monkeypatch, capsys, model_folder):
    pcm = (noise(1.2, seed=5) * 32767).astype("<i2").tobytes() + b"\x01"
    source = pcm_source(io.BytesIO(pcm), SR)
    with pytest.warns(TruncatedAudioWarning, match="last 1 byte"):
        samples = np.concatenate(list(source.chunks))
    assert samples.size == int(1.2 * SR)
    status, out, err = _stream(
        ["-", "--rate", "16000", "--model", str(model_folder)], capsys, pcm, monkeypatch
    )
    assert status == 0
    assert "last 1 byte(s) do not make a whole frame" in err
    assert out.splitlines()[-1].startswith("summary: standard input: 1.20 s of audio")


def test_empty_stdin_is_an_error_with_a_summary(monkeypatch, capsys, model_folder):
    status, out, err = _stream(
        ["-", "--rate", "16000", "--model", str(model_folder)], capsys, b"", monkeypatch
    )
    assert status == 1
    assert "standard input: no audio arrived" in err
    assert "no verdict (no audio arrived)" in out


def test_nan_float_pcm_stops_the_stream(monkeypatch, capsys, model_folder):
    samples = noise(1.5, seed=6)
    samples[SR + 10] = np.nan
    status, _, err = _stream(
        ["-", "--rate", "16000", "--sample-format", "f32le", "--model", str(model_folder)],
        capsys,
        samples.astype("<f4").tobytes(),
        monkeypatch,
    )
    assert status == 1
    assert "standard input: contains NaN or infinite samples" in err
    with pytest.raises(InvalidAudioError):
        list(pcm_source(io.BytesIO(samples.astype("<f4").tobytes()), SR, "f32le").chunks)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-", "--rate", "16k"], "a whole number of samples per second is needed"),
        (["-", "--rate", "100"], "--rate 100 Hz is outside 1000-384000 Hz"),
        (["-", "--rate", "0"], "--rate 0 Hz is outside"),
        (["-"], "--rate is needed with -"),
        ([], "give one source"),
        (["-", "--mic", "--rate", "16000"], "give one source"),
        (["-", "--rate", "16000", "--realtime"], "--realtime paces a file"),
        (["{wav}", "--rate", "16000"], "says its own rate in its header"),
        (["{wav}", "--channels", "2"], "--channels describe PCM on standard input"),
        (["{wav}", "--hop", "0"], "must be positive"),
        (["{wav}", "--window", "0.5"], None),  # allowed: a shorter window than training's
    ],
)
def test_usage_errors_exit_2(argv, message, model_folder, gapped_wav, capsys):
    argv = [a.format(wav=gapped_wav) for a in argv]
    status, _, err = _stream([*argv, "--model", str(model_folder)], capsys)
    if message is None:
        assert status == 0, err
        return
    assert status == 2
    assert message in err


def test_bad_rate_for_the_pcm_reader_names_the_rule():
    with pytest.raises(ValueError, match="outside 1000-384000 Hz"):
        pcm_source(io.BytesIO(b""), 999_999)
    with pytest.raises(ValueError, match="unknown sample format 's24le'"):
        pcm_source(io.BytesIO(b""), SR, "s24le")
    with pytest.raises(ValueError, match="at least 1"):
        pcm_source(io.BytesIO(b""), SR, channels=0)


def test_realtime_file_takes_as_long_as_its_audio(model_folder, tmp_path, capsys):
    path = tmp_path / "two_seconds.wav"
    sf.write(path, noise(2.0, seed=8), SR, subtype="PCM_16")
    source = file_source(path, SR, realtime=True)
    began = time.monotonic()
    assert sum(c.size for c in source.chunks) == 2 * SR
    assert time.monotonic() - began >= 1.95
    began = time.monotonic()
    status, out, _ = _stream([str(path), "--realtime", "--model", str(model_folder)], capsys)
    assert status == 0 and time.monotonic() - began >= 1.95
    assert "keeps up with real time" in out.splitlines()[-1]


def test_falling_behind_real_time_is_flagged(detector):
    ticks = iter(np.arange(0.0, 1000.0, 0.75))  # every clock reading 0.75 s after the last
    scorer = StreamScorer(detector, SR, 1.0, 0.5, clock=lambda: float(next(ticks)))
    hops = scorer.feed(noise(2.0, seed=9))
    assert hops and all(h.behind and h.latency_ms == pytest.approx(750.0) for h in hops)
    summary = scorer.summary()
    assert not summary.keeps_up and summary.hops_behind == len(hops)
    line = _summary_line(summary, "clip.wav")
    assert "CANNOT keep up with real time" in line and "try a longer --hop" in line


def test_text_lines_say_what_each_hop_is(model_folder, gapped_wav, capsys):
    status, out, _ = _stream([str(gapped_wav), "--model", str(model_folder)], capsys)
    assert status == 0
    lines = out.splitlines()
    assert "window 1.00-2.00 s" in lines[2] and "silent, not counted" in lines[2]
    assert "running: " in lines[0] and " ms" in lines[0]
    assert lines[-1].startswith(f"summary: {gapped_wav}: 3.30 s of audio")


@pytest.mark.parametrize(("source_rate", "target"), [(48000, SR), (44100, SR), (8000, SR)])
def test_stream_resampler_equals_resampling_the_whole_signal(source_rate, target):
    rng = np.random.default_rng(source_rate)
    x = (0.3 * rng.standard_normal(source_rate + 777)).astype(np.float32)
    resampler = StreamResampler(source_rate, target)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 4000))
        parts.append(resampler.push(x[i : i + n]))
        i += n
    parts.append(resampler.flush())
    np.testing.assert_allclose(np.concatenate(parts), resample(x, source_rate, target), atol=1e-6)


def _input_devices() -> list:
    try:
        import sounddevice
    except OSError:  # no PortAudio library: no device either
        return []
    return [d for d in sounddevice.query_devices() if d["max_input_channels"] > 0]


@pytest.mark.skipif(bool(_input_devices()), reason="this machine has a microphone")
def test_no_microphone_is_a_clear_error(model_folder, capsys):
    with pytest.raises(MicrophoneUnavailable, match="no microphone found|PortAudio library"):
        microphone_source()
    status, _, err = _stream(["--mic", "--model", str(model_folder)], capsys)
    assert status == 2
    assert "no microphone found" in err or "PortAudio library" in err


class _InterruptedPipe(io.BytesIO):
    """A pipe that delivers its bytes, then gets Ctrl-C while the reader waits for more."""

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        if not data:
            raise KeyboardInterrupt
        return data


def test_ctrl_c_ends_with_the_summary_and_status_130(monkeypatch, capsys, model_folder):
    pcm = (noise(2.0, seed=10) * 32767).astype("<i2").tobytes()
    stdin = io.TextIOWrapper(_InterruptedPipe(pcm))
    monkeypatch.setattr(sys, "stdin", stdin)
    status, out, err = _stream(["-", "--rate", "16000", "--model", str(model_folder)], capsys)
    assert status == 130
    assert "dfa stream: stopped at 2.00 s" in err
    lines = out.splitlines()
    assert len(lines) == 3 + 1  # windows at 0, 0.5 and 1 s (no tail: the stream was cut), summary
    assert lines[-1].startswith("summary: standard input: 2.00 s of audio, 3 window(s)")
