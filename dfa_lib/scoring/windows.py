"""The one scoring rule shared by validation, evaluation and ``dfa predict``.

A clip is cut into windows of the model's training length (``hop`` defaults to the window);
a clip shorter than one window is filled the way training filled short clips (``pad_mode``),
the last partial window of a longer clip is zero-padded; each window gets the
bona fide score ``logit_real - logit_fake`` (higher means real, as in ASVspoof), and the clip's
score is the **mean of its window scores**. The mean of log-odds treats every second of a long
file alike; a file that is fake only in part scores in between, which the window scores show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dfa_lib.data.audio import frame_windows, pad_or_crop


def clip_windows(wave: np.ndarray, window: int, hop: int | None, pad_mode: str) -> np.ndarray:
    """Return the windows ``(n, window)`` a clip is scored on."""
    if wave.size <= window:
        return pad_or_crop(wave, window, mode="start", pad_mode=pad_mode)[None, :]
    return frame_windows(wave, window, hop or window, pad_last=True)


@torch.inference_mode()
def window_scores(
    model: torch.nn.Module,
    windows: np.ndarray,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Return the bona fide score of each window ``(n, window)`` (float64)."""
    model.eval()
    out = np.empty(len(windows), dtype=np.float64)
    for start in range(0, len(windows), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch_size]))
        logits = model(x.to(device)).float()
        out[start : start + len(x)] = (logits[:, 0] - logits[:, 1]).cpu().numpy()
    return out


def mean_window_scores(
    score_windows: Callable[[np.ndarray], np.ndarray],
    waves: Sequence[np.ndarray],
    window: int,
    pad_mode: str = "wrap",
    hop: int | None = None,
) -> np.ndarray:
    """Return one bona fide score per clip, the mean of its window scores (see module doc).

    ``score_windows`` maps windows ``(n, window)`` to ``n`` bona fide scores: a network's
    (:func:`window_scores`) or a classical model's ``score``.
    """
    pieces = [clip_windows(w, window, hop, pad_mode) for w in waves]
    if not pieces:
        return np.zeros(0, dtype=np.float64)
    counts = np.array([len(p) for p in pieces])
    scores = np.asarray(score_windows(np.concatenate(pieces)), dtype=np.float64)
    ends = np.cumsum(counts)
    return np.add.reduceat(scores, ends - counts) / counts


def score_waves(
    model: torch.nn.Module,
    waves: Sequence[np.ndarray],
    window: int,
    pad_mode: str = "wrap",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    hop: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Return one bona fide score per clip of a network: the mean of its window scores."""

    def score_windows(flat: np.ndarray) -> np.ndarray:
        scores = np.empty(len(flat), dtype=np.float64)
        step = batch_size * 8
        starts = range(0, len(flat), step)
        for start in tqdm(starts, desc="scoring", disable=not progress, leave=False):
            scores[start : start + step] = window_scores(
                model, flat[start : start + step], batch_size, device
            )
        return scores

    return mean_window_scores(score_windows, waves, window, pad_mode, hop)
