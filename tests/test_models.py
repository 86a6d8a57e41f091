"""Tests of the front ends and the detector networks: shapes, structure, and that they learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dfa_lib.features.frontends import FrontendError, LFCCConfig, LFCCFrontend, build_frontend
from dfa_lib.models.networks import ModelConfigError, count_parameters
from dfa_lib.models.registry import MODEL_NAMES, build_model

SR = 16000


def tones_and_noise(
    n_per_class: int, samples: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable toy data: harmonic tones are 'real' (0), white noise is 'fake' (1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    waves, labels = [], []
    for _ in range(n_per_class):
        f0 = rng.uniform(150, 600)
        tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
        waves.append(rng.uniform(0.2, 0.6) * tone / 1.8 + 0.005 * rng.standard_normal(samples))
        labels.append(0)
        waves.append(rng.uniform(0.05, 0.3) * rng.standard_normal(samples))
        labels.append(1)
    x = torch.tensor(np.stack(waves), dtype=torch.float32)
    return x, torch.tensor(labels)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# -- front ends ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "n_feats"), [("lfcc", 60), ("mel", 80)], ids=["lfcc", "mel"])
def test_frontend_shapes(name: str, n_feats: int) -> None:
    frontend = build_frontend(name)
    feats = frontend(torch.randn(2, 24000) * 0.1)
    # Centred frames every 10 ms: 1 + samples // hop.
    assert feats.shape == (2, 1, n_feats, 1 + 24000 // 160)
    assert torch.isfinite(feats).all()


def test_spectrogram_front_end_keeps_the_bins_of_its_band() -> None:
    frontend = build_frontend("spec", f_max=4000.0)
    # 1,024-point FFT at 16 kHz: 15.625 Hz per bin, bins 0..256 up to 4 kHz, a frame every 20 ms.
    assert frontend.n_features == 257
    feats = frontend(torch.randn(2, 24000) * 0.1)
    assert feats.shape == (2, 1, 257, 1 + 24000 // 320)
    # A 1 kHz tone peaks in bin 64 of the band, and a 1,500-Hz band starting at 500 Hz has
    # 97 bins (500 Hz is bin 32, 2,000 Hz bin 128).
    t = torch.arange(16000) / 16000
    tone = frontend(torch.sin(2 * torch.pi * 1000.0 * t)[None])[0, 0]
    assert int(tone.mean(-1).argmax()) == 64
    assert build_frontend("spec", f_min=500.0, f_max=2000.0).n_features == 97
    with pytest.raises(FrontendError, match="f_min < f_max"):
        build_frontend("spec", f_min=5000.0, f_max=4000.0)


def test_phase_front_end_measures_frequency_within_a_bin() -> None:
    frontend = build_frontend("ifd", f_max=4000.0)
    # 512-point FFT: 31.25 Hz per bin, bins 0..128 up to 4 kHz; 10 ms frames; three channels.
    assert (frontend.n_features, frontend.n_channels) == (129, 3)
    feats = frontend(torch.randn(2, 24000) * 0.1)
    assert feats.shape == (2, 3, 129, 1 + 24000 // 160)
    assert torch.allclose(feats[:, 1].square() + feats[:, 2].square(), torch.ones(1), atol=1e-5)
    # A steady tone at a bin's centre advances by exactly the expected phase: deviation 0
    # (cosine 1) in that bin. A tone a quarter-bin higher advances 2 pi * 7.8125 Hz * 10 ms
    # further per frame: a deviation of 0.49 rad in the same bin.
    t = torch.arange(24000) / 16000
    for offset, angle in ((0.0, 0.0), (7.8125, 2 * math.pi * 7.8125 * 0.01)):
        tone = frontend(torch.sin(2 * torch.pi * (40 * 31.25 + offset) * t)[None])[0]
        steady = slice(5, -5)  # frames away from the zero padding at both ends
        torch.testing.assert_close(
            tone[1, 40, steady],
            torch.full_like(tone[1, 40, steady], math.cos(angle)),
            atol=1e-3,
            rtol=0,
        )
        torch.testing.assert_close(
            tone[2, 40, steady],
            torch.full_like(tone[2, 40, steady], math.sin(angle)),
            atol=1e-3,
            rtol=0,
        )
    # Normalisation touches the log power only; the phase channels are the same either way.
    wave = torch.randn(1, 16000) * 0.1
    plain, normalised = build_frontend("ifd")(wave), build_frontend("ifd", normalize=True)(wave)
    assert torch.equal(plain[:, 1:], normalised[:, 1:])
    assert not torch.allclose(plain[:, 0], normalised[:, 0])
    # The log-power channel is the spec front end's on the same grid.
    spec = build_frontend("spec", n_fft=512, win_length=512, hop_length=160)(wave)
    assert torch.equal(plain[:, :1], spec)


def test_phase_deviation_of_a_single_frame_is_zero() -> None:
    from dfa_lib.features.frontends import phase_deviation

    spec = torch.randn(2, 5, 1, dtype=torch.complex64)
    assert torch.equal(phase_deviation(spec, 512, 160), torch.zeros(2, 5, 1))


def test_lfcc_settings_are_asvspoof_like() -> None:
    cfg = LFCCConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft) == (320, 160, 512)  # 20 ms / 10 ms
    assert (cfg.n_filter, cfg.n_lfcc, cfg.n_features) == (20, 20, 60)
    assert build_frontend("lfcc", n_lfcc=20, with_deltas=False)(torch.zeros(1, 1600)).shape[2] == 20


def test_lfcc_gain_moves_only_c0() -> None:
    # log(energy * g^2) = log(energy) + 2 log g in every filter; the orthonormal DCT maps a
    # constant offset to c0 alone (scaled by sqrt(n_filter)), and deltas ignore constants.
    wave = torch.randn(1, 16000) * 0.1
    frontend = LFCCFrontend()
    base, louder = frontend(wave)[0, 0], frontend(3.0 * wave)[0, 0]
    shift = louder - base
    expected = 2 * math.log(3.0) * math.sqrt(20)
    assert torch.allclose(shift[0], torch.full_like(shift[0], expected), atol=1e-3)
    assert shift[1:].abs().max() < 1e-3


def test_utterance_normalisation_gives_zero_mean_unit_variance_and_gain_invariance() -> None:
    wave = torch.randn(2, 16000) * 0.1
    frontend = build_frontend("mel", normalize=True)
    feats = frontend(wave)[:, 0]
    assert torch.allclose(feats.mean(-1), torch.zeros(2, 80), atol=1e-4)
    assert torch.allclose(feats.std(-1, unbiased=False), torch.ones(2, 80), atol=1e-3)
    assert torch.allclose(frontend(4.0 * wave), frontend(wave), atol=1e-2)


@pytest.mark.parametrize("name", ["lfcc", "mel", "spec", "ifd"])
def test_frontend_stays_float32_under_mixed_precision(name: str) -> None:
    frontend = build_frontend(name)
    wave = torch.randn(2, 8000) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = frontend(wave)
    assert feats.dtype == torch.float32
    assert torch.equal(feats, frontend(wave))


def test_frontend_errors() -> None:
    with pytest.raises(FrontendError, match="unknown front end"):
        build_frontend("mfcc")
    with pytest.raises(FrontendError, match="known settings"):
        build_frontend("lfcc", n_bands=3)
    with pytest.raises(FrontendError, match="n_lfcc"):
        build_frontend("lfcc", n_lfcc=30)
    with pytest.raises(FrontendError, match=r"\(batch, samples\)"):
        build_frontend("lfcc")(torch.zeros(1, 1, 16000))


# -- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_shapes_and_attributes(name: str) -> None:
    model = build_model(name).eval()
    assert model.__doc__ and "Origin" in model.__doc__
    with torch.no_grad():
        logits = model(torch.randn(2, 16000) * 0.1)
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    if name == "original_cnn":
        assert model.input_samples == 16000 and model.frontend_name == "waveform"
        with pytest.raises(ValueError, match="exactly 16000 samples"):
            model(torch.zeros(2, 24000))
    else:
        assert model.input_samples is None
        with torch.no_grad():
            assert model(torch.randn(2, 24000) * 0.1).shape == (2, 2)
            assert model(torch.randn(1, 4000) * 0.1).shape == (1, 2)


@pytest.mark.parametrize("name", ["lcnn", "resnet"])
def test_eval_output_does_not_depend_on_batch_mates(name: str) -> None:
    model = build_model(name).eval()
    x = torch.randn(3, 24000) * 0.1
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "frontend"),
    [
        ({}, "lfcc"),
        ({"frontend": "mel"}, "mel"),
        ({"frontend": "ifd", "frontend_settings": {"f_max": 4000.0}}, "ifd"),
        ({"frontend_settings": {"n_lfcc": 30, "n_filter": 30}}, "lfcc"),
    ],
)
def test_lcnn_front_end_options(kwargs: dict, frontend: str) -> None:
    model = build_model("lcnn", **kwargs).eval()
    assert model.frontend_name == frontend
    with torch.no_grad():
        assert model(torch.randn(2, 16000) * 0.1).shape == (2, 2)


def test_original_cnn_layers_are_as_specified() -> None:
    model = build_model("original_cnn")
    layers = list(model.features)
    assert [type(m) for m in layers] == [nn.Conv1d, nn.BatchNorm1d, nn.ReLU] * 3
    convs = [m for m in layers if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32), (32, 64)]
    for conv in convs:
        assert (conv.kernel_size, conv.stride, conv.padding) == ((5,), (2,), (2,))
    assert [bn.num_features for bn in layers if isinstance(bn, nn.BatchNorm1d)] == [16, 32, 64]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(64 * 2000, 128), (128, 2)]
    dropouts = [m for m in model.classifier if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == pytest.approx(0.3)
    with torch.no_grad():
        assert model.features(torch.zeros(1, 1, 16000)).shape == (1, 64, 2000)
    assert count_parameters(model) == 16_397_602


@pytest.mark.parametrize("name", ["lcnn", "resnet"])
def test_spectral_models_stay_small(name: str) -> None:
    assert count_parameters(build_model(name)) < 1_000_000


def test_build_model_errors() -> None:
    with pytest.raises(ModelConfigError, match="unknown model"):
        build_model("transformer")
    with pytest.raises(ModelConfigError, match="bad keyword"):
        build_model("lcnn", depth=3)
    with pytest.raises(ModelConfigError, match="unknown front end"):
        build_model("resnet", frontend="cqt")
    with pytest.raises(ModelConfigError, match="front end settings"):
        build_model("lcnn", frontend_settings={"n_lfcc": 40})


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("lcnn", {"width": 100000}, r"'lcnn': width must be an integer in \[1, 1024\], got 100000"),
        ("lcnn", {"width": True}, "width must be an integer .* got True"),
        ("resnet", {"width": "8"}, "width must be an integer .* got '8'"),
        ("resnet", {"width": 8.0}, "width must be an integer .* got 8.0"),
        ("lcnn", {"embedding": 0}, r"embedding must be an integer in \[1, 4096\], got 0"),
        ("original_cnn", {"input_samples": 10**9}, r"input_samples .* \[16, 160000\]"),
        ("lcnn", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
        ("lcnn", {"normalize": "yes"}, "normalize must be true or false, got 'yes'"),
        ("lcnn", {"frontend_settings": [40]}, "frontend_settings must be an object"),
        ("ssl_classifier", {"hidden": -3}, "hidden must be an integer"),
    ],
)
def test_build_model_checks_the_type_and_range_of_numbers(name, kwargs, message) -> None:
    with pytest.raises(ModelConfigError, match=message):
        build_model(name, **kwargs)


def test_fresh_batchnorm_statistics_are_untouched() -> None:
    bn = next(m for m in build_model("lcnn").modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_count_parameters_counts_trainable_only_by_default() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 + 8 + 2
    assert count_parameters(model, trainable_only=False) == 12 + 4 + 8 + 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "lr", "steps"), [("original_cnn", 1e-4, 5), ("lcnn", 1e-2, 8), ("resnet", 3e-3, 6)]
)
def test_adam_steps_lower_the_loss_on_separable_data(name: str, lr: float, steps: int) -> None:
    model = build_model(name)
    x, y = tones_and_noise(8, 16000)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    first = loss_fn(model(x), y).item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    last = loss_fn(model(x), y).item()
    assert last < 0.5 * first, (first, last)
    # The bona fide score (logit_real - logit_fake) now ranks the tones (real) first.
    with torch.no_grad():
        logits = model(x)
    score = logits[:, 0] - logits[:, 1]
    assert score[y == 0].mean() > score[y == 1].mean()


# --- SpecAugment ---------------------------------------------------------------------------


def test_spec_augment_masks_bands_and_spans_in_training_only():
    from dfa_lib.models.networks import SpecAugment

    feats = torch.ones(4, 1, 40, 100)
    masker = SpecAugment(freq_masks=1, freq_width=10, time_masks=1, time_width=30)
    torch.manual_seed(0)
    out = masker.train()(feats)
    assert out.shape == feats.shape and set(out.unique().tolist()) <= {0.0, 1.0}
    for clip in out[:, 0]:
        zero_rows = (clip == 0).all(dim=1).sum().item()
        zero_cols = (clip == 0).all(dim=0).sum().item()
        assert zero_rows <= 10 and zero_cols <= 30
        # Whatever is masked lies in whole feature rows or whole frames.
        assert ((clip == 0) == ((clip == 0).all(1, keepdim=True) | (clip == 0).all(0))).all()
    assert (out == 0).any()  # over four clips at least one mask has a non-zero width
    torch.manual_seed(0)
    torch.testing.assert_close(masker(feats), out)  # seeded: the same masks
    assert torch.equal(masker.eval()(feats), feats)


@pytest.mark.parametrize("name", ["lcnn", "resnet"])
def test_spectral_models_take_spec_augment_without_new_weights(name):
    plain = build_model(name, frontend="mel")
    masked = build_model(name, frontend="mel", spec_augment={"freq_width": 4})
    assert plain.state_dict().keys() == masked.state_dict().keys()
    masked.load_state_dict(plain.state_dict())
    waves = torch.randn(2, 16000) * 0.1
    plain.eval(), masked.eval()
    torch.testing.assert_close(masked(waves), plain(waves))  # evaluation: no masking
    masked.train(), plain.train()
    assert masked(waves).shape == (2, 2)
    # In training the masks reach the trunk: same weights, different embeddings.
    heavy = build_model(name, frontend="mel", spec_augment={"freq_masks": 2, "freq_width": 20})
    state = {k: v.clone() for k, v in plain.state_dict().items()}
    heavy.load_state_dict(state)
    heavy.train()
    assert not torch.allclose(heavy.embed(waves), plain.embed(waves))
    # (Training-mode passes moved the BatchNorm statistics: compare from the same state.)
    heavy.load_state_dict(state), plain.load_state_dict(state)
    heavy.eval(), plain.eval()
    torch.testing.assert_close(heavy.embed(waves), plain.embed(waves))


@pytest.mark.parametrize(
    "settings", [{"freq_masks": -1}, {"time_width": 2.5}, {"bands": 2}, "yes"], ids=str
)
def test_bad_spec_augment_settings_are_refused(settings):
    with pytest.raises(ModelConfigError, match="spec_augment"):
        build_model("lcnn", spec_augment=settings)


@pytest.mark.parametrize("name", ["lcnn", "resnet"])
def test_spectral_models_take_every_channel_of_their_front_end(name):
    model = build_model(name, frontend="ifd").eval()
    first = next(m for m in model.trunk.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 3
    with torch.no_grad():
        assert model(torch.randn(2, 16000) * 0.1).shape == (2, 2)
    assert (
        next(m for m in build_model(name).trunk.modules() if isinstance(m, nn.Conv2d)).in_channels
        == 1
    )


# --- pooling over time ---------------------------------------------------------------------


def test_attentive_pooling_weights_the_frames_its_attention_favours():
    from dfa_lib.models.networks import AttentiveStatsPool

    pool = AttentiveStatsPool(hidden_size=2, attention_dim=1)
    # score = 10 * tanh(first feature): frames with a large first feature dominate.
    with torch.no_grad():
        pool.attention[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        pool.attention[0].bias.zero_()
        pool.attention[2].weight.fill_(10.0)
        pool.attention[2].bias.zero_()
    frames = torch.tensor([[[-3.0, 1.0], [-3.0, 2.0], [3.0, 7.0], [-3.0, 4.0]]])
    mean, std = pool(frames, torch.tensor([4])).split(2, dim=-1)
    torch.testing.assert_close(mean, torch.tensor([[3.0, 7.0]]), atol=1e-6, rtol=0)
    assert (std < 1e-3).all()
    # Equal scores give the plain mean and (population) standard deviation.
    with torch.no_grad():
        pool.attention[2].weight.zero_()
    pooled = pool(frames, torch.tensor([4]))
    torch.testing.assert_close(pooled[:, :2], frames.mean(1))
    torch.testing.assert_close(pooled[:, 2:], frames.std(1, unbiased=False))
    # Frames past a clip's length are ignored.
    torch.testing.assert_close(pool(frames, torch.tensor([2]))[:, :2], frames[:, :2].mean(1))


@pytest.mark.parametrize("name", ["lcnn", "resnet"])
def test_attentive_pooling_is_an_option_of_the_spectral_models(name):
    plain = build_model(name, frontend="mel")
    attentive = build_model(name, frontend="mel", pooling="attentive").eval()
    # The default keeps its weights (saved folders still load); the option adds attention.
    assert not any(k.startswith("attentive_pool") for k in plain.state_dict())
    extra = set(attentive.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("attentive_pool.") for k in extra)
    with torch.no_grad():
        for samples in (4000, 16000, 24000):
            assert attentive(torch.randn(2, samples) * 0.1).shape == (2, 2)
        x = torch.randn(3, 24000) * 0.1
        alone = torch.cat([attentive(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(attentive(x), alone, atol=1e-4, rtol=0)
    with pytest.raises(ModelConfigError, match="pooling must be one of"):
        build_model(name, pooling="max")


@pytest.mark.slow
def test_attentive_lcnn_learns_separable_data():
    model = build_model("lcnn", pooling="attentive")
    x, y = tones_and_noise(8, 16000)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = loss_fn(model(x), y).item()
    for _ in range(8):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    assert loss_fn(model(x), y).item() < 0.5 * first
