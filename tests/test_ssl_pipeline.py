"""Heads on a frozen encoder become run folders that load as detectors; fine-tuning one step."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_toy_split

from dfa_lib.data.augment import AugmentConfig
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.loading import load_detector
from dfa_lib.evaluation.evaluate import evaluate_head
from dfa_lib.evaluation.robustness import (
    degradation_sweep,
    degraded_test_set,
    share_encoders,
    sweep_summary,
)
from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.ssl_features import FeaturePreprocessing
from dfa_lib.models.heads import HeadConfig, predict_logits
from dfa_lib.models.registry import build_model
from dfa_lib.training.engine import TrainConfig, train
from dfa_lib.training.ssl_pipeline import (
    augmentation_rows,
    augmented_training_features,
    best_probe,
    head_inputs,
    layer_table,
    probe_table,
    split_features,
    summary_row,
    train_heads,
)

PRE = FeaturePreprocessing(clip_seconds=0.5)


@pytest.fixture(scope="module")
def tiny_encoder_dir(tiny_wav2vec2_dir):
    return tiny_wav2vec2_dir


@pytest.fixture(scope="module")
def toy_data():
    parts = {
        s: make_toy_split(n, i, s)
        for i, (s, n) in enumerate([("training", 16), ("validation", 8), ("testing", 8)])
    }
    return ProtocolData(
        "toy",
        "in-domain",
        root=None,
        frames={s: p[0] for s, p in parts.items()},
        stores={s: p[1] for s, p in parts.items()},
    )


def test_heads_become_loadable_detectors(tmp_path, tiny_encoder_dir, toy_data, monkeypatch):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    encoder = load_backbone(tiny_encoder_dir)
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=True)
    assert all(fs.valid.all() for fs in feats.values())
    configs = {
        "head": HeadConfig(head="original", epochs=5, seed=0),
        "wasp": HeadConfig(head="weighted-asp", epochs=5, seed=0),
    }
    runs = train_heads(encoder, feats, toy_data, configs, tmp_path / "runs", PRE)
    assert [r.folder.name for r in runs] == ["head", "wasp"]
    table = layer_table(feats, toy_data)
    assert len(table) == encoder.num_layers + 1
    # Cached: the same features read the stored table back; other labels compute a new one.
    cached = layer_table(feats, toy_data, cache_dir=tmp_path / "tables")
    pd.testing.assert_frame_equal(cached, table)
    with monkeypatch.context() as m:
        m.setattr("dfa_lib.models.heads.layer_signal", lambda *a, **k: pytest.fail("not cached"))
        pd.testing.assert_frame_equal(layer_table(feats, toy_data, tmp_path / "tables"), table)
    flipped = ProtocolData(
        "toy",
        "in-domain",
        root=None,
        frames={
            **toy_data.frames,
            "validation": toy_data.frames["validation"].assign(
                label=lambda d: d.label.map({"real": "fake", "fake": "real"})
            ),
        },
        stores=toy_data.stores,
    )
    other = layer_table(feats, flipped, tmp_path / "tables")
    assert len(list((tmp_path / "tables").glob("*.csv"))) == 2
    np.testing.assert_allclose(other["val_auc"], 1 - table["val_auc"], atol=1e-9)
    for run in runs:
        metrics = evaluate_head(run, feats["testing"], toy_data, n_boot=20)
        config = json.loads((run.folder / "config.json").read_text())
        assert config["model"]["name"] == "ssl_head"
        assert config["model"]["kwargs"]["backbone"] == encoder.name
        # The detector rebuilt from the folder scores the test clips as the cached path did.
        detector = load_detector(run.folder, device="cpu")
        waves = [toy_data.stores["testing"][i] for i in range(len(toy_data.frames["testing"]))]
        scored = pd.read_csv(run.folder / "scores" / "in-domain.scored.csv")
        np.testing.assert_allclose(detector.score_waves(waves), scored["score"], atol=2e-3)
        assert 0.0 <= metrics["eer"] <= 1.0
        row = summary_row("in-domain", run, metrics)
        assert row["model"] == run.name and row["reused"] is False
        assert row["test_eer_%"] == pytest.approx(100 * metrics["eer"])
        assert row["val_eer_%"] == pytest.approx(100 * run.val_eer)

    # Nothing changed: both folders are kept as they are. A changed head trains again.
    stamps = [(r.folder / "head.safetensors").stat().st_mtime_ns for r in runs]
    configs["wasp"] = HeadConfig(head="weighted-asp", epochs=4, seed=0)
    again = train_heads(encoder, feats, toy_data, configs, tmp_path / "runs", PRE)
    assert [r.reused for r in again] == [True, False]
    assert (again[0].folder / "head.safetensors").stat().st_mtime_ns == stamps[0]
    assert (again[0].threshold, again[0].val_eer) == (runs[0].threshold, runs[0].val_eer)
    assert again[0].history.best_epoch == runs[0].history.best_epoch
    x_te, _ = head_inputs(feats["testing"], configs["head"])
    np.testing.assert_allclose(
        predict_logits(again[0].head, x_te, configs["head"]),
        predict_logits(runs[0].head, x_te, configs["head"]),
        atol=1e-6,
    )
    # A damaged folder is trained again, not trusted.
    (again[0].folder / "train_log.csv").unlink()
    assert not train_heads(encoder, feats, toy_data, configs, tmp_path / "runs", PRE)[0].reused


def test_finetuning_runs_through_the_engine(tmp_path, tiny_encoder_dir, toy_data):
    config = TrainConfig(
        name="ft",
        model="ssl_classifier",
        model_kwargs={"backbone": tiny_encoder_dir, "freeze_layers": 1},
        clip_seconds=0.5,
        epochs=1,
        batch_size=8,
        learning_rate=3e-5,
        grad_accumulation=2,
        lr_schedule="constant",
        device="cpu",
    )
    model = build_model("ssl_classifier", backbone=tiny_encoder_dir, freeze_layers=1)
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert frozen and all("layers.1." not in n for n in frozen)
    [res] = train(
        config,
        toy_data.frames["training"],
        toy_data.frames["validation"],
        toy_data.stores["training"],
        toy_data.stores["validation"],
        tmp_path,
        progress=False,
    )
    detector = load_detector(res.folder, device="cpu")
    scores = detector.score_waves([toy_data.stores["validation"][i] for i in range(4)])
    assert np.isfinite(scores).all()


def test_degradation_sweep_table(tmp_path, toy_data):
    class Loudness:
        def score_waves(self, waves):
            return [-float(np.mean(np.abs(w))) for w in waves]

    sweep = degradation_sweep(
        {"loud": Loudness()},
        toy_data,
        ("clean", "noise-20db", "gsm"),
        cache_dir=tmp_path,
        progress=False,
        max_per_class=4,
    )
    assert list(sweep["degradation"]) == ["clean", "noise-20db", "gsm"]
    assert (sweep["n"] == 8).all() and sweep["eer"].between(0, 1).all()
    summary = sweep_summary(sweep)
    assert summary.loc["loud", "mean_degraded_eer"] == pytest.approx(sweep["eer"].iloc[1:].mean())
    assert summary.loc["loud", "mean_degraded_cllr"] == pytest.approx(sweep["cllr"].iloc[1:].mean())

    # The Cllr is that of the probabilities the detector reports: its calibration applied.
    from dfa_lib.scoring.calibration import Calibration
    from dfa_lib.scoring.metrics import cllr

    calibrated = Loudness()
    calibrated.calibration = Calibration(scale=0.5, offset=-1.0)
    again = degradation_sweep(
        {"loud": calibrated},
        toy_data,
        ("clean",),
        cache_dir=tmp_path / "c",
        progress=False,
        max_per_class=4,
    )
    frame, waves = degraded_test_set(
        toy_data, "clean", tmp_path / "c", progress=False, max_per_class=4
    )
    scores, real = np.asarray(Loudness().score_waves(waves)), frame["label"].to_numpy() == "real"
    assert again["cllr"].iloc[0] == pytest.approx(
        cllr(0.5 * scores[real] - 1, 0.5 * scores[~real] - 1)
    )
    assert again["cllr"].iloc[0] != pytest.approx(sweep["cllr"].iloc[0])


def test_degradation_sweep_scores_fusions_from_their_members(tmp_path, toy_data):
    from dfa_lib.detector.fusion import FusionParameters
    from dfa_lib.scoring.metrics import equal_error_rate

    class Scorer:
        def __init__(self, fn):
            self.fn = fn

        def score_waves(self, waves):
            return [self.fn(w) for w in waves]

    detectors = {
        "loud": Scorer(lambda w: -float(np.mean(np.abs(w)))),
        "peaky": Scorer(lambda w: float(np.max(np.abs(w)) / (np.std(w) + 1e-9))),
    }
    params = FusionParameters(mean=(0.0, 1.0), std=(1.0, 2.0), weights=(2.0, -1.0), bias=0.5)
    kwargs = dict(cache_dir=tmp_path, progress=False, max_per_class=4)
    sweep = degradation_sweep(
        detectors, toy_data, ("clean", "gsm"), fusions={"f": (["loud", "peaky"], params)}, **kwargs
    )
    assert list(sweep["detector"]) == ["loud", "peaky", "f"] * 2
    # The fused row is the EER of the combination of the members' scores of the same clips.
    frame, waves = degraded_test_set(toy_data, "gsm", tmp_path, progress=False, max_per_class=4)
    member = np.stack([detectors[d].score_waves(waves) for d in ("loud", "peaky")], axis=1)
    fused, real = params.combine(member), frame["label"].to_numpy() == "real"
    row = sweep[(sweep["detector"] == "f") & (sweep["degradation"] == "gsm")].iloc[0]
    assert row["eer"] == pytest.approx(equal_error_rate(fused[real], fused[~real]).eer)
    with pytest.raises(ValueError, match="needs members"):
        degradation_sweep(
            {"loud": detectors["loud"]},
            toy_data,
            ("clean",),
            fusions={"f": (["loud", "peaky"], params)},
            **kwargs,
        )


def test_sweep_scores_are_cached_per_detector_folder_and_weights(tmp_path, toy_data):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")

    class Loudness:
        def __init__(self):
            self.folder, self.calls = folder, 0

        def score_waves(self, waves):
            self.calls += 1
            return [-float(np.mean(np.abs(w))) for w in waves]

    class NoFolder(Loudness):
        folder = None

        def __init__(self):
            self.calls = 0

    def sweep(detectors):
        return degradation_sweep(
            detectors, toy_data, ("clean", "gsm"), cache_dir=tmp_path / "deg", progress=False
        )

    first, kept, loose = Loudness(), Loudness(), NoFolder()
    table = sweep({"loud": first})
    assert first.calls == 2
    # Same folder and weights: the scores come from the cache, the table is the same.
    again = sweep({"loud": kept, "loose": loose})
    assert kept.calls == 0 and loose.calls == 2
    pd.testing.assert_frame_equal(again[again["detector"] == "loud"].reset_index(drop=True), table)
    # A damaged cache file is scored again, not trusted.
    for cached in (tmp_path / "deg" / "scores").glob("*.npy"):
        cached.write_bytes(b"not an array")
    sweep({"loud": kept})
    assert kept.calls == 2
    # New weights in the folder: scored again.
    os.utime(folder / "model.safetensors", ns=(1, 1))
    sweep({"loud": kept})
    assert kept.calls == 4


def test_probe_table_chooses_the_linear_head_on_validation(tmp_path, tiny_encoder_dir, toy_data):
    encoder = load_backbone(tiny_encoder_dir)
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=False)
    table = probe_table(feats, toy_data, cache_dir=tmp_path / "tables", C_values=(0.1, 1.0))
    layers = encoder.num_layers + 1
    assert table["first_layers"].tolist() == [k for k in range(1, layers + 1) for _ in (0, 1)]
    assert table["C"].tolist() == [0.1, 1.0] * layers
    k, C = best_probe(table)
    config = HeadConfig(head="linear", first_layers=k, C=C)
    (run,) = train_heads(encoder, feats, toy_data, {"probe": config}, tmp_path / "runs", PRE)
    # The table's EER is the trained head's, and the folder is a detector like any head's.
    assert run.val_eer == pytest.approx(table["val_eer"].min())
    evaluate_head(run, feats["testing"], toy_data, n_boot=20)
    detector = load_detector(run.folder, device="cpu")
    waves = [toy_data.stores["testing"][i] for i in range(len(toy_data.frames["testing"]))]
    scored = pd.read_csv(run.folder / "scores" / "in-domain.scored.csv")
    np.testing.assert_allclose(detector.score_waves(waves), scored["score"], atol=2e-3)
    again = probe_table(feats, toy_data, cache_dir=tmp_path / "tables", C_values=(0.1, 1.0))
    pd.testing.assert_frame_equal(again, table)
    one_at_a_time = probe_table(feats, toy_data, C_values=(0.1, 1.0), workers=1)
    pd.testing.assert_frame_equal(one_at_a_time, table)  # fits on threads change nothing
    assert len(list((tmp_path / "tables").glob("*.csv"))) == 1
    probe_table(feats, toy_data, cache_dir=tmp_path / "tables", C_values=(0.1,))
    assert len(list((tmp_path / "tables").glob("*.csv"))) == 2  # other settings, own entry


def test_best_probe_prefers_fewer_layers_then_smaller_c():
    table = pd.DataFrame(
        {"first_layers": [1, 1, 2, 2], "C": [0.1, 1.0, 0.1, 0.01], "val_eer": [0.3, 0.2, 0.2, 0.2]}
    )
    assert best_probe(table) == (1, 1.0)
    assert best_probe(table.iloc[2:]) == (2, 0.01)
    with pytest.raises(ValueError, match="empty"):
        best_probe(table.iloc[:0])


def test_best_layer_is_the_lowest_validation_eer_and_ties_go_low():
    from dfa_lib.training.ssl_pipeline import best_layer

    table = pd.DataFrame({"layer": [0, 1, 2, 3], "val_eer": [0.3, 0.1, 0.1, 0.2]})
    assert best_layer(table) == 1
    assert best_layer(table.iloc[::-1]) == 1
    with pytest.raises(ValueError, match="empty"):
        best_layer(table.iloc[:0])


# --- heads trained with augmented copies ---------------------------------------------------


def test_augmentation_rows_cap_each_class_and_agree_across_protocols():
    frame = pd.DataFrame(
        {
            "path": [f"c{i}.wav" for i in range(40)],
            "label": ["real", "fake"] * 20,
            "sha256": [f"{i:064x}" for i in range(40)],
        }
    )
    rows = augmentation_rows(frame, 5, seed=0)
    assert sorted(frame.label.iloc[rows].value_counts().tolist()) == [5, 5]
    np.testing.assert_array_equal(rows, augmentation_rows(frame, 5, seed=0))
    assert set(rows) != set(augmentation_rows(frame, 5, seed=1))
    assert len(augmentation_rows(frame, None, seed=0)) == 40
    # A protocol whose training set drops some clips still picks the same kept clips.
    subset = frame.drop(index=[r for r in rows if frame.label[r] == "fake"][:2])
    picked = set(subset.path.iloc[augmentation_rows(subset, 5, seed=0)])
    assert {frame.path[r] for r in rows} - picked == {
        frame.path[r] for r in rows if frame.label[r] == "fake"
    } - set(subset.path)


def test_heads_train_on_augmented_copies_which_are_cached(
    tmp_path, tiny_encoder_dir, toy_data, monkeypatch
):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    encoder = load_backbone(tiny_encoder_dir)
    augment = AugmentConfig.off(noise_p=1.0, noise_types=("white",), snr_db_range=(5.0, 10.0))
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=False)
        copies = augmented_training_features(
            encoder, toy_data, tmp_path / "features", PRE, augment, max_per_class=6, seed=0
        )
    assert copies.pooled.shape == (12, encoder.num_layers + 1, 2 * encoder.hidden_size)
    assert sorted(np.bincount(copies.labels).tolist()) == [6, 6]
    # The copies differ from the clean clips' features (noise was added).
    clean = feats["training"].pooled[
        toy_data.frames["training"].path.isin(copies.source_paths).to_numpy()
    ]
    assert not np.allclose(np.sort(copies.pooled.ravel()), np.sort(clean.ravel()))

    # A second call reads the stored copies: nothing is augmented again.
    def refuse(*args, **kwargs):
        raise AssertionError("augmented again")

    monkeypatch.setattr("dfa_lib.training.ssl_pipeline.Augmenter.__call__", refuse)
    again = augmented_training_features(
        encoder, toy_data, tmp_path / "features", PRE, augment, max_per_class=6, seed=0
    )
    np.testing.assert_array_equal(again.pooled, copies.pooled)
    assert again.key == copies.key
    other = AugmentConfig.off(noise_p=1.0, noise_types=("pink",))
    with pytest.raises(AssertionError, match="augmented again"):
        augmented_training_features(
            encoder, toy_data, tmp_path / "features", PRE, other, max_per_class=6, seed=0
        )
    monkeypatch.undo()

    # Another protocol's training set keeps the copies of its own clips only.
    fewer = toy_data.frames["training"].iloc[4:]
    part = copies.restricted_to(fewer)
    assert set(part.source_paths) == set(copies.source_paths) & set(fewer.path)
    assert 0 < len(part.labels) < len(copies.labels) and part.key != copies.key
    assert len(part.pooled) == len(part.labels) == len(part.source_paths)
    assert copies.restricted_to(toy_data.frames["training"]).pooled.shape == copies.pooled.shape

    configs = {"wpool": HeadConfig(head="weighted-pooled", epochs=3, seed=0)}
    plain = train_heads(encoder, feats, toy_data, configs, tmp_path / "plain", PRE)[0]
    aug = train_heads(encoder, feats, toy_data, configs, tmp_path / "aug", PRE, augmented=copies)[0]
    fingerprint = json.loads((aug.folder / "config.json").read_text())["fingerprint"]
    assert fingerprint != json.loads((plain.folder / "config.json").read_text())["fingerprint"]
    # Same folder, same copies: reused; without the copies it is not the same run.
    assert train_heads(encoder, feats, toy_data, configs, tmp_path / "aug", PRE, augmented=copies)[
        0
    ].reused
    assert not train_heads(encoder, feats, toy_data, configs, tmp_path / "aug", PRE)[0].reused
    wasp = {"wasp": HeadConfig(head="weighted-asp", epochs=1, seed=0)}
    with pytest.raises(ValueError, match="pooled features only"):
        train_heads(encoder, feats, toy_data, wasp, tmp_path / "w", PRE, augmented=copies)


def test_heads_on_one_encoder_share_its_run_in_the_sweep(
    tmp_path, tiny_encoder_dir, toy_data, monkeypatch
):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    encoder = load_backbone(tiny_encoder_dir)
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=False)
    configs = {
        "a": HeadConfig(head="weighted-pooled", epochs=2, seed=0),
        "b": HeadConfig(head="original", epochs=2, seed=1),
    }
    runs = train_heads(encoder, feats, toy_data, configs, tmp_path / "runs", PRE)
    waves = [toy_data.stores["testing"][i] for i in range(len(toy_data.frames["testing"]))]
    alone = {r.name: load_detector(r.folder, device="cpu").score_waves(waves) for r in runs}

    detectors = {r.name: load_detector(r.folder, device="cpu") for r in runs}
    memos = share_encoders(detectors)
    assert len(memos) == 1
    calls = []
    inner = memos[0].encoder.forward
    monkeypatch.setattr(memos[0].encoder, "forward", lambda w: calls.append(1) or inner(w))
    first = detectors["a"].score_waves(waves)
    n_batches = len(calls)
    second = detectors["b"].score_waves(waves)
    assert n_batches >= 1 and len(calls) == n_batches  # b ran no encoder batch of its own
    np.testing.assert_allclose(first, alone["a"], atol=1e-6)
    np.testing.assert_allclose(second, alone["b"], atol=1e-6)
    memos[0].clear()
    detectors["b"].score_waves(waves)
    assert len(calls) == 2 * n_batches
