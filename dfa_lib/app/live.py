"""The app's live mode: the browser records from the microphone and the score grows as it listens.

A small Streamlit component (``live_component/index.html``, plain JavaScript, no build step)
asks for the microphone with ``getUserMedia``, gathers its samples with a
``ScriptProcessorNode`` and, every ``hop_seconds``, sends the new audio to Python as 16-bit PCM
in base64, numbered. Each value it sends triggers a rerun of the app, in which
:meth:`LiveState.update` feeds the chunks not yet seen to a
:class:`~dfa_lib.detector.streaming.StreamScorer` (the scorer of ``dfa stream``, so the windows
and the verdict are scored by the one rule of ``dfa predict``) kept in the session.

Streamlit starts the rerun a new value asks for at once, in a new thread, while the run before
it may still be scoring: :class:`LiveState` holds a lock, so the two runs take turns and each
chunk is scored once, in order. Chunks are never lost between reruns: the component keeps every chunk until the app says,
through the ``acked`` argument of the next render, that it has read it, and each value holds
all the chunks not yet acknowledged. A rerun that Streamlit replaces by a newer one therefore
only delays them. Chunks the session has already read (by their number) are skipped. A
denied or missing microphone comes back as an ``error`` value and is shown as such.
"""

from __future__ import annotations

import base64
import binascii
import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dfa_lib.detector.scorer import Detector
from dfa_lib.detector.streaming import HopScore, StreamScorer

COMPONENT_DIR = Path(__file__).with_name("live_component")
HOP_SECONDS = 0.5  # how often the browser sends audio and a window is scored
STATE_KEY = "live_state"


class LiveChunkError(ValueError):
    """A value from the recorder that does not hold what the component sends."""


def decode_chunk(text: str) -> np.ndarray:
    """Decode one chunk the component sent (base64 of 16-bit little-endian PCM) to float32."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as error:
        raise LiveChunkError(f"a live chunk is not base64 ({error})") from error
    if len(raw) % 2:
        raise LiveChunkError(f"a live chunk holds {len(raw)} bytes, not whole 16-bit samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)


@dataclass
class LiveState:
    """What one browser session has recorded and scored so far (kept in ``st.session_state``).

    ``recording`` names the recording the chunks belong to (the component draws a new name
    each time recording starts); ``next_chunk`` is the number of the first chunk not yet read.
    """

    detector_name: str = ""
    recording: str | None = None
    next_chunk: int = 0
    scorer: StreamScorer | None = None
    hops: list[HopScore] = field(default_factory=list)
    stopped: bool = False
    error: str | None = None
    retired: str | None = None  # a recording begun with another detector: its values are ignored
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def update(self, value: dict[str, Any] | None, detector: Detector) -> list[HopScore]:
        """Read one value from the recorder; return the hops its new chunks completed.

        A value from another recording (or for another detector) starts afresh. Raises
        :class:`LiveChunkError` for a value the component cannot have sent.
        """
        with self.lock:  # two reruns may overlap (see the module docstring)
            return self._update(value, detector)

    def _update(self, value: dict[str, Any] | None, detector: Detector) -> list[HopScore]:
        if not value:
            return []
        if value.get("error"):
            self.error = str(value["error"])
            return []
        recording = value.get("recording")
        if not recording or recording == self.retired:
            return []
        if self.recording is not None and detector.name != self.detector_name:
            # Another detector was picked mid-recording: it starts with the next recording.
            self.retired, self.recording, self.scorer, self.hops = self.recording, None, None, []
            self.detector_name = detector.name
            return []
        rate = value.get("rate")
        first = value.get("first")
        chunks = value.get("chunks") or []
        if not isinstance(rate, int | float) or not isinstance(first, int) or first < 0:
            raise LiveChunkError(f"a live value without a sample rate or chunk number: {value}")
        if recording != self.recording:
            self.recording, self.detector_name = str(recording), detector.name
            self.next_chunk, self.hops, self.stopped, self.error = 0, [], False, None
            self.scorer = StreamScorer(detector, int(rate), hop_seconds=HOP_SECONDS, name="live")
            self.scorer.warm_up()
        if self.scorer is None or self.stopped:
            return []
        new: list[HopScore] = []
        for number, text in enumerate(chunks, start=first):
            if number < self.next_chunk:
                continue  # read in an earlier rerun
            if number > self.next_chunk:
                raise LiveChunkError(
                    f"live chunk {number} arrived before chunk {self.next_chunk}; the recorder "
                    "lost audio"
                )
            new += self.scorer.feed(decode_chunk(text))
            self.next_chunk += 1
        if value.get("stopped"):
            new += self.scorer.finish()
            self.stopped = True
        self.hops += new
        return new

    def chart_data(self) -> pd.DataFrame:
        """Window and running probability of fake against the window's end, with the threshold."""
        return pd.DataFrame(
            {
                "window P(fake)": [h.p_fake for h in self.hops],
                "running P(fake)": [h.verdict_p_fake for h in self.hops],
                "threshold": [h.threshold for h in self.hops],
            },
            index=pd.Index([h.end for h in self.hops], name="window end (s)"),
        )

    def status_text(self) -> str:
        """One line about the stream so far (read by the browser test)."""
        if not self.hops:
            return "Live: no window scored yet (a window needs its first seconds of audio)."
        last = self.hops[-1]
        return (
            f"Live: {len(self.hops)} hop(s) scored over {self.scorer.seconds:.1f} s of audio; "
            f"latest window P(fake) {last.p_fake:.3f}, scored in {last.latency_ms:.0f} ms."
        )

    def verdict_text(self) -> str | None:
        """The running verdict, or None before the first window."""
        if not self.hops:
            return None
        last = self.hops[-1]
        word = "FAKE (synthetic speech)" if last.verdict == "fake" else "REAL (bona fide speech)"
        return (
            f"Running verdict: {word}. Probability of fake {last.verdict_p_fake:.3f} over "
            f"{last.windows_in_verdict} window(s) (threshold {last.threshold:.3f})."
        )


@functools.cache
def _recorder() -> Any:
    """Declare the recorder component once per process (Streamlit is an optional dependency)."""
    import streamlit.components.v1 as components

    return components.declare_component("dfa_live_recorder", path=str(COMPONENT_DIR))


def show_live(st: Any, detector: Detector) -> None:
    """Lay out the live mode: the recorder, the running verdict and the growing chart.

    The recorder and what it drives are a fragment (``st.fragment``): each value the recorder
    sends reruns only them, and Streamlit queues a fragment's reruns instead of cutting a run
    short for the next one, so every hop is drawn even when scoring takes most of a hop.
    """
    st.caption(
        f"Scores the last {detector.window_seconds:g} s every {HOP_SECONDS:g} s while you speak. "
        "Your browser asks for the microphone when you press Start; the audio stays on this "
        "server and is not kept."
    )
    st.fragment(_live_panel)(st, detector)


def _live_panel(st: Any, detector: Detector) -> None:
    state: LiveState = st.session_state.setdefault(STATE_KEY, LiveState())
    value = _recorder()(
        hop_seconds=HOP_SECONDS,
        recording=state.recording,
        acked=state.next_chunk,
        key="live_recorder",
        default=None,
    )
    try:
        state.update(value, detector)
        with state.lock:  # a snapshot: a newer rerun may be feeding the scorer
            verdict, status, chart = state.verdict_text(), state.status_text(), state.chart_data()
            hops = list(state.hops)
    except LiveChunkError as error:
        st.error(f"The live audio could not be read: {error}. Press Stop, then Start again.")
        return
    if state.error:
        st.error(
            f"Microphone unavailable: {state.error}. Allow this page to use the microphone "
            "(the icon in the address bar), check that one is plugged in, then press Start."
        )
        return
    if verdict is not None:
        (st.error if hops[-1].verdict == "fake" else st.success)(verdict)
    st.caption(status)
    if any(h.behind for h in hops[-5:]):
        st.warning(
            "Scoring is falling behind real time on this machine: the chart lags the voice. "
            "A detector with a shorter window, or a GPU, keeps up."
        )
    if hops:
        st.line_chart(chart, y_label="P(fake)")
