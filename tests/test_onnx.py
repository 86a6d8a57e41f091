"""ONNX export of detector folders: parity with torch, int8 verdicts, the runtime choice, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from conftest import make_toy_split
from test_aasist import TINY as AASIST_TINY
from test_backbones import save_tiny
from test_detector import SR, make_detector_folder, noise

from dfa_lib.cli import main as dfa_main
from dfa_lib.detector import onnx_runtime
from dfa_lib.detector.folder import DetectorFormatError, export_detector, write_detector_config
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.onnx_runtime import (
    INT8_FILE,
    ONNX_FILE,
    ONNX_RECORD_FILE,
    OnnxModel,
    export_onnx,
    quantize,
    read_onnx_record,
)
from dfa_lib.features.backbones import load_backbone
from dfa_lib.models.heads import HEADS, HeadConfig, build_head_from_dims, save_head
from dfa_lib.models.registry import MODEL_NAMES, build_model
from dfa_lib.studies.bench import runtimes

# Bona fide scores (logit differences) of the float32 export against torch: absolute, and
# relative for scores above 1 (float32 sums in another order differ by a few ulps of the score).
SCORE_TOLERANCE = 1e-4
# Share of test clips whose int8 verdict must equal the float32 one (toy detector).
INT8_AGREEMENT = 0.95
# Small settings per network so that every export takes about a second; networks added to
# the registry later are tested with their defaults.
TINY = {
    **AASIST_TINY,
    "lcnn": {"width": 4, "embedding": 8},
    "resnet": {"width": 4},
    "original_cnn": {"input_samples": 4000},
}


def waves_of_lengths(*seconds: float) -> list[np.ndarray]:
    """Noise with a tone, one clip per length (shorter, equal and longer than a window)."""
    t = np.arange(int(max(seconds) * SR)) / SR
    tone = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return [noise(s, seed=i) + tone[: int(s * SR)] for i, s in enumerate(seconds)]


def assert_same_scores(folder, runtime: str = "onnx", tolerance: float = SCORE_TOLERANCE):
    torch_detector = load_detector(folder, device="cpu")
    onnx_detector = load_detector(folder, runtime=runtime)
    assert not onnx_detector.is_torch and onnx_detector.model.path.name == ONNX_FILE
    if onnx_detector.input_samples != torch_detector.input_samples:
        # A graph that froze a traced length is exported for the window alone, and says so.
        window = round(torch_detector.window_seconds * SR)
        assert torch_detector.input_samples is None and onnx_detector.input_samples == window
        entry = read_onnx_record(folder)["files"][ONNX_FILE]
        assert entry["time_axis"].startswith("fixed at the window")
    waves = waves_of_lengths(0.3, 1.0, 2.3)
    expected = torch_detector.score_waves(waves)
    np.testing.assert_allclose(
        onnx_detector.score_waves(waves), expected, atol=tolerance, rtol=tolerance
    )
    return torch_detector, onnx_detector


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_registry_network_exports_with_parity(tmp_path, name):
    clip = 0.25 if name == "original_cnn" else 1.0
    folder = make_detector_folder(tmp_path / name, name, TINY.get(name, {}), clip_seconds=clip)
    assert not (folder / ONNX_FILE).exists()
    assert_same_scores(folder)  # exported on first use
    entry = read_onnx_record(folder)["files"][ONNX_FILE]
    assert entry["opset"] == onnx_runtime.OPSET and entry["model"] == name
    assert entry["parity_max_abs_score_difference"] < SCORE_TOLERANCE
    assert (
        entry["weights_sha256"]
        == json.loads((folder / "config.json").read_text())["weights_sha256"]
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frontend": "mel", "frontend_settings": {"f_max": 4000.0}},
        {"frontend": "spec", "pooling": "attentive"},
        {"frontend": "ifd", "normalize": False, "frontend_settings": {"f_max": 4000.0}},
    ],
    ids=["mel", "spec-attentive", "ifd"],
)
def test_every_front_end_exports(tmp_path, kwargs):
    folder = make_detector_folder(tmp_path / "lcnn", "lcnn", {**TINY["lcnn"], **kwargs})
    assert_same_scores(folder)


@pytest.fixture(scope="module", params=["wav2vec2", "whisper"])
def tiny_encoder(request, tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp(request.param), request.param)
    return str(folder)


@pytest.mark.parametrize("head", HEADS)
def test_encoder_heads_export_with_their_encoder(tmp_path, tiny_encoder, head):
    backbone = load_backbone(tiny_encoder)
    layers, hidden = backbone.num_layers + 1, backbone.hidden_size
    dims = {"in_dim": hidden, "num_layers": layers, "feature_dim": 2 * hidden}
    torch.manual_seed(0)
    model = build_head_from_dims(
        HeadConfig(head=head, hidden=16, attention_dim=8), {**dims, "hidden_size": hidden}
    )
    folder = save_head(model, tmp_path / head)
    write_detector_config(
        folder,
        {
            "model": {
                "name": "ssl_head",
                "kwargs": {"backbone": tiny_encoder, "backbone_identity": backbone.identity},
            },
            "preprocessing": {"sample_rate": SR, "clip_seconds": 1.0},
            "threshold": 0.0,
        },
    )
    assert_same_scores(folder)
    entry = read_onnx_record(folder)["files"][ONNX_FILE]
    assert entry["backbone_identity"] == backbone.identity


def test_a_fine_tuned_encoder_exports(tmp_path, tiny_encoder):
    torch.manual_seed(0)
    model = build_model("ssl_classifier", backbone=tiny_encoder, hidden=16)
    config = {
        "model": {"name": "ssl_classifier", "kwargs": {"backbone": tiny_encoder, "hidden": 16}},
        "preprocessing": {"sample_rate": SR, "clip_seconds": 1.0},
        "threshold": 0.0,
    }
    assert_same_scores(export_detector(tmp_path / "finetuned", model, config))


@pytest.fixture(scope="module")
def toy_detector(tmp_path_factory):
    """A tiny LCNN trained for a few steps to tell tones (real) from noise bursts (fake)."""
    frame, store = make_toy_split(32, 0, "training", seconds=0.5, noise=0.3)
    x = torch.from_numpy(np.stack([store[i] for i in range(len(frame))]))
    y = torch.tensor([0 if label == "real" else 1 for label in frame["label"]])
    torch.manual_seed(0)
    model = build_model("lcnn", **TINY["lcnn"], dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.eval()
    config = {
        "model": {"name": "lcnn", "kwargs": {**TINY["lcnn"], "dropout": 0.0}},
        "preprocessing": {"sample_rate": SR, "clip_seconds": 0.5},
        "threshold": 0.0,
    }
    folder = export_detector(tmp_path_factory.mktemp("toy") / "lcnn", model, config)
    clips = tmp_path_factory.mktemp("calibration")
    for i in range(len(frame)):
        sf.write(clips / f"{i}.wav", store[i], SR)
    test_frame, test_store = make_toy_split(40, 1, "testing", seconds=0.5, noise=0.3)
    test = [test_store[i] for i in range(len(test_frame))]
    return folder, clips, test, np.asarray(test_frame["label"])


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_verdicts_agree_with_float(toy_detector, mode, capsys):
    folder, clips, test, labels = toy_detector
    argv = ["export", str(folder), "--int8", mode]
    if mode == "static":
        argv += ["--calibration", str(clips), "--calibration-clips", "16"]
    assert onnx_runtime.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    float_detector = load_detector(folder, runtime="onnx")
    int8_detector = load_detector(folder, runtime="onnx-int8")
    assert int8_detector.model.path.name == INT8_FILE
    reference = float_detector.score_waves(test)
    assert np.mean((reference >= 0) == (labels == "real")) >= 0.9  # the toy detector works
    agree = np.mean((int8_detector.score_waves(test) >= 0) == (reference >= 0))
    assert agree >= INT8_AGREEMENT
    quantisation = read_onnx_record(folder)["files"][INT8_FILE]["quantization"]
    assert quantisation["mode"] == mode and quantisation["frontend_float32"]
    operators = quantisation["quantized_operators"]
    assert operators.get("ConvInteger" if mode == "dynamic" else "Conv", 0) >= 9
    if mode == "static":
        assert quantisation["calibration"]["clips"] == 16
    # The weights are stored as int8 (this toy network is too small for the file to shrink:
    # per-channel scales and the quantisation nodes weigh as much as its few weights).
    weights = onnx.load(str(folder / INT8_FILE)).graph.initializer
    assert sum(w.data_type == onnx.TensorProto.INT8 for w in weights) >= 9 + 2


def test_predict_runtime_onnx_equals_torch(toy_detector, tmp_path, capsys):
    folder, _, test, _ = toy_detector
    paths = []
    for i, wave in enumerate(test[:3] + [np.concatenate(test[3:9])]):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], wave, SR, subtype="FLOAT")
    rows = {}
    for runtime in ("torch", "onnx"):
        argv = ["predict", *map(str, paths), "--model", str(folder), "--format", "json"]
        argv += ["--runtime", runtime, "--min-speech", "off", "--device", "cpu"]
        assert dfa_main(argv) == 0
        rows[runtime] = json.loads(capsys.readouterr().out)
    for a, b in zip(rows["torch"], rows["onnx"], strict=True):
        assert a["path"] == b["path"] and a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=SCORE_TOLERANCE, rel=SCORE_TOLERANCE)
        assert a["n_windows"] == b["n_windows"]


def test_stale_and_changed_onnx_files_are_refused(tmp_path):
    folder = make_detector_folder(tmp_path / "lcnn")
    export_onnx(folder)
    onnx_bytes = (folder / ONNX_FILE).read_bytes()
    make_detector_folder(folder, seed=1)  # retrained in place: new weights, old model.onnx
    assert (folder / ONNX_FILE).read_bytes() == onnx_bytes
    with pytest.raises(DetectorFormatError, match="stale.*onnx_runtime export"):
        load_detector(folder, runtime="onnx")
    export_onnx(folder)
    load_detector(folder, runtime="onnx")
    with open(folder / ONNX_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DetectorFormatError, match="SHA-256 differs"):
        load_detector(folder, runtime="onnx")
    (folder / ONNX_RECORD_FILE).unlink()
    with pytest.raises(DetectorFormatError, match="not recorded"):
        load_detector(folder, runtime="onnx")
    (folder / ONNX_FILE).write_bytes(b"not onnx")
    with pytest.raises(DetectorFormatError, match="onnxruntime cannot load it"):
        OnnxModel(folder / ONNX_FILE)


def test_a_read_only_folder_names_the_export_command(tmp_path, monkeypatch):
    folder = make_detector_folder(tmp_path / "lcnn")
    # Read-only for everyone but root, who would write anyway: the check itself is stubbed.
    monkeypatch.setattr(onnx_runtime, "_writable", lambda directory: False)
    with pytest.raises(DetectorFormatError, match="read-only.*onnx_runtime export"):
        load_detector(folder, runtime="onnx-int8")
    assert not (folder / ONNX_FILE).exists() and os.listdir(folder)


def test_classical_models_and_fusions_refuse_onnx(tmp_path, capsys):
    classical = pytest.importorskip("dfa_lib.models.classical")
    waves = [noise(1.0, seed=i) for i in range(4)] + waves_of_lengths(1.0, 1.0, 1.0, 1.0)
    model = classical.build_classical("lfcc_logreg").fit(waves, ["real"] * 4 + ["fake"] * 4)
    config = {"model": {"name": "lfcc_logreg", "kwargs": {}}, "threshold": 0.0}
    folder = export_detector(tmp_path / "logreg", model, config)
    with pytest.raises(DetectorFormatError, match="classical model.*runtime 'torch'"):
        load_detector(folder, runtime="onnx")
    with pytest.raises(DetectorFormatError, match="not a neural network"):
        export_onnx(folder)
    fusion = {"model": {"name": "fusion", "kwargs": {"members": []}}, "threshold": 0.0}
    fused = export_detector(tmp_path / "fused", None, fusion)
    with pytest.raises(DetectorFormatError, match="fusion of other detectors"):
        load_detector(fused, runtime="onnx-int8")
    sf.write(tmp_path / "clip.wav", waves[0], SR)
    with pytest.raises(SystemExit) as exit_info:
        dfa_main(
            ["predict", str(tmp_path / "clip.wav"), "--model", str(folder), "--runtime", "onnx"]
        )
    assert exit_info.value.code == 2
    assert "classical model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_detector(folder, runtime="tensorrt")


def test_quantize_needs_calibration_for_static(toy_detector, tmp_path):
    folder = toy_detector[0]
    with pytest.raises(ValueError, match="calibration"):
        quantize(folder, "static", destination=tmp_path)
    with pytest.raises(ValueError, match="mode must be one of"):
        quantize(folder, "int4")


def test_runtime_table_puts_both_eers_and_the_ratios_to_torch_on_one_row():
    rows = []
    for protocol, eer_shift in (("in-domain", 0.0), ("unseen-generator", 10.0)):
        for runtime, size, speed, eer in (
            ("torch fp32", 8.0, 20.0, 5.0),
            ("onnx int8 static", 2.0, 5.0, 5.5),
        ):
            row = {"detector": "lcnn", "protocol": protocol, "runtime": runtime}
            row.update({"size_mb": size, "parameters": 10, "eer_%": eer + eer_shift})
            if protocol == "in-domain":
                row.update({"ms_per_audio_second": speed, "real_time_factor": speed / 1000})
                row["hop_ms"] = speed
            rows.append(row)
    table = runtimes.summary(rows).set_index("runtime")
    assert list(table.index) == ["torch fp32", "onnx int8 static"]
    assert table.loc["onnx int8 static", "smaller_than_torch"] == pytest.approx(4.0)
    assert table.loc["onnx int8 static", "faster_than_torch"] == pytest.approx(4.0)
    assert table.loc["onnx int8 static", "eer_unseen_generator_%"] == pytest.approx(15.5)
    assert table.loc["torch fp32", "eer_in_domain_%"] == pytest.approx(5.0)
    page = runtimes.render(
        {
            "summary": runtimes.summary(rows).to_dict(orient="records"),
            "targets": {"speedup": 2, "size": 3, "eer_points": 0.5, "hop_ms": 100},
            "batch_windows": 8,
            "clips_per_class": 100,
            "csv": "runtimes.csv",
        }
    )
    assert "onnx int8 static" in page and "runtimes.csv" in page
