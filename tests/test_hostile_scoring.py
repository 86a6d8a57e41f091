"""Hostile and broken input on the scoring side: no unearned verdict, no batch lost to one file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_detector import SR, _edit_config, make_detector_folder, noise

import dfa_lib.detector.scorer as scorer
from dfa_lib.cli import main
from dfa_lib.data.audio import (
    AudioDecodeError,
    AudioError,
    DurationLimitError,
    TruncatedAudioWarning,
)
from dfa_lib.detector.calibrate import calibrate_folder
from dfa_lib.detector.folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    DetectorFormatError,
    export_detector,
    write_detector_config,
)
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.scorer import (
    MAX_DECODE_SECONDS,
    Detector,
    UnscorableAudioError,
    WindowedScore,
    decode_long_file,
)
from dfa_lib.scoring.metrics import write_scores_asvspoof2021

STUB_CONFIG = {
    "model": {"name": "stub", "kwargs": {}},
    "preprocessing": {"sample_rate": SR, "clip_seconds": 1.0},
    "threshold": 0.0,
}
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


class BreaksOnLoudWindows:
    """A stand-in for a classical detector: a finite score for quiet windows, trouble for loud.

    ``failure="nan"`` scores a loud window NaN (what overflowing features give); ``"raise"``
    raises the ValueError scikit-learn raises for features that overflowed.
    """

    def __init__(self, failure: str) -> None:
        self.failure = failure

    def score(self, batch: np.ndarray) -> np.ndarray:
        loud = np.abs(batch).max(axis=1) > 0.5
        if self.failure == "raise" and loud.any():
            raise ValueError("Input X contains infinity or a value too large for dtype('float64')")
        return np.where(loud, np.nan, 1.0 - 10.0 * np.abs(batch).mean(axis=1))


def _quiet_loud_quiet(folder: Path) -> list[Path]:
    paths = [folder / "quiet_a.wav", folder / "loud.wav", folder / "quiet_b.wav"]
    loud = 0.9 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)
    # The loud clip is two windows: a quiet one, then the loud one.
    waves = [noise(1.5, seed=1), np.concatenate([noise(1.0, seed=2), loud]), noise(0.8, seed=3)]
    for path, wave in zip(paths, waves, strict=True):
        sf.write(path, wave.astype(np.float32), SR, subtype="FLOAT")
    return paths


def _stub_detector(failure: str, **options) -> Detector:
    return Detector(BreaksOnLoudWindows(failure), STUB_CONFIG, min_speech_seconds=None, **options)


def _flac_cut_short(path: Path, claimed_seconds: float, keep: float = 0.6) -> Path:
    """A FLAC file whose stream info claims ``claimed_seconds``, cut inside a frame."""
    sf.write(path, noise(12.0, seed=7), SR, format="FLAC")
    data = bytearray(path.read_bytes())
    # STREAMINFO (the first metadata block) keeps the total sample count in the low 36 bits
    # of bytes 18-25 of the file.
    field = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = (field | int(claimed_seconds * SR)).to_bytes(8, "big")
    path.write_bytes(bytes(data[: int(len(data) * keep)]))
    return path


def _wav_cut_short(path: Path, seconds: float, keep_seconds: float) -> Path:
    sf.write(path, noise(seconds, seed=8), SR, subtype="PCM_16")
    data = path.read_bytes()
    header = data.index(b"data") + 8
    path.write_bytes(data[: header + int(keep_seconds * SR) * 2])
    return path


# 1. Huge finite samples: refused when decoding, and a NaN window score is never a verdict.


def test_a_window_score_that_is_not_finite_makes_an_error_not_a_verdict(tmp_path):
    detector = _stub_detector("nan")
    quiet_a, loud, quiet_b = _quiet_loud_quiet(tmp_path)
    with pytest.raises(UnscorableAudioError, match=r"loud.wav: the model gave 1 of 2 windows"):
        detector.score_path(loud)
    results = dict(detector.score_paths([quiet_a, loud, quiet_b]))
    assert list(results) == [quiet_a, loud, quiet_b]
    assert isinstance(results[loud], UnscorableAudioError)
    for path in (quiet_a, quiet_b):
        result = results[path]
        assert isinstance(result, WindowedScore) and math.isfinite(result.p_fake)
        assert result.score == pytest.approx(detector.score_path(path).score)
    wave = np.concatenate([noise(1.0, seed=2), np.full(SR, 0.9, dtype=np.float32)])
    with pytest.raises(UnscorableAudioError, match="waveform 1"):
        detector.score_batch([noise(1.0), wave], SR)


def test_dfa_predict_gives_no_verdict_on_samples_far_beyond_full_scale(tmp_path, capsys):
    model = make_detector_folder(tmp_path / "lcnn")
    huge, hot, plain = tmp_path / "huge.wav", tmp_path / "hot.wav", tmp_path / "plain.wav"
    sf.write(huge, noise(1.0, seed=1) * 1e18, SR, subtype="FLOAT")
    sf.write(hot, noise(1.0, seed=2) * 30, SR, subtype="FLOAT")  # over full scale, still audio
    sf.write(plain, noise(1.0, seed=3), SR)
    argv = ["predict", str(huge), str(hot), str(plain), "--model", str(model)]
    status = main([*argv, "--format", "json", "--min-speech", "off"])
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert status == 1
    assert rows["huge.wav"]["p_fake"] is None and rows["huge.wav"]["label"] is None
    assert re.search(r"huge.wav: peak sample \d\.\d+e\+17 ", rows["huge.wav"]["error"])
    assert "[-1, 1]" in rows["huge.wav"]["error"]
    for name in ("hot.wav", "plain.wav"):
        assert rows[name]["error"] is None and 0.0 <= rows[name]["p_fake"] <= 1.0
    detector = load_detector(model, device="cpu", min_speech_seconds=None)
    with pytest.raises(AudioError, match="huge.wav: peak sample"):
        detector.score_path(huge)


# 2. Errors isolated per file; files shorter than their header are flagged.


def test_a_batch_survives_a_flac_cut_short_that_claims_ten_minutes(tmp_path):
    good_a, good_b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(good_a, noise(2.0, seed=1), SR)
    sf.write(good_b, noise(1.0, seed=2), SR)
    cut = _flac_cut_short(tmp_path / "cut.flac", claimed_seconds=600.0)
    model = make_detector_folder(tmp_path / "lcnn")
    detector = load_detector(model, device="cpu", min_speech_seconds=None)
    catch = (
        pytest.warns(TruncatedAudioWarning) if shutil.which("ffmpeg") else contextlib.nullcontext()
    )
    with catch:
        results = dict(detector.score_paths([good_a, cut, good_b]))
    assert list(results) == [good_a, cut, good_b]
    assert all(isinstance(results[p], WindowedScore) for p in (good_a, good_b))
    if shutil.which("ffmpeg"):  # ffmpeg decodes the frames that are whole
        assert 5.0 < results[cut].duration < 12.0
        (note,) = results[cut].input_warnings
        assert "cut.flac: truncated: its header promises 600.00 s" in note
        assert results[cut].to_dict(windows=False)["warnings"] == [note]
    else:
        assert isinstance(results[cut], AudioError)


def test_any_decoding_error_is_that_files_row(tmp_path, monkeypatch):
    paths = [tmp_path / f"{name}.wav" for name in ("a", "broken", "c")]
    for i, path in enumerate(paths):
        sf.write(path, noise(1.0, seed=i), SR)
    real_decode = scorer.decode_long_file

    def decoder_that_fails_on_one_file(path, *args, **kwargs):
        if Path(path).name == "broken.wav":
            raise RuntimeError("Error : flac decoder lost sync.")  # as soundfile raises it
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(scorer, "decode_long_file", decoder_that_fails_on_one_file)
    detector = _stub_detector("nan")
    results = dict(detector.score_paths(paths))
    assert isinstance(results[paths[1]], AudioDecodeError)
    assert "broken.wav: cannot decode (RuntimeError: Error : flac decoder lost sync.)" in str(
        results[paths[1]]
    )
    assert all(isinstance(results[p], WindowedScore) for p in (paths[0], paths[2]))


def test_a_model_error_on_one_file_costs_only_that_file(tmp_path):
    detector = _stub_detector("raise")
    quiet_a, loud, quiet_b = _quiet_loud_quiet(tmp_path)
    results = dict(detector.score_paths([quiet_a, loud, quiet_b]))
    assert isinstance(results[loud], UnscorableAudioError)
    assert "loud.wav: the detector failed on it (ValueError: Input X contains infinity" in str(
        results[loud]
    )
    alone = _stub_detector("nan")
    for path in (quiet_a, quiet_b):
        assert results[path].score == pytest.approx(alone.score_path(path).score)


def test_a_wav_shorter_than_its_header_is_scored_with_a_warning(tmp_path, capsys):
    cut = _wav_cut_short(tmp_path / "cut.wav", seconds=3.0, keep_seconds=1.0)
    detector = _stub_detector("nan")
    with pytest.warns(TruncatedAudioWarning, match="promises 3.00 s .* holds 1.00 s"):
        result = detector.score_path(cut)
    assert result.duration == pytest.approx(1.0)
    assert len(result.input_warnings) == 1 and "cut.wav: truncated" in result.input_warnings[0]
    # The block-by-block decoder of long files checks the header too.
    with pytest.warns(TruncatedAudioWarning, match="cut.wav: truncated"):
        decode_long_file(cut, SR, min_seconds=0.0)

    model = make_detector_folder(tmp_path / "lcnn")
    with pytest.warns(TruncatedAudioWarning):
        status = main(
            ["predict", str(cut), "--model", str(model), "--format", "jsonl"]
            + ["--min-speech", "off"]
        )
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0 and row["label"] in {"real", "fake"}
    assert "promises 3.00 s of audio but the file holds 1.00 s" in row["warnings"][0]


# 3. Long input: a cap on the decoded duration, judged from the header.


def test_the_duration_cap_is_read_from_the_header_before_decoding(tmp_path):
    # Twelve seconds of audio whose header claims two hours: only the header can say 7200 s.
    claims = _flac_cut_short(tmp_path / "claims.flac", claimed_seconds=7200.0, keep=1.0)
    with pytest.raises(DurationLimitError, match=r"claims.flac: lasts 7200.0 s by its header") as e:
        decode_long_file(claims, SR, max_seconds=3600.0)
    assert e.value.seconds == 7200.0 and e.value.max_seconds == 3600.0

    short = tmp_path / "two.wav"
    sf.write(short, noise(2.0), SR)
    assert Detector(BreaksOnLoudWindows("nan"), STUB_CONFIG).max_seconds == MAX_DECODE_SECONDS
    capped = _stub_detector("nan", max_seconds=1.5)
    ((_, result),) = capped.score_paths([short])
    assert isinstance(result, DurationLimitError) and "limit is 1.5 s" in str(result)
    model = make_detector_folder(tmp_path / "lcnn")
    options = {"device": "cpu", "min_speech_seconds": None}
    with pytest.raises(DurationLimitError):
        load_detector(model, max_seconds=1.0, **options).score_path(short)
    assert load_detector(model, max_seconds=2.5, **options).score_path(short).duration == 2.0


# 5. Weights tied to the config they were written with.


def test_weights_copied_in_from_another_folder_are_refused(tmp_path):
    first = make_detector_folder(tmp_path / "first", seed=0, threshold=0.4)
    second = make_detector_folder(tmp_path / "second", seed=1, threshold=-0.3)
    config = json.loads((second / CONFIG_FILE).read_text())
    digest = hashlib.sha256((second / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert config["weights_sha256"] == {WEIGHTS_FILE: digest}
    assert config["format_version"] == 1

    original = (second / WEIGHTS_FILE).read_bytes()
    shutil.copy(first / WEIGHTS_FILE, second / WEIGHTS_FILE)
    with pytest.raises(DetectorFormatError, match="not the ones this config was written with"):
        load_detector(second)
    # A folder written before the checksum existed still loads.
    config.pop("weights_sha256")
    (second / CONFIG_FILE).write_text(json.dumps(config))
    assert load_detector(second).score_threshold == -0.3

    (second / WEIGHTS_FILE).write_bytes(original)
    make_detector_folder(second, seed=1, threshold=-0.3)  # written again: checksum again
    paths = [f"val/{i}.wav" for i in range(8)]
    write_scores_asvspoof2021(second / "scores" / "validation.txt", paths, np.arange(8.0) - 3.5)
    labels = dict(zip(paths, ["fake"] * 4 + ["real"] * 4, strict=True))
    calibrate_folder(second, labels)  # rewrites config.json: the checksum stays
    calibrated = json.loads((second / CONFIG_FILE).read_text())
    assert "calibration" in calibrated and calibrated["weights_sha256"] == {WEIGHTS_FILE: digest}
    assert load_detector(second).calibration.scale > 0


def test_classical_and_head_weights_are_checksummed_too(tmp_path):
    classical = pytest.importorskip("dfa_lib.models.classical")
    tone = 0.2 * np.sin(2 * np.pi * 3000 * np.arange(SR) / SR).astype(np.float32)
    config = {"model": {"name": "lfcc_logreg", "kwargs": {}}, "threshold": 0.0}
    folders = []
    for seed in (0, 1):
        real = [noise(1.0, seed=10 * seed + i) for i in range(4)]
        fake = [noise(1.0, seed=10 * seed + 5 + i) + tone for i in range(4)]
        model = classical.build_classical("lfcc_logreg").fit(
            real + fake, ["real"] * 4 + ["fake"] * 4
        )
        folders.append(export_detector(tmp_path / f"logreg{seed}", model, config))
    recorded = json.loads((folders[1] / CONFIG_FILE).read_text())["weights_sha256"]
    assert set(recorded) == {classical.ARRAYS_FILE}
    shutil.copy(folders[0] / classical.ARRAYS_FILE, folders[1] / classical.ARRAYS_FILE)
    with pytest.raises(DetectorFormatError, match="not the ones this config was written with"):
        load_detector(folders[1])

    head = tmp_path / "head"
    head.mkdir()
    (head / "head.safetensors").write_bytes(b"weights of a head")
    written = write_detector_config(head, {"model": {"name": "ssl_head"}, "threshold": 0.1})
    digest = hashlib.sha256(b"weights of a head").hexdigest()
    assert written["weights_sha256"] == {"head.safetensors": digest}


# 6. Every number a user or a folder supplies is checked.


@pytest.mark.parametrize(
    "preprocessing, message",
    [
        (
            {"clip_seconds": 1e9},
            r"clip_seconds must be a finite number in \(0.05, 600\], got 1000000000.0",
        ),
        ({"clip_seconds": 1e-6}, r"clip_seconds .* got 1e-06"),
        ({"clip_seconds": float("inf")}, "clip_seconds .* got inf"),
        (
            {"sample_rate": "16000"},
            r"sample_rate must be an integer .* \[1000, 384000\], got '16000'",
        ),
        ({"sample_rate": True}, "sample_rate .* got True"),
        ({"sample_rate": 10**9}, "sample_rate .* got 1000000000"),
    ],
)
def test_a_folder_with_settings_out_of_range_is_refused(tmp_path, preprocessing, message):
    folder = make_detector_folder(tmp_path / "lcnn")
    config = json.loads((folder / CONFIG_FILE).read_text())
    _edit_config(folder, preprocessing={**config["preprocessing"], **preprocessing})
    with pytest.raises(DetectorFormatError, match=message):
        load_detector(folder, device="cpu")


def test_a_folder_with_a_huge_model_or_a_threshold_not_finite_is_refused(tmp_path):
    folder = make_detector_folder(tmp_path / "lcnn")
    _edit_config(folder, model={"name": "lcnn", "kwargs": {"width": 100000, "embedding": 8}})
    with pytest.raises(DetectorFormatError, match=r"width must be an integer in \[1, 1024\]"):
        load_detector(folder, device="cpu")
    folder = make_detector_folder(tmp_path / "nan")
    _edit_config(folder, threshold=float("nan"))
    with pytest.raises(DetectorFormatError, match="threshold .* must be a finite number, got nan"):
        load_detector(folder, device="cpu")


@pytest.mark.parametrize(
    "window, hop, message",
    [
        (1e9, None, r"window must be at most 600 s, got 1e\+09 s"),
        (1e-6, None, "window of 1e-06 s rounds to 0 samples at 16000 Hz"),
        (None, 1e-6, "hop of 1e-06 s rounds to 0 samples"),
        (float("nan"), None, "window must be positive and finite, got nan"),
        (None, float("inf"), "hop must be positive and finite, got inf"),
        ("2", None, "window must be a number of seconds, got '2'"),
    ],
)
def test_window_and_hop_are_checked(window, hop, message):
    with pytest.raises(ValueError, match=message):
        _stub_detector("nan").window_and_hop(window, hop)


def test_dfa_predict_refuses_a_window_of_a_billion_seconds(tmp_path, capsys):
    model = make_detector_folder(tmp_path / "lcnn")
    clip = tmp_path / "clip.wav"
    sf.write(clip, noise(1.0), SR)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(clip), "--model", str(model), "--window", "1e9"])
    assert exit_info.value.code == 2
    assert "window must be at most 600 s" in capsys.readouterr().err


# 7. Weights get the same permissions as the rest of the folder.


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_an_exported_folder_is_readable_by_its_group_and_others(tmp_path):
    old = os.umask(0o022)
    try:
        folder = make_detector_folder(tmp_path / "lcnn")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes[WEIGHTS_FILE] == 0o644, modes
    assert set(modes.values()) == {0o644}
