"""Encoder features + LCNN: a light CNN back-end as a head on a frozen encoder's cached frames.

Kawa et al. (2023) put convolutional back-ends on Whisper features; here the head mixes the
cached layers, projects each frame to 64 features and runs a max-feature-map CNN on the
(64 x time) map. A head folder becomes a detector that scores audio files through its encoder;
03 trains it only on the protocols named for it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import make_toy_split
from test_aasist_head import FRAMES, HIDDEN, LAYERS, PRE, random_frames

from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.loading import load_detector
from dfa_lib.evaluation import encoder_heads as study_module
from dfa_lib.evaluation.encoder_heads import HeadStudySettings, train_and_test_heads
from dfa_lib.features.backbones import load_backbone
from dfa_lib.models.heads import (
    FRAME_HEADS,
    HEADS,
    LCNN_PROJECTION,
    HeadConfig,
    HeadInputError,
    LCNNHead,
    build_head_from_dims,
    load_head,
    normalize_frames,
    predict_logits,
    save_head,
    train_head,
)
from dfa_lib.training.encoder_runs import lcnn_head
from dfa_lib.training.ssl_pipeline import head_scores, split_features, train_heads


def test_lcnn_is_a_frame_head_built_from_its_input_sizes():
    assert "lcnn" in HEADS and "lcnn" in FRAME_HEADS
    head = build_head_from_dims(
        HeadConfig(head="lcnn", dropout=0.1), {"num_layers": LAYERS, "hidden_size": HIDDEN}
    )
    assert isinstance(head, LCNNHead)
    assert head.projection.in_features == HIDDEN
    assert head.projection.out_features == LCNN_PROJECTION
    assert head.layer_logits.shape == (LAYERS,)
    assert head.classifier[0].p == 0.1  # the configured dropout
    # Small enough to train a few epochs on a CPU.
    assert sum(p.numel() for p in head.parameters()) < 100_000


def test_lcnn_head_maps_frames_to_logits_and_ignores_padding():
    torch.manual_seed(0)
    head = LCNNHead(LAYERS, HIDDEN).eval()
    frames, _ = random_frames(2, seed=0)
    x = normalize_frames(frames).float()
    lengths = torch.tensor([FRAMES, 18, FRAMES, 1])
    with torch.no_grad():
        logits = head(x, lengths)
        changed = x.clone()
        changed[1, :, 18:] = 5.0  # beyond clip 1's length: padding
        changed[3, :, 1:] = -3.0
        assert torch.equal(head(changed, lengths), logits)
        # A clip scored alone, without the batch's padding, gets the same logits.
        alone = head(x[1:2, :, :18], torch.tensor([18]))
        single = head(x[3:4, :, :1], torch.tensor([1]))
        changed[0, :, 3] = 5.0  # a real frame of clip 0 changes only clip 0
        moved = head(changed, lengths)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    torch.testing.assert_close(alone[0], logits[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(single[0], logits[3], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(moved[0], logits[0])
    torch.testing.assert_close(moved[1:], logits[1:])
    assert head.layer_weights().sum().item() == pytest.approx(1.0)


def test_lcnn_head_trains_and_round_trips_through_its_folder(tmp_path):
    x_tr, y_tr = random_frames(16, seed=1, shift=1.0)
    x_va, y_va = random_frames(8, seed=2, shift=1.0)
    lengths_tr = np.full(len(y_tr), FRAMES)
    lengths_va = np.full(len(y_va), FRAMES)
    config = HeadConfig(head="lcnn", epochs=6, patience=6, batch_size=8, learning_rate=3e-3)
    head, history = train_head((x_tr, lengths_tr), y_tr, (x_va, lengths_va), y_va, config)
    log = history.to_frame()
    # Six epochs of four steps separate the shifted clips: the loss falls to a fraction.
    assert len(log) == 6 and log["train_loss"].iloc[-1] < 0.3 * log["train_loss"].iloc[0]
    assert history.best_val_eer <= 0.1
    # The layer weights are trained too (they start equal).
    assert not np.allclose(head.layer_weights().detach().numpy(), 1 / LAYERS, atol=1e-3)

    save_head(head, tmp_path / "h")
    assert json.loads((tmp_path / "h" / "head.json").read_text())["config"]["head"] == "lcnn"
    loaded = load_head(tmp_path / "h")
    assert isinstance(loaded, LCNNHead) and not loaded.training
    np.testing.assert_array_equal(
        predict_logits(loaded, (x_va, lengths_va)), predict_logits(head, (x_va, lengths_va))
    )
    with pytest.raises(HeadInputError, match="'lcnn' needs \\(frames, lengths\\)"):
        predict_logits(loaded, x_va)


@pytest.fixture(scope="module")
def toy_data():
    parts = {
        s: make_toy_split(n, i, s)
        for i, (s, n) in enumerate([("training", 12), ("validation", 6), ("testing", 4)])
    }
    return ProtocolData(
        "toy",
        "in-domain",
        root=None,
        frames={s: p[0] for s, p in parts.items()},
        stores={s: p[1] for s, p in parts.items()},
    )


def test_an_lcnn_head_folder_scores_files_through_its_encoder(
    tmp_path, tiny_wav2vec2_dir, toy_data, monkeypatch
):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    encoder = load_backbone(tiny_wav2vec2_dir)
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=True)
    config = HeadConfig(head="lcnn", epochs=6, batch_size=4, learning_rate=3e-3, seed=0)
    (run,) = train_heads(encoder, feats, toy_data, {"enc_lcnn": config}, tmp_path / "runs", PRE)
    saved = json.loads((run.folder / "config.json").read_text())
    assert saved["model"]["name"] == "ssl_head"
    assert saved["training"]["head"]["head"] == "lcnn"

    # The detector loaded from the folder runs the encoder on each file, then the head; its
    # scores are the ones the head gives on the cached features of the same clips.
    store = toy_data.stores["testing"]
    paths = []
    for i in range(len(toy_data.frames["testing"])):
        paths.append(tmp_path / "audio" / f"{i}.wav")
        paths[-1].parent.mkdir(exist_ok=True)
        sf.write(paths[-1], store[i], 16000, subtype="FLOAT")
    detector = load_detector(run.folder, device="cpu")
    results = list(detector.score_paths(paths))
    assert [p for p, _ in results] == paths
    scored = np.array([r.score for _, r in results])
    cached, rows = head_scores(run.head, feats["testing"], run.config)
    assert list(rows) == list(range(len(paths)))
    np.testing.assert_allclose(scored, cached, atol=2e-3)


def test_lcnn_trains_only_on_the_protocols_named(tmp_path, monkeypatch):
    trained = {}

    class Encoder:
        choice = type("Choice", (), {"resolved": "enc"})()

    def fake_train_heads(encoder, feats, data, heads, out, preprocessing, augmented=None):
        trained[data.protocol] = heads
        return []

    def data_for(dataset, protocol, *args, **kwargs):
        return type("Data", (), {"protocol": protocol, "frames": {}})()

    monkeypatch.setattr(study_module, "prepare_protocol", data_for)
    monkeypatch.setattr(study_module, "_features", lambda *a, **k: {})
    monkeypatch.setattr(study_module, "layer_table", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(study_module, "best_layer", lambda table: 1)
    monkeypatch.setattr(study_module, "probe_table", lambda *a, **k: pd.DataFrame())
    monkeypatch.setattr(study_module, "best_probe", lambda table: (2, 0.1))
    monkeypatch.setattr(study_module, "train_heads", fake_train_heads)
    settings = HeadStudySettings(
        lcnn_protocols="unseen-generator", lcnn_epochs=4, augmented_heads="", seed=5
    )
    protocols = "in-domain,unseen-generator"
    train_and_test_heads(Encoder(), "offline", protocols, tmp_path, tmp_path, tmp_path, settings)
    assert trained["unseen-generator"]["enc_lcnn"] == lcnn_head(4, 5)
    assert lcnn_head(4, 5) == HeadConfig(head="lcnn", epochs=4, seed=5)
    assert "enc_lcnn" not in trained["in-domain"]
    # By default no protocol trains it, for at most 6 epochs when one does.
    assert HeadStudySettings().lcnn_epochs == 6
    trained.clear()
    quiet = HeadStudySettings(augmented_heads="")
    train_and_test_heads(Encoder(), "offline", protocols, tmp_path, tmp_path, tmp_path, quiet)
    assert not any("enc_lcnn" in heads for heads in trained.values())
