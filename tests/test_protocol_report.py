"""05's study: every detector scored per protocol, fusions, calibration and the report's tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_toy_dataset

from dfa_lib.data.protocol_data import prepare_protocol
from dfa_lib.detector.folder import read_detector_config
from dfa_lib.evaluation import protocol_report as report
from dfa_lib.scoring.calibration import Calibration
from dfa_lib.training.engine import TrainConfig, train


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A dataset in FoR layout: tones are real, noise bursts fake."""
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toyset",
        [("training", 12), ("validation", 8), ("testing", 6)],
    )


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory) -> Path:
    """Two classical detectors trained in-domain on the toy set, as 02 leaves them."""
    cache = tmp_path_factory.mktemp("cache")
    data = prepare_protocol(str(toy_root), "in-domain", toy_root.parent, cache, progress=False)
    runs = tmp_path_factory.mktemp("runs")
    train(
        [TrainConfig(name=m, model=m, clip_seconds=0.5) for m in ("lfcc_logreg", "ifd_logreg")],
        data.frames["training"],
        data.frames["validation"],
        data.stores["training"],
        data.stores["validation"],
        runs / "in-domain",
        dataset=data.info,
        progress=False,
    )
    return runs


def scored_path(evaluation: report.ProtocolEvaluation) -> str:
    """A test clip's path as the scored split names it (relative to the protocol's root)."""
    return next(iter(evaluation.scored.values()))["path"].iloc[0]


def _evaluate(toy_root: Path, runs: Path, **kwargs) -> report.ProtocolEvaluation:
    return report.evaluate_protocols(
        str(toy_root), runs, toy_root.parent, runs.parent / "cache", n_boot=20, **kwargs
    )


def test_every_detector_and_fusion_is_scored_and_calibrated(toy_root, trained, tmp_path):
    runs = Path(shutil.copytree(trained, tmp_path / "runs"))
    evaluation = _evaluate(toy_root, runs, fusions="lfcc_logreg+ifd_logreg,ifd_logreg+nothing")
    fused = "lfcc_logreg+ifd_logreg"
    assert sorted(evaluation.scored) == sorted(
        (m, "in-domain") for m in ("lfcc_logreg", "ifd_logreg", fused)
    )
    assert evaluation.failed == [] and evaluation.uncalibrated == {}
    assert evaluation.notes[0] == "in-domain: 2 detectors on 12 test clips"
    assert any("fusion ifd_logreg+nothing skipped" in n for n in evaluation.notes)
    assert (evaluation.roots["in-domain"] / scored_path(evaluation)).is_file()
    scored = evaluation.scored[("ifd_logreg", "in-domain")]
    assert len(scored) == 12 and {"path", "label", "score"} <= set(scored.columns)
    assert evaluation.metrics[(fused, "in-domain")]["eer"] <= 0.5
    assert evaluation.protocols() == ["in-domain"]
    results = report.current_results(evaluation)
    assert set(results["model"]) == {"lfcc_logreg", "ifd_logreg", fused}
    report.raise_if_failed(evaluation)  # nothing failed: no error

    intervals = report.interval_table(evaluation.scored, n_boot=20, seed=0)
    assert intervals.index.names == ["protocol", "model"] and len(intervals) == 3
    assert intervals["ci_clips_%"].str.contains(" to ").all()
    assert intervals["min_dcf"].between(0.0, 1.0).all()
    calibration = report.calibration_table(evaluation)
    assert {"cllr", "cllr_calibrated", "min_cllr"} <= set(calibration.columns)
    reliability = report.reliability_tables(evaluation, "in-domain", bins=4)
    assert set(reliability) == {"lfcc_logreg", "ifd_logreg", fused}
    table = reliability["ifd_logreg"]
    assert len(table) == 4 and table["count"].sum() == 12
    # The reported probability is the calibrated one, not sigmoid(-score).
    p_fake = report.calibrated_p_fake(evaluation, "ifd_logreg", "in-domain")
    cal = Calibration.from_config(
        read_detector_config(evaluation.folder("ifd_logreg", "in-domain"))
    )
    expected = 1 / (1 + np.exp(cal.apply(scored["score"].to_numpy())))
    np.testing.assert_allclose(p_fake, expected, rtol=1e-9)
    ece = report.calibration_error_table(evaluation, bins=4)
    assert list(ece.columns) == ["in-domain"] and set(ece.index) == set(reliability)
    assert ((ece >= 0) & (ece <= 100)).all().all()
    curves = report.score_curves(evaluation.scored, "in-domain")
    real, fake = curves["ifd_logreg"]
    assert len(real) == len(fake) == 6
    confusions = report.confusion_matrices(evaluation.metrics, "in-domain")
    assert sum(map(sum, confusions["ifd_logreg"])) == 12
    by_generator = report.breakdown_table(evaluation.metrics, "in-domain", by="generator")
    assert set(by_generator.index) == set(confusions)
    assert [m for m, _ in report.scored_on(evaluation, "in-domain")] == list(confusions)
    threshold = evaluation.threshold("ifd_logreg", "in-domain")
    worst, n_wrong = report.worst_errors(scored, threshold, n_worst=2)
    assert len(worst) <= 4 and n_wrong >= len(worst)


def test_a_broken_detector_is_named_left_out_of_the_results_and_fails_the_run(
    toy_root, trained, tmp_path
):
    runs = Path(shutil.copytree(trained, tmp_path / "runs"))
    _evaluate(toy_root, runs)  # both evaluated once: metrics.json written
    (runs / "in-domain" / "lfcc_logreg" / "classifier.safetensors").write_bytes(b"broken")
    evaluation = _evaluate(toy_root, runs, fusions="lfcc_logreg+ifd_logreg")
    assert [f["model"] for f in evaluation.failed] == ["lfcc_logreg"]
    assert list(evaluation.scored) == [("ifd_logreg", "in-domain")]
    # Its older metrics.json is still there, but the results leave it out.
    assert "lfcc_logreg" not in set(report.current_results(evaluation)["model"])
    with pytest.raises(report.DetectorsNotEvaluatedError, match="lfcc_logreg on in-domain"):
        report.raise_if_failed(evaluation)


def test_a_protocol_without_detectors_is_noted(toy_root, tmp_path):
    evaluation = _evaluate(toy_root, tmp_path / "runs")
    assert evaluation.scored == {} and "no detector trained for it" in evaluation.notes[0]
    assert report.interval_table(evaluation.scored, 20, 0).empty
    assert report.speaker_error_table(evaluation).empty


def test_worst_errors_are_the_most_confident_mistakes_of_each_class():
    scored = pd.DataFrame(
        {
            "path": list("abcdef"),
            "label": ["real", "real", "real", "fake", "fake", "fake"],
            "score": [-3.0, -1.0, 2.0, 4.0, 0.5, -2.0],
        }
    )
    worst, n_wrong = report.worst_errors(scored, threshold=0.0, n_worst=1)
    assert n_wrong == 4  # a, b (real below 0), d, e (fake at or above 0)
    assert list(worst["path"]) == ["a", "d"]


def test_breakdowns_skip_groups_without_an_eer():
    metrics = {
        ("m", "p"): {
            "by_generator": [{"generator": "g1", "eer": 0.1}, {"generator": "g2", "eer": None}],
            "by_family": [{"family": "classical", "eer": 0.2}],
        },
        ("m", "q"): {"by_generator": [{"generator": "g1", "eer": 0.3}]},
    }
    table = report.breakdown_table(metrics, "p", by="generator")
    assert table.to_dict() == {"g1": {"m": pytest.approx(10.0)}}
    families = report.family_table(metrics)
    assert families.index.names == ["model", "protocol"]
    assert families.loc[("m", "p"), "classical"] == pytest.approx(20.0)
    assert report.family_table({}).empty
