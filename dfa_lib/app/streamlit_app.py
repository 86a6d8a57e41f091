"""Streamlit app: score an uploaded or recorded clip with one of the trained detectors on disk.

Run it with ``make app`` (``streamlit run dfa_lib/app/streamlit_app.py``). Detectors are the
folders under ``$DFA_RUNS_DIR`` (default ``runs/``) whose ``config.json`` declares the
``dfa-detector`` format. Uploads above ``$DFA_MAX_UPLOAD_MB`` megabytes (default 200) are
refused with a message, as are files :func:`dfa_lib.data.audio.load_audio` cannot read.

The logic lives in plain functions (finding detectors, decoding an upload, the plots, the
verdict text) so that tests can call them without a browser; :func:`main` only lays them out.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchaudio

from dfa_lib.data.audio import AudioError, SilentAudioError, load_audio
from dfa_lib.detector.folder import is_detector_folder
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.scorer import Detector, WindowedScore

RUNS_DIR_ENV = "DFA_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
MAX_UPLOAD_ENV = "DFA_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 200  # matches --server.maxUploadSize in the Makefile
SPECTROGRAM_SECONDS = 60.0  # longer files show the spectrogram of their first minute
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


def decode_upload(data: bytes, name: str, limit_mb: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an uploaded file to 16 kHz mono, or raise UploadError with a message for the user."""
    limit_mb = max_upload_mb() if limit_mb is None else limit_mb
    size_mb = len(data) / 1e6
    if size_mb > limit_mb:
        raise UploadError(
            f"{name} is {size_mb:.1f} MB; the limit is {limit_mb} MB. Cut the recording "
            f"shorter, or score it with `dfa predict {name} --model <detector folder>`."
        )
    try:
        return load_audio(data, target_sr=16000)
    except AudioError as error:
        # load_audio names in-memory input "<N bytes in memory>"; the user knows the file name.
        message = str(error)
        if message.startswith("<"):
            message = name + message[message.index(">") + 1 :]
        raise UploadError(f"Cannot score this file. {message}") from error


def score_for_page(
    detector: Detector, wave: np.ndarray, sr: int, name: str
) -> tuple[WindowedScore | None, str | None]:
    """Score an upload; return ``(result, None)``, or ``(None, why)`` when it is silent."""
    try:
        return detector.score_waveform(wave, sr, name=name), None
    except SilentAudioError as error:
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
    kwargs: dict[str, Any] = {"help": f"wav, flac, mp3, ogg, m4a, opus ... up to {limit_mb} MB"}
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
    try:
        wave, sr = decode_upload(data, name, limit_mb)
    except UploadError as error:
        st.error(str(error))
        return
    with st.spinner("Scoring ..."):
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


if __name__ == "__main__":
    main()
