"""The app's live mode: the recorder's chunks become hop scores, in a real headless Chromium too.

The browser test gives Chromium a fake microphone that plays a WAV file the test writes, opens
the app, switches to live mode, presses Start in the recorder component and waits for hop
scores to appear on the page. The other tests feed :class:`LiveState` the values the
component sends (numbered base64 chunks, resent until acknowledged) without a browser.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_app_browser import _free_port, _wait_healthy
from test_detector import make_detector_folder, noise

from dfa_lib.app import streamlit_app as app
from dfa_lib.app.live import LiveChunkError, LiveState, decode_chunk
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.streaming import StreamScorer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
RATE = 48000  # what a browser's audio context usually runs at
needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (make setup installs them)",
)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = make_detector_folder(tmp_path_factory.mktemp("live") / "lcnn", clip_seconds=1.0)
    return load_detector(folder, device="cpu")


def _encode(samples: np.ndarray) -> str:
    """What the component sends: 16-bit little-endian PCM in base64."""
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def _chunks(seconds: float, seed: int) -> list[np.ndarray]:
    wave = np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.1
    step = RATE // 2
    return [wave[i : i + step].astype(np.float32) for i in range(0, wave.size, step)]


def _value(recording: str, chunks: list[str], first: int, **extra) -> dict:
    return {"recording": recording, "rate": RATE, "first": first, "chunks": chunks, **extra}


def test_resent_chunks_are_read_once_and_scored_as_the_stream_scorer_scores_them(detector):
    pieces = _chunks(3.0, seed=1)
    encoded = [_encode(p) for p in pieces]
    state = LiveState()
    # The component resends what the app has not acknowledged: values overlap.
    state.update(_value("rec-1", encoded[0:2], 0), detector)
    state.update(_value("rec-1", encoded[1:4], 1), detector)  # chunk 1 again: skipped
    state.update(_value("rec-1", encoded[2:6], 2, stopped=True), detector)
    assert state.next_chunk == 6 and state.stopped
    reference = StreamScorer(detector, RATE, hop_seconds=0.5)
    expected = []
    for text in encoded:
        expected += reference.feed(decode_chunk(text))
    expected += reference.finish()
    assert [h.start for h in state.hops] == [h.start for h in expected]
    np.testing.assert_allclose(
        [h.score for h in state.hops], [h.score for h in expected], atol=1e-6, rtol=0
    )
    chart = state.chart_data()
    assert list(chart.columns) == ["window P(fake)", "running P(fake)", "threshold"]
    assert len(chart) == len(state.hops) == 5  # windows at 0, 0.5, 1, 1.5 and 2 s of 3 s
    assert re.match(r"Live: 5 hop\(s\) scored over 3\.0 s of audio", state.status_text())
    assert state.verdict_text().startswith("Running verdict: ")
    # After Stop, the same value coming back (a rerun for another widget) adds nothing.
    assert state.update(_value("rec-1", encoded[2:6], 2, stopped=True), detector) == []


def test_a_new_recording_starts_afresh_and_a_gap_is_an_error(detector):
    pieces = [_encode(p) for p in _chunks(1.5, seed=2)]
    state = LiveState()
    state.update(_value("rec-1", pieces, 0), detector)
    assert state.hops
    state.update(_value("rec-2", pieces[:1], 0), detector)
    assert state.recording == "rec-2" and state.hops == [] and state.next_chunk == 1
    with pytest.raises(LiveChunkError, match="chunk 3 arrived before chunk 1"):
        state.update(_value("rec-2", pieces[:1], 3), detector)


def test_a_denied_microphone_and_broken_values_are_reported(detector):
    state = LiveState()
    state.update({"error": "NotAllowedError: Permission denied"}, detector)
    assert state.error == "NotAllowedError: Permission denied"
    assert state.update(None, detector) == []
    with pytest.raises(LiveChunkError, match="not base64"):
        decode_chunk("%%%")
    with pytest.raises(LiveChunkError, match="3 bytes"):
        decode_chunk(base64.b64encode(b"abc").decode())
    with pytest.raises(LiveChunkError, match="without a sample rate"):
        LiveState().update({"recording": "r", "first": 0, "chunks": []}, detector)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The app on a toy detector, shared by the browser tests of this module."""
    root = tmp_path_factory.mktemp("live-app")
    make_detector_folder(root / "runs" / "demo" / "lcnn", clip_seconds=1.0)
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", app.__file__]
    cmd += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    cmd += ["--server.fileWatcherType", "none"]
    env = {**os.environ, "DFA_RUNS_DIR": str(root / "runs"), "HF_HUB_OFFLINE": "1"}
    log = (root / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def fake_microphone_browser(tmp_path, request):
    """Headless Chromium whose microphone plays a WAV file (looped).

    ``request.param`` is ``"allow"`` (the page gets the microphone without a prompt) or
    ``"deny"`` (every permission prompt is refused, as when a user clicks Block).
    """
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    clip = tmp_path / "microphone.wav"
    sf.write(clip, noise(3.0, seed=31), 16000, subtype="PCM_16")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream"
        if request.param == "allow"
        else "--deny-permission-prompts",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _start_listening(browser, url: str) -> tuple:
    """Open the app, switch to live mode and press Start; return (wait, recorder status text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 60)
    live = wait.until(
        ec.element_to_be_clickable((By.XPATH, "//label[.//*[text()='Live microphone']]"))
    )
    live.click()
    frame = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title*='dfa_live_recorder']"))
    )
    browser.switch_to.frame(frame)
    wait.until(ec.element_to_be_clickable((By.ID, "start"))).click()
    status = wait.until(
        lambda d: (
            (text := d.find_element(By.ID, "status").text).startswith(
                ("Listening at", "Microphone unavailable")
            )
            and text
        )
    )
    browser.switch_to.default_content()
    return wait, status


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("fake_microphone_browser", ["allow"], indirect=True)
def test_live_mode_shows_hop_scores_as_they_arrive(live_server, fake_microphone_browser):
    from selenium.webdriver.common.by import By

    browser = fake_microphone_browser
    wait, status = _start_listening(browser, live_server)
    assert status.startswith("Listening at"), status

    def hops_shown(driver) -> int:
        found = re.search(
            r"Live: (\d+) hop\(s\) scored", driver.find_element(By.TAG_NAME, "body").text
        )
        return int(found.group(1)) if found else 0

    wait.until(lambda d: hops_shown(d) >= 3)
    body = browser.find_element(By.TAG_NAME, "body").text
    status = re.search(r"latest window P\(fake\) (\d\.\d{3}), scored in (\d+) ms", body)
    assert status, body
    assert 0.0 <= float(status.group(1)) <= 1.0
    assert re.search(r"Running verdict: (FAKE|REAL) .*Probability of fake \d\.\d{3}", body), body
    # The count keeps growing while the microphone plays: the chart is live, not a snapshot.
    first = hops_shown(browser)
    wait.until(lambda d: hops_shown(d) > first)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']"))


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("fake_microphone_browser", ["deny"], indirect=True)
def test_a_denied_microphone_is_explained_on_the_page(live_server, fake_microphone_browser):
    from selenium.webdriver.common.by import By

    browser = fake_microphone_browser
    wait, status = _start_listening(browser, live_server)
    assert status.startswith("Microphone unavailable (NotAllowedError"), status
    wait.until(
        lambda d: (
            "Allow this page to use the microphone" in d.find_element(By.TAG_NAME, "body").text
        )
    )
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Microphone unavailable: NotAllowedError" in body
    assert "hop(s) scored" not in body
