"""Detector folders: export and reload, windowed scoring, threshold conversion, format errors."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from dfa_lib import __version__
from dfa_lib.data.audio import AudioError, SilentAudioError, load_audio, pad_or_crop, save_audio
from dfa_lib.detector.folder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    DetectorFormatError,
    export_detector,
    is_detector_folder,
    write_model_card,
)
from dfa_lib.detector.loading import load_detector, load_detectors
from dfa_lib.detector.scorer import Detector
from dfa_lib.models.registry import build_model
from dfa_lib.scoring.calibration import probability_threshold, score_threshold
from dfa_lib.scoring.windows import score_waves

SR = 16000
TINY_LCNN = {"width": 4, "embedding": 8}


def make_detector_folder(
    folder: Path,
    name: str = "lcnn",
    kwargs: dict | None = None,
    clip_seconds: float = 1.0,
    threshold: float = 0.0,
    seed: int = 0,
    **preprocessing,
) -> Path:
    """Export a freshly initialised (untrained, but real) model as a detector folder."""
    kwargs = dict(TINY_LCNN if kwargs is None and name == "lcnn" else (kwargs or {}))
    torch.manual_seed(seed)
    model = build_model(name, **kwargs)
    config = {
        "model": {"name": name, "kwargs": kwargs},
        "preprocessing": {"sample_rate": SR, "clip_seconds": clip_seconds, **preprocessing},
        "threshold": threshold,
        "dataset": {"corpus": "offline-main", "protocol": "in-domain", "clips": 12},
    }
    metrics = {"in-domain": {"eer": 0.125, "auc": 0.93, "by_generator": [{"g": "x"}]}}
    return export_detector(folder, model, config, metrics=metrics)


def noise(seconds: float, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(round(seconds * SR)))).astype(np.float32)


@pytest.fixture(scope="module")
def lcnn_folder(tmp_path_factory) -> Path:
    return make_detector_folder(tmp_path_factory.mktemp("det") / "lcnn")


@pytest.fixture(scope="module")
def detector(lcnn_folder) -> Detector:
    return load_detector(lcnn_folder, device="cpu")


def test_export_writes_a_self_describing_folder(lcnn_folder):
    names = {p.name for p in lcnn_folder.iterdir()}
    assert {CONFIG_FILE, WEIGHTS_FILE, "README.md", "metrics.json"} <= names
    config = json.loads((lcnn_folder / CONFIG_FILE).read_text())
    assert config["format"] == "dfa-detector" and config["format_version"] == 1
    assert config["dfa_version"] == __version__
    assert config["preprocessing"]["pad_mode"] == "wrap"  # default filled in
    assert is_detector_folder(lcnn_folder)
    card = (lcnn_folder / "README.md").read_text()
    for heading in ("## What it is", "## Training data", "## Metrics per protocol"):
        assert heading in card
    assert "## Intended use" in card and "## Known limits" in card
    assert "in-domain" in card and "0.125" in card and "offline-main" in card
    # Weights are safetensors, not a pickle.
    assert (lcnn_folder / WEIGHTS_FILE).read_bytes()[8:9] == b"{"


def test_reload_gives_the_same_scores_as_the_model(lcnn_folder, detector):
    wave = noise(0.7, seed=1)
    first = detector.score_waveform(wave, SR)
    again = load_detector(lcnn_folder, device="cpu").score_waveform(wave, SR)
    assert first.score == pytest.approx(again.score, abs=1e-6)

    torch.manual_seed(0)
    model = build_model("lcnn", **TINY_LCNN).eval()
    x = torch.from_numpy(pad_or_crop(wave, SR, mode="start", pad_mode="wrap"))[None]
    with torch.inference_mode():
        logits = model(x)[0].double()
    assert first.score == pytest.approx(float(logits[0] - logits[1]), abs=1e-5)
    assert first.p_fake == pytest.approx(float(torch.softmax(logits, 0)[1]), abs=1e-6)
    assert first.n_windows == 1 and first.duration == pytest.approx(0.7)


@pytest.mark.parametrize("seconds", [0.4, 1.0, 3.0, 3.3])
@pytest.mark.parametrize("hop", [None, 0.5])
def test_windows_follow_the_evaluation_scoring_rule(detector, seconds, hop):
    wave = noise(seconds, seed=2)
    ours = detector.score_waveform(wave, SR, hop_seconds=hop)
    hop_samples = None if hop is None else int(hop * SR)
    theirs = score_waves(
        detector.model, [wave], SR, "wrap", batch_size=4, hop=hop_samples, progress=False
    )
    assert ours.score == pytest.approx(float(theirs[0]), abs=1e-5)
    # The file score is the mean of the window scores; p_fake its sigmoid of minus it.
    assert ours.score == pytest.approx(np.mean(ours.window_scores))
    assert ours.p_fake == pytest.approx(1 / (1 + math.exp(ours.score)))


def test_long_file_windows_and_batching(detector):
    wave = noise(10.5, seed=3)
    result = detector.score_waveform(wave, SR)
    assert result.n_windows == 11
    assert result.window_starts[:3] == (0.0, 1.0, 2.0) and result.window_starts[-1] == 10.0
    assert result.window_seconds == 1.0 and result.hop_seconds == 1.0
    assert len(result.window_p_fake) == 11 and result.max_window_p_fake >= result.window_p_fake[0]
    small_batches = load_detector(detector.folder, device="cpu", batch_size=3)
    assert small_batches.score_waveform(wave, SR).window_scores == pytest.approx(
        result.window_scores, abs=1e-5
    )
    overlapping = detector.score_waveform(wave, SR, hop_seconds=0.25)
    assert overlapping.n_windows == 39  # starts 0, 0.25, ..., 9.5; the last ends at 10.5
    # Scoring several waves at once pools windows but keeps each verdict.
    a, b = noise(0.5, seed=4), noise(2.5, seed=5)
    pooled = detector.score_batch([a, b], SR)
    assert pooled[0].score == pytest.approx(detector.score_waveform(a, SR).score, abs=1e-5)
    assert pooled[1].score == pytest.approx(detector.score_waveform(b, SR).score, abs=1e-5)
    np.testing.assert_allclose(detector.score_waves([a, b]), [p.score for p in pooled], atol=1e-9)


def test_other_sample_rates_are_resampled(detector):
    wave44 = noise(1.0, seed=6)  # 16000 samples, read as 44.1 kHz: 0.363 s
    result = detector.score_waveform(wave44, 44100)
    assert result.duration == pytest.approx(16000 / 44100, abs=1e-3)


@pytest.mark.slow
def test_scoring_streams_windows_instead_of_copying_the_file(detector):
    wave = noise(300.0, seed=7)  # five minutes: 19 MB of float32
    tracemalloc.start()
    try:
        result = detector.score_waveform(wave, SR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.n_windows == 300
    assert peak < wave.nbytes / 4, f"scoring allocated {peak / 1e6:.1f} MB of numpy arrays"


def test_threshold_conversion_is_the_same_decision():
    rng = np.random.default_rng(0)
    for tau in (-3.0, -0.2, 0.0, 0.7, 5.0):
        t = probability_threshold(tau)
        assert score_threshold(t) == pytest.approx(tau, abs=1e-9)
        s = rng.normal(tau, 2.0, size=500)
        s = s[np.abs(s - tau) > 1e-9]
        p_fake = 1 / (1 + np.exp(s))
        np.testing.assert_array_equal(s < tau, p_fake >= t)
    assert probability_threshold(0.0) == 0.5
    assert score_threshold(0.0) == math.inf and score_threshold(1.0) == -math.inf
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        score_threshold(1.5)


def test_labels_use_the_folder_threshold_or_an_override(tmp_path):
    wave = noise(0.5, seed=8)
    base = load_detector(make_detector_folder(tmp_path / "a"), device="cpu")
    s = base.score_waveform(wave, SR).score
    # A folder threshold just above the score makes it fake (s < tau), just below real.
    above = load_detector(make_detector_folder(tmp_path / "b", threshold=s + 0.01), device="cpu")
    below = load_detector(make_detector_folder(tmp_path / "c", threshold=s - 0.01), device="cpu")
    assert above.score_waveform(wave, SR).label == "fake"
    assert below.score_waveform(wave, SR).label == "real"
    assert above.threshold == pytest.approx(1 / (1 + math.exp(s + 0.01)))
    assert load_detector(tmp_path / "a", threshold=0.0).score_waveform(wave, SR).label == "fake"
    assert load_detector(tmp_path / "a", threshold=1.0).score_waveform(wave, SR).label == "real"
    with pytest.raises(ValueError, match="probability"):
        load_detector(tmp_path / "a", threshold=2.0)


def test_peak_normalisation_makes_scores_level_invariant(tmp_path):
    wave = noise(1.5, seed=9, amplitude=0.3)
    # Without per-utterance feature normalisation the network itself is level dependent.
    kwargs = {**TINY_LCNN, "normalize": False}
    norm = load_detector(make_detector_folder(tmp_path / "n", kwargs=kwargs, normalization="peak"))
    plain = load_detector(make_detector_folder(tmp_path / "p", kwargs=kwargs))
    assert norm.score_waveform(wave, SR).score == pytest.approx(
        norm.score_waveform(wave * 0.05, SR).score, abs=1e-4
    )
    assert plain.score_waveform(wave, SR).score != pytest.approx(
        plain.score_waveform(wave * 0.05, SR).score, abs=1e-4
    )


def test_score_paths_keeps_order_and_reports_bad_files(detector, tmp_path):
    good = save_audio(tmp_path / "good.wav", noise(0.8, seed=10), SR)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = list(detector.score_paths([good, empty, tmp_path / "missing.flac", good]))
    assert [p.name for p, _ in out] == ["good.wav", "empty.wav", "missing.flac", "good.wav"]
    assert isinstance(out[1][1], AudioError) and "empty" in str(out[1][1])
    assert isinstance(out[2][1], AudioError)
    assert out[0][1].score == pytest.approx(detector.score_path(good).score, abs=1e-6)


def test_silent_windows_are_left_out_and_silent_files_refused(detector, tmp_path):
    speech = noise(3.0, seed=11)  # -20 dBFS
    gap = noise(2.0, seed=12, amplitude=1e-4)  # -80 dBFS: dither, not speech
    result = detector.score_waveform(np.concatenate([speech, gap, speech]), SR)
    assert result.window_audible == (True,) * 3 + (False,) * 2 + (True,) * 3
    assert result.n_audible_windows == 6 and not result.silent
    kept = [s for s, a in zip(result.window_scores, result.window_audible, strict=True) if a]
    assert result.score == pytest.approx(np.mean(kept))
    assert result.score != pytest.approx(np.mean(result.window_scores))
    rows = result.to_dict()["windows"]
    assert [r["audible"] for r in rows] == list(result.window_audible)
    assert result.to_dict()["n_audible_windows"] == 6
    # A quiet but real level (-40 dBFS) is audible; the floor is a setting.
    assert not detector.score_waveform(noise(1.0, seed=13, amplitude=0.01), SR).silent
    # Nothing audible: refused by the file and waveform APIs, with the name in the message.
    for quiet in (np.zeros(2 * SR, np.float32), gap):
        with pytest.raises(SilentAudioError, match=r"upload\.wav: no audible signal.*-60 dBFS"):
            detector.score_waveform(quiet, SR, name="upload.wav")
        # Evaluation's path never refuses a clip: all windows are averaged.
        (batch,) = detector.score_batch([quiet], SR)
        assert batch.silent and batch.score == pytest.approx(np.mean(batch.window_scores))
    silent = save_audio(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    good = save_audio(tmp_path / "good.wav", noise(0.8, seed=10), SR)
    out = list(detector.score_paths([silent, good]))
    assert isinstance(out[0][1], SilentAudioError) and "silent.wav" in str(out[0][1])
    assert out[1][1].score == pytest.approx(detector.score_path(good).score, abs=1e-6)
    with pytest.raises(SilentAudioError):
        detector.score_path(silent)
    # With the floor off every window counts and silence gets a verdict like any input.
    unguarded = load_detector(detector.folder, device="cpu", silence_dbfs=None)
    assert unguarded.score_path(silent).n_audible_windows == 1
    whole = unguarded.score_waveform(np.concatenate([speech, gap]), SR)
    assert whole.score == pytest.approx(np.mean(whole.window_scores))
    # Evaluation keeps training's rule: every window of every clip, silent or not.
    (evaluated,) = detector.score_waves([np.concatenate([speech, gap])])
    assert evaluated == pytest.approx(whole.score, abs=1e-9)


def test_fixed_input_model_uses_its_own_window(tmp_path):
    folder = make_detector_folder(
        tmp_path / "cnn", name="original_cnn", kwargs={}, clip_seconds=1.0
    )
    det = load_detector(folder, device="cpu")
    assert det.window_seconds == 1.0
    assert det.score_waveform(noise(2.5), SR).n_windows == 3
    with pytest.raises(ValueError, match="exactly 1 s windows"):
        det.score_waveform(noise(2.5), SR, window_seconds=2.0)


def test_model_card_is_regenerated_with_new_metrics(tmp_path):
    folder = make_detector_folder(tmp_path / "m")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["cross-source"] = {"eer": 0.377, "classification": {"report": "long text"}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    write_model_card(folder)
    card = (folder / "README.md").read_text()
    assert "cross-source" in card and "0.377" in card and "long text" not in card


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(DetectorFormatError, match="no such detector folder"):
        load_detector(tmp_path / "nowhere")
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(DetectorFormatError, match="is a file"):
        load_detector(tmp_path / "plain.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorFormatError, match=r"not a detector folder.*make reports"):
        load_detector(tmp_path / "empty")

    foreign = make_detector_folder(tmp_path / "foreign")
    _edit_config(foreign, format="huggingface")
    with pytest.raises(DetectorFormatError, match="not a dfa detector config"):
        load_detector(foreign)
    assert not is_detector_folder(foreign)

    newer = make_detector_folder(tmp_path / "newer")
    _edit_config(newer, format_version=2, dfa_version="0.9.0")
    with pytest.raises(DetectorFormatError, match=r"format_version 2.*upgrade dfa"):
        load_detector(newer)
    older = make_detector_folder(tmp_path / "older")
    _edit_config(older, format_version=0)
    with pytest.raises(DetectorFormatError, match="re-export"):
        load_detector(older)
    other_major = make_detector_folder(tmp_path / "major")
    _edit_config(other_major, dfa_version="3.1.0")
    with pytest.raises(DetectorFormatError, match="major version"):
        load_detector(other_major)

    broken = make_detector_folder(tmp_path / "broken")
    (broken / CONFIG_FILE).write_text("{not json")
    with pytest.raises(DetectorFormatError, match="not valid JSON"):
        load_detector(broken)

    no_weights = make_detector_folder(tmp_path / "noweights")
    (no_weights / WEIGHTS_FILE).unlink()
    with pytest.raises(DetectorFormatError, match="missing model.safetensors"):
        load_detector(no_weights)

    unknown = make_detector_folder(tmp_path / "unknown")
    _edit_config(unknown, model={"name": "transformer9000", "kwargs": {}})
    with pytest.raises(DetectorFormatError, match="cannot rebuild the model"):
        load_detector(unknown)


def test_weights_of_another_model_type_are_rejected(tmp_path):
    swapped = make_detector_folder(tmp_path / "swapped")
    _edit_config(swapped, model={"name": "resnet", "kwargs": {"width": 4}})
    with pytest.raises(DetectorFormatError, match=r"do not fit model 'resnet'.*missing"):
        load_detector(swapped)
    resized = make_detector_folder(tmp_path / "resized")
    _edit_config(resized, model={"name": "lcnn", "kwargs": {"width": 8, "embedding": 8}})
    with pytest.raises(DetectorFormatError, match="another shape"):
        load_detector(resized)


def test_a_pickle_is_never_unpickled(tmp_path):
    folder = make_detector_folder(tmp_path / "pickled")

    class Boom:
        def __reduce__(self):
            return (Path("touched").write_text, ("pwned",))

    (folder / WEIGHTS_FILE).write_bytes(pickle.dumps({"state": Boom()}))
    with pytest.raises(DetectorFormatError, match="not a readable safetensors file"):
        load_detector(folder)
    assert not Path("touched").exists()


def test_export_replaces_a_folder_and_needs_a_threshold(tmp_path):
    folder = make_detector_folder(tmp_path / "x")
    model = build_model("lcnn", **TINY_LCNN)
    config = {"model": {"name": "lcnn", "kwargs": TINY_LCNN}, "threshold": 0.25}
    with pytest.raises(FileExistsError):
        export_detector(folder, model, config, overwrite=False)
    export_detector(folder, model, config)  # retraining in place replaces the detector
    assert load_detector(folder).score_threshold == 0.25
    assert not (folder / "metrics.json").exists()  # the old model's metrics are gone
    assert "No metrics recorded yet" in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match="threshold"):
        export_detector(tmp_path / "y", model, {"model": {"name": "lcnn"}})


def test_classical_detector_round_trip(tmp_path):
    classical = pytest.importorskip("dfa_lib.models.classical")
    waves = [noise(1.0, seed=i) for i in range(6)]
    # "fake" clips get an extra tone so the classifier has something to fit.
    tone = 0.2 * np.sin(2 * np.pi * 3000 * np.arange(SR) / SR).astype(np.float32)
    waves += [noise(1.0, seed=10 + i) + tone for i in range(6)]
    labels = ["real"] * 6 + ["fake"] * 6
    model = classical.build_classical("lfcc_logreg").fit(waves, labels)
    config = {
        "model": {"name": "lfcc_logreg", "kwargs": {}},
        "preprocessing": {"clip_seconds": 1.0},
        "threshold": 0.0,
    }
    folder = export_detector(tmp_path / "logreg", model, config)
    det = load_detector(folder)
    assert not det.is_torch
    test = [noise(1.0, seed=99), noise(1.0, seed=98) + tone]
    np.testing.assert_allclose(det.score_waves(test), model.score(test), rtol=1e-6)
    assert [det.score_waveform(w, SR).label for w in test] == ["real", "fake"]
    _edit_config(folder, model={"name": "lfcc_gmm", "kwargs": {}})
    with pytest.raises(DetectorFormatError, match="lfcc_logreg"):
        load_detector(folder)


@pytest.mark.slow
def test_inference_benchmark_runs_end_to_end(lcnn_folder, tmp_path):
    from dfa_lib.studies.bench.inference import main as bench_main

    out = tmp_path / "bench.json"
    argv = ["--model", str(lcnn_folder), "--repeats", "1", "--batch-clips", "2"]
    assert bench_main([*argv, "--long-seconds", "30", "--output", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["model"] == "lcnn" and entry["batch"]["clips"] == 2
    for key in ("single_clip", "batch", "batch_without_checks", "long_file"):
        assert entry[key]["x_realtime"] > 0
    assert entry["long_file"]["audio_seconds"] == pytest.approx(30.0)
    assert entry["long_file"]["n_windows"] == 30
    assert entry["long_file"]["peak_rss_mb"] >= entry["long_file"]["rss_before_mb"] > 0
    if importlib.util.find_spec("silero_vad") is not None:
        vad = json.loads(out.read_text())["speech_activity"]
        assert vad["long_signal"]["audio_seconds"] == pytest.approx(30.0)
        assert vad["batch"]["audio_seconds"] == pytest.approx(3.0)
        assert all(vad[k]["x_realtime"] > 0 for k in ("single_clip", "batch", "long_signal"))


@pytest.mark.parametrize(
    "sr, channels, fmt", [(44100, 2, "WAV"), (22050, 1, "FLAC"), (8000, 1, "WAV")]
)
def test_long_files_decode_block_by_block_to_the_same_samples(tmp_path, sr, channels, fmt):
    import soundfile as sf

    from dfa_lib.data.audio import load_audio
    from dfa_lib.detector.scorer import decode_long_file

    rng = np.random.default_rng(12)
    path = tmp_path / f"long.{fmt.lower()}"
    sf.write(path, (0.3 * rng.standard_normal((int(sr * 64.7), channels))).astype(np.float32), sr)
    whole, _ = load_audio(path, target_sr=SR)
    blocks = decode_long_file(path, SR, min_seconds=1.0)  # 30-s blocks: three of them
    assert blocks is not None and blocks.dtype == np.float32
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    assert decode_long_file(path, SR) is None  # shorter than ten minutes: load_audio's job
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(100))
    assert decode_long_file(tmp_path / "bad.wav", SR, min_seconds=0.0) is None


def test_speech_activity_flags_non_speech_and_keeps_its_verdict(lcnn_folder, speech_wav):
    pytest.importorskip("silero_vad", reason="silero-vad is not installed (make setup)")
    detector = load_detector(lcnn_folder, device="cpu")
    speech = detector.score_path(speech_wav)
    assert speech.speech_found is True and speech.speech_seconds > 0.5
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR).astype(np.float32)
    flagged = detector.score_waveform(tone, SR)
    assert flagged.speech_found is False and flagged.speech_seconds < 0.1
    assert flagged.label in ("real", "fake") and flagged.score == pytest.approx(
        np.mean(flagged.window_scores)
    )  # the verdict is kept and its score unchanged
    # Per window: speech placed after a tone shows up in the windows that hold it.
    words, _ = load_audio(speech_wav, target_sr=SR)
    mixed = np.concatenate([tone, pad_or_crop(words, 2 * SR, "start")])
    result = detector.score_waveform(mixed, SR)
    assert len(result.window_speech_seconds) == result.n_windows == 5
    assert max(result.window_speech_seconds[:3]) < 0.1 < result.window_speech_seconds[3]
    # Only the windows that hold speech count in the file score; the tone's do not.
    speaking = tuple(sp >= 0.1 for sp in result.window_speech_seconds)
    assert result.in_mean == speaking and result.n_windows_in_mean == sum(speaking) < 5
    kept = [s for s, m in zip(result.window_scores, speaking, strict=True) if m]
    assert result.score == pytest.approx(np.mean(kept))
    assert result.p_fake == pytest.approx(1 / (1 + np.exp(np.mean(kept))))
    assert flagged.in_mean == (True,) * flagged.n_windows  # no speech anywhere: all audible
    rows = result.to_dict()
    assert rows["n_windows_in_mean"] == sum(speaking)
    assert [w["in_mean"] for w in rows["windows"]] == list(speaking)
    assert rows["speech_found"] is True and rows["speech_seconds"] == result.speech_seconds
    assert [w["speech_seconds"] for w in rows["windows"]] == list(result.window_speech_seconds)
    # Off: nothing is measured and nothing is flagged.
    off = load_detector(lcnn_folder, device="cpu", min_speech_seconds=None)
    unchecked = off.score_waveform(tone, SR)
    assert unchecked.speech_seconds is None and unchecked.speech_found is None
    assert unchecked.to_dict()["windows"][0]["speech_seconds"] is None
    assert unchecked.score == pytest.approx(flagged.score)
    everything = off.score_waveform(mixed, SR)
    assert everything.in_mean == (True,) * 5
    assert everything.score == pytest.approx(np.mean(everything.window_scores))
    with pytest.raises(ValueError, match="min_speech_seconds"):
        load_detector(lcnn_folder, device="cpu", min_speech_seconds=-1)


def test_evaluation_never_runs_the_speech_check(lcnn_folder, monkeypatch):
    def unavailable():
        raise RuntimeError("the speech-activity model must not be loaded here")

    monkeypatch.setattr("dfa_lib.detector.scorer.load_speech_activity", unavailable)
    detector = load_detector(lcnn_folder, device="cpu")
    scores = detector.score_waves([noise(1.0, seed=1), noise(2.5, seed=2)])
    assert scores.shape == (2,) and np.isfinite(scores).all()
    (batch,) = detector.score_batch([noise(1.0, seed=1)], SR, input_checks=False)
    assert batch.speech_seconds is None
    with pytest.raises(RuntimeError, match="must not be loaded"):
        detector.score_waveform(noise(1.0, seed=1), SR)


def test_load_detectors_keeps_going_past_a_bad_folder(lcnn_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(lcnn_folder, broken)
    (broken / WEIGHTS_FILE).write_bytes(b"not safetensors")
    detectors, failed = load_detectors([lcnn_folder, broken, tmp_path / "gone"], device="cpu")
    assert list(detectors) == ["lcnn"] and isinstance(detectors["lcnn"], Detector)
    assert set(failed) == {"broken", "gone"}
    assert "not a readable safetensors file" in failed["broken"] and str(broken) in failed["broken"]
    assert "no such detector folder" in failed["gone"]
