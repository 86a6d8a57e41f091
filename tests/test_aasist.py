"""RawNet2, AASIST and AASIST-L: structure, parameter counts, learning, registry, detector folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toy_dataset

from dfa_lib.data.protocol_data import prepare_protocol
from dfa_lib.detector.loading import load_detector
from dfa_lib.models.aasist import (
    AASIST,
    AASISTBackend,
    AASISTLight,
    GraphPool,
    RawNet2,
    SincFilterbank,
)
from dfa_lib.models.networks import ModelConfigError, count_parameters
from dfa_lib.models.registry import MODEL_NAMES, build_model
from dfa_lib.training.baselines import BaselineSettings, baseline_config
from dfa_lib.training.engine import TrainConfig, train

SR = 16000
# Small versions of each network (same code paths) for the tests that train.
TINY = {
    "rawnet2": {
        "sinc_filters": 8,
        "sinc_kernel": 64,
        "channels": [8, 16],
        "gru_hidden": 16,
        "gru_layers": 1,
        "fc_hidden": 16,
    },
    "aasist": {"sinc_filters": 12, "channels": [4, 8, 8], "gat_dims": [8, 8]},
    "aasist_l": {"sinc_filters": 12, "channels": [4, 4, 8], "gat_dims": [8, 8]},
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tones_and_noise(n_per_class: int, samples: int, seed: int = 0):
    """Harmonic tones are 'real' (0), white noise is 'fake' (1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    waves, labels = [], []
    for _ in range(n_per_class):
        f0 = rng.uniform(150, 600)
        tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        waves += [0.3 * tone / 1.8, rng.uniform(0.05, 0.3) * rng.standard_normal(samples)]
        labels += [0, 1]
    return torch.tensor(np.stack(waves), dtype=torch.float32), torch.tensor(labels)


def test_the_registry_builds_the_three_reference_systems():
    assert {"rawnet2", "aasist", "aasist_l"} <= set(MODEL_NAMES)
    assert isinstance(build_model("rawnet2", **TINY["rawnet2"]), RawNet2)
    assert type(build_model("aasist", **TINY["aasist"])) is AASIST
    assert isinstance(build_model("aasist_l", **TINY["aasist_l"]), AASISTLight)


def test_parameter_counts_match_the_papers():
    # AASIST-L: 85,306 parameters (the authors' released model); AASIST: about 297 k.
    assert count_parameters(build_model("aasist_l")) == 85_306
    assert abs(count_parameters(build_model("aasist")) - 297_000) / 297_000 < 0.02
    # RawNet2's published configuration: a 3-layer GRU of 1,024 units on 128 channels and a
    # 1,024-unit FC layer hold all but ~0.43 M of its parameters.
    gru = 3 * (128 * 1024 + 1024 * 1024 + 2 * 1024) + 2 * 3 * (2 * 1024 * 1024 + 2 * 1024)
    fc = 1024 * 1024 + 1024 + 1024 * 2 + 2
    rawnet2 = build_model("rawnet2")
    assert count_parameters(rawnet2.gru) == gru
    assert 0.3e6 < count_parameters(rawnet2) - gru - fc < 0.6e6
    # The sinc filters are fixed: not parameters, and not stored with the weights.
    assert not any("sinc" in k for k in rawnet2.state_dict())


@pytest.mark.parametrize("name", ["rawnet2", "aasist", "aasist_l"])
def test_any_length_maps_to_two_logits_and_a_fixed_length_is_enforced(name):
    model = build_model(name, **TINY[name]).eval()
    assert model.input_samples is None and model.frontend_name == "waveform"
    with torch.no_grad():
        for samples in (4000, 16000, 24000):
            logits = model(torch.randn(2, samples) * 0.1)
            assert logits.shape == (2, 2) and torch.isfinite(logits).all()
        # Evaluation scores do not depend on the other clips of the batch.
        x = torch.randn(3, 8000) * 0.1
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
        assert torch.allclose(model(x), alone, atol=1e-4)
    fixed = build_model(name, input_samples=8000, **TINY[name])
    assert fixed.input_samples == 8000
    with pytest.raises(ValueError, match="exactly 8000 samples"):
        fixed(torch.zeros(1, 9000))


def test_sinc_filters_are_mel_spaced_band_passes():
    bank = SincFilterbank(20, 1024)
    assert bank.kernel_size == 1025  # made odd, symmetric
    low = bank(torch.sin(2 * torch.pi * 200 * torch.arange(8000) / SR)[None])
    high = bank(torch.sin(2 * torch.pi * 6000 * torch.arange(8000) / SR)[None])
    energy_low = low[0, :, 1000:-1000].pow(2).mean(dim=1)
    energy_high = high[0, :, 1000:-1000].pow(2).mean(dim=1)
    # A low tone excites a low band, a high tone a high one; the low bands are narrower.
    assert energy_low.argmax() < 5 < 15 < energy_high.argmax()
    assert low.shape == (1, 20, 8000)
    assert energy_low.max() > 100 * energy_low[-1]
    # Long filters run segment by segment (fast on one clip): the same as one convolution.
    for samples in (100, 4097, 9000):
        x = torch.randn(2, samples)
        whole = torch.nn.functional.conv1d(x.unsqueeze(1), bank.filters, padding=512)
        assert torch.allclose(bank(x), whole, atol=1e-5)


@pytest.mark.parametrize("frames", [25, 60, 200])
def test_the_backend_takes_a_projected_encoder_map(frames):
    # SSL + AASIST (Tak et al. 2022): encoder frames projected to 128 features.
    backend = AASISTBackend(128, channels=(32, 32, 64, 64, 64, 64))
    out = backend(torch.randn(2, 1, 128, frames))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    no_time_pool = AASISTBackend(128, channels=(8, 8), gat_dims=(8, 8), time_pools=0)
    assert no_time_pool(torch.randn(3, 1, 128, frames)).shape == (3, 2)


def test_the_backend_names_what_is_wrong_with_its_input():
    backend = AASISTBackend(128, channels=(8, 8), gat_dims=(8, 8))
    with pytest.raises(ValueError, match=r"\(batch, 1, freq, frames\)"):
        backend(torch.randn(2, 128, 50))
    with pytest.raises(ValueError, match="built for 126-128 feature rows"):
        backend(torch.randn(2, 1, 80, 50))
    with pytest.raises(ModelConfigError, match="time_pools"):
        AASISTBackend(128, channels=(8, 8), time_pools=3)


def test_graph_pool_keeps_the_best_scored_nodes():
    pool = GraphPool(4, ratio=0.5).eval()
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        pool.score.bias.zero_()
    nodes = torch.zeros(1, 6, 4)
    nodes[0, :, 0] = torch.tensor([0.0, 5.0, -1.0, 3.0, 4.0, -2.0])
    kept = pool(nodes)
    assert kept.shape == (1, 3, 4)
    # Nodes 1, 4 and 3 score highest, each scaled by its sigmoid gate.
    expected = torch.tensor([5.0, 4.0, 3.0]) * torch.sigmoid(torch.tensor([5.0, 4.0, 3.0]))
    assert torch.allclose(kept[0, :, 0], expected)


@pytest.mark.parametrize("name", ["rawnet2", "aasist_l"])
def test_gradients_reach_every_parameter_and_training_lowers_the_loss(name):
    model = build_model(name, **TINY[name])
    x, y = tones_and_noise(8, 4000)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    loss_fn(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # Training-mode losses: BatchNorm's running statistics lag behind after 15 steps.
    assert np.mean(losses[-3:]) < 0.5 * losses[0]


def test_a_rebuilt_model_loads_the_weights_and_scores_the_same():
    model = build_model("aasist_l", **TINY["aasist_l"]).eval()
    again = build_model("aasist_l", **TINY["aasist_l"]).eval()
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("rawnet2", {"gru_layers": 0}, r"gru_layers must be an integer in \[1, 8\]"),
        ("rawnet2", {"sinc_kernel": "big"}, "sinc_kernel must be an integer"),
        ("rawnet2", {"channels": [20]}, "channels must be a list of 2 integers"),
        ("aasist", {"gat_dims": [64]}, "gat_dims must be a list of 2 integers"),
        ("aasist", {"pool_ratios": [0.0, 0.5, 0.5, 0.5]}, r"pool_ratios .* \(0, 1\]"),
        ("aasist_l", {"temperatures": [2, 2, -1, 100]}, "temperatures must be"),
        ("aasist_l", {"channels": [32, 0]}, "channels must be"),
        ("aasist_l", {"sinc_filters": 100_000}, "sinc_filters must be"),
        ("aasist_l", {"attention": 3}, "bad keyword arguments for model 'aasist_l'"),
    ],
)
def test_bad_settings_are_named(name, kwargs, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(name, **kwargs)


def test_the_named_baselines_train_as_the_papers_scaled_by_the_settings():
    s = BaselineSettings(batch_size=24, raw_epochs=3, raw_clip_seconds=1.5, raw_max_batches=5)
    for name in ("rawnet2", "aasist", "aasist_l"):
        config = baseline_config(name, s)
        assert (config.name, config.model, config.model_kwargs) == (name, name, {})
        assert (config.learning_rate, config.lr_schedule, config.weight_decay) == (
            1e-4,
            "cosine",
            1e-4,
        )
        assert (config.clip_seconds, config.epochs, config.batch_size) == (1.5, 3, 24)
        assert config.max_batches_per_epoch == 5
    assert baseline_config("aasist", BaselineSettings()).max_batches_per_epoch is None


def test_aasist_l_trains_exports_and_scores_files(tmp_path):
    root = write_toy_dataset(tmp_path / "toyset", [("training", 12), ("validation", 6)])
    data = prepare_protocol(
        str(root),
        "in-domain",
        root.parent,
        tmp_path / "cache",
        splits=("training", "validation"),
        progress=False,
    )
    config = TrainConfig(
        name="aasist_l",
        model="aasist_l",
        model_kwargs=TINY["aasist_l"],
        clip_seconds=0.5,
        epochs=4,
        batch_size=8,
        learning_rate=3e-3,
        seed=0,
        device="cpu",
    )
    [result] = train(
        config,
        data.frames["training"],
        data.frames["validation"],
        data.stores["training"],
        data.stores["validation"],
        tmp_path / "runs",
        dataset=data.info,
        progress=False,
    )
    assert result.val_eer < 0.35
    detector = load_detector(result.folder, device="cpu")
    assert detector.model_name == "aasist_l" and detector.window_seconds == 0.5
    paths = [data.root / p for p in data.frames["validation"]["path"]]
    scored = dict(detector.score_paths(paths))
    saved = pd.read_csv(result.folder / "scores" / "validation.txt", sep=" ", header=None)
    # The folder scores the files as training scored the validation clips.
    np.testing.assert_allclose(
        [scored[p].score for p in paths], saved[1].to_numpy(), rtol=1e-4, atol=1e-4
    )
    labels = data.frames["validation"]["label"].to_numpy()
    verdicts = np.array([scored[p].label for p in paths])
    assert (verdicts == labels).mean() >= 0.65
    assert Path(result.folder / "model.safetensors").is_file()


def test_the_bench_reports_size_and_cpu_speed_of_each_network():
    from dfa_lib.studies.bench.architectures import (
        architecture_figures,
        run_architecture_benchmark,
    )

    report = run_architecture_benchmark(
        repeats=1, seconds=0.25, names=("original_cnn", "aasist_l"), progress=False
    )
    entry = report["models"]["aasist_l"]
    assert entry["parameters"] == 85_306 and entry["input_seconds"] == 0.25
    assert entry["ms_per_audio_second"] > 0 and entry["cpu_ms_per_audio_second"] > 0
    assert entry["training_ms_per_audio_second"] > entry["ms_per_audio_second"] / 10
    assert len(entry["training_steps_s"]) == 1 and report["train_batch"] == 4
    # A fixed-length network is timed on its own input length.
    assert report["models"]["original_cnn"]["input_seconds"] == 1.0
    figures = architecture_figures(report)
    assert figures["architectures: aasist_l parameters"] == 85_306
    with pytest.raises(ValueError, match="seconds > 0"):
        run_architecture_benchmark(seconds=0)
