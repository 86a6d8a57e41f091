"""Score-level fusion: fitting on validation scores, loading as a detector, evaluation, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import make_toy_split

from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.folder import DetectorFormatError, export_detector
from dfa_lib.detector.fusion import (
    FusionError,
    FusionParameters,
    fit_fusion,
    is_fusion_folder,
    members_and_parameters,
    parse_fusions,
    resolve_members,
)
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.validation import validation_fingerprint
from dfa_lib.evaluation.evaluate import evaluate_run, find_runs, results_table
from dfa_lib.evaluation.fusions import (
    evaluate_fusion,
    fit_and_evaluate,
    sweepable_fusions,
    weights_table,
)
from dfa_lib.scoring.metrics import equal_error_rate, write_scores_asvspoof2021
from dfa_lib.training.engine import TrainConfig, train

PREP = {"sample_rate": 16000, "clip_seconds": 1.5, "pad_mode": "wrap"}


def _eer(scores, real) -> float:
    scores, real = np.asarray(scores), np.asarray(real)
    return float(equal_error_rate(scores[real], scores[~real]).eer)


def _member(folder, scores, paths, protocol="in-domain", **prep):
    """A detector folder holding only what a fit reads: its config and validation scores."""
    config = {
        "model": {"name": "lfcc_logreg", "kwargs": {}},
        "threshold": 0.0,
        "preprocessing": {**PREP, **prep},
        "dataset": {"protocol": protocol},
    }
    export_detector(folder, None, config)
    write_scores_asvspoof2021(folder / "scores" / "validation.txt", paths, scores)
    return folder


@pytest.fixture
def complementary(tmp_path):
    """Two members, each blind to half the fakes: fused, they catch both halves."""
    rng = np.random.default_rng(0)
    n = 400
    labels = np.array(["real"] * n + ["fake"] * n)
    kind = np.array([0] * n + [1] * (n // 2) + [2] * (n // 2))  # 1: seen by a only, 2: by b
    a = rng.normal(size=2 * n) - 5.0 * (kind == 1)
    b = rng.normal(size=2 * n) - 5.0 * (kind == 2)
    paths = [f"val/{i}.wav" for i in range(2 * n)]
    runs = tmp_path / "runs"
    members = [_member(runs / "a", a, paths), _member(runs / "b", b, paths)]
    return members, pd.Series(labels, index=paths)


def test_parse_fusions():
    assert parse_fusions("a+b, c+*_wpool+d") == [["a", "b"], ["c", "*_wpool", "d"]]
    assert parse_fusions("") == [] and parse_fusions(" , ") == []
    with pytest.raises(FusionError, match="at least two"):
        parse_fusions("a")
    with pytest.raises(FusionError, match="at least two"):
        parse_fusions("a+")
    with pytest.raises(FusionError, match="twice"):
        parse_fusions("a+a")


def test_fusion_beats_members_that_see_different_fakes(complementary):
    members, labels = complementary
    real = labels.to_numpy() == "real"
    member_eers = [
        _eer(pd.read_csv(m / "scores/validation.txt", sep=" ", header=None)[1], real)
        for m in members
    ]
    assert min(member_eers) > 0.2  # each misses half the fakes
    folder = fit_fusion(members, labels)
    assert folder.name == "a+b" and folder.parent == members[0].parent and is_fusion_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    kwargs = config["model"]["kwargs"]
    assert [m["name"] for m in kwargs["members"]] == ["a", "b"]
    assert [m["folder"] for m in kwargs["members"]] == ["../a", "../b"]
    assert all(w > 0 for w in kwargs["weights"])  # higher member score = more real
    fused = pd.read_csv(folder / "scores/validation.txt", sep=" ", header=None)[1].to_numpy()
    assert config["val_eer"] == pytest.approx(_eer(fused, real))
    assert config["val_eer"] < 0.1 < 0.2 < min(member_eers)
    # The decision threshold is the one at the fused validation EER.
    assert config["threshold"] == pytest.approx(
        float(equal_error_rate(fused[real], fused[~real]).threshold)
    )
    card = (folder / "README.md").read_text()
    assert "`a` (weight" in card and "`b` (weight" in card and "log-odds of real" in card
    table = weights_table([folder, members[0]])  # members are not fusions: no rows
    assert list(table["member"]) == ["a", "b"] and list(table["fusion"]) == ["a+b", "a+b"]
    assert table["weight"].tolist() == kwargs["weights"]
    # Standardisation makes the weights independent of each member's score scale.
    params = FusionParameters.from_kwargs(kwargs)
    raw = np.stack(
        [pd.read_csv(m / "scores/validation.txt", sep=" ", header=None)[1] for m in members], 1
    )
    np.testing.assert_allclose(params.combine(raw), fused, rtol=1e-12, atol=1e-9)


def test_refit_only_when_a_member_changes(complementary):
    members, labels = complementary
    folder = fit_fusion(members, labels)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert fit_fusion(members, labels) == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    # Retraining a member changes its validation scores: the old fusion refuses to load ...
    scores = pd.read_csv(members[1] / "scores/validation.txt", sep=" ", header=None)
    write_scores_asvspoof2021(members[1] / "scores/validation.txt", scores[0], scores[1] * 2)
    with pytest.raises(DetectorFormatError, match="retrained after the fusion was fitted"):
        load_detector(folder)
    # ... and fitting again replaces it.
    fit_fusion(members, labels)
    assert (folder / "config.json").stat().st_mtime_ns != stamp


def test_fit_errors(complementary, tmp_path):
    members, labels = complementary
    paths = list(labels.index)
    with pytest.raises(FusionError, match="at least two"):
        fit_fusion(members[:1], labels)
    with pytest.raises(FusionError, match="no label for 1"):
        fit_fusion(members, labels.iloc[1:])
    with pytest.raises(FusionError, match="one class"):
        fit_fusion(members, pd.Series("real", index=labels.index))
    with pytest.raises(FusionError, match="'real' or 'fake'"):
        fit_fusion(members, labels.replace("fake", "spoof"))
    odd = _member(tmp_path / "odd", np.zeros(len(paths)) + 1.0, paths, clip_seconds=1.0)
    with pytest.raises(FusionError, match="share clip_seconds"):
        fit_fusion([members[0], odd], labels)
    flat = _member(tmp_path / "flat", np.ones(len(paths)), paths)
    with pytest.raises(FusionError, match="same score"):
        fit_fusion([members[0], flat], labels)
    short = _member(tmp_path / "short", np.arange(10.0), paths[:10])
    with pytest.raises(FusionError, match="different validation clips"):
        fit_fusion([members[0], short], labels)
    other = _member(tmp_path / "other", np.arange(len(paths)), paths, protocol="unseen-generator")
    with pytest.raises(FusionError, match="different protocols"):
        fit_fusion([members[0], other], labels)
    fused = fit_fusion(members, labels)
    with pytest.raises(FusionError, match="is a fusion itself"):
        fit_fusion([fused, members[0]], labels)
    with pytest.raises(FusionError, match="distinct folder names"):
        fit_fusion([members[0], _member(tmp_path / "a", np.arange(len(paths)), paths)], labels)
    with pytest.raises(FusionError, match="must be positive"):
        fit_fusion(members, labels, c=0)


GOOD_PARAMETERS = {"mean": [0.5, -1.0], "std": [1.0, 2.0], "weights": [1.5, 0.7], "bias": 0.1}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"std": [1.0, 0.0]}, r"std must be positive .* got \[1.0, 0.0\]"),
        ({"std": [-1.0, 2.0]}, "std must be positive"),
        ({"std": [1.0, float("nan")]}, "std must be finite numbers"),
        ({"mean": [float("inf"), 0.0]}, "mean must be finite numbers"),
        ({"weights": [1.0, float("nan")]}, "weights must be finite numbers"),
        ({"bias": float("-inf")}, "bias must be finite numbers"),
    ],
)
def test_fusion_parameters_that_would_give_scores_not_finite_are_refused(change, message):
    assert FusionParameters.from_kwargs(GOOD_PARAMETERS).std == (1.0, 2.0)
    with pytest.raises(FusionError, match=message):
        FusionParameters.from_kwargs({**GOOD_PARAMETERS, **change})


def _edit_kwargs(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model"]["kwargs"].update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_a_fusion_folder_with_a_zero_spread_is_refused(complementary):
    members, labels = complementary
    folder = fit_fusion(members, labels)
    _edit_kwargs(folder, std=[0.0, 1.0])
    with pytest.raises(DetectorFormatError, match="std must be positive"):
        load_detector(folder)
    with pytest.raises(FusionError, match="std must be positive"):
        members_and_parameters(folder)


def test_a_fusion_that_contains_itself_is_refused_naming_the_cycle(complementary):
    members, labels = complementary
    folder = fit_fusion(members, labels)
    records = json.loads((folder / "config.json").read_text())["model"]["kwargs"]["members"]
    itself = {"name": folder.name, "folder": ".", "fingerprint": validation_fingerprint(folder)}
    _edit_kwargs(folder, members=[itself, records[1]])
    with pytest.raises(DetectorFormatError, match=r"contains itself \(a\+b -> a\+b\)"):
        load_detector(folder)

    # Two fusions that list each other.
    first, second = folder, folder.parent / "other"
    shutil.copytree(first, second)
    _edit_kwargs(
        first,
        members=[
            {"name": "other", "folder": "../other", "fingerprint": validation_fingerprint(second)},
            records[1],
        ],
    )
    _edit_kwargs(
        second,
        members=[
            records[0],
            {"name": "a+b", "folder": "../a+b", "fingerprint": validation_fingerprint(first)},
        ],
    )
    with pytest.raises(DetectorFormatError, match=r"a\+b -> other -> a\+b"):
        load_detector(first)


def test_resolve_members_by_name_or_pattern(complementary):
    members, labels = complementary
    fused = fit_fusion(members, labels)
    folders = find_runs(members[0].parent)
    assert fused in folders
    assert resolve_members(["b", "a"], folders) == [members[1], members[0]]
    with pytest.raises(FusionError, match="matched a, b"):
        resolve_members(["?", "b"], folders)  # fusions are never candidates: "a+b" is skipped
    with pytest.raises(FusionError, match="matched none"):
        resolve_members(["a", "*_wpool"], folders)


@pytest.mark.slow
def test_a_fusion_of_trained_detectors_scores_and_evaluates_like_its_members(tmp_path):
    parts = {
        s: make_toy_split(n, i, s, seconds=0.75, noise=0.05)
        for i, (s, n) in enumerate([("training", 24), ("validation", 12), ("testing", 12)])
    }
    data = ProtocolData(
        "toy",
        "in-domain",
        root=None,
        frames={s: p[0] for s, p in parts.items()},
        stores={s: p[1] for s, p in parts.items()},
    )
    runs = tmp_path / "runs"
    configs = [
        TrainConfig(name=name, model=name, clip_seconds=0.5)
        for name in ("lfcc_logreg", "ifd_logreg")
    ]
    results = train(
        configs,
        data.frames["training"],
        data.frames["validation"],
        data.stores["training"],
        data.stores["validation"],
        runs,
        dataset={"dataset": "toy", "protocol": "in-domain"},
        progress=False,
    )
    labels = data.frames["validation"].set_index("path")["label"]
    folder = fit_fusion([r.folder for r in results], labels)

    # As a detector, the fusion scores new audio through its members, window by window; on
    # the validation clips that gives back the fused validation scores.
    detector = load_detector(folder, device="cpu")
    assert detector.model_name == "fusion"
    store = data.stores["validation"]
    fused = pd.read_csv(folder / "scores/validation.txt", sep=" ", header=None)[1].to_numpy()
    np.testing.assert_allclose(
        detector.score_waves([store[i] for i in range(len(store))]), fused, rtol=1e-6, atol=1e-6
    )

    with pytest.raises(FusionError, match="has not been evaluated on in-domain"):
        evaluate_fusion(folder, "in-domain", n_boot=20)
    for r in results:
        evaluate_run(r.folder, data, n_boot=20)
    metrics = evaluate_fusion(folder, "in-domain", n_boot=20)
    scored = pd.read_csv(folder / "scores" / "in-domain.scored.csv")
    store = data.stores["testing"]
    np.testing.assert_allclose(
        scored["score"], detector.score_waves([store[i] for i in range(len(store))]), atol=1e-6
    )
    assert metrics["eer"] == pytest.approx(
        _eer(scored["score"], scored["label"].to_numpy() == "real")
    )
    assert evaluate_fusion(folder, "in-domain", n_boot=20) == metrics  # reused, not recomputed
    table = results_table(runs)
    assert set(table["model"]) == {"lfcc_logreg", "ifd_logreg", "lfcc_logreg+ifd_logreg"}

    # What 05_evaluation and 06_robustness call: fusions by spec, and those a sweep can score.
    members = [r.folder for r in results]
    fused, skipped = fit_and_evaluate(
        "lfcc_logreg+ifd_logreg,ifd_logreg+*_wpool", members, labels, "in-domain", n_boot=20
    )
    assert fused == {folder: metrics}
    assert len(skipped) == 1 and "ifd_logreg+*_wpool skipped" in skipped[0]
    assert "matched none" in skipped[0]
    names, params = sweepable_fusions(find_runs(runs), ["lfcc_logreg", "ifd_logreg"])[folder.name]
    assert names == ["lfcc_logreg", "ifd_logreg"] and params == FusionParameters.from_kwargs(
        json.loads((folder / "config.json").read_text())["model"]["kwargs"]
    )
    assert sweepable_fusions(find_runs(runs), ["lfcc_logreg"]) == {}

    # A fusion whose member folder went away says so.
    (runs / "ifd_logreg" / "config.json").unlink()
    with pytest.raises(DetectorFormatError, match="ifd_logreg"):
        load_detector(folder)
