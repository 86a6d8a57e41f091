"""`make bench` on a tiny corpus made here: every stage runs and every figure is a real number.

Speeds are never asserted: they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from dfa_lib.data.codecs import in_process_available
from dfa_lib.data.copysynth import CODEC2_MODES
from dfa_lib.reporting.runner import load_profile
from dfa_lib.studies.bench.__main__ import main as bench_main
from dfa_lib.studies.bench.report import render_html
from dfa_lib.studies.bench.stages import BenchConfig, figures, read_end_to_end

SR = 16000
SPLIT_SIZES = {"training": 16, "validation": 8, "testing": 4}


def _clip(label: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * SR)) / SR
    if label == "real":  # a gliding tone with a little noise
        wave = 0.3 * np.sin(2 * np.pi * (150 + 50 * t) * t * rng.uniform(1, 2))
        wave += 0.01 * rng.standard_normal(t.size)
    else:  # band of noise
        wave = 0.2 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def _make_corpus(data_dir):
    """Write a FoR-layout corpus as `data_dir/offline-main` with its manifest."""
    from dfa_lib.data.datasets import load_for_layout
    from dfa_lib.data.manifest import write_manifest

    root = data_dir / "offline-main"
    seed = 0
    for split, n in SPLIT_SIZES.items():
        for label in ("real", "fake"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n // 2):
                seed += 1
                sf.write(folder / f"{split}-{label}-{i}.wav", _clip(label, seed), SR)
    df = load_for_layout(root, corpus="offline-main", hash_files=True, progress=False)
    # One synthetic voice per split, so the in-domain protocol finds no voice in two splits.
    df["speaker"] = df["split"] + "-" + df["label"]
    write_manifest(df, root / "manifest.csv")
    (root / ".complete.json").write_text(json.dumps({"clips": len(df), "seconds": 1.5}))
    return root


def _walk_numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _walk_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_numbers(v)


@pytest.mark.slow
def test_quick_bench_writes_every_stage(tmp_path, tiny_wav2vec2_dir):
    data_dir = tmp_path / "data"
    _make_corpus(data_dir)
    out = tmp_path / "reports"
    out.mkdir()
    record = {"profile": "default", "timings_s": {"data": 10.0, "02_cnn": 50.0, "total": 70.0}}
    (out / "run_record.json").write_text(json.dumps(record))
    runs = [
        {"profile": "default", "start": {"kind": "from nothing"}, "timings_s": {"total": 1700.0}},
        {"profile": "smoke", "start": {"kind": "from nothing"}, "timings_s": {"total": 60.0}},
        {
            "profile": "default",
            "start": {"kind": "with earlier outputs"},
            "timings_s": {"total": 250.0},
        },
        {
            "profile": "default",
            "start": {"kind": "with earlier outputs"},
            "timings_s": {"total": 90.0},
        },
    ]
    lines = [json.dumps(r) for r in runs] + ['{"profile": "default", "timi']  # a killed run
    (out / "run_history.jsonl").write_text("\n".join(lines) + "\n")
    backbone = tiny_wav2vec2_dir  # a random-init encoder: speed only, weights do not matter

    argv = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    assert bench_main([*argv, "--quick", "--backbone", str(backbone)]) == 0

    report = json.loads((out / "bench.json").read_text())
    for key in (
        "machine",
        "packages",
        "loading",
        "training",
        "heads",
        "codecs",
        "inference",
        "history",
    ):
        assert key in report
    assert report["machine"]["cpu_count"] >= 1
    assert report["loading"]["clips"] == SPLIT_SIZES["training"]
    assert len(report["loading"]["dfa_loader"]["epoch_runs_s"]) == 3
    assert len(report["loading"]["original_loader"]["epoch_runs_s"]) == 3
    training = report["training"]
    assert set(training["models"]) == {"original_cnn", "lcnn"}
    assert training["extrapolated"] is True
    lcnn_crop = next(n for n in load_profile("default")["notebooks"] if n["name"] == "02_cnn")
    assert (
        training["models"]["lcnn"]["clip_seconds"]
        == lcnn_crop["parameters"]["spectral_clip_seconds"]
    )
    assert all(len(m["timed_epoch_runs_s"]) == 3 for m in training["models"].values())
    assert report["heads"]["config"]["repeats"] == 3
    models = {e["model"] for e in report["inference"]["results"]}
    assert models == {"original_cnn", "lcnn"}
    assert all("long_file" in e for e in report["inference"]["results"])
    assert report["inference"]["speech_activity"]["long_signal"]["x_realtime"] > 0
    assert report["end_to_end"]["make_reports"]["timings_s"]["total"] == 70.0
    cold, warm = report["end_to_end"]["make_reports_runs"]
    assert (cold["kind"], cold["timings_s"]["total"], cold["meets_target"]) == (
        "from nothing",
        1700.0,
        True,
    )
    assert (warm["kind"], warm["timings_s"]["total"], warm["meets_target"]) == (
        "with earlier outputs",
        90.0,
        True,
    )
    assert report["end_to_end"]["corpus_build"]["offline-main"]["seconds"] == 1.5
    codecs = {(c["codec"], c["bitrate"]): c for c in report["codecs"]["codecs"]}
    assert report["codecs"]["config"]["clips"] == 2
    assert {("mp3", "32k"), ("opus", "16k"), ("gsm", "fixed"), ("opus", "12k")} <= set(codecs)
    for (codec, _), row in codecs.items():  # timed exactly where the backend has the codec
        assert (row["av_ms_per_clip"] is not None) == in_process_available(codec)
    if in_process_available("mp3") and shutil.which("ffmpeg"):
        assert codecs[("mp3", "32k")]["speedup"] > 0
    copies = report["codecs"]["codec2_copies"]
    if copies["error"] is None:  # libcodec2 installed (make setup installs it)
        assert set(copies["ms_per_clip"]) == set(CODEC2_MODES)
        assert all(ms > 0 for ms in copies["ms_per_clip"].values())
    else:
        assert "libcodec2" in copies["error"]
    stages = {e["stage"] for e in report["history"]}
    assert {"data loading", "training", "pretrained features"} <= stages

    headline = figures(report)
    assert len(headline) >= 12
    for name, value in headline.items():
        assert math.isfinite(value) and value > 0, name
    for value in _walk_numbers({k: report[k] for k in ("loading", "training", "inference")}):
        assert math.isfinite(value), value

    page = (out / "bench.html").read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for text in (
        "Targets",
        "1. Data loading",
        "4. Codec",
        "5. Inference",
        "speech-activity check of",
        "original_cnn",
        "8. Networks: size and CPU cost",
        "85,306",  # AASIST-L's parameters in the networks table
        "History",
    ):
        assert text in page
    for text in ("make reports, cold (from nothing)", "make reports, warm"):
        assert text in page


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the app decodes uploads with ffmpeg")
def test_app_load_uploads_at_once_through_the_browser_protocol(tmp_path):
    pytest.importorskip("streamlit", reason="the app extra is not installed")
    out = tmp_path / "reports"
    argv = ["--data-dir", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]
    assert bench_main([*argv, "--out", str(out), "--quick", "--stage", "app-load"]) == 0
    report = json.loads((out / "bench.json").read_text())
    app = report["app-load"]
    assert app["error"] is None and app["config"]["address"] == "127.0.0.1"
    assert (app["config"]["uploads"], app["completed"], app["failed"]) == (2, 2, 0)
    for upload in app["uploads"]:
        assert upload["verdict"].startswith("Verdict: ") and upload["seconds"] > 0
    assert app["detector_source"] == "untrained"
    # The server had the detector loaded before the uploads; they can only add to it.
    assert app["server_and_children_peak_mb"] >= app["server_rss_before_mb"] > 100
    assert app["server_peak_rss_mb"] >= app["server_rss_before_mb"]
    headline = figures(report)
    assert headline["app-load: server peak MB"] == app["server_and_children_peak_mb"]
    assert headline["app-load: median s per upload"] > 0
    page = (out / "bench.html").read_text()
    assert "7. The app under load" in page and "2 browser sessions upload at once" in page


def test_end_to_end_without_records_and_bad_config(tmp_path):
    config = BenchConfig(data_dir=tmp_path / "data", reports_dir=tmp_path / "reports")
    assert read_end_to_end(config) == {
        "make_reports": None,
        "make_reports_runs": [],
        "corpus_build": {},
    }
    with pytest.raises(ValueError, match="at least 3"):
        BenchConfig(repeats=2)
    with pytest.raises(ValueError, match="unknown stage"):
        BenchConfig(stages=("loading", "warp"))
    with pytest.raises(ValueError, match="app_uploads"):
        BenchConfig(app_uploads=0)


def test_html_renders_a_partial_record():
    report = {
        "machine": {"cpu_count": 2, "torch_threads": 2, "platform": "x", "python": "3.11"},
        "config": {"repeats": 3},
        "load_average_at_start": [1.0, 1.0, 1.0],
        "load_average_at_end": [1.0, 1.0, 1.0],
        "end_to_end": {"make_reports": None, "corpus_build": {}},
        "history": [],
    }
    page = render_html(report)
    assert "make reports" in page and "2. Training" not in page


def test_trained_detectors_finds_every_kind_of_detector_folder(tmp_path):
    from dfa_lib.studies.bench.stages import trained_detectors

    split = tmp_path / "runs" / "default" / "offline" / "in-domain"
    weights = {
        "cnn": "model.safetensors",
        "gmm": "classifier.safetensors",
        "head": "head.safetensors",
    }
    for name, weight in weights.items():
        (split / name).mkdir(parents=True)
        (split / name / "config.json").write_text(json.dumps({"format": "dfa-detector"}))
        (split / name / weight).write_bytes(b"")
    (split / "notes").mkdir()
    (split / "notes" / "config.json").write_text(json.dumps({"format": "something else"}))
    (split / "stray.json").write_text("{}")
    config = BenchConfig(runs_dir=tmp_path / "runs")
    assert [p.name for p in trained_detectors(config)] == ["cnn", "gmm", "head"]
    assert trained_detectors(BenchConfig(runs_dir=tmp_path / "none")) == []


def test_reports_record_whether_a_run_started_from_nothing(tmp_path):
    from dfa_lib.reporting.runner import HISTORY_FILE, append_history, starting_state

    data, root = tmp_path / "data", tmp_path / "runs" / "default" / "offline"
    assert starting_state(data, root, "offline") == {
        "corpus_built": False,
        "detector_folders": 0,
        "kind": "from nothing",
    }
    for corpus in ("offline-main", "offline-cross"):
        (data / corpus).mkdir(parents=True)
        (data / corpus / ".complete.json").write_text("{}")
    (root / "in-domain" / "lcnn").mkdir(parents=True)
    (root / "in-domain" / "lcnn" / "config.json").write_text(json.dumps({"format": "dfa-detector"}))
    state = starting_state(data, root, "offline")
    assert state == {"corpus_built": True, "detector_folders": 1, "kind": "with earlier outputs"}
    # Another dataset has no offline corpus to find.
    assert starting_state(data, root, "for-2sec")["corpus_built"] is False

    record = {"profile": "default", "start": state, "timings_s": {"total": 12.0}}
    append_history(tmp_path, record)
    append_history(tmp_path, dict(record, timings_s={"total": 9.0}))
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(x)["timings_s"]["total"] for x in lines] == [12.0, 9.0]
    assert json.loads(lines[0])["start"]["kind"] == "with earlier outputs"


def test_epoch_benchmark_times_every_epoch_and_refuses_bad_settings(tmp_path):
    from dfa_lib.studies.bench.epochs import main, measure_epochs

    record = measure_epochs("cpu", epochs=2, n_train=8, n_val=4, models=("lcnn-mel-4k",))
    [(name, row)] = record["models"].items()
    assert name == "lcnn-mel-4k" and record["device"] == "cpu"
    assert len(row["seconds"]) == 2 and all(s > 0 for s in row["seconds"])
    assert row["median_after_first"] == row["seconds"][1]
    with pytest.raises(ValueError, match="at least 2"):
        measure_epochs("cpu", epochs=1)
    with pytest.raises(ValueError, match="unknown models"):
        measure_epochs("cpu", models=("lcnn-gone",))
    out = tmp_path / "epochs.json"
    assert (
        main(
            [
                "--device",
                "cpu",
                "--epochs",
                "2",
                "--n-train",
                "4",
                "--n-val",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert set(json.loads(out.read_text())["models"]) == {"lcnn-mel-4k", "lcnn-ifd-4k-unnormalised"}
    assert json.loads(out.read_text())["models"]["lcnn-mel-4k"]["precision"] == "float32"


def test_epoch_benchmark_times_bfloat16_beside_float32(monkeypatch):
    from dfa_lib.studies.bench.epochs import measure_epochs

    monkeypatch.setattr("dfa_lib.training.engine.native_bfloat16", lambda: True)
    record = measure_epochs(
        "cpu", epochs=2, n_train=8, n_val=4, models=("lcnn-mel-4k",), bfloat16=True
    )
    plain, half = record["models"]["lcnn-mel-4k"], record["models"]["lcnn-mel-4k+bfloat16"]
    assert (plain["precision"], half["precision"]) == ("float32", "bfloat16")
    assert half["speedup"] == pytest.approx(
        plain["median_after_first"] / half["median_after_first"]
    )
    monkeypatch.setattr("dfa_lib.training.engine.native_bfloat16", lambda: False)
    record = measure_epochs(
        "cpu", epochs=2, n_train=8, n_val=4, models=("lcnn-mel-4k",), bfloat16=True
    )
    assert record["models"]["lcnn-mel-4k+bfloat16"]["precision"] == "float32"
