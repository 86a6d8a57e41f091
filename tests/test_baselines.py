"""The baselines of 02_cnn and 06_robustness: named configs, the plan, training per protocol."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import write_toy_dataset

from dfa_lib.models.networks import phase_lcnn_kwargs
from dfa_lib.training import baselines
from dfa_lib.training.baselines import (
    BASELINE_NAMES,
    BaselineSettings,
    UnknownBaselineError,
    baseline_config,
    baseline_configs,
    baseline_plan,
    selected_protocols,
    spectral_kwargs,
    train_on_protocols,
)
from dfa_lib.training.engine import TrainConfig


def test_every_baseline_builds_and_the_names_are_the_run_names():
    settings = BaselineSettings(cache_dir="/c")
    for name in BASELINE_NAMES:
        assert baseline_config(name, settings).name == name
    with pytest.raises(UnknownBaselineError, match="'lcnnn'.*choose from"):
        baseline_config("lcnnn", settings)
    with pytest.raises(UnknownBaselineError, match=r"\['cnn'\]"):
        baseline_configs(["lcnn", "cnn"], settings)


def test_configs_match_what_02_cnn_trained_before_they_were_named():
    # 02's defaults as its cells spelled them out: a change here changes every run folder.
    s = BaselineSettings(seed=3, device="cpu", patience=2, batch_size=16, cache_dir="/c")
    mel = {"frontend": "mel", "frontend_settings": {"f_max": 4000.0}}
    common = {"batch_size": 16, "patience": 2, "seed": 3, "device": "cpu", "cpu_bfloat16": False}
    spectral = {**common, "clip_seconds": 1.5, "epochs": 20, "learning_rate": 0.001}
    expected = {
        "original_cnn": TrainConfig(
            name="original_cnn",
            model="original_cnn",
            clip_seconds=1.0,
            epochs=20,
            learning_rate=0.0001,
            **common,
        ),
        "lcnn": TrainConfig(name="lcnn", model="lcnn", model_kwargs=mel, **spectral),
        "lcnn_phase": TrainConfig(
            name="lcnn_phase", model="lcnn", model_kwargs=phase_lcnn_kwargs(4000.0), **spectral
        ),
        "resnet": TrainConfig(name="resnet", model="resnet", model_kwargs=mel, **spectral),
        "lfcc_gmm": TrainConfig(
            name="lfcc_gmm",
            model="lfcc_gmm",
            model_kwargs={"lfcc": {"f_max": 4000.0}},
            clip_seconds=1.5,
            seed=3,
        ),
        "ifd_rps_logreg": TrainConfig(
            name="ifd_rps_logreg",
            model="ifd_rps_logreg",
            model_kwargs={"ifd": {"f_max": 4000.0}},
            clip_seconds=1.5,
            seed=3,
        ),
    }
    for name, config in expected.items():
        assert baseline_config(name, s) == config, name
    aug = baseline_config("ifd_rps_logreg_aug", s)
    assert (aug.model, aug.vocoded_fakes) == ("ifd_rps_logreg", "3200,1300,700C")
    assert aug.augment["codec_cache_dir"] == "/c/codecs"


def test_the_augmented_lcnn_shares_the_lcnns_front_end_and_the_engines_training_defaults():
    s = BaselineSettings(
        spectral_frontend="lfcc",
        spectral_normalize=False,
        spectral_fmax=3000.0,
        patience=2,
        batch_size=8,
        aug_epochs=6,
        aug_workers=0,
        cache_dir="/c",
    )
    lcnn, aug = baseline_config("lcnn", s), baseline_config("lcnn_aug", s)
    assert aug.model_kwargs == lcnn.model_kwargs == spectral_kwargs(s)
    assert aug.model_kwargs == {
        "frontend": "lfcc",
        "frontend_settings": {"f_max": 3000.0},
        "normalize": False,
    }
    assert (aug.epochs, aug.num_workers, aug.augment["codec_cache_dir"]) == (6, 0, "/c/codecs")
    # 06 has always trained it with the engine's batch, rate and patience, not 02's.
    default = TrainConfig()
    assert (aug.batch_size, aug.learning_rate, aug.patience) == (
        default.batch_size,
        default.learning_rate,
        default.patience,
    )
    assert spectral_kwargs(BaselineSettings(spec_augment=True))["spec_augment"] == {}


def test_configs_come_in_training_order_whatever_order_they_are_named_in():
    names = [
        c.name for c in baseline_configs(["ifd_logreg", "lcnn", "original_cnn"], BaselineSettings())
    ]
    assert names == ["original_cnn", "lcnn", "ifd_logreg"]


def test_the_plan_trains_extra_models_on_extra_protocols_only_where_asked():
    plan = baseline_plan(
        BaselineSettings(device="cpu"),
        "offline",
        protocols="in-domain,unseen-generator,no-such-protocol",
        models="lcnn,lcnn_phase,ifd_logreg",
        gpu_models="resnet",
        extra_protocols="unseen-generator,lofo-gan-vocoder",
        extra_models="ifd_logreg,lfcc_gmm",
    )
    trained = {p: [c.name for c in cs] for p, cs in plan.protocols.items()}
    # lfcc_gmm is not among the models, resnet joins only off the CPU, unseen-generator is
    # a main protocol already, and the corpus has no "no-such-protocol".
    assert trained == {
        "in-domain": ["lcnn", "lcnn_phase", "ifd_logreg"],
        "unseen-generator": ["lcnn", "lcnn_phase", "ifd_logreg"],
        "lofo-gan-vocoder": ["ifd_logreg"],
    }
    assert plan.device_type == "cpu" and plan.gpu_added == []
    assert "lofo-gan-vocoder" in plan.describe() and "device: cpu" in plan.describe()
    no_extra = baseline_plan(
        BaselineSettings(device="cpu"),
        "offline",
        "in-domain",
        "lcnn",
        "",
        "lofo-gan-vocoder",
        "",
    )
    assert list(no_extra.protocols) == ["in-domain"]


def test_selected_protocols_keeps_those_the_dataset_has():
    assert selected_protocols("in-domain,cross-source", "for-2sec") == ["in-domain"]
    assert selected_protocols("in-domain,,cross-source", "offline", exclude=["in-domain"]) == [
        "cross-source"
    ]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A dataset in FoR layout: tones are real, noise bursts fake."""
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toyset",
        [("training", 12), ("validation", 8), ("testing", 4)],
    )


def test_training_loads_each_protocol_once_per_cap_and_trains_in_order(
    toy_root, tmp_path, monkeypatch
):
    loads = []
    prepare = baselines.prepare_protocol

    def counted(*args, **kwargs):
        loads.append(kwargs["max_per_class"])
        return prepare(*args, **kwargs, progress=False)

    monkeypatch.setattr(baselines, "prepare_protocol", counted)
    s = BaselineSettings(spectral_clip_seconds=0.5, cache_dir=str(tmp_path / "cache"))
    configs = [
        baseline_config("lfcc_gmm", s),
        baseline_config("ifd_logreg", s),
    ]
    dataset, data_dir = str(toy_root), toy_root.parent
    runs = tmp_path / "runs"
    training = train_on_protocols(
        {"in-domain": configs},
        dataset,
        data_dir,
        tmp_path / "cache",
        runs,
        max_per_class=4,
        logreg_max_per_class=0,
        seed=0,
    )
    # The logistic regression gets every clip, the mixture 4 per class: two loads.
    assert loads == [4, None]
    assert [r.config.name for r in training.results["in-domain"]] == ["lfcc_gmm", "ifd_logreg"]
    assert [(p, m) for p, m, _ in training.counts] == [
        ("in-domain", ["lfcc_gmm"]),
        ("in-domain", ["ifd_logreg"]),
    ]
    counts = training.counts[0][2]
    assert counts.loc["training", "real"] == 4 and counts.index.name == "in-domain split"
    assert (runs / "in-domain" / "ifd_logreg" / "config.json").is_file()
    table = training.validation_table()
    assert list(table["model"]) == ["lfcc_gmm", "ifd_logreg"]
    assert table["val_eer_%"].between(0, 100).all() and not table["reused"].any()
    # The same plan again reuses both folders.
    again = train_on_protocols(
        {"in-domain": configs}, dataset, data_dir, tmp_path / "cache", runs, 4, 0
    )
    assert again.validation_table()["reused"].all()
    pd.testing.assert_series_equal(
        again.validation_table()["val_eer_%"], table["val_eer_%"], check_exact=True
    )


def test_an_empty_plan_trains_nothing(tmp_path):
    training = train_on_protocols({}, "offline", tmp_path, tmp_path, tmp_path)
    assert training.results == {} and training.validation_table().empty
