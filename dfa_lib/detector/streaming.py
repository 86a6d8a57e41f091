"""Score audio as it arrives: one window score per hop, and a running verdict on the stream.

:class:`StreamScorer` keeps the stream at the detector's rate (chunks at another rate go
through a :class:`~dfa_lib.data.live.StreamResampler` first) and, each time the newest
``window`` seconds are complete, scores them: windows start every ``hop`` seconds from the
start of the stream, so they are the windows :meth:`Detector.score_batch` cuts a file into
with the same window and hop, and each is scored by that method (one window, or the windows
one chunk completed, in one forward pass). The window's score, calibrated probability of fake,
silence floor and seconds of speech are therefore those ``dfa predict --window W --hop H``
gives the same samples; only the speech-activity model reads each window on its own, where
``predict`` reads the whole file, so its count near a window's edges may differ a little.

Running verdict
    After every hop the stream's verdict is :meth:`Detector.aggregate_windows` over all the
    windows scored so far: the mean of the bona fide scores of the audible windows that hold
    at least ``min_speech_seconds`` of speech (all the audible ones while none does, all of
    them while none is audible), its calibrated probability of fake and the label, as
    ``dfa predict`` judges a file. Windows that a later speaking window pushes out of the
    mean are flagged in the hops that follow (``in_verdict``).

End of the stream
    :meth:`StreamScorer.finish` scores what is left as ``predict`` would: a stream shorter
    than one window is one window padded the way training padded clips, and the tail after
    the last full window becomes a last window padded with zeros. After ``finish``, the
    stream's windows and verdict are those of ``predict`` on the same samples.

Latency
    Each :class:`HopScore` carries ``latency_ms``, the wall time from the arrival of the chunk
    that completed its window to its score, and ``behind``: True when that latency exceeds
    the hop (scoring cannot keep pace with audio arriving in real time), or when the stream
    has been read more slowly than real time by more than one hop (a live source whose
    backlog grows). :meth:`StreamScorer.summary` says whether the whole stream kept up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dfa_lib.data.live import StreamResampler
from dfa_lib.detector.scorer import Detector

__all__ = ["DEFAULT_HOP_SECONDS", "HopScore", "StreamScorer", "StreamSummary"]

DEFAULT_HOP_SECONDS = 0.5  # a score every half second, or every window when windows are shorter


@dataclass(frozen=True)
class HopScore:
    """The score of the window one hop completed, and the stream's verdict after it."""

    hop: int  # 0, 1, 2 ... in stream order
    time: float  # seconds of stream received when the window was scored
    start: float  # window start, seconds from the start of the stream
    end: float  # window end (the stream's end for a last, padded window)
    score: float  # bona fide score of the window (higher = real)
    p_fake: float  # calibrated probability of fake of the window
    audible: bool  # whether the window's loudest 20 ms frame reaches the silence floor
    speech_seconds: float | None  # seconds of speech in the window; None: not checked
    in_verdict: bool  # whether the window counts in the running verdict after this hop
    verdict: str  # running verdict of the stream: "fake" or "real"
    verdict_p_fake: float  # running probability of fake of the stream
    verdict_score: float  # running bona fide score: mean of the windows that count
    windows_in_verdict: int  # how many windows the running verdict averages
    threshold: float  # probability-of-fake threshold of the detector
    latency_ms: float  # wall time from the chunk that completed the window to this score
    behind: bool  # scoring could not keep pace with real time at this hop
    padded: bool = False  # a last window cut short by the end of the stream, padded

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class StreamSummary:
    """The whole stream: its verdict and how fast it was scored."""

    seconds: float  # of audio received
    hops: int  # windows scored
    verdict: str | None  # None when no window was scored (an empty stream)
    verdict_p_fake: float | None
    windows_in_verdict: int
    threshold: float
    speech_found: bool | None  # some window held min_speech_seconds of speech; None: unchecked
    hop_seconds: float
    window_seconds: float
    median_latency_ms: float | None
    max_latency_ms: float | None
    hops_behind: int
    keeps_up: bool  # no hop fell behind real time

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict."""
        return asdict(self)


class StreamScorer:
    """Score a stream window by window through a :class:`Detector` (see the module docstring).

    ``source_rate`` is the rate of the chunks given to :meth:`feed`; ``window_seconds``
    defaults to the detector's window and ``hop_seconds`` to :data:`DEFAULT_HOP_SECONDS` (or
    the window, when shorter). Both are checked as :meth:`Detector.window_and_hop` checks
    them (ValueError). ``clock`` returns seconds (tests may give a fake one).
    """

    def __init__(
        self,
        detector: Detector,
        source_rate: int,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        name: str = "the stream",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.detector = detector
        self.name = name
        self.sample_rate = detector.sample_rate
        window, _ = detector.window_and_hop(window_seconds, None)
        if hop_seconds is None:
            hop_seconds = min(DEFAULT_HOP_SECONDS, window / self.sample_rate)
        self.window, self.hop = detector.window_and_hop(window_seconds, hop_seconds)
        self.source_rate = source_rate
        self.resampler = StreamResampler(source_rate, self.sample_rate)
        self.clock = clock
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from _buffer_start on
        self._buffer_start = 0
        self._received = 0  # samples at the detector's rate
        self._next_start = 0  # start of the next window to score
        self._last_start: int | None = None  # start of the last full window scored
        self._scores: list[float] = []
        self._audible: list[bool] = []
        self._speech: list[float] | None = None if detector.min_speech_seconds is None else []
        self._latencies: list[float] = []
        self._behind = 0
        self._first_arrival: float | None = None
        self._finished = False
        self.hops: list[HopScore] = []

    @property
    def window_seconds(self) -> float:
        """Window length, seconds."""
        return self.window / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        """Distance between window starts, seconds."""
        return self.hop / self.sample_rate

    @property
    def seconds(self) -> float:
        """Seconds of audio received so far (at the detector's rate)."""
        return self._received / self.sample_rate

    def warm_up(self) -> None:
        """Score one window of faint noise and forget it, so the first hop is not the slowest.

        The first forward pass of a network (and of the speech-activity model) allocates and
        compiles; a live stream would otherwise start a few hundred milliseconds behind.
        """
        noise = np.random.default_rng(0).standard_normal(self.window).astype(np.float32)
        self.detector.score_batch(
            [0.01 * noise], self.sample_rate, self.window_seconds, self.hop_seconds
        )

    def feed(self, chunk: np.ndarray) -> list[HopScore]:
        """Take the next chunk (mono, at ``source_rate``); return the hops it completed."""
        if self._finished:
            raise RuntimeError(f"{self.name}: the stream was finished; start a new StreamScorer")
        arrival = self.clock()
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"{self.name}: chunks must be mono (1-D), got shape {chunk.shape}")
        if self._first_arrival is None and chunk.size:
            # The stream began one chunk before it arrived.
            self._first_arrival = arrival - chunk.size / self.source_rate
        return self._take(self.resampler.push(chunk), arrival)

    def finish(self) -> list[HopScore]:
        """End the stream: score the padded tail, or a stream shorter than one window."""
        if self._finished:
            return []
        arrival = self.clock()
        hops = self._take(self.resampler.flush(), arrival)
        self._finished = True
        if self._last_start is None and self._received:
            # Shorter than a window: one window, padded the way training padded clips.
            hops += self._score([(0, self._buffer.copy())], arrival, padded=True)
        elif self._last_start is not None and self._last_start + self.window < self._received:
            # The tail after the last full window: a last window padded with zeros, as
            # dfa_lib.data.audio.window_starts and Detector.score_batch cut and fill it.
            start = self._next_start
            wave = np.zeros(self.window, dtype=np.float32)
            piece = self._buffer[max(0, start - self._buffer_start) :][: self.window]
            if start < self._received:
                wave[: piece.size] = piece
            hops += self._score([(start, wave)], arrival, padded=True)
        return hops

    def _take(self, samples: np.ndarray, arrival: float) -> list[HopScore]:
        if samples.size:
            self._buffer = np.concatenate([self._buffer, samples])
            self._received += samples.size
        ready = []
        while self._next_start + self.window <= self._received:
            begin = self._next_start - self._buffer_start
            ready.append((self._next_start, self._buffer[begin : begin + self.window].copy()))
            self._last_start = self._next_start
            self._next_start += self.hop
        # Keep what the next window (and a padded tail) may need.
        keep_from = min(self._next_start, self._received)
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start :]
            self._buffer_start = keep_from
        return self._score(ready, arrival) if ready else []

    def _score(
        self, windows: list[tuple[int, np.ndarray]], arrival: float, padded: bool = False
    ) -> list[HopScore]:
        """Score windows through :meth:`Detector.score_batch` and update the running verdict."""
        sr = self.sample_rate
        results = self.detector.score_batch(
            [wave for _, wave in windows],
            sr,
            window_seconds=self.window_seconds,
            hop_seconds=self.hop_seconds,
            names=[f"{self.name} at {start / sr:.2f} s" for start, _ in windows],
        )
        done = self.clock()
        latency = 1000.0 * (done - arrival)
        lag = 0.0 if self._first_arrival is None else done - self._first_arrival - self.seconds
        behind = latency > 1000.0 * self.hop_seconds or lag > self.hop_seconds
        out = []
        for (start, _), result in zip(windows, results, strict=True):
            speech = result.window_speech_seconds[0] if result.window_speech_seconds else None
            self._scores.append(result.window_scores[0])
            self._audible.append(result.window_audible[0])
            if self._speech is not None:
                self._speech.append(0.0 if speech is None else speech)
            in_mean, score, p_fake, label = self.detector.aggregate_windows(
                self._scores, self._audible, self._speech
            )
            self._latencies.append(latency)
            self._behind += behind
            hop = HopScore(
                hop=len(self.hops),
                time=self.seconds,
                start=start / sr,
                end=min(start + self.window, self._received) / sr,
                score=result.window_scores[0],
                p_fake=result.window_p_fake[0],
                audible=result.window_audible[0],
                speech_seconds=speech,
                in_verdict=bool(in_mean[-1]),
                verdict=label,
                verdict_p_fake=p_fake,
                verdict_score=score,
                windows_in_verdict=int(in_mean.sum()),
                threshold=self.detector.threshold,
                latency_ms=latency,
                behind=bool(behind),
                padded=padded,
            )
            self.hops.append(hop)
            out.append(hop)
        return out

    def summary(self) -> StreamSummary:
        """The stream so far: its running verdict, latency and whether it kept up."""
        last = self.hops[-1] if self.hops else None
        speech_found = None
        least = self.detector.min_speech_seconds
        if self._speech and least is not None:
            speech_found = max(self._speech) >= least
        latencies = np.asarray(self._latencies)
        return StreamSummary(
            seconds=self.seconds,
            hops=len(self.hops),
            verdict=last.verdict if last else None,
            verdict_p_fake=last.verdict_p_fake if last else None,
            windows_in_verdict=last.windows_in_verdict if last else 0,
            threshold=self.detector.threshold,
            speech_found=speech_found,
            hop_seconds=self.hop_seconds,
            window_seconds=self.window_seconds,
            median_latency_ms=float(np.median(latencies)) if latencies.size else None,
            max_latency_ms=float(latencies.max()) if latencies.size else None,
            hops_behind=self._behind,
            keeps_up=self._behind == 0,
        )
