"""Speech activity: how many seconds of a waveform are speech.

A detector trained on speech says "real" or "fake" about anything it is given, a whistle or a
dial tone included. Before a verdict is shown, :class:`SpeechActivity` measures how much of the
audio is speech, so ``dfa predict`` and the app can say when a verdict is about something the
detector was never trained on.

The model is Silero VAD (MIT licence), whose TorchScript file ships inside the ``silero-vad``
wheel, so nothing is downloaded. It gives a speech probability for every 32 ms chunk of 16 kHz
audio (512 samples; 8 kHz audio is read in 256-sample chunks); a chunk with a probability of at
least :data:`SPEECH_PROBABILITY` counts as speech. The package itself is not imported: importing
it sets torch's thread count to one for the whole process. Its model file is found through the
import system and loaded with ``torch.jit.load``.

Before the model runs, the audio is scaled so that its loudest 20 ms frame sits at
:data:`REFERENCE_DBFS`, the level of the offline corpus's clips, so a quiet recording is read
as its loud twin would be (the model's output depends on level). The silence floor (:mod:`dfa_lib.data.audio`) is what refuses audio that is
too quiet to judge; this module never sees a level as a reason.

Measured on the offline corpus (all 8,613 clips of 1.5 s, after its telephone channel;
``python -m dfa_lib.features.vad data/offline-main data/offline-cross`` prints the table): every clip
of every synthetic engine but Griffin-Lim holds at least 0.25 s of speech (Griffin-Lim: 8 of
251 clips under 0.1 s), every real prompt of the main corpus at least 0.16 s, and 65 of the
1,593 real game-dialogue clips of the cross-source corpus (by their names, mostly single short
words and character noises) less than 0.1 s. Pure tones, chirps, DTMF, harmonic stacks,
clicks, white and pink noise hold none. The check therefore warns and never refuses: a real
clip it misses keeps its verdict.
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dfa_lib.data.audio import load_audio, loudest_frame_dbfs, resample

__all__ = [
    "MIN_SPEECH_SECONDS",
    "REFERENCE_DBFS",
    "SPEECH_PROBABILITY",
    "SpeechActivity",
    "SpeechActivityUnavailable",
    "load_speech_activity",
    "survey",
    "survey_table",
    "with_speech_seconds",
]

SPEECH_PROBABILITY = 0.5  # the model's own default decision threshold
MIN_SPEECH_SECONDS = 0.1  # less speech than this in a file: its verdict is flagged
REFERENCE_DBFS = -18.0  # loudest-frame level the audio is scaled to before the model
SEGMENT_SECONDS = 30.0  # a waveform is read in segments this long, side by side
WARM_UP_SECONDS = 1.0  # each segment after the first starts this much early
MAX_ROWS = 128  # segments read side by side
SPEECH_BATCH = 64  # clips of a collection measured side by side (with_speech_seconds)
_PACKAGE = "silero-vad"
_MODEL_FILE = ("data", "silero_vad.jit")


class SpeechActivityUnavailable(RuntimeError):
    """The Silero VAD model file cannot be found or loaded."""


@dataclass(frozen=True)
class _Chunking:
    rate: int  # the rate the model reads
    samples: int  # samples per chunk at that rate


def _chunking(sr: int) -> _Chunking:
    # The model reads 8 kHz natively; everything else goes to 16 kHz.
    return _Chunking(8000, 256) if sr == 8000 else _Chunking(16000, 512)


def _loudest_frame_dbfs_blockwise(wave: np.ndarray, sr: int, block_frames: int = 500) -> float:
    """:func:`dfa_lib.data.audio.loudest_frame_dbfs` computed a block of 20 ms frames at a time."""
    frame = max(1, int(round(0.02 * sr)))
    block = block_frames * frame  # a whole number of frames, so the frames are the same
    return max(
        (loudest_frame_dbfs(wave[i : i + block], sr) for i in range(0, max(1, wave.size), block)),
        default=float("-inf"),
    )


def _model_path() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechActivityUnavailable(
            f"the speech-activity check needs the {_PACKAGE} package (pip install {_PACKAGE}); "
            "or turn the check off (min_speech_seconds=None, `dfa predict --min-speech off`)"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *_MODEL_FILE)
    if not path.is_file():
        raise SpeechActivityUnavailable(
            f"{path} is missing: the installed {_PACKAGE} package does not ship its TorchScript "
            f"model; reinstall it (pip install --force-reinstall {_PACKAGE})"
        )
    return path


class SpeechActivity:
    """Silero VAD on whole waveforms: per-chunk speech probabilities and seconds of speech.

    One instance may be shared between threads (the app): calls are serialised, because the
    model keeps its recurrent state between chunks.
    """

    def __init__(self, model_path: str | Path | None = None) -> None:

        path = Path(model_path) if model_path is not None else _model_path()
        try:
            self._model = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as error:
            raise SpeechActivityUnavailable(
                f"cannot load the speech-activity model {path}: {error}"
            ) from error
        self.model_path = path
        self._lock = threading.Lock()

    def chunk_seconds(self, sr: int) -> float:
        """Length in seconds of the chunks :meth:`probabilities` returns for ``sr`` Hz input."""
        c = _chunking(sr)
        return c.samples / c.rate

    def probabilities(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """Speech probability of every chunk of ``wave`` (mono, ``sr`` Hz), in order.

        See :meth:`probabilities_many`, which this calls with one waveform.
        """
        return self.probabilities_many([wave], sr)[0]

    def probabilities_many(self, waves: Sequence[np.ndarray], sr: int) -> list[np.ndarray]:
        """Speech probability of every chunk of each waveform (mono, ``sr`` Hz).

        The last chunk of a waveform is padded with zeros; a waveform shorter than one chunk is
        one chunk; digital silence gives zeros without running the model. The model reads a
        waveform chunk after chunk, carrying its state, in segments of
        :data:`SEGMENT_SECONDS` that start :data:`WARM_UP_SECONDS` early (the warm-up's
        probabilities are dropped), and up to :data:`MAX_ROWS` segments of any waveforms step
        through the model side by side. A waveform no longer than one segment is therefore read
        exactly as in one pass from its start, and the samples are read where they lie, so an
        hour of audio costs no copy of itself.
        """

        if sr <= 0:
            raise ValueError(f"the sample rate must be positive, got {sr}")
        c = _chunking(sr)
        prepared, gains, out = [], [], []
        for i, wave in enumerate(waves):
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim != 1:
                raise ValueError(f"waveform {i} must be mono (1-D), got shape {wave.shape}")
            if sr != c.rate:
                wave = resample(wave, sr, c.rate)
            level = _loudest_frame_dbfs_blockwise(wave, c.rate)
            prepared.append(wave)
            gains.append(10.0 ** ((REFERENCE_DBFS - level) / 20.0) if np.isfinite(level) else 0.0)
            out.append(np.zeros(max(1, -(-wave.size // c.samples)), dtype=np.float32))
        segment = max(1, round(SEGMENT_SECONDS * c.rate / c.samples))  # in chunks
        warm_up = round(WARM_UP_SECONDS * c.rate / c.samples)
        rows = [  # (waveform, first chunk read, first chunk kept, end chunk)
            (i, max(0, first - warm_up), first, min(probs.size, first + segment))
            for i, probs in enumerate(out)
            if gains[i] > 0
            for first in range(0, probs.size, segment)
        ]
        rows.sort(key=lambda row: row[3] - row[1], reverse=True)  # similar lengths together
        with self._lock, torch.inference_mode():
            for start in range(0, len(rows), MAX_ROWS):
                block = rows[start : start + MAX_ROWS]
                batch = torch.zeros(len(block), c.samples)
                view = batch.numpy()
                self._model.reset_states()
                for step in range(block[0][3] - block[0][1]):
                    for r, (i, read, _, end) in enumerate(block):
                        k = read + step
                        piece = prepared[i][k * c.samples : (k + 1) * c.samples] if k < end else ()
                        n = len(piece)
                        if n:
                            np.multiply(piece, gains[i], out=view[r, :n])
                            np.clip(view[r, :n], -1.0, 1.0, out=view[r, :n])
                        view[r, n:] = 0.0
                    probs = self._model(batch, c.rate)[:, 0].numpy()
                    for r, (i, read, keep, end) in enumerate(block):
                        if keep <= read + step < end:
                            out[i][read + step] = probs[r]
        return out

    def speech_seconds(
        self,
        wave: np.ndarray,
        sr: int,
        spans: Sequence[tuple[int, int]] = (),
    ) -> tuple[float, list[float]]:
        """Seconds of speech in the whole waveform, and in each ``(start, end)`` sample span.

        A chunk counts as speech when its probability reaches :data:`SPEECH_PROBABILITY`; a
        span gets the chunks that start inside it.
        """
        return self.speech_seconds_many([wave], sr, [spans])[0]

    def speech_seconds_many(
        self,
        waves: Sequence[np.ndarray],
        sr: int,
        spans: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[tuple[float, list[float]]]:
        """:meth:`speech_seconds` of several waveforms, read side by side (``spans`` per wave)."""
        step = self.chunk_seconds(sr)
        results = []
        for probs, wave_spans in zip(
            self.probabilities_many(waves, sr), spans or [()] * len(waves), strict=True
        ):
            speech = probs >= SPEECH_PROBABILITY
            starts = np.arange(probs.size) * step  # seconds
            counted = np.concatenate([[0], np.cumsum(speech)])
            bounds = np.asarray(wave_spans, dtype=np.float64).reshape(-1, 2) / sr
            first = np.searchsorted(starts, bounds[:, 0], side="left")  # chunks starting in
            end = np.searchsorted(starts, bounds[:, 1], side="left")  # [start, end)
            per_span = ((counted[end] - counted[first]) * step).tolist()
            results.append((float(speech.sum() * step), per_span))
        return results


_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def load_speech_activity() -> SpeechActivity:
    """Return the process's shared :class:`SpeechActivity` (loaded on first use)."""
    with _SHARED_LOCK:
        if "model" not in _SHARED:
            _SHARED["model"] = SpeechActivity()
        return _SHARED["model"]


def with_speech_seconds(
    clips: Iterable[tuple[np.ndarray, int]],
    activity: SpeechActivity | None = None,
    batch: int = SPEECH_BATCH,
) -> Iterator[tuple[np.ndarray, int, float]]:
    """Yield every ``(wave, sr)`` of ``clips`` with its seconds of speech, in order.

    ``batch`` clips at a time are measured side by side (those of one rate together), which
    for many short clips costs a fraction of one call each; only a batch is held in memory.
    """
    activity = activity or load_speech_activity()
    pending: list[tuple[np.ndarray, int]] = []

    def measured() -> list[tuple[np.ndarray, int, float]]:
        speech: dict[int, float] = {}
        for rate in {sr for _, sr in pending}:
            same = [i for i, (_, sr) in enumerate(pending) if sr == rate]
            totals = activity.speech_seconds_many([pending[i][0] for i in same], rate)
            speech.update((i, seconds) for i, (seconds, _) in zip(same, totals, strict=True))
        return [(wave, sr, speech[i]) for i, (wave, sr) in enumerate(pending)]

    for clip in clips:
        pending.append(clip)
        if len(pending) == batch:
            yield from measured()
            pending.clear()
    yield from measured()


def survey(manifest: Any, root: str | Path, activity: SpeechActivity | None = None) -> Any:
    """Seconds of speech in every clip of a manifest (files read under ``root``).

    Returns the manifest's ``label``, ``generator`` and ``source`` columns with
    ``speech_seconds`` and ``duration`` added, one row per clip, index kept.
    """

    root = Path(root)
    files = (load_audio(root / rel, target_sr=None) for rel in manifest["path"])
    rows = [
        {"speech_seconds": seconds, "duration": wave.size / sr}
        for wave, sr, seconds in with_speech_seconds(files, activity)
    ]
    out = manifest[["label", "generator", "source"]].copy()
    return out.join(pd.DataFrame(rows, index=manifest.index))


def survey_table(clips: Any, min_speech_seconds: float = MIN_SPEECH_SECONDS) -> Any:
    """Per label and generator: clips, clips with less speech than the minimum, least speech."""
    grouped = clips.assign(flagged=clips["speech_seconds"] < min_speech_seconds).groupby(
        ["label", "generator"]
    )
    return grouped.agg(
        clips=("speech_seconds", "size"),
        flagged=("flagged", "sum"),
        least_speech_s=("speech_seconds", "min"),
        median_speech_s=("speech_seconds", "median"),
    )


def main(argv: list[str] | None = None) -> int:
    """Print :func:`survey_table` for each corpus folder (one holding ``manifest.csv``)."""

    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.features.vad",
        description="Seconds of speech per clip of corpora, by label and generator.",
    )
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="corpus folder")
    args = parser.parse_args(argv)
    for folder in args.folders:
        manifest_path = Path(folder) / "manifest.csv"
        if not manifest_path.is_file():
            parser.error(f"{folder} holds no manifest.csv")
        table = survey_table(survey(pd.read_csv(manifest_path), folder))
        print(f"{folder} (flagged: under {MIN_SPEECH_SECONDS:g} s of speech)")
        print(table.round(3).to_string(), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
