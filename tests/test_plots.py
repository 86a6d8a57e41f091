"""Figures of the reports: what a reader needs to see fits on the figure."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from dfa_lib.reporting import plots


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
