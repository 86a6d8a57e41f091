"""Calibration of detector scores: the fit, the folder entry, and what a detector reports."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from test_detector import make_detector_folder, noise

from dfa_lib.detector.calibrate import calibrate_folder
from dfa_lib.detector.folder import DetectorFormatError
from dfa_lib.detector.loading import load_detector
from dfa_lib.scoring.calibration import Calibration, CalibrationError, fit_calibration
from dfa_lib.scoring.metrics import cllr, write_scores_asvspoof2021


def _gaussian_scores(n_real: int, n_fake: int, seed: int = 0):
    """Scores whose true log-likelihood ratio is 2 s (unit normals at +1 and -1)."""
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 1.0, n_real), rng.normal(-1.0, 1.0, n_fake)


def test_fit_recovers_the_log_likelihood_ratio_whatever_the_class_sizes():
    bona, spoof = _gaussian_scores(20000, 20000)
    # Shown as 4 s + 3, the true LLR is 2 (s' - 3) / 4 = 0.5 s' - 1.5.
    fitted = fit_calibration(4 * bona + 3, 4 * spoof + 3)
    assert fitted.scale == pytest.approx(0.5, rel=0.03)
    assert fitted.offset == pytest.approx(-1.5, abs=0.05)
    # A likelihood ratio does not depend on how many clips of each class there are.
    bona, spoof = _gaussian_scores(2000, 18000, seed=1)
    lopsided = fit_calibration(4 * bona + 3, 4 * spoof + 3)
    assert lopsided.scale == pytest.approx(0.5, rel=0.08)
    assert lopsided.offset == pytest.approx(-1.5, abs=0.12)
    # Calibrated, the overconfident scores cost fewer bits.
    assert cllr(fitted.apply(4 * bona + 3), fitted.apply(4 * spoof + 3)) < cllr(
        4 * bona + 3, 4 * spoof + 3
    )


def test_perfectly_separated_scores_get_a_finite_scale():
    fitted = fit_calibration([1.0, 2.0, 3.0], [-3.0, -2.0, -1.0])
    assert 0 < fitted.scale < 10 and abs(fitted.offset) < 1e-6
    # Platt's targets: the most confident clip is given odds of about (n + 1) to 1.
    assert fitted.apply(3.0) == pytest.approx(math.log(4.0), rel=0.5)


def test_fit_refuses_what_it_cannot_calibrate():
    bona, spoof = _gaussian_scores(200, 200)
    with pytest.raises(CalibrationError, match="rank fakes above real clips"):
        fit_calibration(spoof, bona)
    with pytest.raises(CalibrationError, match="real and of fake"):
        fit_calibration([], spoof)
    with pytest.raises(CalibrationError, match="NaN"):
        fit_calibration([0.1, np.nan], spoof)
    with pytest.raises(CalibrationError, match="positive scale"):
        Calibration(scale=-1.0)
    with pytest.raises(CalibrationError, match="needs"):
        Calibration.from_config({"calibration": {"scale": 1.0}})
    assert Calibration.from_config({}).is_identity


@pytest.fixture
def folder_with_validation(tmp_path):
    folder = make_detector_folder(tmp_path / "lcnn")
    bona, spoof = _gaussian_scores(300, 200)
    paths = [f"validation/{i}.wav" for i in range(500)]
    write_scores_asvspoof2021(folder / "scores" / "validation.txt", paths, np.r_[bona, spoof] * 5)
    labels = pd.Series(["real"] * 300 + ["fake"] * 200, index=paths)
    return folder, labels


def test_calibrate_folder_writes_the_entry_once_per_validation_scores(folder_with_validation):
    folder, labels = folder_with_validation
    calibration = calibrate_folder(folder, labels)
    assert calibration.scale == pytest.approx(2 / 5, rel=0.25)  # true LLR 2 s, shown as 5 s
    config_path = folder / "config.json"
    entry = json.loads(config_path.read_text())["calibration"]
    assert entry["n_real"] == 300 and entry["n_fake"] == 200 and entry["fitted_on"] == "validation"
    assert entry["scale"] == calibration.scale
    assert f"Calibration: {calibration.scale:.4g} x score" in (folder / "README.md").read_text()
    # Fitted on the same validation scores: left as it is.
    before = config_path.stat().st_mtime_ns
    assert calibrate_folder(folder, labels) == calibration
    assert config_path.stat().st_mtime_ns == before
    # New validation scores (the folder was retrained): fitted again.
    paths = list(labels.index)
    write_scores_asvspoof2021(
        folder / "scores" / "validation.txt", paths, np.r_[_gaussian_scores(300, 200, 3)]
    )
    refit = calibrate_folder(folder, labels)
    assert refit.scale == pytest.approx(2.0, rel=0.25)


def test_calibrate_folder_names_the_folder_when_it_cannot(folder_with_validation, tmp_path):
    folder, labels = folder_with_validation
    with pytest.raises(CalibrationError, match="no label for 500 validation clips"):
        calibrate_folder(folder, pd.Series({"elsewhere.wav": "real"}))
    bare = make_detector_folder(tmp_path / "bare")
    with pytest.raises(CalibrationError, match=f"{bare}: cannot calibrate"):
        calibrate_folder(bare, labels)


def test_a_calibrated_detector_reports_calibrated_probabilities_and_the_same_decisions(
    folder_with_validation, tmp_path
):
    folder, labels = folder_with_validation
    raw_folder = tmp_path / "raw"
    shutil.copytree(folder, raw_folder)
    calibration = calibrate_folder(folder, labels)
    raw, calibrated = load_detector(raw_folder, device="cpu"), load_detector(folder, device="cpu")
    a, b, tau = calibration.scale, calibration.offset, raw.score_threshold
    assert calibrated.score_threshold == tau
    assert calibrated.threshold == pytest.approx(1 / (1 + math.exp(a * tau + b)))
    waves = [noise(2.5, seed=s, amplitude=0.05 * (s + 1)) for s in range(6)]
    for wave in waves:
        r, c = raw.score_waveform(wave, 16000), calibrated.score_waveform(wave, 16000)
        assert c.score == pytest.approx(r.score)  # scores and score files do not move
        assert c.label == r.label
        assert c.p_fake == pytest.approx(1 / (1 + math.exp(a * r.score + b)))
        for s, p in zip(c.window_scores, c.window_p_fake, strict=True):
            assert p == pytest.approx(1 / (1 + math.exp(a * s + b)))
    np.testing.assert_allclose(calibrated.score_waves(waves), raw.score_waves(waves))


def test_a_broken_calibration_entry_is_a_format_error(folder_with_validation):
    folder, _ = folder_with_validation
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config["calibration"] = {"scale": -2.0, "offset": 0.0}
    path.write_text(json.dumps(config))
    with pytest.raises(DetectorFormatError, match="positive scale"):
        load_detector(folder, device="cpu")


def test_training_writes_a_calibrated_folder(tmp_path):
    from conftest import make_toy_split

    from dfa_lib.detector.fusion import fit_fusion
    from dfa_lib.training.engine import TrainConfig, train

    parts = {
        s: make_toy_split(n, i, s, seconds=0.75, noise=0.05)
        for i, (s, n) in enumerate([("training", 24), ("validation", 16)])
    }
    results = train(
        [TrainConfig(name=m, model=m, clip_seconds=0.5) for m in ("lfcc_logreg", "ifd_logreg")],
        parts["training"][0],
        parts["validation"][0],
        parts["training"][1],
        parts["validation"][1],
        tmp_path / "runs",
        dataset={"dataset": "toy", "protocol": "in-domain"},
        progress=False,
    )
    labels = parts["validation"][0].set_index("path")["label"]
    fused = fit_fusion([r.folder for r in results], labels)
    for folder in [r.folder for r in results] + [fused]:
        entry = json.loads((folder / "config.json").read_text())["calibration"]
        assert entry["n_real"] == 16 and entry["n_fake"] == 16 and entry["scale"] > 0
        # What training wrote is what 05 would fit: calibrating again changes nothing.
        before = (folder / "config.json").read_bytes()
        calibrate_folder(folder, labels)
        assert (folder / "config.json").read_bytes() == before
        assert load_detector(folder, device="cpu").calibration.scale == entry["scale"]
