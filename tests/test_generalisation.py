"""Tests of dfa_lib.evaluation.generalisation: the leave-one-family-out matrix and its summary."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.patches import Rectangle

from dfa_lib.data.protocols import FAMILIES_ORDER
from dfa_lib.evaluation.generalisation import (
    LofoResultsError,
    held_out_eers,
    lofo_families,
    lofo_matrix,
    lofo_metrics,
    lofo_summary,
    order_families,
)
from dfa_lib.reporting import plots


def _run_metrics(eers: dict[str, float | None]) -> dict:
    """A run's metrics entry with EER (fractions) per test family, as evaluate_scores writes."""
    return {
        "eer": 0.1,
        "by_family": [{"family": f, "eer": e, "n_fake": 10} for f, e in eers.items()],
    }


def _rotation(held_out: str, held_eer: float, seen_eer: float) -> dict:
    """A lofo run tested on the whole split: ``held_eer`` on its held-out family, else ``seen_eer``."""
    return _run_metrics({f: held_eer if f == held_out else seen_eer for f in FAMILIES_ORDER})


@pytest.fixture()
def metrics() -> dict:
    """Model ``full`` has every rotation, ``partial`` two, ``other`` none (in-domain only)."""
    out: dict = {}
    for i, family in enumerate(FAMILIES_ORDER):
        # full: held-out EER 0.10, 0.15, ..., 0.40 (neural-tts the worst), 0.02 elsewhere
        out[("full", f"lofo-{family}")] = _rotation(family, 0.10 + 0.05 * i, 0.02)
    out[("partial", "lofo-formant")] = _rotation("formant", 0.05, 0.01)
    out[("partial", "lofo-gan-vocoder")] = _rotation("gan-vocoder", 0.07, 0.03)
    out[("partial", "in-domain")] = _run_metrics({"formant": 0.5})  # not a lofo run: ignored
    out[("other", "in-domain")] = _run_metrics({"formant": 0.01})
    return out


def test_families_come_in_corpus_order_with_unknown_ones_last() -> None:
    assert order_families(["neural-tts", "zzz", "formant", "aaa"]) == [
        "formant",
        "neural-tts",
        "aaa",
        "zzz",
    ]


def test_matrix_rows_are_held_out_families_and_the_diagonal_is_the_held_out_eer(
    metrics: dict,
) -> None:
    matrix = lofo_matrix(metrics, "full")
    assert list(matrix.index) == list(FAMILIES_ORDER) == list(matrix.columns)
    assert matrix.index.name == "held out" and matrix.columns.name == "test family"
    expected = [100 * (0.10 + 0.05 * i) for i in range(len(FAMILIES_ORDER))]
    np.testing.assert_allclose(np.diag(matrix.to_numpy()), expected)
    off = matrix.to_numpy()[~np.eye(len(FAMILIES_ORDER), dtype=bool)]
    np.testing.assert_allclose(off, 2.0)
    np.testing.assert_allclose(held_out_eers(matrix).to_numpy(), expected)


def test_missing_rotations_and_families_without_an_eer_are_nan(metrics: dict) -> None:
    metrics[("partial", "lofo-gan-vocoder")]["by_family"][0]["eer"] = None  # concatenative
    matrix = lofo_matrix(metrics, "partial")
    assert list(matrix.index) == list(FAMILIES_ORDER)  # every family it was tested on
    assert matrix.loc["formant", "formant"] == pytest.approx(5.0)
    assert matrix.loc["gan-vocoder", "gan-vocoder"] == pytest.approx(7.0)
    assert matrix.loc["gan-vocoder", "formant"] == pytest.approx(3.0)
    assert math.isnan(matrix.loc["gan-vocoder", "concatenative"])
    assert matrix.loc["neural-tts"].isna().all()  # that rotation was not run
    held = held_out_eers(matrix)
    assert held.notna().sum() == 2 and held.idxmax() == "gan-vocoder"


def test_a_model_without_lofo_runs_is_an_error_naming_the_models_that_have_some(
    metrics: dict,
) -> None:
    with pytest.raises(LofoResultsError, match=r"'other'.*\['full', 'partial'\]"):
        lofo_matrix(metrics, "other")
    with pytest.raises(LofoResultsError, match="none"):
        lofo_matrix({}, "full")


def test_summary_ranks_models_by_mean_held_out_eer(metrics: dict) -> None:
    summary = lofo_summary(metrics)
    assert list(summary.index) == ["partial", "full"]  # 6 % mean against 25 %
    full = summary.loc["full"]
    assert full["held_out_mean_%"] == pytest.approx(25.0)
    assert full["held_out_worst_%"] == pytest.approx(40.0)
    assert full["worst_family"] == "neural-tts"
    assert (full["rotations"], full["expected"]) == (7, 7)
    assert full["seen_mean_%"] == pytest.approx(2.0)
    assert full["gap_%"] == pytest.approx(23.0)
    partial = summary.loc["partial"]
    assert (partial["rotations"], partial["expected"]) == (2, 7)
    assert partial["held_out_mean_%"] == pytest.approx(6.0)
    assert partial["worst_family"] == "gan-vocoder"
    # Seen: 6 off-diagonal cells of each run, at 1 % and at 3 %.
    assert partial["seen_mean_%"] == pytest.approx(2.0)
    assert "other" not in summary.index


def test_summary_without_lofo_runs_is_empty_with_its_columns() -> None:
    summary = lofo_summary({("m", "in-domain"): _run_metrics({"formant": 0.1})})
    assert summary.empty
    assert "held_out_mean_%" in summary.columns and summary.index.name == "model"


def test_expected_rotations_are_the_families_found_in_any_lofo_run() -> None:
    metrics = {
        ("m", "lofo-formant"): _run_metrics({"formant": 0.2, "statistical": 0.1}),
        ("n", "lofo-statistical"): _run_metrics({"formant": 0.1, "statistical": 0.3, "x": 0.1}),
    }
    assert lofo_families(metrics) == ["formant", "statistical", "x"]
    summary = lofo_summary(metrics)
    assert summary.loc["m", "expected"] == 3 and summary.loc["m", "rotations"] == 1
    assert list(lofo_matrix(metrics, "m").columns) == ["formant", "statistical"]


def _folder(root: Path, protocol: str, model: str, metrics: dict) -> None:
    folder = root / protocol / model
    folder.mkdir(parents=True)
    config = {"format": "dfa-detector", "dataset": {"protocol": protocol}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_lofo_metrics_reads_the_lofo_entries_of_every_run_folder(tmp_path: Path) -> None:
    entry = _rotation("formant", 0.3, 0.1)
    _folder(tmp_path, "lofo-formant", "lcnn", {"lofo-formant": entry, "weights_mtime": 1.0})
    _folder(tmp_path, "in-domain", "lcnn", {"in-domain": _run_metrics({"formant": 0.1})})
    assert lofo_metrics(tmp_path) == {("lcnn", "lofo-formant"): entry}
    assert lofo_metrics(tmp_path / "absent") == {}


def test_heat_map_frames_the_held_out_cells_and_names_the_worst(metrics: dict) -> None:
    matrix = lofo_matrix(metrics, "partial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tight_layout could not fit the labels
        fig = plots.plot_lofo_matrix(matrix, "partial")
    ax = fig.axes[0]
    frames = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert sorted(p.get_xy() for p in frames) == [(i, i) for i in range(len(FAMILIES_ORDER))]
    assert len(ax.texts) == matrix.notna().sum().sum()  # every EER annotated, NaN left blank
    assert ax.get_title().startswith("partial")
    title = ax.get_title()
    assert "mean 6.0 %" in title and "worst 7.0 % (gan-vocoder)" in title
    assert "2 of 7 rotations" in title
    assert [t.get_text() for t in ax.get_yticklabels()] == list(FAMILIES_ORDER)
    plt.close(fig)
