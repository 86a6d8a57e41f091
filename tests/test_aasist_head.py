"""SSL + AASIST: the AASIST back-end as a head on a frozen encoder's cached frames.

A head folder becomes a detector that runs the encoder and the head on audio files
(``load_detector``, ``dfa predict``); 03 trains it only on the protocols named for it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import make_toy_split

from dfa_lib.cli import main
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.loading import load_detector
from dfa_lib.evaluation import encoder_heads as study_module
from dfa_lib.evaluation.encoder_heads import HeadStudySettings, train_and_test_heads
from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.ssl_features import FeaturePreprocessing
from dfa_lib.models.heads import (
    AASISTHead,
    HeadConfig,
    HeadInputError,
    load_head,
    normalize_frames,
    predict_logits,
    save_head,
    train_head,
)
from dfa_lib.training.encoder_runs import aasist_head
from dfa_lib.training.ssl_pipeline import head_scores, split_features, train_heads

PRE = FeaturePreprocessing(clip_seconds=0.5)
LAYERS, HIDDEN = 3, 32  # the tiny wav2vec2 of conftest: 2 transformer layers + embeddings, width 32
FRAMES = 25  # its 0.5 s clip: 100 frames, averaged over 4 in the cache


def random_frames(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Frame features shaped like the tiny encoder's cache; the fake half moves by ``shift``.

    Half the clips are real (label 0), half fake (label 1); every frame of a fake clip is
    shifted on the first half of its features, in every layer.
    """
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((2 * n, LAYERS, FRAMES, HIDDEN)).astype(np.float16)
    frames[n:, :, :, : HIDDEN // 2] += np.float16(shift)
    labels = np.array([0] * n + [1] * n)
    return frames, labels


def test_aasist_head_maps_frames_to_logits_and_ignores_padding():
    torch.manual_seed(0)
    head = AASISTHead(LAYERS, HIDDEN).eval()
    frames, _ = random_frames(2, seed=0)
    x = normalize_frames(frames).float()
    lengths = torch.tensor([FRAMES, 18, FRAMES, 20])
    with torch.no_grad():
        logits = head(x, lengths)
        changed = x.clone()
        changed[1, :, 18:] = 5.0  # beyond clip 1's length: padding
        changed[3, :, 20:] = -3.0
        assert torch.equal(head(changed, lengths), logits)
        changed[0, :, 3] = 5.0  # a real frame of clip 0 changes only clip 0
        moved = head(changed, lengths)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    assert not torch.allclose(moved[0], logits[0])
    torch.testing.assert_close(moved[1:], logits[1:])
    assert head.layer_weights().sum().item() == pytest.approx(1.0)


def test_aasist_head_trains_and_round_trips_through_its_folder(tmp_path):
    x_tr, y_tr = random_frames(12, seed=1, shift=2.0)
    x_va, y_va = random_frames(8, seed=2, shift=2.0)
    lengths_tr = np.full(len(y_tr), FRAMES)
    lengths_va = np.full(len(y_va), FRAMES)
    config = HeadConfig(
        head="aasist", epochs=4, patience=4, batch_size=8, learning_rate=3e-3, seed=0
    )
    head, history = train_head((x_tr, lengths_tr), y_tr, (x_va, lengths_va), y_va, config)
    log = history.to_frame()
    # Four epochs of three steps fit the training clips: the loss falls to a fraction.
    assert len(log) == 4 and log["train_loss"].iloc[-1] < 0.3 * log["train_loss"].iloc[0]
    assert history.best_val_eer <= 0.1
    # The layer weights are trained too (they start equal).
    assert not np.allclose(head.layer_weights().detach().numpy(), 1 / LAYERS, atol=1e-3)

    save_head(head, tmp_path / "h")
    assert json.loads((tmp_path / "h" / "head.json").read_text())["config"]["head"] == "aasist"
    loaded = load_head(tmp_path / "h")
    assert isinstance(loaded, AASISTHead)
    np.testing.assert_array_equal(
        predict_logits(loaded, (x_va, lengths_va)), predict_logits(head, (x_va, lengths_va))
    )
    with pytest.raises(HeadInputError, match="'aasist' needs \\(frames, lengths\\)"):
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


def test_an_aasist_head_folder_scores_files_through_its_encoder(
    tmp_path, tiny_wav2vec2_dir, toy_data, monkeypatch
):
    monkeypatch.setenv("DFA_CACHE_DIR", str(tmp_path / "models"))
    encoder = load_backbone(tiny_wav2vec2_dir)
    with torch.inference_mode():
        feats = split_features(encoder, toy_data, tmp_path / "features", PRE, frames=True)
    assert feats["testing"].frames.shape[1:3] == (LAYERS, FRAMES)
    config = HeadConfig(head="aasist", epochs=3, batch_size=8, learning_rate=3e-3, seed=0)
    configs = {"enc_aasist": config}
    (run,) = train_heads(encoder, feats, toy_data, configs, tmp_path / "runs", PRE)
    saved = json.loads((run.folder / "config.json").read_text())
    assert saved["model"]["name"] == "ssl_head"
    assert saved["training"]["head"]["head"] == "aasist"

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
    # `dfa predict` gives the same verdicts.
    out = tmp_path / "scores.jsonl"
    argv = ["predict", *map(str, paths), "--model", str(run.folder), "--format", "jsonl"]
    assert main([*argv, "--output", str(out), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    np.testing.assert_allclose([r["p_fake"] for r in rows], [r.p_fake for _, r in results])


def test_aasist_trains_only_on_the_protocols_named(tmp_path, monkeypatch):
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
        aasist_protocols="in-domain", aasist_epochs=7, augmented_heads="", seed=3
    )
    protocols = "in-domain,unseen-generator"
    train_and_test_heads(Encoder(), "offline", protocols, tmp_path, tmp_path, tmp_path, settings)
    assert trained["in-domain"]["enc_aasist"] == aasist_head(7, 3)
    assert aasist_head(7, 3) == HeadConfig(head="aasist", epochs=7, seed=3)
    assert "enc_aasist" not in trained["unseen-generator"]
    # By default (no protocols named) no protocol trains it.
    trained.clear()
    quiet = HeadStudySettings(augmented_heads="")
    train_and_test_heads(Encoder(), "offline", protocols, tmp_path, tmp_path, tmp_path, quiet)
    assert not any("enc_aasist" in heads for heads in trained.values())
