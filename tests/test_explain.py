"""Where the detector listens: the occlusion map finds planted evidence; CLI and app show it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_detector import make_detector_folder, noise

from dfa_lib.cli import main
from dfa_lib.detector.explain import explain, explain_path
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.scorer import Detector
from dfa_lib.reporting.explain_plots import explanation_figure

SR = 16000
BAND = (1900.0, 2500.0)  # inside the fifth of the 8 mel-spaced occlusion bands (1768-2681 Hz)
TONE_HZ = 2200.0
GAIN = 50.0


def _band_power(waves: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mean power between BAND's edges in the second half of each input (batch, samples)."""
    x = torch.as_tensor(np.asarray(waves), dtype=torch.float64)
    half = x[:, x.shape[1] // 2 :]
    spectrum = torch.fft.rfft(half, dim=1).abs().pow(2)
    freqs = torch.fft.rfftfreq(half.shape[1], 1.0 / SR)
    inside = (freqs >= BAND[0]) & (freqs < BAND[1])
    return 2.0 * spectrum[:, inside].sum(dim=1) / half.shape[1] ** 2


class BandProbe(torch.nn.Module):
    """Logits [real, fake] with fake = GAIN x the band power of the input's second half.

    ``towards="real"`` puts that evidence on the real logit instead.
    """

    input_samples = None

    def __init__(self, towards: str = "fake") -> None:
        super().__init__()
        self.towards = towards

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        evidence = GAIN * _band_power(waves).to(waves.dtype)
        zero = torch.zeros_like(evidence)
        pair = (zero, evidence) if self.towards == "fake" else (evidence, zero)
        return torch.stack(pair, dim=1)


class ClassicalBandProbe:
    """The same rule as a classical model: ``score`` returns bona fide scores directly."""

    def score(self, waves: np.ndarray) -> np.ndarray:
        return -GAIN * _band_power(waves).numpy()


def _detector(model, clip_seconds: float) -> Detector:
    config = {
        "model": {"name": "band_probe"},
        "preprocessing": {"sample_rate": SR, "clip_seconds": clip_seconds},
        "threshold": 0.0,
    }
    return Detector(model, config, device="cpu", min_speech_seconds=None)


def _planted(seconds: float, tone_from: float) -> np.ndarray:
    """Quiet noise with a 2.2 kHz tone from ``tone_from`` seconds to the end."""
    wave = noise(seconds, seed=7, amplitude=0.05)
    t = np.arange(wave.size) / SR
    wave += np.where(t >= tone_from, 0.3 * np.sin(2 * np.pi * TONE_HZ * t), 0.0).astype(np.float32)
    return wave


def _band_of(explanation, hz: float) -> int:
    return int(np.searchsorted(explanation.band_edges, hz, side="right") - 1)


def _patches_within(explanation, start: float, end: float) -> np.ndarray:
    edges = explanation.patch_edges
    return (edges[:-1] >= start - 1e-9) & (edges[1:] <= end + 1e-9)


def test_saliency_peaks_where_the_evidence_is_and_says_which_way_it_pushes():
    wave = _planted(2.0, tone_from=1.0)
    towards_fake = explain(_detector(BandProbe("fake"), 2.0), wave, SR)
    band = _band_of(towards_fake, TONE_HZ)
    assert towards_fake.band_edges[band] <= BAND[0] and BAND[1] <= towards_fake.band_edges[band + 1]
    second_half = _patches_within(towards_fake, 1.0, 2.0)
    saliency = towards_fake.saliency
    assert saliency.shape == (8, 4) and np.abs(saliency).max() == pytest.approx(1.0)
    # Each second-half patch holds half the tone: removing it halves the evidence.
    assert saliency[band, second_half].min() > 0.9
    assert towards_fake.patch_saliency[band, second_half] == pytest.approx(
        [GAIN * 0.045 / 2] * 2, rel=0.1
    )
    elsewhere = np.ones_like(saliency, dtype=bool)
    elsewhere[band, second_half] = False
    assert np.abs(saliency[elsewhere]).max() < 0.05
    # On the spectrogram's grid the map keeps its sign and its place.
    grid = towards_fake.saliency_map()
    assert grid.shape == towards_fake.spectrogram_db.shape == (64, 201)
    peak_band, peak_frame = np.unravel_index(np.argmax(grid), grid.shape)
    assert BAND[0] - 300 <= towards_fake.mel_frequencies[peak_band] <= BAND[1] + 300
    assert towards_fake.frame_times[peak_frame] >= 1.0

    towards_real = explain(_detector(BandProbe("real"), 2.0), wave, SR)
    assert towards_real.saliency[band, second_half].max() < -0.9  # the same place, other sign


def test_any_scorer_works_and_windows_share_patches():
    # 4 s in 2-s windows every second: the probe hears the tone only in the last window.
    wave = _planted(4.0, tone_from=3.0)
    detector = _detector(ClassicalBandProbe(), 2.0)
    explanation = explain(detector, wave, SR, hop_seconds=1.0, fill="median")
    verdict = detector.score_waveform(wave, SR, hop_seconds=1.0)
    assert explanation.result.window_scores == verdict.window_scores
    assert explanation.result.window_starts == (0.0, 1.0, 2.0)
    band = _band_of(explanation, TONE_HZ)
    last_second = _patches_within(explanation, 3.0, 4.0)
    assert explanation.saliency[band, last_second].min() > 0.9
    assert np.abs(explanation.saliency[:, ~last_second]).max() < 0.05
    # The same rule as a network gives the same map.
    network = explain(_detector(BandProbe(), 2.0), wave, SR, hop_seconds=1.0, fill="median")
    np.testing.assert_allclose(network.patch_saliency, explanation.patch_saliency, atol=1e-3)


@pytest.fixture(scope="module")
def lcnn_folder(tmp_path_factory) -> Path:
    return make_detector_folder(tmp_path_factory.mktemp("det") / "lcnn", clip_seconds=1.0)


def test_a_file_explained_matches_its_score_and_writes_json(lcnn_folder, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, noise(2.5, seed=3), SR, subtype="PCM_16")
    detector = load_detector(lcnn_folder, device="cpu", min_speech_seconds=None)
    explanation = explain_path(detector, path, max_seconds=2.0)
    scored = detector.score_path(path)
    assert explanation.result.window_scores == scored.window_scores
    assert explanation.result.window_p_fake == scored.window_p_fake
    assert explanation.explained_seconds == 2.0 and explanation.patch_edges[-1] == 2.0
    assert explanation.spectrogram_db.shape[1] == 201  # the first 2 s only
    data = json.loads(json.dumps(explanation.to_dict()))
    assert [w["score"] for w in data["verdict"]["windows"]] == list(scored.window_scores)
    assert len(data["saliency"]) == 8 and len(data["saliency"][0]) == 4
    assert max(abs(v) for row in data["saliency"] for v in row) == pytest.approx(1.0)
    assert data["scale"] > 0 and data["saliency_meaning"].startswith("drop of the fake-vs-real")
    fig = explanation_figure(explanation)
    assert len(fig.axes) == 5 and all(ax.has_data() for ax in fig.axes[:3])


def test_settings_out_of_range_are_named(lcnn_folder):
    detector = load_detector(lcnn_folder, device="cpu", min_speech_seconds=None)
    wave = noise(1.0)
    for settings, word in (
        ({"bands": 0}, "bands"),
        ({"patch_seconds": 0.001}, "patch_seconds"),
        ({"fill": "noise"}, "fill"),
        ({"max_seconds": -1}, "max_seconds"),
    ):
        with pytest.raises(ValueError, match=word):
            explain(detector, wave, SR, **settings)
    other = detector.score_waveform(noise(2.0), SR)
    with pytest.raises(ValueError, match="not this waveform's"):
        explain(detector, wave, SR, result=other)


def test_predict_explain_writes_files_and_a_bad_file_only_its_row(lcnn_folder, tmp_path, capsys):
    good = tmp_path / "in" / "good.wav"
    good.parent.mkdir()
    sf.write(good, noise(1.5, seed=1), SR, subtype="PCM_16")
    twin = tmp_path / "in" / "other" / "good.wav"  # same file name, another folder
    twin.parent.mkdir()
    sf.write(twin, noise(1.0, seed=2), SR, subtype="PCM_16")
    corrupt = tmp_path / "in" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(200))
    out = tmp_path / "explained"
    argv = [str(good), str(corrupt), str(twin), "--model", str(lcnn_folder), "--format", "jsonl"]
    status = main(["predict", *argv, "--min-speech", "off", "--explain", str(out)])
    assert status == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["error"] is None for r in rows] == [True, False, True]
    assert sorted(p.name for p in out.iterdir()) == [
        "good.wav-2.explain.json",
        "good.wav-2.explain.png",
        "good.wav.explain.json",
        "good.wav.explain.png",
    ]
    first = json.loads((out / "good.wav.explain.json").read_text())
    assert first["path"] == str(good)
    assert [w["p_fake"] for w in first["verdict"]["windows"]] == [
        w["p_fake"] for w in rows[0]["windows"]
    ]
    assert json.loads((out / "good.wav-2.explain.json").read_text())["path"] == str(twin)
    assert (out / "good.wav.explain.png").read_bytes()[:4] == b"\x89PNG"


def _explain_page(folder: str, data: bytes) -> None:
    import streamlit as st

    from dfa_lib.app import streamlit_app as app
    from dfa_lib.detector.loading import load_detector

    detector = load_detector(folder, device="cpu", min_speech_seconds=None)
    app._score_and_show(st, detector, data, "clip.wav", 5)


def test_the_app_shows_the_explanation_when_asked(lcnn_folder):
    from streamlit.testing.v1 import AppTest

    from dfa_lib.app.streamlit_app import EXPLAIN_LABEL

    buffer = io.BytesIO()
    sf.write(buffer, noise(1.0, seed=5), SR, format="WAV")
    page = AppTest.from_function(
        _explain_page, args=(str(lcnn_folder), buffer.getvalue()), default_timeout=60
    )
    at = page.run()
    assert not at.exception
    images_before = len(at.get("image"))
    box = at.checkbox(key="explain")
    assert box.label == EXPLAIN_LABEL and not box.value
    at = box.check().run()
    assert not at.exception
    assert len(at.get("image")) == images_before + 1
    assert any("pushes the verdict towards fake" in c.value for c in at.caption)
