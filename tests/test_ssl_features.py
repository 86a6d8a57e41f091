"""Cached frozen-encoder features and the heads trained on them (tiny random-init backbone)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.ssl_features import FeatureCacheError, FeaturePreprocessing, extract_features
from dfa_lib.models.heads import (
    BackboneWithHead,
    HeadConfig,
    HeadInputError,
    LayerWeightedASPHead,
    LinearProbeHead,
    bonafide_scores,
    layer_signal,
    load_head,
    predict_logits,
    save_head,
    train_head,
)

SHORT = FeaturePreprocessing(clip_seconds=0.3)


@pytest.fixture(scope="module")
def backbone(tiny_wav2vec2_dir):
    """The tiny random-init wav2vec2 of conftest, loaded as a backbone."""
    return load_backbone(tiny_wav2vec2_dir)


def clips(n: int, seed: int = 0, seconds: float = 0.3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return [
        (
            0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
            + 0.05 * rng.standard_normal(t.size)
        ).astype(np.float32)
        for _ in range(n)
    ]


def test_features_are_pooled_stats_of_every_layer_and_cached(backbone, tmp_path):
    waves = clips(5)
    first = extract_features(backbone, waves, tmp_path, SHORT, batch_size=2, progress=False)
    assert first.pooled.shape == (5, 3, 64) and first.valid.all() and not first.errors
    assert (first.stats["cached"], first.stats["computed"], first.stats["failed"]) == (0, 5, 0)
    with torch.inference_mode():
        states = backbone.hidden_states([waves[3]])[:, 0]  # (layers, frames, hidden)
    np.testing.assert_allclose(first.pooled[3, :, :32], states.mean(dim=1).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        first.pooled[3, :, 32:], states.std(dim=1, correction=0).numpy(), atol=1e-5
    )
    again = extract_features(backbone, waves[::-1], tmp_path, SHORT, progress=False)
    assert again.stats["cached"] == 5 and again.stats["computed"] == 0
    np.testing.assert_array_equal(again.pooled, first.pooled[::-1])


def test_batch_composition_does_not_change_features(backbone, tmp_path):
    waves = clips(4, seed=1)
    one = extract_features(backbone, waves, tmp_path / "a", SHORT, batch_size=1, progress=False)
    four = extract_features(backbone, waves, tmp_path / "b", SHORT, batch_size=4, progress=False)
    np.testing.assert_allclose(one.pooled, four.pooled, atol=1e-5)


def test_changing_preprocessing_invalidates_the_cache(backbone, tmp_path):
    waves = clips(3, seconds=0.5)
    base = extract_features(backbone, waves, tmp_path, SHORT, progress=False)
    longer = FeaturePreprocessing(clip_seconds=0.4)
    changed = extract_features(backbone, waves, tmp_path, longer, progress=False)
    assert changed.stats["computed"] == 3
    assert not np.allclose(changed.pooled, base.pooled)
    start = FeaturePreprocessing(clip_seconds=0.3, crop="start")
    assert extract_features(backbone, waves, tmp_path, start, progress=False).stats["computed"] == 3
    with pytest.raises(FeatureCacheError, match="cannot be cached"):
        FeaturePreprocessing(crop="random")


def test_bad_clips_are_reported_not_fatal(backbone, tmp_path):
    good = clips(2)
    nan = good[0].copy()
    nan[10] = np.nan
    tiny = FeaturePreprocessing(clip_seconds=None)
    result = extract_features(
        backbone,
        [good[0], None, nan, np.zeros(0, np.float32), good[1], np.zeros(40, np.float32)],
        tmp_path,
        tiny,
        progress=False,
    )
    assert result.valid.tolist() == [True, False, False, False, True, False]
    assert set(result.errors) == {1, 2, 3, 5}
    assert "NaN" in result.errors[2] and "fewer than" in result.errors[5]
    assert not result.pooled[1].any()


def test_frame_features_are_downsampled_float16(backbone, tmp_path):
    waves = clips(3)
    result = extract_features(
        backbone, waves, tmp_path, SHORT, frames=True, frame_stride=4, progress=False
    )
    frames_per_clip = backbone.output_lengths([4800])[0]  # 60
    assert result.frames.shape == (3, 3, 15, 32) and result.frames.dtype == np.float16
    assert result.frame_lengths.tolist() == [frames_per_clip // 4] * 3
    # Averaging windows of equal size preserves the mean over time.
    np.testing.assert_allclose(
        result.frames.astype(np.float32).mean(axis=2), result.pooled[:, :, :32], atol=2e-2
    )
    pooled_only = extract_features(backbone, waves, tmp_path, SHORT, progress=False)
    assert pooled_only.frames is None and pooled_only.stats["computed"] == 3  # own cache key


def separable(n: int, layers: int = 3, width: int = 8, seed: int = 0, signal_layer: int = 1):
    """Pooled-like features where only `signal_layer` separates the classes."""
    rng = np.random.default_rng(seed)
    y = np.array(["real", "fake"] * (n // 2))
    x = rng.standard_normal((n, layers, width)).astype(np.float32)
    x[:, signal_layer, 0] += np.where(y == "fake", 2.5, -2.5)
    return x, y


@pytest.mark.parametrize("head", ["original", "weighted-pooled"])
def test_heads_learn_separable_features(head, tmp_path):
    x, y = separable(200)
    xv, yv = separable(100, seed=1)
    config = HeadConfig(head=head, layer=1, stats="mean+std", epochs=30, patience=30, seed=0)
    model, history = train_head(x, y, xv, yv, config)
    assert history.best_val_eer < 0.05
    scores = bonafide_scores(predict_logits(model, xv))
    assert scores[yv == "real"].mean() > scores[yv == "fake"].mean()  # higher = bona fide
    if head == "weighted-pooled":
        assert int(torch.argmax(model.layer_weights())) == 1
    reloaded = load_head(save_head(model, tmp_path / head))
    np.testing.assert_allclose(predict_logits(reloaded, xv), predict_logits(model, xv), atol=1e-6)
    assert len(history.to_frame()) == 30


def test_linear_head_is_the_logistic_regression_on_the_lowest_layers(tmp_path):
    from sklearn.linear_model import LogisticRegression

    x, y = separable(200, signal_layer=1)
    xv, yv = separable(100, seed=1, signal_layer=1)
    config = HeadConfig(head="linear", first_layers=2, C=0.5)
    model, history = train_head(x, y, xv, yv, config)
    assert isinstance(model, LinearProbeHead) and model.first_layers == 2
    assert history.best_val_eer < 0.05 and history.best_epoch == 1 and len(history.epochs) == 1
    # Its fake logit is the regression's log-odds on layers 0-1 standardised on training.
    flat = x[:, :2].reshape(len(x), -1).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0, ddof=1)
    reference = LogisticRegression(C=0.5, class_weight="balanced", max_iter=3000)
    reference.fit((flat - mean) / std, (y == "fake").astype(int))
    flat_v = xv[:, :2].reshape(len(xv), -1)
    logits = predict_logits(model, xv)
    np.testing.assert_allclose(logits[:, 0], 0.0)
    np.testing.assert_allclose(
        logits[:, 1], reference.decision_function((flat_v - mean) / std), atol=1e-4
    )
    reloaded = load_head(save_head(model, tmp_path / "linear"))
    np.testing.assert_allclose(predict_logits(reloaded, xv), logits, atol=1e-6)
    # Layer 0 alone carries no signal; layers above first_layers are never read.
    blind, blind_history = train_head(x, y, xv, yv, HeadConfig(head="linear", first_layers=1))
    assert blind_history.best_val_eer > 0.3
    scrambled = xv.copy()
    scrambled[:, 2:] = 1e3
    np.testing.assert_allclose(predict_logits(model, scrambled), logits, atol=1e-5)
    everything, _ = train_head(x, y, xv, yv, HeadConfig(head="linear"))  # 0 = all layers
    assert everything.first_layers == 3
    with pytest.raises(HeadInputError, match="first_layers must be 1..3"):
        train_head(x, y, xv, yv, HeadConfig(head="linear", first_layers=4))
    with pytest.raises(HeadInputError, match="needs \\(n, layers"):
        train_head(x[:, 0], y, xv[:, 0], yv, HeadConfig(head="linear"))
    with pytest.raises(ValueError, match="C must be positive"):
        HeadConfig(head="linear", C=0.0)
    with pytest.raises(ValueError, match="first_layers must be 0 \\(all\\) or positive"):
        HeadConfig(head="linear", first_layers=-1)


def test_asp_head_attends_over_time():
    rng = np.random.default_rng(0)
    n, layers, steps, width = 400, 2, 12, 8
    y = np.array([0, 1] * (n // 2))
    frames = rng.standard_normal((n, layers, steps, width)).astype(np.float16)
    lengths = rng.integers(6, steps + 1, n)
    # One frame per clip carries the label; padding beyond the length is zero.
    for i in range(n):
        frames[i, 1, rng.integers(0, lengths[i]), 0] += 6.0 if y[i] else -6.0
        frames[i, :, lengths[i] :] = 0
    train, val = slice(0, 300), slice(300, n)
    config = HeadConfig(head="weighted-asp", epochs=40, patience=40, learning_rate=1e-2)
    model, history = train_head(
        (frames[train], lengths[train]), y[train], (frames[val], lengths[val]), y[val], config
    )
    assert isinstance(model, LayerWeightedASPHead)
    assert history.best_val_eer < 0.12
    assert float(model.layer_weights().detach()[1]) > 0.8  # the layer that carries the label
    with pytest.raises(HeadInputError, match="frames=True"):
        train_head(frames[train, 0, 0], y[train], frames[val, 0, 0], y[val], config)


def test_early_stopping_keeps_the_best_epoch():
    x, y = separable(100)
    xv, yv = separable(60, seed=2)
    _, history = train_head(x, y, xv, yv, HeadConfig(layer=1, epochs=200, patience=3))
    assert len(history.epochs) < 200
    best = min(history.epochs, key=lambda e: (e["val_eer"], e["val_loss"]))
    assert history.best_epoch == best["epoch"]


def test_layer_signal_finds_the_informative_layer():
    x, y = separable(200, signal_layer=2)
    xv, yv = separable(100, seed=3, signal_layer=2)
    table = layer_signal(x, y, xv, yv)
    assert table["layer"].tolist() == [0, 1, 2]
    assert table.loc[table["val_eer"].idxmin(), "layer"] == 2
    assert table.loc[2, "val_eer"] < 0.05 < table.loc[0, "val_eer"]


@pytest.mark.parametrize("head", ["original", "weighted-asp", "linear"])
def test_detector_on_waves_matches_cached_scores(backbone, tmp_path, head):
    waves = clips(12, seed=4)
    labels = ["real", "fake"] * 6
    fs = extract_features(
        backbone, waves, tmp_path, SHORT, frames=head == "weighted-asp", progress=False
    )
    features = (fs.frames, fs.frame_lengths) if head == "weighted-asp" else fs.pooled
    config = HeadConfig(head=head, epochs=2)
    model, _ = train_head(features, labels, features, labels, config)
    detector = BackboneWithHead(backbone, model, config, frame_stride=4).eval()
    with torch.inference_mode():
        logits = detector(torch.from_numpy(np.stack([SHORT.apply(w) for w in waves]))).numpy()
    np.testing.assert_allclose(logits, predict_logits(model, features), atol=1e-3)
