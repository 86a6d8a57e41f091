"""06's study: augmented twins tested, the chosen in-domain detectors swept, broken ones named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_toy_dataset

from dfa_lib.data.protocol_data import prepare_protocol
from dfa_lib.detector.fusion import fit_fusion
from dfa_lib.evaluation import robustness_study as study
from dfa_lib.training.engine import TrainConfig, train


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A dataset in FoR layout: tones are real, noise bursts fake."""
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toyset",
        [("training", 12), ("validation", 8), ("testing", 4)],
    )


@pytest.fixture(scope="module")
def trained(toy_root, tmp_path_factory) -> Path:
    """Two classical detectors trained in-domain, their fusion, and an `_aug` copy of one."""
    cache = tmp_path_factory.mktemp("cache")
    data = prepare_protocol(str(toy_root), "in-domain", toy_root.parent, cache, progress=False)
    runs = tmp_path_factory.mktemp("runs")
    results = train(
        [TrainConfig(name=m, model=m, clip_seconds=0.5) for m in ("lfcc_logreg", "ifd_logreg")],
        data.frames["training"],
        data.frames["validation"],
        data.stores["training"],
        data.stores["validation"],
        runs / "in-domain",
        dataset=data.info,
        progress=False,
    )
    fit_fusion([r.folder for r in results], data.frames["validation"].set_index("path")["label"])
    shutil.copytree(runs / "in-domain" / "ifd_logreg", runs / "in-domain" / "ifd_logreg_aug")
    return runs


def test_the_augmented_twins_are_tested_on_the_protocols_their_training_answers(
    toy_root, trained, tmp_path
):
    runs = Path(shutil.copytree(trained, tmp_path / "runs"))
    args = (str(toy_root), toy_root.parent, tmp_path / "cache")
    table = study.evaluate_augmented_twins(runs, ["in-domain"], *args, n_boot=20)
    assert list(table["model"]) == ["ifd_logreg_aug"] and list(table["protocol"]) == ["in-domain"]
    assert 0 <= table["eer_%"].iloc[0] <= 100
    assert (runs / "in-domain" / "ifd_logreg_aug" / "metrics.json").is_file()
    assert not (runs / "in-domain" / "ifd_logreg" / "metrics.json").exists()
    assert study.evaluate_augmented_twins(runs, [], *args).empty


def test_globs_choose_detectors_and_never_fusions(trained):
    folders = sorted((trained / "in-domain").iterdir())
    names = [f.name for f in study.chosen_folders(folders, "ifd*")]
    assert names == ["ifd_logreg", "ifd_logreg_aug"]
    everything = [f.name for f in study.chosen_folders(folders, "")]
    assert everything == ["ifd_logreg", "ifd_logreg_aug", "lfcc_logreg"]


def test_the_sweep_scores_the_loadable_detectors_and_names_the_others(
    toy_root, trained, tmp_path, monkeypatch
):
    # Two conditions stand for the whole sweep (the codec round trips take seconds).
    monkeypatch.setattr(study, "SWEEP", ("clean", "noise-10db"))
    runs = Path(shutil.copytree(trained, tmp_path / "runs"))
    (runs / "in-domain" / "ifd_logreg_aug" / "classifier.safetensors").write_bytes(b"broken")
    test = prepare_protocol(
        str(toy_root), "in-domain", toy_root.parent, tmp_path / "cache", splits=("testing",)
    )
    sweep = study.sweep_detectors(
        runs / "in-domain", test, "*logreg*", tmp_path / "degraded", max_per_class=2
    )
    assert sweep.detectors == ["ifd_logreg", "lfcc_logreg"]
    assert sweep.fusions == ["lfcc_logreg+ifd_logreg"]  # both members were swept
    assert list(sweep.failed) == ["ifd_logreg_aug"]
    table = sweep.eer_table()
    assert list(table.columns) == ["clean", "noise-10db"]
    assert set(table.index) == {"ifd_logreg", "lfcc_logreg", "lfcc_logreg+ifd_logreg"}
    assert table.to_numpy().min() >= 0 and table.to_numpy().max() <= 100
    summary = sweep.summary_table()
    assert {"clean_eer", "mean_degraded_eer", "ratio", "clean_cllr"} <= set(summary.columns)
    with pytest.raises(study.DetectorsNotLoadedError, match="could not be loaded.*ifd_logreg_aug"):
        study.raise_if_not_loaded(sweep)


def test_an_empty_sweep_has_an_empty_table():
    sweep = study.Sweep(pd.DataFrame())
    assert sweep.eer_table().empty and list(sweep.eer_table().columns) == list(study.SWEEP)
    study.raise_if_not_loaded(sweep)  # nothing failed: no error
