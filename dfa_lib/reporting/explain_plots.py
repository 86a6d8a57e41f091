"""The figure and files of a detector's explanation: spectrogram, saliency and score over time.

:func:`explanation_figure` draws a :class:`~dfa_lib.detector.explain.Explanation` in three
panels that share the time axis: the log-mel spectrogram, the occlusion saliency laid over it
(red: pushes the verdict towards fake, blue: towards real), and the probability of fake of
every window with the threshold, windows that hold too little speech shaded grey.
:func:`save_explanation` writes that figure as PNG and the explanation as JSON.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot's
global figure list, so the app's sessions and the command line can draw side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dfa_lib.core.atomic import atomic_path, write_json_atomically
from dfa_lib.detector.explain import Explanation

__all__ = ["explanation_figure", "save_explanation"]

_TICK_HZ = (0, 250, 500, 1000, 2000, 4000, 8000, 16000)


def _mel(hz: np.ndarray | float) -> np.ndarray:
    # The HTK mel scale of the explanation's bands: the y axis is linear in it.
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _quiet_spans(explanation: Explanation) -> list[tuple[float, float]]:
    """Start and end (seconds) of the windows that hold less speech than the detector asks."""
    result = explanation.result
    if result.window_speech_seconds is None or result.min_speech_seconds is None:
        return []
    return [
        (start, min(start + result.window_seconds, result.duration))
        for start, speech in zip(result.window_starts, result.window_speech_seconds, strict=True)
        if speech < result.min_speech_seconds
    ]


def explanation_figure(explanation: Explanation, title: str | None = None) -> Figure:
    """Draw the spectrogram, the saliency over it and P(fake) per window against time.

    ``title`` (default: the verdict) heads the figure. Grey spans in the lower panels are
    windows with less speech than the detector's ``min_speech_seconds`` (none are drawn when
    speech was not measured).
    """
    result = explanation.result
    fig = Figure(figsize=(10, 7.5), layout="constrained")
    ax_spec, ax_sal, ax_p = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [1.0, 1.0, 0.8]}
    )
    nyquist = explanation.sample_rate / 2
    top = float(_mel(nyquist))
    step = explanation.frame_times[1] if explanation.frame_times.size > 1 else 0.01
    extent = (
        float(explanation.frame_times[0]) - step / 2,
        float(explanation.frame_times[-1]) + step / 2,
        0.0,
        top,
    )
    image = ax_spec.imshow(
        explanation.spectrogram_db, origin="lower", aspect="auto", extent=extent, cmap="magma"
    )
    fig.colorbar(image, ax=ax_spec, label="dB")
    ax_spec.set_title("log-mel spectrogram", fontsize=10, loc="left")

    ax_sal.imshow(
        explanation.spectrogram_db, origin="lower", aspect="auto", extent=extent, cmap="gray_r"
    )
    saliency = explanation.saliency_map()
    overlay = ax_sal.imshow(
        saliency,
        origin="lower",
        aspect="auto",
        extent=extent,
        cmap="RdBu_r",
        vmin=-1.0,
        vmax=1.0,
        alpha=np.clip(0.15 + 0.85 * np.abs(saliency), 0.0, 1.0),
    )
    fig.colorbar(overlay, ax=ax_sal, label="saliency (+1: towards fake)")
    for edge in explanation.band_edges[1:-1]:
        ax_sal.axhline(float(_mel(edge)), color="0.5", linewidth=0.4)
    span = (
        f" of the first {explanation.explained_seconds:g} s"
        if explanation.explained_seconds < result.duration
        else ""
    )
    ax_sal.set_title(
        f"occlusion saliency{span} ({explanation.fill} fill; 1 = {explanation.scale:.3g} in "
        "bona fide score): red regions push the verdict towards fake",
        fontsize=10,
        loc="left",
    )
    ticks = [f for f in _TICK_HZ if f <= nyquist]
    for ax in (ax_spec, ax_sal):
        ax.set_yticks([float(_mel(f)) for f in ticks], [f"{f:g}" for f in ticks])
        ax.set_ylabel("frequency (Hz)")

    edges = np.append(
        result.window_starts, min(result.duration, result.window_starts[-1] + result.window_seconds)
    )
    values = np.append(result.window_p_fake, result.window_p_fake[-1])
    ax_p.step(edges, values, where="post", linewidth=2, label="window P(fake)")
    ax_p.axhline(result.threshold, color="tab:red", linestyle="--", label="threshold")
    for i, (start, end) in enumerate(_quiet_spans(explanation)):
        ax_p.axvspan(
            start, end, color="0.85", zorder=0, label="no speech found" if i == 0 else None
        )
        ax_sal.axvspan(start, end, facecolor="none", edgecolor="0.3", hatch="//", linewidth=0)
    ax_p.set_ylim(-0.03, 1.03)  # a margin, so P(fake) near 0 or 1 is not hidden by the frame
    ax_p.set_xlim(0.0, result.duration)
    ax_p.set_xlabel("time (s)")
    ax_p.set_ylabel("P(fake)")
    ax_p.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or _verdict(explanation))
    return fig


def save_explanation(
    explanation: Explanation, folder: str | os.PathLike, name: str, source: str | None = None
) -> tuple[Path, Path]:
    """Write ``<folder>/<name>.explain.png`` and ``<folder>/<name>.explain.json``; return both.

    The JSON is :meth:`Explanation.to_dict` with ``"path": source`` first. Each file is
    written atomically (a reader never sees half of one).
    """
    folder = Path(folder)
    png = folder / f"{name}.explain.png"
    data = folder / f"{name}.explain.json"
    fig = explanation_figure(explanation, title=f"{name}: " + _verdict(explanation))
    with atomic_path(png) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    write_json_atomically(data, {"path": source, **explanation.to_dict()})
    return png, data


def _verdict(explanation: Explanation) -> str:
    result = explanation.result
    return f"{result.label.upper()}, P(fake) {result.p_fake:.3f} (threshold {result.threshold:.3f})"
