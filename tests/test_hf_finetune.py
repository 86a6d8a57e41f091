"""Fine-tuning a transformers audio-classification model: class weights, the hf/ export, labels."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import make_toy_split, write_toy_dataset
from safetensors.torch import load_file
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
)

from dfa_lib.cli import main as dfa_main
from dfa_lib.data.clips import ClipStore
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.folder import DetectorFormatError
from dfa_lib.detector.loading import load_detector
from dfa_lib.models.hf_audio import (
    HF_FILES_KEY,
    HFAudioClassifier,
    HFModelError,
    hf_file_checksums,
    label_order,
    load_hf_classifier,
)
from dfa_lib.training.hf_finetune import HFFinetuneConfig, finetune_hf, main

SR = 16000


def save_tiny_wav2vec2(folder: Path, labels: list[str], seed: int = 0) -> str:
    """A random-init Wav2Vec2ForSequenceClassification (width 32, 2 layers), no dropout."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 4, 4),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=False,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    return str(folder)


def _split(n_real: int, n_fake: int, seed: int, name: str):
    frame, store = make_toy_split(max(n_real, n_fake), seed, name, seconds=0.5, noise=0.05)
    labels = frame["label"].to_numpy()
    keep = np.r_[
        np.flatnonzero(labels == "real")[:n_real], np.flatnonzero(labels == "fake")[:n_fake]
    ]
    return frame.iloc[keep].reset_index(drop=True), ClipStore.from_waves([store[i] for i in keep])


@pytest.fixture(scope="module")
def toy_data() -> ProtocolData:
    """Training 9 real and 3 fake clips of exactly 0.5 s (one crop each), validation 4 + 4."""
    parts = {"training": _split(9, 3, 0, "training"), "validation": _split(4, 4, 1, "validation")}
    return ProtocolData(
        "toy",
        "in-domain",
        root=None,
        frames={s: p[0] for s, p in parts.items()},
        stores={s: p[1] for s, p in parts.items()},
    )


def _config(source: str, **changes) -> HFFinetuneConfig:
    settings = {
        "model": source,
        "name": "tiny_hf",
        "clip_seconds": 0.5,
        "epochs": 3,
        "patience": 3,
        "batch_size": 12,  # the whole training split in one batch
        "grad_accumulation": 1,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        "device": "cpu",
    }
    return HFFinetuneConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def spoof_first(tmp_path_factory) -> str:
    """A source model whose labels are bona fide and spoof in the other order."""
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("src") / "spoof-first", ["spoof", "bonafide"])


@pytest.fixture(scope="module")
def run(spoof_first, toy_data, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random model's calibration may not fit
        return finetune_hf(
            _config(spoof_first), toy_data, tmp_path_factory.mktemp("runs"), progress=False
        )


def _hf_logits(folder: str | Path, waves: list[np.ndarray]) -> torch.Tensor:
    """Logits as a transformers user computes them: feature extractor, then the model."""
    model = AutoModelForAudioClassification.from_pretrained(folder).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    inputs = extractor(waves, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def test_the_first_epoch_loss_is_the_class_weighted_cross_entropy(run, spoof_first, toy_data):
    store, frame = toy_data.stores["training"], toy_data.frames["training"]
    waves = [store[i] for i in range(len(frame))]
    # The source model's logits, put in [real, fake] order by its labels (spoof=0, bonafide=1).
    logits = _hf_logits(spoof_first, waves)[:, [1, 0]].double()
    y = torch.tensor((frame["label"] == "fake").to_numpy().astype(np.int64))
    nll = -torch.log_softmax(logits, dim=1)[torch.arange(len(y)), y]
    weights = torch.tensor([12 / (2 * 9), 12 / (2 * 3)], dtype=torch.float64)[y]
    weighted = float((weights * nll).sum() / weights.sum())
    first = float(run.history["train_loss"].iloc[0])  # before the first optimizer step
    assert first == pytest.approx(weighted, rel=1e-4)
    assert abs(first - float(nll.mean())) > 1e-3, "the loss must not be the unweighted mean"
    assert len(run.history) == 3 and run.best_epoch in (1, 2, 3)


def test_the_export_loads_in_transformers_and_dfa_with_the_same_logits(run, spoof_first):
    hf = run.folder / "hf"
    assert json.loads((hf / "config.json").read_text())["model_type"] == "wav2vec2"
    dfa_config = json.loads((run.folder / "config.json").read_text())
    assert dfa_config["format"] == "dfa-detector"
    assert dfa_config["model"]["name"] == "hf_audio_classification"
    assert dfa_config[HF_FILES_KEY] == hf_file_checksums(hf)
    # The model kept its own head and labels; fine-tuning changed the head and the encoder's
    # transformer layers, and left the convolutional feature encoder as it was.
    model = AutoModelForAudioClassification.from_pretrained(hf)
    source = AutoModelForAudioClassification.from_pretrained(spoof_first)
    assert model.config.id2label == {0: "spoof", 1: "bonafide"}
    tuned, original = model.state_dict(), source.state_dict()
    assert not torch.equal(tuned["classifier.weight"], original["classifier.weight"])
    assert not torch.equal(
        tuned["wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"],
        original["wav2vec2.encoder.layers.1.feed_forward.output_dense.weight"],
    )
    conv = "wav2vec2.feature_extractor.conv_layers.0.conv.weight"
    assert torch.equal(tuned[conv], original[conv])

    rng = np.random.default_rng(5)
    waves = [(0.1 * rng.standard_normal(SR)).astype(np.float32) for _ in range(3)]
    expected = _hf_logits(hf, waves)[:, [1, 0]]  # [real, fake]
    detector = load_detector(run.folder, device="cpu")
    with torch.inference_mode():
        got = detector.model(torch.from_numpy(np.stack(waves)))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert "hf_audio_classification" in (run.folder / "README.md").read_text()


def test_dfa_predict_scores_files_with_the_folder(run, tmp_path, capsys):
    rng = np.random.default_rng(6)
    paths = []
    for i, seconds in enumerate((0.7, 1.6)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, (0.2 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
        paths.append(path)
    out = tmp_path / "scores.jsonl"
    argv = ["predict", *map(str, paths), "--model", str(run.folder), "--format", "jsonl"]
    assert dfa_main([*argv, "--output", str(out), "--min-speech", "off", "--device", "cpu"]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    detector = load_detector(run.folder, device="cpu", min_speech_seconds=None)
    for path in paths:
        assert rows[path.name]["p_fake"] == pytest.approx(detector.score_path(path).p_fake)
    assert rows["clip1.wav"]["n_windows"] == 4  # 1.6 s in 0.5 s windows


def test_the_same_run_is_reused_and_changed_files_are_refused(run, spoof_first, toy_data, tmp_path):
    again = finetune_hf(_config(spoof_first), toy_data, run.folder.parent, progress=False)
    assert again.reused and again.val_eer == run.val_eer

    copy = Path(shutil.copytree(run.folder, tmp_path / "copy"))
    hf_config = copy / "hf" / "config.json"
    edited = json.loads(hf_config.read_text())
    edited["id2label"] = {"0": "cat", "1": "dog"}
    edited["label2id"] = {"cat": 0, "dog": 1}
    hf_config.write_text(json.dumps(edited))
    with pytest.raises(DetectorFormatError, match=r"config\.json differ"):
        load_detector(copy, device="cpu")
    # Even with checksums that match, labels that are not real and fake are refused.
    dfa_config = json.loads((copy / "config.json").read_text())
    dfa_config[HF_FILES_KEY] = hf_file_checksums(copy / "hf")
    (copy / "config.json").write_text(json.dumps(dfa_config))
    with pytest.raises(DetectorFormatError, match="not one real and one fake"):
        load_detector(copy, device="cpu")
    # Weights that would be unpickled are refused, checksums or not.
    weights = copy / "hf" / "model.safetensors"
    torch.save(load_file(weights), copy / "hf" / "pytorch_model.bin")
    weights.unlink()
    dfa_config[HF_FILES_KEY] = hf_file_checksums(copy / "hf")
    (copy / "config.json").write_text(json.dumps(dfa_config))
    with pytest.raises(DetectorFormatError, match="safetensors"):
        load_detector(copy, device="cpu")
    shutil.rmtree(copy / "hf")
    with pytest.raises(DetectorFormatError, match="missing the transformers model folder"):
        load_detector(copy, device="cpu")
    dfa_config["model"]["kwargs"]["subfolder"] = "../elsewhere"
    (copy / "config.json").write_text(json.dumps(dfa_config))
    with pytest.raises(DetectorFormatError, match="must be a folder name"):
        load_detector(copy, device="cpu")


def test_labels_map_by_name():
    assert label_order({0: "real", 1: "fake"}) == (0, 1)
    assert label_order({0: "Spoof", 1: "bonafide"}) == (1, 0)
    assert label_order({0: "LABEL_0", 1: "LABEL_1"}) is None
    assert label_order({0: "real", 1: "spoof", 2: "other"}) is None
    assert label_order({0: "fake", 1: "spoof"}) is None


def test_other_labels_get_a_new_two_way_head(tmp_path):
    pets = save_tiny_wav2vec2(tmp_path / "pets", ["cat", "dog"])
    with pytest.warns(UserWarning, match="new two-way head"):
        classifier = load_hf_classifier(pets)
    assert classifier.model.config.id2label == {0: "real", 1: "fake"}
    source = AutoModelForAudioClassification.from_pretrained(pets).state_dict()
    state = classifier.model.state_dict()
    # Same shapes, yet the head is new; the encoder is the source's.
    assert not torch.equal(state["classifier.weight"], source["classifier.weight"])
    assert not torch.equal(state["projector.weight"], source["projector.weight"])
    layer = "wav2vec2.encoder.layers.0.attention.k_proj.weight"
    assert torch.equal(state[layer], source[layer])
    assert classifier.head_parameter_names() == [
        "projector.weight",
        "projector.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    # freeze_layers=1: the head and the second transformer layer train, nothing below.
    classifier.freeze(feature_encoder=True, layers=1)
    trainable = {n for n, p in classifier.model.named_parameters() if p.requires_grad}
    assert "wav2vec2.encoder.layers.1.attention.k_proj.weight" in trainable
    assert not any(".layers.0." in n or "feature_extractor" in n for n in trainable)
    assert trainable >= set(classifier.head_parameter_names())


def test_three_labels_fine_tune_from_the_command_line(tmp_path, capsys):
    source = save_tiny_wav2vec2(tmp_path / "birds", ["crow", "gull", "wren"])
    root = write_toy_dataset(tmp_path / "toyset", [("training", 4), ("validation", 4)])
    argv = [source, "--dataset", str(root), "--data-dir", str(tmp_path), "--out", str(tmp_path)]
    settings = ["--epochs", "1", "--clip-seconds", "0.5", "--batch-size", "8", "--seed", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*argv, *settings, "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "3 labels: crow, gull, wren" in printed
    folder = tmp_path / "in-domain" / "birds_hf"
    model = AutoModelForAudioClassification.from_pretrained(folder / "hf")
    assert model.config.id2label == {0: "real", 1: "fake"}
    assert model.classifier.out_features == 2
    assert "new two-way head" in (folder / "README.md").read_text()
    assert load_detector(folder, device="cpu").score_waves([np.zeros(SR, np.float32)]).shape == (1,)


def test_a_model_that_is_not_there_says_where_it_looked(tmp_path, toy_data, capsys):
    with pytest.raises(HFModelError, match="HF_HUB_OFFLINE is set"):
        load_hf_classifier("no-such-org/no-such-model")
    with pytest.raises(HFModelError, match="no such model folder"):
        finetune_hf(_config(str(tmp_path / "absent")), toy_data, tmp_path, progress=False)
    assert not (tmp_path / "tiny_hf").exists()
    assert main(["no-such-org/no-such-model", "--data-dir", str(tmp_path / "none")]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model must name"):
        HFFinetuneConfig(model="")


def test_a_spectrogram_model_runs_through_its_own_feature_extractor(tmp_path):
    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_mel_bins=16,
        max_length=64,
        id2label={0: "bonafide", 1: "spoof"},
        label2id={"bonafide": 0, "spoof": 1},
    )
    ASTForAudioClassification(config).save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(num_mel_bins=16, max_length=64).save_pretrained(tmp_path / "ast")
    classifier = load_hf_classifier(str(tmp_path / "ast")).eval()
    assert isinstance(classifier, HFAudioClassifier) and classifier.head_note == ""
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(SR // 2)).astype(np.float32) for _ in range(2)]
    with torch.inference_mode():
        got = classifier(torch.from_numpy(np.stack(waves)))
    torch.testing.assert_close(got, _hf_logits(tmp_path / "ast", waves), atol=1e-5, rtol=1e-4)
    classifier.freeze(layers=1)
    trainable = [n for n, p in classifier.model.named_parameters() if p.requires_grad]
    # transformers 5 names AST's blocks `layers.N`, 4.x `encoder.layer.N`: both are read.
    assert any(re.search(r"\.layers?\.1\.", n) for n in trainable)
    assert not any(re.search(r"\.layers?\.0\.", n) for n in trainable)
    assert not any("embeddings" in n for n in trainable)
    with pytest.raises(ValueError, match="batch, samples"):
        classifier(torch.zeros(SR))


def test_history_columns(run):
    assert list(run.history.columns) == ["epoch", "train_loss", "val_eer", "lr", "seconds"]
    saved = pd.read_csv(run.folder / "train_log.csv")
    pd.testing.assert_frame_equal(saved, run.history, check_dtype=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_fine_tuning_on_cuda_scores_the_same_on_the_cpu(
    spoof_first, toy_data, tmp_path
):
    run = finetune_hf(
        _config(spoof_first, device="cuda", batch_size=4, grad_accumulation=2),
        toy_data,
        tmp_path,
        progress=False,
    )
    assert np.isfinite(run.history["train_loss"]).all()
    provenance = json.loads((run.folder / "provenance.json").read_text())
    assert provenance["precision"] in ("bfloat16-mixed", "float16-mixed")
    store = toy_data.stores["validation"]
    waves = [store[i] for i in range(len(toy_data.frames["validation"]))]
    saved = pd.read_csv(run.folder / "scores" / "validation.txt", sep=" ", header=None)[1]
    on_cpu = load_detector(run.folder, device="cpu").score_waves(waves)
    np.testing.assert_allclose(on_cpu, saved.to_numpy(), atol=1e-3)
