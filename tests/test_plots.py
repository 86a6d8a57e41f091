"""Figures of the reports: what a reader needs to see fits on the figure."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from dfa_lib.reporting import plots
from dfa_lib.scoring.metrics import expected_calibration_error, reliability_table


@pytest.mark.parametrize("n_columns", [2, 7])
def test_a_heat_map_makes_room_for_long_model_and_voice_names(n_columns):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        100 * rng.random((20, n_columns)),
        index=[f"ifd_rps_logreg_aug+whisper-base_probe+lcnn_{i}" for i in range(20)],
        columns=[f"hifigan-ljspeech:asterisk-ivrvoiceru_{j}" for j in range(n_columns)],
    )
    # matplotlib warns when tight_layout cannot fit the tick labels and the colour bar.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.plot_heatmap(table, "EER (%) by fake voice")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table.index)
    assert len(ax.texts) == table.size  # every cell annotated
    plt.close(fig)


def test_reliability_diagram_shows_each_detector_its_ece_and_its_bin_counts():
    rng = np.random.default_rng(0)
    p_fake = rng.beta(2, 2, 400)
    drawn = (rng.random(400) < p_fake).astype(int)  # fake with probability p_fake: calibrated
    labels = rng.integers(0, 2, 400)
    biased = np.where(labels == 1, 0.97, 0.6)  # right about fakes, 0.6 on every real clip
    tables = {
        "calibrated": reliability_table(p_fake, drawn),
        "biased": reliability_table(biased, labels),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots.plot_reliability(tables)
    ax_rel, ax_count = fig.axes
    legend = [t.get_text() for t in ax_rel.get_legend().get_texts()]
    ece = expected_calibration_error(biased, labels)
    assert ece == pytest.approx(0.5 * 0.6 + 0.5 * 0.03, abs=0.05)
    assert f"biased (ECE {ece:.3f})" in legend
    # One point per filled bin: the biased detector fills two bins.
    points = {line.get_label(): line.get_xydata() for line in ax_rel.get_lines()}
    np.testing.assert_allclose(points[f"biased (ECE {ece:.3f})"], [[0.6, 0.0], [0.97, 1.0]])
    # The bottom panel counts every clip of each detector.
    assert [patch.get_data()[0].sum() for patch in ax_count.patches] == [400, 400]
    plt.close(fig)
