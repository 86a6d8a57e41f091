"""The CUDA code paths: mixed-precision training, front ends, encoders and heads on a GPU.

Marked ``gpu`` and skipped without a CUDA device, so ``make test`` never runs them; run them
with ``make test-gpu`` on a machine that has one. Every test compares against the CPU result
of the same computation or trains to the same bar as the CPU tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_toy_split
from test_backbones import noise, save_tiny
from test_ssl_features import separable

from dfa_lib.detector.loading import load_detector
from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.frontends import FRONTEND_NAMES, build_frontend
from dfa_lib.models.heads import HeadConfig, predict_logits, train_head
from dfa_lib.models.networks import phase_lcnn_kwargs
from dfa_lib.scoring.metrics import equal_error_rate
from dfa_lib.training.engine import TrainConfig, choose_device, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def toy():
    return make_toy_split(24, 1, "train", seconds=1.0), make_toy_split(12, 2, "val", seconds=1.0)


def _saved_validation_scores(folder) -> np.ndarray:
    table = pd.read_csv(folder / "scores" / "validation.txt", sep=" ", header=None)
    return table[1].to_numpy()


def _eer(scores: np.ndarray, labels) -> float:
    labels = np.asarray(labels)
    return float(equal_error_rate(scores[labels == "real"], scores[labels == "fake"]).eer)


def test_auto_device_is_the_gpu():
    assert choose_device("auto").type == "cuda"


@pytest.mark.parametrize(
    "model, kwargs",
    [
        ("original_cnn", {}),
        ("lcnn", {"frontend": "lfcc"}),
        ("lcnn", {"frontend": "mel"}),
        ("lcnn", {"frontend": "ifd", "normalize": False}),
        ("lcnn", phase_lcnn_kwargs(4000.0)),  # 02's lcnn_phase: with SpecAugment masks
        ("resnet", {"frontend": "mel"}),
    ],
)
def test_engine_trains_with_mixed_precision_and_the_folder_scores_on_the_cpu(
    tmp_path, toy, model, kwargs
):
    (tr, trs), (va, vas) = toy
    config = TrainConfig(
        name="gpu",
        model=model,
        model_kwargs=kwargs,
        clip_seconds=1.0,
        epochs=4,
        batch_size=8,
        learning_rate=1e-3,
        device="auto",
        mixed_precision=True,
        patience=4,
    )
    [res] = train(config, tr, va, trs, vas, tmp_path, progress=False)
    assert res.val_eer < 0.2
    assert np.isfinite(res.history["train_loss"]).all()
    # Validation was scored on the GPU under autocast; the same weights on the CPU in float32
    # rank the clips the same way and give scores within half-precision error of them.
    saved = _saved_validation_scores(res.folder)
    cpu = np.asarray(
        load_detector(res.folder, device="cpu").score_waves([vas[i] for i in range(len(vas))])
    )
    spread = float(np.ptp(saved)) or 1.0
    assert np.max(np.abs(cpu - saved)) < 0.02 * spread
    assert _eer(cpu, va["label"]) == pytest.approx(_eer(saved, va["label"]), abs=0.05)


@pytest.mark.parametrize("name", FRONTEND_NAMES)
def test_frontends_under_autocast_are_float32_and_match_the_cpu(name):
    frontend = build_frontend(name)
    waves = torch.from_numpy(np.stack([noise(1.0, seed=s) for s in range(3)]))
    with torch.no_grad():
        expected = frontend(waves)
        gpu = frontend.to("cuda")
        with torch.autocast("cuda"):
            got = gpu(waves.to("cuda"))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("model_type", ["wav2vec2", "whisper"])
def test_encoder_hidden_states_on_the_gpu_match_the_cpu(tmp_path, model_type):
    folder = str(save_tiny(tmp_path / model_type, model_type))
    waves = [noise(0.5), noise(0.3, seed=1)]
    with torch.inference_mode():
        cpu = load_backbone(folder, device="cpu").hidden_states(waves)
        gpu = load_backbone(folder, device="cuda").hidden_states(waves)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)


def test_fine_tuning_with_mixed_precision_and_accumulation(tmp_path, tiny_wav2vec2_dir):
    (tr, trs), (va, vas) = make_toy_split(16, 0, "t"), make_toy_split(8, 1, "v")
    config = TrainConfig(
        name="ft",
        model="ssl_classifier",
        model_kwargs={"backbone": tiny_wav2vec2_dir, "freeze_layers": 1},
        clip_seconds=0.5,
        epochs=2,
        batch_size=8,
        learning_rate=3e-5,
        grad_accumulation=2,
        lr_schedule="constant",
        device="cuda",
        mixed_precision=True,
    )
    [res] = train(config, tr, va, trs, vas, tmp_path, progress=False)
    assert np.isfinite(res.history["train_loss"]).all()
    cpu = np.asarray(
        load_detector(res.folder, device="cpu").score_waves([vas[i] for i in range(len(vas))])
    )
    np.testing.assert_allclose(cpu, _saved_validation_scores(res.folder), atol=0.05)


@pytest.mark.parametrize("head", ["original", "weighted-pooled"])
def test_heads_train_on_the_gpu(head):
    x, y = separable(200)
    xv, yv = separable(100, seed=1)
    config = HeadConfig(
        head=head, layer=1, stats="mean+std", epochs=30, patience=30, seed=0, device="cuda"
    )
    model, history = train_head(x, y, xv, yv, config)
    assert next(model.parameters()).device.type == "cuda"
    assert history.best_val_eer < 0.05
    logits = predict_logits(model, xv)
    assert logits.shape == (100, 2) and np.isfinite(logits).all()
