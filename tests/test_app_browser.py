"""End to end: the Streamlit app in a real headless Chromium scores an uploaded clip."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from test_detector import make_detector_folder, noise

from dfa_lib.app import streamlit_app as app
from dfa_lib.detector.loading import load_detector

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver (make setup installs them)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture
def streamlit_server(tmp_path):
    runs = tmp_path / "runs"
    folder = make_detector_folder(runs / "demo" / "lcnn", clip_seconds=1.0)
    port = _free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", app.__file__]
    cmd += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    cmd += ["--server.fileWatcherType", "none", "--server.maxUploadSize", "50"]
    env = {**os.environ, "DFA_RUNS_DIR": str(runs), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, folder
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

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
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_a_clip_and_read_the_verdict(streamlit_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = streamlit_server
    clip = tmp_path / "upload me.wav"
    sf.write(clip, noise(2.5, seed=21), 16000, subtype="PCM_16")
    expected = load_detector(folder, device="cpu").score_path(clip)

    browser.get(url)
    wait = WebDriverWait(browser, 90)
    file_input = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")))
    assert "Upload a file or record" in browser.find_element(By.TAG_NAME, "body").text
    file_input.send_keys(str(clip))
    wait.until(lambda d: "Verdict:" in d.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    verdict = next(line for line in body.splitlines() if line.startswith("Verdict:"))
    match = re.match(r"Verdict: (FAKE|REAL) .*Probability of fake (\d\.\d{3})", verdict)
    assert match, verdict
    assert match.group(1).lower() == expected.label
    assert float(match.group(2)) == pytest.approx(expected.p_fake, abs=1.5e-3)
    assert "3 window(s)" in body  # 2.5 s in 1-s windows, shown in the caption
    assert "Little or no speech found (0.00 s" in body  # noise: the verdict is flagged
