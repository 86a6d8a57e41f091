"""Tests of dfa_lib.reporting.headline: the README's generated headline table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from dfa_lib.reporting.headline import (
    END_MARKER,
    START_MARKER,
    HeadlineError,
    headline_frame,
    main,
    markdown_table,
    read_headline_csv,
    readme_table,
    seed_summary,
    update_readme,
    write_headline_csv,
)

REPO = Path(__file__).resolve().parents[1]


def _metrics(eer: float) -> dict:
    return {
        "eer": eer,
        "eer_ci_low": eer - 0.01,
        "eer_ci_high": eer + 0.01,
        "auc": 1 - eer,
        "accuracy": 1 - eer,
        "n": 100,
    }


def _lofo(held_out: str, by_family: dict[str, float]) -> dict:
    """A lofo-<held_out> run's metrics: pooled EER and each test family's EER."""
    return {
        f"lofo-{held_out}": {
            **_metrics(0.1),
            "by_family": [{"family": f, "eer": e} for f, e in by_family.items()],
        }
    }


def _run(folder: Path, protocol: str, metrics: dict | None, fmt: str = "dfa-detector") -> None:
    folder.mkdir(parents=True)
    config = {"format": fmt, "dataset": {"protocol": protocol}}
    (folder / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


HEADER = [
    "in-domain",
    "unseen-generator",
    "cross-source",
    "lofo mean",
    "lofo worst",
    "lofo worst family",
    "lofo rotations",
    "for-2sec.in-domain",
]


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    """A tiny runs tree: an in-domain detector, two with lofo rotations (one of them missing
    one), one tested only on a retired protocol, one unevaluated, one foreign folder."""
    root = tmp_path / "runs"
    _run(
        root / "in-domain" / "alpha",
        "in-domain",
        {
            "in-domain": _metrics(0.25),
            "cross-source": _metrics(0.301),
            "weights_mtime": 12.0,  # not a protocol: skipped
        },
    )
    _run(
        root / "lofo-formant" / "omega",
        "lofo-formant",
        {
            **_lofo("formant", {"formant": 0.3, "statistical": 0.1}),
            "for-2sec.in-domain": _metrics(0.4),
        },
    )
    _run(
        root / "lofo-statistical" / "omega",
        "lofo-statistical",
        _lofo("statistical", {"formant": 0.05, "statistical": 0.2}),
    )
    _run(
        root / "lofo-formant" / "beta",
        "lofo-formant",
        _lofo("formant", {"formant": 0.35, "statistical": 0.02}),
    )
    _run(
        root / "unseen-neural-fargan" / "old",
        "unseen-neural-fargan",
        {"unseen-neural-fargan": _metrics(0.2)},
    )
    _run(root / "in-domain" / "untested", "in-domain", None)
    _run(root / "in-domain" / "foreign", "in-domain", {"in-domain": _metrics(0.0)}, fmt="other")
    return root


def test_headline_frame_sums_up_lofo_and_orders_models_by_it(runs: Path) -> None:
    frame = headline_frame(runs)
    # By mean held-out EER (omega 25 %, beta 35 %), models without lofo runs last; the model
    # tested only on a retired protocol has nothing left to show.
    assert list(frame.index) == ["omega", "beta", "alpha"]
    assert frame.index.name == "model"
    assert list(frame.columns) == HEADER  # no lofo-<family> and no retired column
    assert frame.loc["alpha", "in-domain"] == pytest.approx(25.0)
    assert frame.loc["alpha", "cross-source"] == pytest.approx(30.1)
    # omega held out formant (30 %) and statistical (20 %): mean 25 %, worst 30 % on formant.
    assert frame.loc["omega", "lofo mean"] == pytest.approx(25.0)
    assert frame.loc["omega", "lofo worst"] == pytest.approx(30.0)
    assert frame.loc["omega", "lofo worst family"] == "formant"
    assert frame.loc["omega", "lofo rotations"] == "2/2"
    assert frame.loc["beta", "lofo rotations"] == "1/2"
    assert frame.loc["omega", "for-2sec.in-domain"] == pytest.approx(40.0)
    assert math.isnan(frame.loc["alpha", "lofo mean"])
    assert frame.loc["alpha", "lofo worst family"] == ""
    assert frame["unseen-generator"].isna().all()


def test_headline_frame_without_lofo_runs_keeps_empty_lofo_columns(tmp_path: Path) -> None:
    _run(tmp_path / "in-domain" / "b", "in-domain", {"in-domain": _metrics(0.1)})
    _run(tmp_path / "in-domain" / "a", "in-domain", {"in-domain": _metrics(0.2)})
    frame = headline_frame(tmp_path)
    assert list(frame.index) == ["a", "b"]  # by name when no model has a lofo mean
    assert list(frame.columns) == HEADER[:-1]
    assert frame["lofo mean"].isna().all()


def test_headline_frame_without_results_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HeadlineError, match="no evaluated run folder"):
        headline_frame(tmp_path / "nothing")


def test_csv_round_trip_keeps_one_decimal_and_empty_cells(runs: Path, tmp_path: Path) -> None:
    frame = headline_frame(runs)
    path = write_headline_csv(frame, tmp_path / "docs" / "headline.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "model," + ",".join(HEADER)
    assert lines[1] == "omega,,,,25.0,30.0,formant,2/2,40.0"
    assert lines[2] == "beta,,,,35.0,35.0,formant,1/2,"
    assert lines[3] == "alpha,25.0,,30.1,,,,,"
    back = read_headline_csv(path)
    assert list(back.columns) == list(frame.columns)
    assert list(back.index) == ["omega", "beta", "alpha"]
    pd.testing.assert_frame_equal(back, frame.round(1), check_names=False)


def test_read_headline_csv_of_a_header_only_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "headline.csv"
    path.write_text("model,in-domain,unseen-generator,cross-source\n")
    frame = read_headline_csv(path)
    assert frame.empty
    assert list(frame.columns) == ["in-domain", "unseen-generator", "cross-source"]
    assert markdown_table(frame) == (
        "| model | in-domain | unseen-generator | cross-source |\n| --- | --- | --- | --- |"
    )


def test_read_headline_csv_refuses_a_text_eer(tmp_path: Path) -> None:
    path = tmp_path / "headline.csv"
    path.write_text("model,in-domain\nlcnn,low\n")
    with pytest.raises(HeadlineError, match="number or empty"):
        read_headline_csv(path)


def test_markdown_bolds_the_best_of_each_column_and_dashes_missing() -> None:
    frame = pd.DataFrame(
        {"in-domain": [26.1, 10.3, 10.34], "cross-source": [29.6, 44.6, float("nan")]},
        index=pd.Index(["lcnn", "ifd_rps_logreg", "tie"], name="model"),
    )
    lines = markdown_table(frame).splitlines()
    assert lines[0] == "| model | in-domain | cross-source |"
    assert lines[1] == "| --- | --- | --- |"
    assert lines[2] == "| lcnn | 26.1 | **29.6** |"
    # 10.34 prints as 10.3, so it ties with the best as shown.
    assert lines[3] == "| ifd_rps_logreg | **10.3** | 44.6 |"
    assert lines[4] == "| tie | **10.3** | – |"


def test_markdown_notes_the_worst_family_and_missing_rotations_beside_their_numbers() -> None:
    frame = pd.DataFrame(
        {
            "lofo mean": [20.0, 30.0, float("nan")],
            "lofo worst": [40.0, 35.0, float("nan")],
            "lofo worst family": ["gan-vocoder", "formant", ""],
            "lofo rotations": ["7/7", "3/7", ""],
        },
        index=pd.Index(["a", "b", "c"], name="model"),
    )
    lines = markdown_table(frame).splitlines()
    assert lines[0] == "| model | lofo mean | lofo worst |"
    assert lines[2] == "| a | **20.0** | 40.0 (gan-vocoder) |"
    assert lines[3] == "| b | 30.0 (3 of 7 rotations) | **35.0** (formant) |"
    assert lines[4] == "| c | – | – |"


def test_markdown_column_without_values_has_no_bold() -> None:
    frame = pd.DataFrame({"unseen-generator": [float("nan")]}, index=["lcnn"])
    assert markdown_table(frame).splitlines()[2] == "| lcnn | – |"


def _readme(path: Path, block: str) -> Path:
    path.write_text(f"# dfa\n\nintro\n\n{START_MARKER}\n{block}\n{END_MARKER}\n\nafter\n")
    return path


def test_update_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = _readme(tmp_path / "README.md", "| old |")
    assert update_readme(readme, "| new |\n| --- |") is True
    text = readme.read_text()
    assert text == f"# dfa\n\nintro\n\n{START_MARKER}\n| new |\n| --- |\n{END_MARKER}\n\nafter\n"
    assert readme_table(readme) == "| new |\n| --- |"
    assert update_readme(readme, "| new |\n| --- |") is False


def test_check_mode_reports_a_difference_without_writing(tmp_path: Path) -> None:
    readme = _readme(tmp_path / "README.md", "| old |")
    before = readme.read_text()
    assert update_readme(readme, "| new |", check=True) is True
    assert readme.read_text() == before
    assert update_readme(readme, "| old |", check=True) is False


@pytest.mark.parametrize(
    "text, message",
    [
        ("# dfa\n\nno table here\n", "no '<!-- headline:start -->'"),
        (f"# dfa\n{START_MARKER}\n| t |\n", "no '<!-- headline:end -->'"),
        (f"{END_MARKER}\n| t |\n{START_MARKER}\n", "comes before"),
        (f"{START_MARKER}\n{START_MARKER}\n{END_MARKER}\n", "2 '<!-- headline:start -->'"),
    ],
)
def test_update_readme_without_one_pair_of_markers_is_an_error(
    tmp_path: Path, text: str, message: str
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(HeadlineError, match=message):
        update_readme(readme, "| t |")
    assert readme.read_text() == text


def test_command_line_writes_then_checks(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = _readme(tmp_path / "README.md", "")
    csv_path = tmp_path / "docs" / "results" / "headline.csv"
    args = ["--csv", str(csv_path), "--readme", str(readme)]
    assert main([*args, "--check"]) == 1  # no CSV yet
    assert main(["--runs-dir", str(runs), *args]) == 0
    assert readme_table(readme) == markdown_table(read_headline_csv(csv_path))
    text = readme.read_text()
    assert "| omega | – | – | – | **25.0** | **30.0** (formant) | **40.0** |" in text
    assert "| beta | – | – | – | 35.0 (1 of 2 rotations) | 35.0 (formant) | – |" in text
    assert "| alpha | **25.0** | – | **30.1** | – | – | – |" in text
    assert main([*args, "--check"]) == 0
    update_readme(readme, "| edited by hand |")
    capsys.readouterr()
    assert main([*args, "--check"]) == 1
    assert "differs from" in capsys.readouterr().err


def test_command_line_without_results_keeps_the_snapshot(tmp_path: Path) -> None:
    readme = _readme(tmp_path / "README.md", "")
    csv_path = tmp_path / "headline.csv"
    csv_path.write_text("model,in-domain\nlcnn,26.1\n")
    args = ["--runs-dir", str(tmp_path / "empty"), "--csv", str(csv_path), "--readme", str(readme)]
    assert main(args) == 1
    assert csv_path.read_text() == "model,in-domain\nlcnn,26.1\n"


def test_committed_readme_shows_the_committed_snapshot() -> None:
    snapshot = read_headline_csv(REPO / "docs" / "results" / "headline.csv")
    assert readme_table(REPO / "README.md") == markdown_table(snapshot), (
        "README.md's headline table differs from docs/results/headline.csv: run `make headline`"
    )


def test_seed_summary_gives_the_mean_and_a_student_interval_over_seeds(tmp_path: Path) -> None:
    roots = []
    for seed, (a, b) in enumerate([(0.20, 0.40), (0.24, 0.40), (0.22, None)]):
        root = tmp_path / f"seed-{seed}"
        _run(root / "in-domain" / "a", "in-domain", {"in-domain": _metrics(a)})
        if b is not None:
            _run(root / "in-domain" / "b", "in-domain", {"in-domain": _metrics(b)})
        roots.append(root)
    summary = seed_summary(roots).set_index(["model", "protocol"])
    a = summary.loc[("a", "in-domain")]
    assert a["n_seeds"] == 3 and a["mean_%"] == pytest.approx(22.0)
    assert a["std_%"] == pytest.approx(2.0)
    # t(0.975, 2 degrees of freedom) = 4.3027: half-width 4.3027 * 2 / sqrt(3).
    assert a["ci_high_%"] - a["mean_%"] == pytest.approx(4.3027 * 2 / math.sqrt(3), rel=1e-4)
    b = summary.loc[("b", "in-domain")]
    assert b["n_seeds"] == 2 and b["mean_%"] == pytest.approx(40.0) and b["std_%"] == 0.0
    with pytest.raises(HeadlineError, match="at least two seeds"):
        seed_summary(roots[:1])


def test_command_line_writes_the_seed_summary(tmp_path: Path) -> None:
    roots = []
    for seed, eer in enumerate([0.1, 0.3]):
        root = tmp_path / f"seed-{seed}"
        _run(root / "in-domain" / "m", "in-domain", {"in-domain": _metrics(eer)})
        roots.append(str(root))
    out = tmp_path / "seeds.csv"
    assert main(["--seed-runs", *roots, "--seeds-csv", str(out)]) == 0
    table = pd.read_csv(out)
    assert table.loc[0, "model"] == "m" and table.loc[0, "mean_%"] == pytest.approx(20.0)
