"""The Streamlit app through ``AppTest``, and its upload and plotting functions directly."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_detector import make_detector_folder, noise

from dfa_lib.app import streamlit_app as app
from dfa_lib.detector.loading import load_detector

APP_FILE = str(Path(app.__file__))
SR = 16000


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_detector_folder(root / "quick" / "lcnn", clip_seconds=1.0)
    second = make_detector_folder(root / "quick" / "lcnn_wide", kwargs={"width": 6, "embedding": 8})
    metrics = {"cross-source": {"eer": 0.2468}}
    (second / "metrics.json").write_text(json.dumps(metrics))
    from dfa_lib.detector.folder import write_model_card

    write_model_card(second)
    (root / "notes").mkdir()
    (root / "notes" / "config.json").write_text('{"format": "something-else"}')
    shutil.copytree(root / "quick" / "lcnn", root / ".cache" / "lcnn")
    return root


def _app(monkeypatch, runs_dir: Path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DFA_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP_FILE, default_timeout=60)
    return at.run()


def test_find_detectors_lists_only_visible_detector_folders(runs):
    found = app.find_detectors(runs)
    assert [app.detector_label(f, runs) for f in found] == ["quick/lcnn", "quick/lcnn_wide"]
    assert app.find_detectors(runs / "does-not-exist") == []


def test_no_detector_says_how_to_train_one(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path)
    assert not at.exception
    assert len(at.warning) == 1
    assert "make reports" in at.warning[0].value and str(tmp_path) in at.warning[0].value


@pytest.mark.slow
def test_detector_choice_and_model_card(monkeypatch, runs):
    at = _app(monkeypatch, runs)
    assert not at.exception
    picker = at.sidebar.selectbox(key="detector")
    assert picker.options == ["quick/lcnn", "quick/lcnn_wide"]
    assert picker.value == "quick/lcnn"
    card = "\n".join(m.value for m in at.sidebar.markdown)
    assert "Audio deepfake detector: `lcnn`" in card and "in-domain" in card
    assert "### cross-source" not in card
    assert any("Upload a file or record" in i.value for i in at.info)

    at = picker.select("quick/lcnn_wide").run()
    assert not at.exception
    card = "\n".join(m.value for m in at.sidebar.markdown)
    assert "### cross-source" in card and "0.2468" in card
    assert any("Model `lcnn`, 1-s windows" in c.value for c in at.sidebar.caption)


def test_broken_detector_is_reported_in_the_page(monkeypatch, tmp_path):
    folder = make_detector_folder(tmp_path / "broken")
    (folder / "model.safetensors").unlink()
    at = _app(monkeypatch, tmp_path)
    assert not at.exception
    assert "missing model.safetensors" in at.error[0].value


def _wav_bytes(wave: np.ndarray, sr: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt)
    return buf.getvalue()


def test_decode_upload_messages_for_bad_files():
    with pytest.raises(app.UploadError, match=r"corrupt\.wav: not a readable audio file"):
        app.decode_upload(b"RIFF\x00\x00\x00\x00WAVE" + bytes(300), "corrupt.wav", limit_mb=5)
    with pytest.raises(app.UploadError, match=r"empty\.mp3: no bytes given"):
        app.decode_upload(b"", "empty.mp3", limit_mb=5)
    big = _wav_bytes(noise(40.0))  # 1.28 MB
    with pytest.raises(app.UploadError, match=r"big\.wav is 1\.3 MB; the limit is 1 MB"):
        app.decode_upload(big, "big.wav", limit_mb=1)
    stereo = np.stack([noise(1.0), noise(1.0, seed=1)], 1)
    wave, sr = app.decode_upload(_wav_bytes(stereo, 44100), "stereo.wav", limit_mb=5)
    assert sr == SR and wave.ndim == 1 and wave.size == pytest.approx(16000 * 16000 / 44100, abs=2)


def test_upload_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DFA_MAX_UPLOAD_MB", "7")
    assert app.max_upload_mb() == 7
    monkeypatch.setenv("DFA_MAX_UPLOAD_MB", "lots")
    assert app.max_upload_mb() == app.DEFAULT_MAX_UPLOAD_MB
    assert app.max_upload_seconds() == 30 * 60
    monkeypatch.setenv("DFA_MAX_UPLOAD_MINUTES", "2.5")
    assert app.max_upload_seconds() == 150
    monkeypatch.setenv("DFA_MAX_UPLOAD_MINUTES", "-1")
    assert app.max_upload_seconds() == 30 * 60
    assert app.upload_slots() == 2
    monkeypatch.setenv("DFA_CONCURRENT_UPLOADS", "1")
    assert app.upload_slots() == 1


def test_an_upload_is_capped_by_its_duration_not_only_its_size():
    small = _wav_bytes(noise(3.0, seed=4), fmt="FLAC")  # 3 s, well under the 1-MB limit
    with pytest.raises(
        app.UploadError,
        match=r"^long\.flac lasts 3\.0 s; the limit is 2\.0 s of audio\. Cut the recording",
    ):
        app.decode_upload(small, "long.flac", limit_mb=1, max_seconds=2.0)
    wave, sr = app.decode_upload(small, "long.flac", limit_mb=1, max_seconds=3.5, target_sr=8000)
    assert sr == 8000 and wave.size == 3 * 8000


def test_a_silent_upload_gets_no_verdict(runs):
    detector = load_detector(runs / "quick" / "lcnn", device="cpu")
    result, why = app.score_for_page(detector, np.zeros(SR, np.float32), SR, "quiet.wav")
    assert result is None and why.startswith("No verdict. quiet.wav: no audible signal")
    result, why = app.score_for_page(detector, 0.1 * np.ones(SR, np.float32), SR, "dc.wav")
    assert why is None and result.n_audible_windows == 1


def test_a_window_score_that_is_not_a_number_gets_no_verdict(runs, monkeypatch):
    detector = load_detector(runs / "quick" / "lcnn", device="cpu")
    monkeypatch.setattr(
        detector, "_bonafide_scores", lambda batch: np.full(len(batch), np.nan, dtype=np.float64)
    )
    result, why = app.score_for_page(detector, 0.1 * np.ones(SR, np.float32), SR, "odd.wav")
    assert result is None and why.startswith("No verdict. odd.wav")


def test_a_verdict_on_non_speech_carries_a_warning(runs, speech_wav):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (make setup)")
    detector = load_detector(runs / "quick" / "lcnn", device="cpu")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)
    result, why = app.score_for_page(detector, tone, SR, "tone.wav")
    assert why is None and result.label in ("real", "fake")
    assert app.speech_warning(result).startswith(
        "Little or no speech found (0.00 s; at least 0.1 s"
    )
    wave, sr = app.decode_upload(speech_wav.read_bytes(), "speech.wav")
    result, _ = app.score_for_page(detector, wave, sr, "speech.wav")
    assert result.speech_found and app.speech_warning(result) is None
    unchecked = load_detector(runs / "quick" / "lcnn", device="cpu", min_speech_seconds=None)
    assert app.speech_warning(unchecked.score_waveform(tone, SR)) is None


def test_timeline_shades_windows_without_speech(runs, speech_wav):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (make setup)")
    import matplotlib.pyplot as plt

    detector = load_detector(runs / "quick" / "lcnn", device="cpu")
    words, _ = app.decode_upload(speech_wav.read_bytes(), "speech.wav")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)).astype(np.float32)
    result = detector.score_waveform(np.concatenate([tone, words[: 2 * SR]]), SR)
    fig = app.timeline_figure(result)
    shaded = [p for p in fig.axes[0].patches if p.get_label() != "window P(fake)"]
    # The three tone windows are shaded, the speech windows are not; one legend entry.
    assert len(shaded) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()].count(
        "no speech found"
    ) == 1
    plt.close(fig)
    # The caption says the score averages only the windows with speech.
    counted = result.n_windows_in_mean
    assert 0 < counted < result.n_audible_windows == 5
    assert app.score_caption(result).endswith(
        f"the mean of the scores of the {counted} audible window(s) that hold speech."
    )
    assert app.score_caption(detector.score_waveform(tone, SR)).endswith(
        "the mean of the scores of the 3 audible window(s)."
    )


def test_verdict_and_figures(runs):
    import matplotlib.pyplot as plt

    detector = load_detector(runs / "quick" / "lcnn", device="cpu")
    long_wave = noise(12.0, seed=3)
    result = detector.score_waveform(long_wave, SR)
    text = app.verdict_text(result)
    assert text.startswith("Verdict: ") and f"{result.p_fake:.3f}" in text
    assert ("FAKE" in text) == (result.label == "fake")
    for fig in (
        app.waveform_figure(long_wave, SR),
        app.mel_figure(long_wave, SR, seconds=5.0),
        app.timeline_figure(result),
    ):
        assert fig.axes and fig.axes[0].has_data()
        plt.close(fig)


def test_make_app_listens_on_loopback_only_and_sends_no_usage_stats():
    root = Path(__file__).resolve().parents[1]
    # Under `make test` this make is a sub-make: keep the parent's flags and its
    # "Entering directory" lines out of the recipe.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    make = ["make", "--no-print-directory", "-n", "-o", "setup", "app"]
    dry_run = subprocess.run(
        make, cwd=root, capture_output=True, text=True, check=True, env=env
    ).stdout
    recipe = " ".join(dry_run.replace("\\\n", " ").split())
    assert "--server.address 127.0.0.1" in recipe
    assert "--browser.gatherUsageStats false" in recipe
    assert recipe.startswith("MALLOC_ARENA_MAX=2 ")  # sessions' threads share two arenas
    exposed = subprocess.run(
        [*make, "APP_ADDRESS=0.0.0.0"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert "--server.address 0.0.0.0" in exposed
