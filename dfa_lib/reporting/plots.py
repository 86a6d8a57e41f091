"""Plot helpers the notebooks share: audio, learning curves, ROC/DET, calibration, error tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import librosa
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy.stats import norm

from dfa_lib.evaluation.generalisation import held_out_eers
from dfa_lib.scoring.metrics import calibration_error_of_table, det_curve


def mel_db(wave: np.ndarray, sr: int = 16000, n_mels: int = 80) -> np.ndarray:
    """Return a log-mel spectrogram in dB (25 ms windows, 10 ms hop)."""

    mel = librosa.feature.melspectrogram(
        y=wave, sr=sr, n_fft=512, win_length=400, hop_length=160, n_mels=n_mels
    )
    return librosa.power_to_db(mel, ref=np.max)


def plot_examples(examples: list[tuple[str, np.ndarray]], sr: int = 16000) -> Figure:
    """Waveform (top) and log-mel spectrogram (bottom) for each ``(title, wave)``, side by side."""
    n = len(examples)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 5), squeeze=False)
    for col, (title, wave) in enumerate(examples):
        t = np.arange(wave.size) / sr
        axes[0, col].plot(t, wave, lw=0.5)
        axes[0, col].set(title=title, xlabel="seconds", ylim=(-1, 1))
        axes[1, col].imshow(
            mel_db(wave, sr), origin="lower", aspect="auto", extent=(0, t[-1], 0, 80), cmap="magma"
        )
        axes[1, col].set(xlabel="seconds", ylabel="mel band")
    fig.tight_layout()
    return fig


def plot_learning_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Training loss and validation EER per epoch for each run."""
    fig, (ax_loss, ax_eer) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, h in histories.items():
        if "train_loss" not in h or h["train_loss"].isna().all():
            continue
        ax_loss.plot(h["epoch"], h["train_loss"], marker="o", label=name)
        ax_eer.plot(h["epoch"], 100 * h["val_eer"], marker="o", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss (weighted CE)", title="Training loss")
    ax_eer.set(xlabel="epoch", ylabel="validation EER (%)", title="Validation EER")
    for ax in (ax_loss, ax_eer):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_roc_det(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """ROC (left) and DET on normal-deviate axes (right); ``curves[name] = (bonafide, spoof)``."""

    fig, (ax_roc, ax_det) = plt.subplots(1, 2, figsize=(11, 4.5))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    for name, (bona, spoof) in curves.items():
        frr, far, _ = det_curve(bona, spoof)
        ax_roc.plot(far, 1 - frr, label=name)
        eps = 1e-4
        ax_det.plot(
            norm.ppf(np.clip(far, eps, 1 - eps)), norm.ppf(np.clip(frr, eps, 1 - eps)), label=name
        )
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(xlabel="fake accepted as real (FAR)", ylabel="real accepted (1 - FRR)", title="ROC")
    ax_det.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax_det.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax_det.plot(norm.ppf([1e-3, 0.5]), norm.ppf([1e-3, 0.5]), "k:", lw=0.8)
    ax_det.set(xlabel="FAR (%)", ylabel="FRR (%)", title="DET (EER on the diagonal)")
    ax_det.set_xlim(norm.ppf(5e-4), norm.ppf(0.6))
    ax_det.set_ylim(norm.ppf(5e-4), norm.ppf(0.6))
    for ax in (ax_roc, ax_det):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reliability(
    tables: Mapping[str, pd.DataFrame], title: str = "Reliability of P(fake)"
) -> Figure:
    """Reliability diagram (top) and clips per bin (bottom) of each detector's P(fake).

    ``tables[name]`` is a :func:`dfa_lib.scoring.metrics.reliability_table`; the legend gives
    each one's expected calibration error. A calibrated detector follows the diagonal; a curve
    below it says fake more often than the clips are fake (overconfident about fakes), above
    it the reverse. Points of bins with few clips (see the bottom panel) are noisy.
    """
    fig, (ax_rel, ax_count) = plt.subplots(
        2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax_rel.plot([0, 1], [0, 1], "k:", lw=0.8, label="calibrated")
    for name, table in tables.items():
        filled = table[table["count"] > 0]
        ece = calibration_error_of_table(table)
        ax_rel.plot(
            filled["mean_p_fake"], filled["fake_rate"], marker="o", label=f"{name} (ECE {ece:.3f})"
        )
        edges = np.append(table["lower"].to_numpy(), table["upper"].to_numpy()[-1])
        ax_count.stairs(table["count"].to_numpy(), edges, label=name)
    ax_rel.set(ylabel="share of clips that are fake", title=title, xlim=(0, 1), ylim=(0, 1))
    ax_rel.set_aspect("equal", adjustable="box")
    ax_count.set(xlabel="predicted P(fake)", ylabel="clips")
    for ax in (ax_rel, ax_count):
        ax.grid(alpha=0.3)
    ax_rel.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_confusions(matrices: dict[str, list[list[int]]]) -> Figure:
    """One 2x2 confusion matrix (rows true, columns predicted; real, fake) per model."""

    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items(), strict=True):
        sns.heatmap(
            np.asarray(cm),
            annot=True,
            fmt="d",
            cbar=False,
            cmap="Blues",
            ax=ax,
            xticklabels=["real", "fake"],
            yticklabels=["real", "fake"],
        )
        ax.set(title=name, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def plot_heatmap(
    table: pd.DataFrame,
    title: str,
    fmt: str = ".1f",
    cmap: str = "rocket_r",
    outline: Iterable[tuple[int, int]] = (),
    limits: tuple[float, float] | None = None,
) -> Figure:
    """A labelled heat map of a numeric table (e.g. EER % by model x generator).

    ``outline`` lists (row, column) positions of cells to frame; ``limits`` fixes the colour
    scale (vmin, vmax) so that maps of different tables read alike.
    """

    # Room for the tick labels too (about 0.08 inch a character at the default font size):
    # model and voice names run to 45 characters, wider than a few columns of cells.
    rows = max((len(str(label)) for label in table.index), default=0)
    columns = max((len(str(label)) for label in table.columns), default=0)
    fig, ax = plt.subplots(
        figsize=(
            2.2 + 0.08 * rows + 0.9 * table.shape[1],
            1.2 + 0.08 * columns + 0.45 * table.shape[0],
        )
    )
    vmin, vmax = limits if limits is not None else (None, None)
    sns.heatmap(
        table.astype(float),
        annot=True,
        fmt=fmt,
        cmap=cmap,
        ax=ax,
        vmin=vmin,
        vmax=vmax,
        cbar_kws={"label": "EER (%)"},
    )
    for row, column in outline:
        ax.add_patch(Rectangle((column, row), 1, 1, fill=False, edgecolor="#1f77b4", lw=2.5))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_lofo_matrix(matrix: pd.DataFrame, model: str) -> Figure:
    """Heat map of a :func:`~dfa_lib.evaluation.generalisation.lofo_matrix`, diagonal framed.

    Rows: the family held out of training; columns: the test family; the framed diagonal
    cells are the EERs on a family the detector never saw. The title gives the mean and the
    worst of them. The colour scale runs from 0 to 50 % (chance) for every model.
    """
    held_out = held_out_eers(matrix)
    found = int(held_out.notna().sum())
    if found:
        summary = (
            f"held-out EER mean {held_out.mean():.1f} %, "
            f"worst {held_out.max():.1f} % ({held_out.idxmax()})"
        )
        if found < len(held_out):
            summary += f", {found} of {len(held_out)} rotations"
    else:
        summary = "no held-out EER"
    fig = plot_heatmap(
        matrix,
        f"{model}: leave one family out\n{summary}",
        outline=[
            (row, matrix.columns.get_loc(family))
            for row, family in enumerate(matrix.index)
            if family in matrix.columns
        ],
        limits=(0.0, 50.0),
    )
    fig.axes[0].set(xlabel="test family", ylabel="held out of training")
    fig.tight_layout()
    return fig
