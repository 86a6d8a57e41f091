"""Streamlit app: score an uploaded or recorded clip with one of the trained detectors on disk.

Run it with ``make app`` (``streamlit run dfa_lib/app/streamlit_app.py``). Detectors are the
folders under ``$DFA_RUNS_DIR`` (default ``runs/``) whose ``config.json`` declares the
``dfa-detector`` format. Uploads above ``$DFA_MAX_UPLOAD_MB`` megabytes (default 200) are
refused with a message, and so are uploads longer than ``$DFA_MAX_UPLOAD_MINUTES`` minutes of
audio (default 30) and files ffmpeg cannot read. A few megabytes of Opus can hold hours of
audio, so the duration is checked before decoding and decoding runs in a stream of blocks
that stops at the cap (:func:`dfa_lib.data.stream_decode.decode_capped`): an upload costs
about its waveform at the detector's rate, whatever its size on disk.

At most ``$DFA_CONCURRENT_UPLOADS`` uploads (default 2) are decoded, scored and plotted at
once; the sessions beyond wait their turn. On a CPU the work of twenty sessions at once takes
no less time than one after another, but it holds twenty sets of network activations and
figures in memory at once (and matplotlib is not thread-safe). Each session runs in its own
thread, and glibc gives threads their own memory arenas, which keep what they once held:
``make app`` sets ``MALLOC_ARENA_MAX=2``. With both, twenty 30-s uploads at once took the
server from 1.16 GB to 1.37 GB in ``make bench``'s ``app-load`` stage, against 2.11 GB with
neither.

``make app`` binds the server to 127.0.0.1: the app has no login, so opening it to the
network (``APP_ADDRESS=0.0.0.0``) lets anyone who can reach the port use its CPU and memory.

In the *Live microphone* input mode (:mod:`dfa_lib.app.live`) the browser records and the page
shows the score of each window as it arrives, with the running verdict.

The logic lives in plain functions (finding detectors, decoding an upload, the plots, the
verdict text) so that tests can call them without a browser; :func:`main` only lays them out.
"""

from __future__ import annotations

import inspect
import math
import os
import threading
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchaudio

from dfa_lib.app.live import show_live
from dfa_lib.data.audio import AudioError
from dfa_lib.data.stream_decode import DurationLimitError, decode_capped, format_duration
from dfa_lib.detector.explain import DEFAULT_BANDS, DEFAULT_PATCH_SECONDS, explain
from dfa_lib.detector.folder import is_detector_folder
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.scorer import Detector, WindowedScore
from dfa_lib.reporting.explain_plots import explanation_figure

RUNS_DIR_ENV = "DFA_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
MAX_UPLOAD_ENV = "DFA_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 200  # matches --server.maxUploadSize in the Makefile
MAX_MINUTES_ENV = "DFA_MAX_UPLOAD_MINUTES"
DEFAULT_MAX_UPLOAD_MINUTES = 30.0  # of audio: 115 MB as a 16 kHz float32 waveform
CONCURRENT_ENV = "DFA_CONCURRENT_UPLOADS"
DEFAULT_CONCURRENT_UPLOADS = 2  # one decoding while another is scored
SPECTROGRAM_SECONDS = 60.0  # longer files show the spectrogram of their first minute
FILE_MODE = "A file or a recording"
LIVE_MODE = "Live microphone"  # scores while you speak (dfa_lib.app.live)
NO_DETECTOR_MESSAGE = (
    "No trained detector found under `{root}`. Train the baselines with `make reports` "
    "(each run folder is a detector), or point the app at another folder with "
    f"`{RUNS_DIR_ENV}=/path/to/runs make app`."
)


class UploadError(ValueError):
    """An uploaded file that cannot be scored; the message is meant for the user."""


def runs_dir() -> Path:
    """Return the folder searched for detectors: ``$DFA_RUNS_DIR`` or ``runs/``."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def max_upload_mb() -> int:
    """Return the upload size limit in megabytes (``$DFA_MAX_UPLOAD_MB``, default 200)."""
    value = os.environ.get(MAX_UPLOAD_ENV)
    try:
        return max(1, int(value)) if value else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB


def max_upload_seconds() -> float:
    """Return the longest audio accepted, in seconds (``$DFA_MAX_UPLOAD_MINUTES``, default 30)."""
    value = os.environ.get(MAX_MINUTES_ENV)
    try:
        minutes = float(value) if value else DEFAULT_MAX_UPLOAD_MINUTES
    except ValueError:
        minutes = DEFAULT_MAX_UPLOAD_MINUTES
    return 60.0 * (minutes if 0 < minutes < math.inf else DEFAULT_MAX_UPLOAD_MINUTES)


def upload_slots() -> int:
    """Return how many uploads are processed at once (``$DFA_CONCURRENT_UPLOADS``, default 2)."""
    value = os.environ.get(CONCURRENT_ENV)
    try:
        return max(1, int(value)) if value else DEFAULT_CONCURRENT_UPLOADS
    except ValueError:
        return DEFAULT_CONCURRENT_UPLOADS


def find_detectors(root: str | os.PathLike) -> list[Path]:
    """Return every detector folder under ``root`` (``root`` itself included), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p.parent for p in root.rglob("config.json") if is_detector_folder(p.parent)]
    # Hidden folders hold temporary or cached copies, not detectors to offer.
    visible = [
        p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(visible)


def detector_label(folder: Path, root: Path) -> str:
    """Return how a detector is named in the picker: its path relative to the runs folder."""
    try:
        rel = folder.relative_to(root).as_posix()
    except ValueError:
        rel = folder.as_posix()
    return rel if rel != "." else folder.name


def decode_upload(
    data: bytes,
    name: str,
    limit_mb: int | None = None,
    max_seconds: float | None = None,
    target_sr: int = 16000,
) -> tuple[np.ndarray, int]:
    """Decode an upload to mono at ``target_sr``, or raise UploadError with a message for the user.

    ``limit_mb`` caps the file's size and ``max_seconds`` the audio's duration (defaults: the
    environment, see :func:`max_upload_mb` and :func:`max_upload_seconds`); a file over the
    duration cap is refused before it is decoded, or as soon as decoding passes the cap.
    """
    limit_mb = max_upload_mb() if limit_mb is None else limit_mb
    max_seconds = max_upload_seconds() if max_seconds is None else max_seconds
    hint = (
        "Cut the recording shorter, or score it with "
        f"`dfa predict {name} --model <detector folder>`."
    )
    size_mb = len(data) / 1e6
    if size_mb > limit_mb:
        raise UploadError(f"{name} is {size_mb:.1f} MB; the limit is {limit_mb} MB. {hint}")
    try:
        return decode_capped(data, target_sr, max_seconds, name=name), target_sr
    except DurationLimitError as error:
        length = format_duration(error.seconds) if error.seconds else "more than that"
        raise UploadError(
            f"{name} lasts {length}; the limit is {format_duration(error.max_seconds)} of audio. "
            + hint
        ) from error
    except AudioError as error:
        raise UploadError(f"Cannot score this file. {error}") from error


def score_for_page(
    detector: Detector, wave: np.ndarray, sr: int, name: str
) -> tuple[WindowedScore | None, str | None]:
    """Score an upload; return ``(result, None)``, or ``(None, why)`` when it gets no verdict.

    No verdict: the upload is silent, or the model gives it a score that is not a number.
    """
    try:
        return detector.score_waveform(wave, sr, name=name), None
    except AudioError as error:
        return None, f"No verdict. {error}"


def verdict_text(result: WindowedScore) -> str:
    """Return the one-line verdict shown to the user (and read by the browser test)."""
    word = "FAKE (synthetic speech)" if result.label == "fake" else "REAL (bona fide speech)"
    return (
        f"Verdict: {word}. Probability of fake {result.p_fake:.3f} "
        f"(threshold {result.threshold:.3f})."
    )


def speech_warning(result: WindowedScore) -> str | None:
    """Return the warning shown beside a verdict on audio that holds no speech, else None."""
    if result.speech_found is not False:
        return None
    return (
        f"Little or no speech found ({result.speech_seconds:.2f} s; at least "
        f"{result.min_speech_seconds:g} s expected). The detector was trained on speech only, "
        "so this verdict is about a sound it has never heard and means little."
    )


def waveform_figure(wave: np.ndarray, sr: int) -> Any:
    """Plot the waveform; long signals are drawn as a min/max envelope to stay light."""

    fig, ax = plt.subplots(figsize=(9, 2.2))
    columns = 4000
    if wave.size > 2 * columns:
        step = wave.size // columns
        trimmed = wave[: step * columns].reshape(columns, step)
        t = np.arange(columns) * step / sr
        ax.fill_between(t, trimmed.min(axis=1), trimmed.max(axis=1), linewidth=0)
    else:
        ax.plot(np.arange(wave.size) / sr, wave, linewidth=0.6)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_ylim(-1.05, 1.05)
    ax.margins(x=0)
    fig.tight_layout()
    return fig


def mel_figure(wave: np.ndarray, sr: int, seconds: float = SPECTROGRAM_SECONDS) -> Any:
    """Plot a log-mel spectrogram (64 bands, 25 ms windows, 10 ms hop) of the first ``seconds``."""

    piece = torch.from_numpy(np.ascontiguousarray(wave[: int(seconds * sr)]))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=512, win_length=int(0.025 * sr), hop_length=int(0.01 * sr), n_mels=64
    )(piece)
    db = 10.0 * torch.log10(mel + 1e-10)
    db = torch.clamp(db, min=float(db.max()) - 80.0).numpy()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    image = ax.imshow(
        db, origin="lower", aspect="auto", extent=(0, piece.numel() / sr, 0, 64), cmap="magma"
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    fig.colorbar(image, ax=ax, label="dB")
    fig.tight_layout()
    return fig


def timeline_figure(result: WindowedScore) -> Any:
    """Plot the probability of fake of every window against time, with the threshold."""

    fig, ax = plt.subplots(figsize=(9, 2.4))
    # One step per window, held until the window's end, so the last window is drawn too.
    edges = np.append(
        result.window_starts, min(result.duration, result.window_starts[-1] + result.window_seconds)
    )
    values = np.append(result.window_p_fake, result.window_p_fake[-1])
    ax.step(edges, values, where="post", label="window P(fake)")
    ax.axhline(result.threshold, color="tab:red", linestyle="--", label="threshold")
    # Windows with less speech than the minimum are shaded: their scores judge other sounds.
    quiet = [
        (start, min(start + result.window_seconds, result.duration))
        for start, speech in zip(
            result.window_starts, result.window_speech_seconds or (), strict=False
        )
        if result.min_speech_seconds is not None and speech < result.min_speech_seconds
    ]
    for i, (start, end) in enumerate(quiet):
        ax.axvspan(start, end, color="0.85", zorder=0, label="no speech found" if i == 0 else None)
    ax.set_ylim(0, 1)
    ax.set_xlabel("window start (s)")
    ax.set_ylabel("P(fake)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def score_caption(result: WindowedScore) -> str:
    """One line saying how many windows there were and which of them the file score averages."""
    counted = result.n_windows_in_mean
    if result.speech_seconds is not None and counted < result.n_audible_windows:
        which = f"{counted} audible window(s) that hold speech"
    else:
        which = f"{counted} audible window(s)"
    return (
        f"{result.duration:.1f} s of audio in {result.n_windows} window(s) of "
        f"{result.window_seconds:g} s; the file score is the mean of the scores of the {which}."
    )


def _uploader(st: Any, limit_mb: int) -> Any:
    longest = format_duration(max_upload_seconds())
    help_text = f"wav, flac, mp3, ogg, m4a, opus ... up to {limit_mb} MB and {longest} of audio"
    kwargs: dict[str, Any] = {"help": help_text}
    # Older Streamlit has no per-widget limit; then server.maxUploadSize (Makefile) applies.
    if "max_upload_size" in inspect.signature(st.file_uploader).parameters:
        kwargs["max_upload_size"] = limit_mb
    return st.file_uploader("Upload an audio file", key="upload", **kwargs)


def _show(st: Any, fig: Any) -> None:

    st.pyplot(fig)
    plt.close(fig)  # Streamlit keeps no reference; closing frees it at once


def main() -> None:
    """Lay out the app: detector picker, model card, input, plots and verdict."""
    import streamlit as st

    st.set_page_config(page_title="dfa: audio deepfake detector", layout="wide")
    st.title("Is this speech real or synthetic?")

    @st.cache_resource(show_spinner="Loading detector ...")
    def cached_detector(folder: str, stamp: float) -> Detector:
        # ``stamp`` (config mtime) makes a retrained folder load afresh.
        return load_detector(folder)

    @st.cache_resource(show_spinner=False)
    def work_slots(n: int) -> threading.BoundedSemaphore:
        # One per server, shared by every session: the uploads past ``n`` wait here.
        return threading.BoundedSemaphore(n)

    root = runs_dir()
    folders = find_detectors(root)
    if not folders:
        st.warning(NO_DETECTOR_MESSAGE.format(root=root))
        return
    labels = [detector_label(f, root) for f in folders]
    choice = st.sidebar.selectbox("Detector", labels, key="detector")
    folder = folders[labels.index(choice)]
    try:
        detector = cached_detector(str(folder), (folder / "config.json").stat().st_mtime)
    except Exception as error:  # any load failure is shown, the app keeps running
        st.error(f"Cannot load detector {choice}: {error}")
        return
    st.sidebar.caption(
        f"Model `{detector.model_name}`, {detector.window_seconds:g}-s windows, "
        f"threshold P(fake) >= {detector.threshold:.3f}."
    )
    with st.sidebar.expander("Model card", expanded=False):
        st.markdown(detector.model_card or "This detector has no model card (README.md).")

    mode = st.sidebar.radio("Input", [FILE_MODE, LIVE_MODE], key="mode")
    if mode == LIVE_MODE:
        show_live(st, detector)
        return
    limit_mb = max_upload_mb()
    recording = None
    if hasattr(st, "audio_input"):  # Streamlit >= 1.39
        upload_tab, record_tab = st.tabs(["Upload a file", "Record"])
        with upload_tab:
            upload = _uploader(st, limit_mb)
        with record_tab:
            recording = st.audio_input("Record from the microphone", key="record")
    else:
        upload = _uploader(st, limit_mb)
    source = upload if upload is not None else recording
    if source is None:
        st.info("Upload a file or record a clip to score it.")
        return

    data = source.getvalue()
    name = getattr(source, "name", None) or "recording.wav"
    with st.spinner("Decoding and scoring ..."), work_slots(upload_slots()):
        _score_and_show(st, detector, data, name, limit_mb)


def _score_and_show(st: Any, detector: Detector, data: bytes, name: str, limit_mb: int) -> None:
    """Decode and score one upload and lay out its verdict and plots."""
    try:
        wave, sr = decode_upload(data, name, limit_mb, target_sr=detector.sample_rate)
    except UploadError as error:
        st.error(str(error))
        return
    result, why = score_for_page(detector, wave, sr, name)
    if result is None:
        st.warning(why)
        st.audio(data)
        return
    verdict = verdict_text(result)
    if result.label == "fake":
        st.error(verdict)
    else:
        st.success(verdict)
    warning = speech_warning(result)
    if warning:
        st.warning(warning)
    st.caption(score_caption(result))
    st.audio(data)
    st.subheader("Waveform")
    _show(st, waveform_figure(wave, sr))
    st.subheader("Mel spectrogram")
    if result.duration > SPECTROGRAM_SECONDS:
        st.caption(f"The first {SPECTROGRAM_SECONDS:g} s.")
    _show(st, mel_figure(wave, sr))
    if result.n_windows > 1:
        st.subheader("Window scores")
        _show(st, timeline_figure(result))
    show_explanation(st, detector, wave, sr, result)


EXPLAIN_LABEL = "Explain: where does the detector listen?"


def show_explanation(
    st: Any, detector: Detector, wave: np.ndarray, sr: int, result: WindowedScore
) -> None:
    """Behind a checkbox, draw where in time and frequency a scored clip's verdict comes from.

    The occlusion map of :func:`dfa_lib.detector.explain.explain` over the first
    ``SPECTROGRAM_SECONDS``, with the window scores below it; ``result`` is the clip's score.
    """
    if not st.checkbox(EXPLAIN_LABEL, key="explain"):
        return
    try:
        with st.spinner("Removing one time-frequency patch at a time and scoring again ..."):
            explanation = explain(
                detector, wave, sr, max_seconds=SPECTROGRAM_SECONDS, result=result
            )
    except AudioError as error:
        st.warning(f"No explanation. {error}")
        return
    st.caption(
        f"Each patch ({DEFAULT_BANDS} mel-spaced bands by {DEFAULT_PATCH_SECONDS:g} s) was "
        "removed from the spectrogram in turn and the clip scored again. Red: without it the "
        "clip sounds more real, so it pushes the verdict towards fake; blue: it pushes towards "
        "real; pale: the detector ignores it. Hatched: windows with too little speech."
    )
    _show(st, explanation_figure(explanation))


if __name__ == "__main__":
    main()
