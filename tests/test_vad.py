"""Speech activity: Silero VAD tells speech from tones and noise, streams, and fails clearly."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from dfa_lib.data.audio import load_audio, resample, save_audio
from dfa_lib.features import vad
from dfa_lib.features.vad import (
    MIN_SPEECH_SECONDS,
    SpeechActivity,
    SpeechActivityUnavailable,
    load_speech_activity,
    survey,
    survey_table,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("silero_vad") is None,
    reason="silero-vad is not installed (make setup installs it)",
)
SR = 16000


def non_speech(seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Loud sounds that are not speech: tones, a sweep, DTMF, clicks and noise."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    sounds = {
        "tone 150 Hz": 0.3 * np.sin(2 * np.pi * 150 * t),
        "tone 1 kHz": 0.3 * np.sin(2 * np.pi * 1000 * t),
        "sweep": 0.3 * np.sin(2 * np.pi * (100 * t + 400 * t**2)),
        "harmonics of 200 Hz": sum(0.1 / k * np.sin(2 * np.pi * 200 * k * t) for k in range(1, 20)),
        "dtmf": 0.2 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t)),
        "clicks": (np.arange(t.size) % 1600 == 0) * 0.9,
        "white noise": 0.1 * rng.standard_normal(t.size),
    }
    return {name: wave.astype(np.float32) for name, wave in sounds.items()}


@pytest.fixture(scope="module")
def activity() -> SpeechActivity:
    return load_speech_activity()


@pytest.fixture
def speech(speech_wav) -> np.ndarray:
    wave, sr = load_audio(speech_wav, target_sr=SR)
    assert sr == SR
    return wave


def test_speech_is_found_and_tones_clicks_and_noise_are_not(activity, speech):
    total, _ = activity.speech_seconds(speech, SR)
    assert total >= 0.5 * speech.size / SR  # most of an espeak-ng sentence is voiced
    for name, sound in non_speech().items():
        found, _ = activity.speech_seconds(sound, SR)
        assert found < MIN_SPEECH_SECONDS, f"{name}: {found:.3f} s of speech"


def test_level_rate_and_spans(activity, speech):
    loud = activity.probabilities(speech, SR)
    # Scaled to the reference level first: speech 45 dB down is found as before.
    quiet = activity.probabilities(speech / np.abs(speech).max() * 10 ** (-45 / 20), SR)
    np.testing.assert_allclose(quiet, loud, atol=1e-4)
    # 8 kHz is read natively (256-sample chunks), other rates go to 16 kHz.
    assert activity.chunk_seconds(8000) == activity.chunk_seconds(SR) == pytest.approx(0.032)
    at_8k, _ = activity.speech_seconds(resample(speech, SR, 8000), 8000)
    at_44k, _ = activity.speech_seconds(resample(speech, SR, 44100), 44100)
    reference, _ = activity.speech_seconds(speech, SR)
    assert at_8k == pytest.approx(reference, abs=0.2)
    assert at_44k == pytest.approx(reference, abs=0.1)
    # Speech after two seconds of noise: spans see it only where it is.
    wave = np.concatenate([non_speech(2.0)["white noise"] * 0.05, speech])
    spans = [(0, 2 * SR), (2 * SR, wave.size)]
    total, per_span = activity.speech_seconds(wave, SR, spans)
    assert per_span[0] < MIN_SPEECH_SECONDS < per_span[1]
    assert sum(per_span) == pytest.approx(total)
    # Overlapping spans count each chunk that starts inside them, as a direct count does.
    spans = [(start, start + SR) for start in range(0, wave.size, 2400)]
    _, per_span = activity.speech_seconds(wave, SR, spans)
    speech_chunks = activity.probabilities(wave, SR) >= vad.SPEECH_PROBABILITY
    starts = np.arange(speech_chunks.size) * 512
    direct = [0.032 * speech_chunks[(starts >= a) & (starts < b)].sum() for a, b in spans]
    np.testing.assert_allclose(per_span, direct)


def test_streaming_matches_the_model_on_the_whole_signal(activity, speech):
    """Chunk by chunk with the state carried equals the model's own whole-signal pass."""
    probs = activity.probabilities(speech, SR)
    assert probs.shape == (-(-speech.size // 512),)
    level = vad.loudest_frame_dbfs(speech, SR)
    scaled = speech * np.float32(10 ** ((vad.REFERENCE_DBFS - level) / 20))
    with torch.inference_mode():
        whole = activity._model.audio_forward(torch.from_numpy(scaled)[None], SR)[0].numpy()
    np.testing.assert_allclose(probs, whole, atol=1e-5)
    # The blockwise level is the level of the whole signal.
    long = np.tile(speech, 8)
    assert vad._loudest_frame_dbfs_blockwise(long, SR, block_frames=7) == pytest.approx(
        vad.loudest_frame_dbfs(long, SR)
    )


def test_waveforms_read_side_by_side_match_one_at_a_time(activity, speech):
    waves = [
        speech,
        np.zeros(SR, np.float32),
        non_speech(2.0)["tone 150 Hz"],
        speech[:100],
        np.tile(speech * 0.2, 3),
    ]
    together = activity.probabilities_many(waves, SR)
    for wave, probs in zip(waves, together, strict=True):
        np.testing.assert_allclose(probs, activity.probabilities(wave, SR), atol=1e-4)
    assert not together[1].any() and together[3].shape == (1,)


def test_long_waveforms_are_read_in_warmed_up_segments(activity, speech, monkeypatch):
    """Segments read side by side agree with one pass over the whole signal."""
    gap = non_speech(1.3)["white noise"] * 0.02
    wave = np.tile(np.concatenate([speech, gap]), 4)  # about 14 s
    whole = activity.probabilities(wave, SR)  # one segment: a single pass
    monkeypatch.setattr(vad, "SEGMENT_SECONDS", 3.0)
    segmented = activity.probabilities(wave, SR)  # five segments, four of them warmed up
    assert segmented.shape == whole.shape
    agree = (segmented >= vad.SPEECH_PROBABILITY) == (whole >= vad.SPEECH_PROBABILITY)
    assert agree.mean() > 0.98
    monkeypatch.setattr(vad, "WARM_UP_SECONDS", 0.0)
    cold = activity.probabilities(wave, SR)
    # The warm-up is what keeps segment starts close to the single pass.
    assert np.abs(segmented - whole).max() < np.abs(cold - whole).max()


def test_clips_measured_in_batches_keep_their_order_and_values(activity, speech):
    clips = [
        (speech, SR),
        (resample(speech, SR, 8000), 8000),
        (non_speech(1.0)["tone 1 kHz"], SR),
        (np.zeros(SR, np.float32), SR),
        (speech[: SR // 2], SR),
    ]
    measured = list(vad.with_speech_seconds(iter(clips), activity, batch=2))
    assert [(w is c[0], sr) for (w, sr, _), c in zip(measured, clips, strict=True)] == [
        (True, sr) for _, sr in clips
    ]
    one_by_one = [activity.speech_seconds(wave, sr)[0] for wave, sr in clips]
    assert [seconds for *_, seconds in measured] == pytest.approx(one_by_one, abs=0.07)
    assert list(vad.with_speech_seconds([], activity)) == []


def test_silence_short_and_bad_input(activity):
    assert not activity.probabilities(np.zeros(SR, np.float32), SR).any()
    assert activity.probabilities(np.zeros(0, np.float32), SR).shape == (1,)
    assert activity.probabilities(non_speech(0.01)["tone 1 kHz"], SR).shape == (1,)
    with pytest.raises(ValueError, match="mono"):
        activity.probabilities(np.zeros((2, SR), np.float32), SR)
    with pytest.raises(ValueError, match="sample rate"):
        activity.probabilities(np.zeros(SR, np.float32), 0)


def test_missing_or_broken_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(vad.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SpeechActivityUnavailable, match="pip install silero-vad.*--min-speech off"):
        SpeechActivity()
    broken = tmp_path / "silero_vad.jit"
    broken.write_bytes(b"not a TorchScript archive")
    with pytest.raises(SpeechActivityUnavailable, match="cannot load the speech-activity model"):
        SpeechActivity(broken)


def test_survey_of_a_small_corpus(tmp_path, speech, capsys):
    rows = []
    for i, (name, sound) in enumerate(list(non_speech(1.5).items())[:2]):
        rows.append((f"fake/{i}.wav", "fake", "tones", name, sound))
    rows.append(("real/speech.wav", "real", "human", "espeak", speech))
    for path, *_, wave in rows:
        save_audio(tmp_path / path, wave, SR)
    manifest = pd.DataFrame(
        [r[:4] for r in rows], columns=["path", "label", "generator", "source"]
    ).assign(split="testing")
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    clips = survey(manifest, tmp_path)
    assert list(clips.index) == list(manifest.index)
    assert clips.loc[2, "speech_seconds"] > 0.5 and clips.loc[:1, "speech_seconds"].max() == 0
    table = survey_table(clips)
    assert table.loc[("fake", "tones"), "flagged"] == 2
    assert table.loc[("real", "human"), "flagged"] == 0
    assert vad.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "flagged" in printed and "tones" in printed
    with pytest.raises(SystemExit) as stop:
        vad.main([str(tmp_path / "nowhere")])
    assert stop.value.code == 2 and "nowhere holds no manifest.csv" in capsys.readouterr().err
