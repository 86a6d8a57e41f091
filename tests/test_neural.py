"""Neural vocoders that install offline: output shape, level, alignment with the source, errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tone

from dfa_lib.data.audio import load_audio, resample
from dfa_lib.data.corpus import neural
from dfa_lib.data.corpus.neural import (
    HIFIGAN_22K_MEL,
    NEURAL_GENERATORS,
    hifigan_log_mel,
    hifigan_vocode,
)

CLIP_SECONDS = 1.5


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 1.5 s of espeak-ng speech at 16 kHz, peak 0.5."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    path = tmp_path_factory.mktemp("neural") / "speech.wav"
    subprocess.run([exe, "-w", str(path), "the quick brown fox jumps"], check=True)
    wave, _ = load_audio(path, target_sr=16000)
    wave = wave[: int(CLIP_SECONDS * 16000)]
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def _log_mel(wave: np.ndarray, sr: int) -> np.ndarray:
    """A 16 kHz log-mel used only to compare clips, independent of any vocoder's analysis."""
    import librosa

    x = resample(wave, sr, 16000)
    mel = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=160, n_mels=40)
    return np.log(mel + 1e-5)


def _mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[1], b.shape[1])
    return float(np.mean(np.abs(a[:, :n] - b[:, :n])))


def _require(name: str):
    generator = NEURAL_GENERATORS[name]
    if not generator.is_available():
        pytest.skip(f"{name} needs {generator.package}, which is not installed here")
    return generator


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", sorted(n for n, g in NEURAL_GENERATORS.items() if g.kind == "vocoder")
)
def test_vocoder_resynthesises_speech(name: str, speech: np.ndarray) -> None:
    generator = _require(name)
    out, sr = generator.callable(speech, 16000)

    assert sr == generator.sample_rate
    assert out.dtype == np.float32 and out.ndim == 1
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert abs(len(out) - round(len(speech) * sr / 16000)) <= 2
    # Level is restored to the input's, within the spread of a vocoder's reconstruction.
    rms_in, rms_out = np.sqrt(np.mean(speech**2)), np.sqrt(np.mean(out**2))
    assert 0.5 < rms_out / rms_in < 2.0
    # The output follows the source's spectrogram in time: far closer to it than noise of the
    # same level, or than the same speech played backwards (same spectrum, wrong order).
    source = _log_mel(speech, 16000)
    vocoded = _log_mel(out, sr)
    noise = np.random.default_rng(0).normal(0, rms_in, len(speech)).astype(np.float32)
    assert _mel_distance(source, vocoded) < 0.3 * _mel_distance(source, _log_mel(noise, 16000))
    reversed_speech = _log_mel(np.ascontiguousarray(speech[::-1]), 16000)
    assert _mel_distance(source, vocoded) < 0.5 * _mel_distance(source, reversed_speech)


@pytest.mark.slow
def test_vocoders_accept_other_rates_and_silence() -> None:
    _require("hifigan")
    _require("lpcnet")
    tone = make_tone(seconds=0.5, sr=22050, freq=300.0)
    out, sr = neural.lpcnet_vocode(tone, 22050)
    assert sr == 16000 and abs(len(out) - 8000) <= 2 and np.sqrt(np.mean(out**2)) > 1e-3
    silence = np.zeros(8000, dtype=np.float32)
    out, sr = hifigan_vocode(silence, 16000)
    assert sr == 22050 and np.all(np.isfinite(out)) and np.max(np.abs(out)) < 0.05


@pytest.mark.slow
def test_lpcnet_is_a_pure_function_of_its_input() -> None:
    # LPCNet samples from process-wide random generators; a clip's copy must not depend on
    # what was decoded before it (a corpus build with a worker pool relies on this).
    _require("lpcnet")
    tone = make_tone(seconds=0.4, sr=16000, freq=220.0)
    other = make_tone(seconds=0.3, sr=16000, freq=500.0)
    first, _ = neural.lpcnet_vocode(tone, 16000)
    neural.lpcnet_vocode(other, 16000)
    again, _ = neural.lpcnet_vocode(tone, 16000)
    np.testing.assert_array_equal(first, again)


@pytest.mark.slow
def test_fargan_copies_are_deterministic_and_aligned(speech: np.ndarray) -> None:
    _require("fargan")
    first, sr = neural.fargan_vocode(speech, 16000)
    again, _ = neural.fargan_vocode(speech, 16000)
    np.testing.assert_array_equal(first, again)
    # The copy lines up with its source: shifting it 20 ms either way moves it further off.
    source, copy = _log_mel(speech, 16000), _log_mel(first, sr)
    shift = 2  # frames of 10 ms
    aligned = _mel_distance(source, copy)
    assert aligned < _mel_distance(source[:, shift:], copy)
    assert aligned < _mel_distance(source, copy[:, shift:])


def test_log_mel_matches_the_training_analysis() -> None:
    pytest.importorskip("librosa")
    cfg = HIFIGAN_22K_MEL
    tone = make_tone(seconds=1.0, sr=cfg.sample_rate, freq=1000.0)
    mel = hifigan_log_mel(tone, cfg).numpy()
    assert mel.shape == (1, cfg.n_mels, len(tone) // cfg.hop)
    assert np.all(np.isfinite(mel))
    # The strongest band is the one whose centre is nearest 1 kHz.
    import librosa

    centres = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    strongest = int(np.argmax(mel[0].mean(axis=1)))
    assert abs(centres[strongest] - 1000.0) < 60.0
    # Silence sits at the log floor, not at minus infinity.
    floor = hifigan_log_mel(np.zeros(4096, dtype=np.float32), cfg).numpy()
    assert np.allclose(floor, np.log(cfg.clip), atol=1e-3)


@pytest.mark.parametrize(
    ("wave", "message"),
    [
        (np.zeros((2, 100), dtype=np.float32), "mono 1-D waveform"),
        (np.array([], dtype=np.float32), "empty waveform"),
        (np.full(100, np.nan), "NaN or infinite"),
    ],
    ids=["stereo", "empty", "nan"],
)
@pytest.mark.parametrize("vocode", [neural.lpcnet_vocode, neural.fargan_vocode])
def test_bad_waveforms_are_refused(wave: np.ndarray, message: str, vocode) -> None:
    with pytest.raises(ValueError, match=message):
        vocode(wave, 16000)


def test_unknown_hifigan_model_is_refused() -> None:
    with pytest.raises(ValueError, match="universal"):
        hifigan_vocode(make_tone(0.1), 16000, model="vctk")


def test_generators_are_loaded_once_per_process() -> None:
    _require("hifigan")
    assert neural._load_hifigan("universal") is neural._load_hifigan("universal")


def test_registry_describes_each_generator() -> None:
    families = {g.family for g in NEURAL_GENERATORS.values()}
    assert families == {"gan-vocoder", "codec-vocoder", "neural-tts"}
    for name, generator in NEURAL_GENERATORS.items():
        assert generator.name == name
        assert generator.kind in ("vocoder", "tts")
        assert generator.licence and generator.package.split(":")[0] in (
            "pypi",
            "debian",
            "debian-source",
        )
        assert callable(generator.callable)
    assert all(g in NEURAL_GENERATORS.values() for g in neural.available_generators())


def test_missing_weights_say_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(neural.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(neural.sys, "base_prefix", str(tmp_path))
    with pytest.raises(neural.NeuralGeneratorUnavailableError, match="pip install hifigan-ts"):
        neural._hifigan16k_checkpoint()
    assert not NEURAL_GENERATORS["hifigan-16k"].is_available()
