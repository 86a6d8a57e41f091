"""Tests of the classical LFCC baselines: they separate toy classes and round-trip through disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from dfa_lib.features.frontends import IFDConfig, LFCCConfig, build_frontend
from dfa_lib.features.harmonics import RPSConfig
from dfa_lib.models.classical import (
    ARRAYS_FILE,
    CONFIG_FILE,
    ClassicalModelError,
    IFDLogRegClassifier,
    IFDRPSLogRegClassifier,
    LFCCGMMClassifier,
    LFCCLogRegClassifier,
    build_classical,
    lfcc_features,
    load_classical,
    phase_statistics,
)

SR = 16000


def tones_and_noise(n_per_class: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Variable-length clips: harmonic tones are 'real', coloured noise is 'fake'."""
    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for _ in range(n_per_class):
        samples = int(rng.integers(8000, 16000))
        t = np.arange(samples) / SR
        f0 = rng.uniform(150, 600)
        tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        waves.append((rng.uniform(0.2, 0.6) * tone / 1.8).astype(np.float32))
        labels.append("real")
        noise = np.convolve(rng.standard_normal(samples), [1.0, 0.5], mode="same")
        waves.append((rng.uniform(0.05, 0.3) * noise).astype(np.float32))
        labels.append("fake")
    return waves, labels


@pytest.fixture(scope="module")
def data() -> tuple[list[np.ndarray], list[str], list[np.ndarray], np.ndarray]:
    train_waves, train_labels = tones_and_noise(12, seed=1)
    test_waves, test_labels = tones_and_noise(10, seed=2)
    return train_waves, train_labels, test_waves, np.array([lab == "real" for lab in test_labels])


def small_gmm() -> LFCCGMMClassifier:
    return LFCCGMMClassifier(n_components=4, max_frames_per_class=3000, max_iter=50, seed=0)


def test_lfcc_features_match_the_frontend_settings() -> None:
    waves = [np.zeros(16000, np.float32), np.ones(8000, np.float32) * 0.1]
    feats = lfcc_features(waves)
    assert [f.shape for f in feats] == [(101, 60), (51, 60)]
    batch = lfcc_features(np.random.default_rng(0).standard_normal((3, 4000)).astype(np.float32))
    assert [f.shape for f in batch] == [(26, 60)] * 3
    assert lfcc_features([np.ones(1600)], LFCCConfig(with_deltas=False))[0].shape == (11, 20)
    with pytest.raises(ValueError, match="clip 0"):
        lfcc_features([np.zeros((2, 100))])


@pytest.mark.parametrize(
    "factory",
    [small_gmm, LFCCLogRegClassifier, IFDLogRegClassifier, IFDRPSLogRegClassifier],
    ids=["gmm", "logreg", "ifd-logreg", "ifd-rps-logreg"],
)
def test_classifier_separates_tones_from_noise_and_round_trips(
    factory, data, tmp_path: Path
) -> None:
    train_waves, train_labels, test_waves, is_real = data
    model = factory().fit(train_waves, train_labels)
    scores = model.score(test_waves)
    assert scores.shape == (len(test_waves),)
    # Higher = bona fide: every tone scores above every noise clip.
    assert roc_auc_score(is_real, scores) == 1.0
    assert scores[is_real].min() > scores[~is_real].max()

    folder = model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == sorted([ARRAYS_FILE, CONFIG_FILE])
    assert b"pickle" not in (folder / CONFIG_FILE).read_bytes()
    loaded = type(model).load(folder)
    assert np.array_equal(loaded.score(test_waves), scores)
    assert np.array_equal(load_classical(folder).score(test_waves), scores)


def test_phase_statistics_are_the_front_end_channels_mean_and_spread() -> None:
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(8000).astype(np.float32) * 0.1 for _ in range(3)]
    waves.append(rng.standard_normal(12000).astype(np.float32) * 0.1)  # another length
    # Without settings, bins up to Nyquist: 257 bins, three channels, mean and std of each.
    assert phase_statistics(waves).shape == (4, 6 * 257)
    # The classifier keeps 129 bins up to 4 kHz.
    config = IFDLogRegClassifier().ifd
    assert config == IFDConfig(f_max=4000.0)
    stats = phase_statistics(waves, config)
    assert stats.shape == (4, 6 * 129)
    feats = build_frontend("ifd", f_max=4000.0)(torch.from_numpy(waves[3])[None])
    expected = np.concatenate([feats.mean(-1).flatten().numpy(), feats.std(-1).flatten().numpy()])
    np.testing.assert_allclose(stats[3], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="clip 0"):
        phase_statistics([np.zeros(0, np.float32)])


def test_fitting_is_seeded(data) -> None:
    train_waves, train_labels, test_waves, _ = data
    first = small_gmm().fit(train_waves, train_labels).score(test_waves)
    again = small_gmm().fit(train_waves, train_labels).score(test_waves)
    assert np.array_equal(first, again)


def test_integer_labels_and_label_errors(data) -> None:
    train_waves, train_labels, test_waves, _ = data
    ints = [0 if lab == "real" else 1 for lab in train_labels]
    by_int = LFCCLogRegClassifier().fit(train_waves, np.array(ints)).score(test_waves)
    by_str = LFCCLogRegClassifier().fit(train_waves, train_labels).score(test_waves)
    assert np.allclose(by_int, by_str)
    with pytest.raises(ValueError, match="both classes"):
        LFCCLogRegClassifier().fit(train_waves[:4], ["real"] * 4)
    with pytest.raises(ValueError, match="labels"):
        LFCCLogRegClassifier().fit(train_waves, train_labels[:-1])
    with pytest.raises(ValueError, match="unknown label"):
        LFCCLogRegClassifier().fit(train_waves[:2], ["real", "maybe"])


def test_unfitted_models_say_so() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        LFCCGMMClassifier().score([np.zeros(1600)])
    with pytest.raises(NotFittedError, match="fit"):
        LFCCLogRegClassifier().save("unused")


def test_build_classical() -> None:
    model = build_classical("lfcc_gmm", seed=3, n_components=8, lfcc={"n_lfcc": 12, "n_filter": 12})
    assert isinstance(model, LFCCGMMClassifier)
    assert (model.seed, model.n_components, model.lfcc.n_features) == (3, 8, 36)
    assert isinstance(build_classical("lfcc_logreg", C=0.5), LFCCLogRegClassifier)
    phase = build_classical("ifd_logreg", ifd={"f_max": 2000.0})
    assert isinstance(phase, IFDLogRegClassifier)
    assert (phase.C, phase.ifd.n_features, phase.n_statistics) == (0.01, 65, 390)
    with pytest.raises(ValueError, match="unknown classical model"):
        build_classical("svm")
    with pytest.raises(ValueError, match="bad settings"):
        build_classical("lfcc_logreg", n_components=3)


@pytest.fixture(scope="module")
def saved_logreg(data, tmp_path_factory) -> Path:
    train_waves, train_labels, _, _ = data
    folder = tmp_path_factory.mktemp("saved") / "logreg"
    return LFCCLogRegClassifier().fit(train_waves, train_labels).save(folder)


def _copy(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in folder.iterdir():
        (dest / path.name).write_bytes(path.read_bytes())
    return dest


def test_foreign_and_corrupt_folders_raise_clear_errors(saved_logreg: Path, tmp_path: Path) -> None:
    with pytest.raises(ClassicalModelError, match="no such model folder"):
        LFCCLogRegClassifier.load(tmp_path / "missing")
    with pytest.raises(ClassicalModelError, match="not a saved classical model"):
        LFCCLogRegClassifier.load(tmp_path)
    # The other model type: the message names the class that can load it.
    with pytest.raises(ClassicalModelError, match="LFCCLogRegClassifier.load"):
        LFCCGMMClassifier.load(saved_logreg)

    foreign = _copy(saved_logreg, tmp_path / "foreign")
    (foreign / CONFIG_FILE).write_text(json.dumps({"format": "dfa-detector", "format_version": 1}))
    with pytest.raises(ClassicalModelError, match="expected 'dfa-classical'"):
        load_classical(foreign)

    newer = _copy(saved_logreg, tmp_path / "newer")
    document = json.loads((newer / CONFIG_FILE).read_text())
    (newer / CONFIG_FILE).write_text(json.dumps({**document, "format_version": 99}))
    with pytest.raises(ClassicalModelError, match="version 99"):
        LFCCLogRegClassifier.load(newer)

    bad_json = _copy(saved_logreg, tmp_path / "bad_json")
    (bad_json / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ClassicalModelError, match="corrupt JSON"):
        load_classical(bad_json)

    truncated = _copy(saved_logreg, tmp_path / "truncated")
    arrays = truncated / ARRAYS_FILE
    arrays.write_bytes(arrays.read_bytes()[:40])
    with pytest.raises(ClassicalModelError, match="corrupt or truncated"):
        LFCCLogRegClassifier.load(truncated)

    no_arrays = _copy(saved_logreg, tmp_path / "no_arrays")
    (no_arrays / ARRAYS_FILE).unlink()
    with pytest.raises(ClassicalModelError, match="missing"):
        LFCCLogRegClassifier.load(no_arrays)

    other_lfcc = _copy(saved_logreg, tmp_path / "other_lfcc")
    document = json.loads((other_lfcc / CONFIG_FILE).read_text())
    document["lfcc"]["n_lfcc"] = 10
    (other_lfcc / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ClassicalModelError, match="do not match"):
        LFCCLogRegClassifier.load(other_lfcc)


def test_a_phase_model_refuses_settings_that_do_not_fit_its_arrays(data, tmp_path: Path) -> None:
    train_waves, train_labels, test_waves, _ = data
    folder = IFDLogRegClassifier().fit(train_waves, train_labels).save(tmp_path / "phase")
    assert json.loads((folder / CONFIG_FILE).read_text())["model_type"] == "ifd_logreg"
    with pytest.raises(ClassicalModelError, match="IFDLogRegClassifier.load"):
        LFCCLogRegClassifier.load(folder)
    document = json.loads((folder / CONFIG_FILE).read_text())
    document["ifd"]["f_max"] = 2000.0
    (folder / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ClassicalModelError, match="do not match 390 ifd statistics"):
        load_classical(folder)


def test_the_harmonic_phase_model_saves_both_settings_and_checks_them(data, tmp_path) -> None:
    train_waves, train_labels, test_waves, _ = data
    model = build_classical("ifd_rps_logreg", rps={"n_harmonics": 6})
    assert isinstance(model, IFDRPSLogRegClassifier)
    assert model.rps == RPSConfig(n_harmonics=6)
    # 129 bins x 6 phase statistics, then 4 statistics of each of harmonics 2..6.
    assert model.n_statistics == 6 * 129 + 4 * 5
    folder = model.fit(train_waves, train_labels).save(tmp_path / "rps")
    document = json.loads((folder / CONFIG_FILE).read_text())
    assert document["model_type"] == "ifd_rps_logreg"
    assert document["rps"]["n_harmonics"] == 6 and document["ifd"]["f_max"] == 4000.0
    assert np.array_equal(load_classical(folder).score(test_waves), model.score(test_waves))
    document["rps"]["n_harmonics"] = 8
    (folder / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ClassicalModelError, match="do not match 802 ifd statistics"):
        load_classical(folder)
    del document["rps"]
    (folder / CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(ClassicalModelError, match="bad settings"):
        load_classical(folder)


def test_every_classical_model_is_known_to_the_detector_and_the_engine() -> None:
    from dfa_lib.detector.folder import CLASSICAL_MODELS
    from dfa_lib.detector.loading import FOLDER_LOADERS
    from dfa_lib.models.classical import CLASSICAL_MODEL_NAMES

    assert set(CLASSICAL_MODEL_NAMES) == set(CLASSICAL_MODELS)
    assert all(FOLDER_LOADERS[name] is load_classical for name in CLASSICAL_MODELS)
