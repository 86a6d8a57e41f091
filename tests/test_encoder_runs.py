"""Encoder runs as 03 and 04 name and size them; 03's heads trained and tested per protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import write_toy_dataset

from dfa_lib.evaluation import encoder_heads as study_module
from dfa_lib.evaluation.encoder_heads import HeadStudySettings, train_and_test_heads
from dfa_lib.features.backbones import load_backbone
from dfa_lib.models.heads import HeadConfig
from dfa_lib.training.encoder_runs import (
    EncoderRunError,
    FinetuneBudget,
    augmented_twins,
    backbone_tag,
    encoder_heads,
    finetune_budget,
    finetune_config,
    finetune_summary,
    layer_head,
    probe_head,
    wants,
)
from dfa_lib.training.engine import RunResult


def test_backbone_tags_drop_the_hub_owner_and_the_offline_suffix():
    assert backbone_tag("whisper-base-offline") == "whisper-base"
    assert backbone_tag("facebook/wav2vec2-base") == "wav2vec2-base"
    assert backbone_tag("/tmp/tiny-w2v0") == "tiny-w2v0"


def test_03s_heads_are_named_by_tag_and_configured_as_before():
    heads = encoder_heads("whisper-base", head_epochs=7, seed=2)
    assert heads == {
        "whisper-base_head": HeadConfig(head="original", stats="mean", epochs=7, seed=2),
        "whisper-base_wpool": HeadConfig(head="weighted-pooled", epochs=7, seed=2),
        "whisper-base_wasp": HeadConfig(head="weighted-asp", epochs=7, seed=2),
    }
    assert layer_head(3, 7, 2) == HeadConfig(
        head="original", layer=3, stats="mean+std", epochs=7, seed=2
    )
    assert probe_head(4, 0.1, 2) == HeadConfig(head="linear", first_layers=4, C=0.1, seed=2)


def test_augmented_twins_name_known_heads_and_refuse_others():
    assert augmented_twins("w", "layer,,wpool") == ["w_layer", "w_wpool"]
    assert augmented_twins("w", "") == []
    with pytest.raises(EncoderRunError, match=r"\['pool'\]"):
        augmented_twins("w", "layer,pool")


def test_wants_reads_comma_lists_and_what_empty_means():
    assert wants("in-domain", "in-domain,unseen-generator", empty_means_all=False)
    assert not wants("cross-source", "in-domain", empty_means_all=True)
    assert wants("cross-source", "", empty_means_all=True)
    assert not wants("cross-source", "", empty_means_all=False)


def test_finetuning_is_capped_on_a_cpu_and_named_after_its_backbone():
    cpu = finetune_budget("cpu", max_per_class=0, cpu_max_per_class=12, epochs=3, cpu_epochs=1)
    assert cpu == FinetuneBudget(max_per_class=12, epochs=1, device="cpu")
    assert "clips per class and split: 12; epochs: 1" in cpu.describe()
    # No CPU cap: the general cap, and 0 means every clip.
    assert finetune_budget("cpu", 5, 0, 3, 1).max_per_class == 5
    assert finetune_budget("cpu", 0, 0, 3, 1).describe().endswith("all; epochs: 1")
    config = finetune_config(
        "whisper-base-offline",
        cpu,
        freeze_layers=2,
        clip_seconds=1.0,
        batch_size=4,
        grad_accumulation=2,
        learning_rate=3e-5,
        seed=0,
        device="cpu",
    )
    assert config.name == "whisper-base_finetune" and config.model == "ssl_classifier"
    assert config.model_kwargs == {"backbone": "whisper-base-offline", "freeze_layers": 2}
    assert (config.epochs, config.lr_schedule, config.patience) == (1, "constant", 2)
    result = RunResult(config, Path("f"), 1, 0.25, 0.0, pd.DataFrame(), False, 1.0)
    metrics = {"eer": 0.1, "eer_ci_low": 0.05, "eer_ci_high": 0.2, "auc": 0.9}
    row = finetune_summary(result, metrics).loc["whisper-base_finetune"]
    assert (row["val_eer_%"], row["test_eer_%"], row["ci_high_%"]) == (25.0, 10.0, 20.0)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A dataset in FoR layout: tones are real, noise bursts fake."""
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toyset",
        [("training", 8), ("validation", 6), ("testing", 4)],
    )


@pytest.mark.slow
def test_03s_study_trains_chooses_and_tests_every_head_then_reuses_them(
    toy_root, tiny_wav2vec2_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    torch.manual_seed(0)
    encoder = load_backbone(tiny_wav2vec2_dir)
    tag = backbone_tag(encoder.choice.resolved)
    settings = HeadStudySettings(
        clip_seconds=0.5,
        head_epochs=2,
        augmented_heads="wpool",
        aug_protocols="in-domain",
        aug_per_class=2,
        n_boot=20,
    )
    args = (encoder, str(toy_root), "in-domain,cross-source", toy_root.parent, tmp_path / "cache")
    study = train_and_test_heads(*args, tmp_path / "runs", settings)
    kinds = ["head", "wpool", "wasp", "layer", "probe", "wpool_aug"]
    assert list(study.summary["model"]) == [f"{tag}_{k}" for k in kinds]
    # A FoR-layout dataset has its own split only: cross-source is skipped, not failed.
    assert set(study.summary["protocol"]) == {"in-domain"}
    assert study.summary["test_eer_%"].between(0, 100).all()
    assert not study.summary["reused"].any()
    # The layer head reads the layer whose probe did best on validation.
    head = tmp_path / "runs" / "in-domain" / f"{tag}_layer" / "head.json"
    layers = study.layer_tables["in-domain"].sort_values(["val_eer", "layer"], kind="stable")
    assert json.loads(head.read_text())["config"]["layer"] == int(layers["layer"].iloc[0])
    assert any("best layer on validation" in n for n in study.notes)
    assert any(n == "in-domain: 4 augmented training copies" for n in study.notes)
    weights = study.layer_weights()
    assert set(weights) == {f"in-domain · {tag}_{k}" for k in ("wpool", "wasp", "wpool_aug")}
    assert all(abs(sum(w) - 1) < 1e-5 for w in weights.values())

    # Nothing changed: every head is read back, with the same test results.
    again = train_and_test_heads(*args, tmp_path / "runs", settings)
    assert again.summary["reused"].all()
    pd.testing.assert_series_equal(again.summary["test_eer_%"], study.summary["test_eer_%"])


def test_the_wasp_head_trains_only_on_the_protocols_named(tmp_path, monkeypatch):
    trained = []

    class Encoder:
        choice = type("Choice", (), {"resolved": "enc"})()

    def fake_train_heads(encoder, feats, data, heads, out, preprocessing, augmented=None):
        trained.append((data.protocol, list(heads)))
        return []

    data = type("Data", (), {"protocol": "unseen-generator", "frames": {}})()
    monkeypatch.setattr(study_module, "prepare_protocol", lambda *a, **k: data)
    monkeypatch.setattr(study_module, "_features", lambda *a, **k: {})
    monkeypatch.setattr(study_module, "layer_table", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(study_module, "best_layer", lambda table: 1)
    monkeypatch.setattr(study_module, "probe_table", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(study_module, "best_probe", lambda table: (2, 0.1))
    monkeypatch.setattr(study_module, "train_heads", fake_train_heads)
    settings = HeadStudySettings(wasp_protocols="in-domain", augmented_heads="")
    train_and_test_heads(
        Encoder(), "offline", "unseen-generator", tmp_path, tmp_path, tmp_path, settings
    )
    assert trained == [("unseen-generator", ["enc_head", "enc_wpool", "enc_layer", "enc_probe"])]
