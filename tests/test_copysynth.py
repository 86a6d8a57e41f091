"""Codec 2 copies of real training clips: what a copy keeps, the errors, the extended split,
and the training engine's ``vocoded_fakes``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dfa_lib.data import copysynth
from dfa_lib.data.clips import ClipStore
from dfa_lib.data.copysynth import (
    CODEC2_MODES,
    CopySynthesisError,
    codec2_copy,
    parse_modes,
    with_vocoded_fakes,
)
from dfa_lib.training.engine import TrainConfig, fingerprint, train

SR = 16000


def voiced(seconds: float = 1.5, f0: float = 130.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Speech-like: a harmonic series with vibrato under a syllable-rate envelope, some hiss."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = x * (0.2 + np.sin(2 * np.pi * 2.5 * t) ** 2)
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def envelope(x: np.ndarray, width: int = 80) -> np.ndarray:
    return np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(width) / width, mode="same"))


def envelope_lag(copy: np.ndarray, source: np.ndarray) -> int:
    a, b = envelope(source), envelope(copy)
    a, b = a - a.mean(), b - b.mean()
    return int(np.argmax(np.correlate(b, a, mode="full")) - (len(a) - 1))


def band_energy(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


@pytest.mark.parametrize("mode", ["3200", "1300", "700C"])
def test_a_copy_keeps_length_level_and_timing_but_is_not_the_input(mode):
    x = voiced()
    y = codec2_copy(x, SR, mode)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(x.astype(np.float64) ** 2)), rel=1e-3
    )
    # Aligned with its source within 10 ms (the coder alone delays it by 20 to 30 ms).
    assert abs(envelope_lag(y, x)) <= 160
    # Its loudness contour (20 ms windows) follows the source's; the waveform is rebuilt.
    assert np.corrcoef(envelope(x, 320), envelope(y, 320))[0, 1] > 0.8
    assert np.max(np.abs(y - x)) > 0.05
    # Codec 2 is narrowband: next to nothing is left above 4 kHz of a broadband input.
    hissy = x + 0.05 * np.random.default_rng(1).standard_normal(x.size).astype(np.float32)
    assert band_energy(hissy, 4200, 8000) > 0.05 * band_energy(hissy, 0, 4000)
    copy = codec2_copy(hissy, SR, mode)
    assert band_energy(copy, 4200, 8000) < 1e-3 * band_energy(copy, 0, 4000)


def test_copies_are_deterministic_and_modes_differ():
    x = voiced(seed=3)
    first = codec2_copy(x, SR, "1300")
    codec2_copy(voiced(seed=4), SR, "1300")  # Codec 2's random phases carry no state over
    assert np.array_equal(first, codec2_copy(x, SR, "1300"))
    assert not np.allclose(codec2_copy(x, SR, "3200"), codec2_copy(x, SR, "700C"))


def test_other_sample_rates_come_back_at_their_own_rate():
    x = voiced(sr=22050)
    y = codec2_copy(x, 22050, "3200")
    assert y.shape == x.shape and abs(envelope_lag(y, x)) <= 220


def test_silence_empty_and_bad_input():
    assert np.array_equal(codec2_copy(np.zeros(8000, np.float32), SR, "3200"), np.zeros(8000))
    assert codec2_copy(np.zeros(0, np.float32), SR, "3200").size == 0
    with pytest.raises(ValueError, match="mono"):
        codec2_copy(np.zeros((2, 8000), np.float32), SR, "3200")
    bad = voiced()
    bad[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec2_copy(bad, SR, "3200")
    with pytest.raises(ValueError, match="unknown Codec 2 mode.*'2000'.*3200"):
        codec2_copy(voiced(), SR, "2000")


def test_parse_modes():
    assert parse_modes("") == () and parse_modes(" , ") == ()
    assert parse_modes("3200, 700C") == ("3200", "700C")
    assert parse_modes(["450"]) == ("450",)
    with pytest.raises(ValueError, match="repeat"):
        parse_modes("3200,3200")
    with pytest.raises(ValueError, match="unknown"):
        parse_modes("3200,700c")
    assert set(CODEC2_MODES) == set(copysynth.CODEC2_DELAY)


def test_a_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(copysynth, "_library_name", lambda: "libnot-codec2.so.9")
    with pytest.raises(CopySynthesisError, match="apt-get install libcodec2-1.0"):
        codec2_copy(voiced(), SR, "3200")


def _split():
    waves = [voiced(1.0, f0=110 + 10 * i, seed=i) for i in range(6)]
    frame = pd.DataFrame(
        {
            "path": [f"training/{'real' if i % 2 == 0 else 'fake'}/{i}.wav" for i in range(6)],
            "label": ["real" if i % 2 == 0 else "fake" for i in range(6)],
            "speaker": [f"spk{i}" for i in range(6)],
            "generator": ["human" if i % 2 == 0 else "espeak-ng" for i in range(6)],
            "sha256": [f"h{i}" for i in range(6)],
        }
    )
    store = ClipStore.from_waves(waves, SR)
    return frame, store


def test_the_split_gains_one_copy_per_decoded_real_clip_modes_in_turn():
    frame, store = _split()
    store.errors[2] = "could not decode"  # a real clip that failed: no copy of it
    out, merged = with_vocoded_fakes(frame, store, "3200,700C")
    assert len(out) == len(merged) == 8
    pd.testing.assert_frame_equal(out.iloc[:6], frame)
    for i in range(6):
        assert np.array_equal(merged[i], store[i])
    added = out.iloc[6:]
    assert added["path"].tolist() == [
        "training/real/0.wav#codec2-3200",
        "training/real/4.wav#codec2-700C",
    ]
    assert set(added["label"]) == {"fake"}
    assert added["generator"].tolist() == ["codec2-3200", "codec2-700C"]
    assert added["speaker"].tolist() == ["codec2-3200:spk0", "codec2-700C:spk4"]
    assert set(added["sha256"]) == {""}
    assert np.allclose(merged[6], codec2_copy(store[0], SR, "3200"), atol=2e-4)
    assert np.allclose(merged[7], codec2_copy(store[4], SR, "700C"), atol=2e-4)
    assert merged.errors == {2: "could not decode"} and not merged.ok(2) and merged.ok(7)


def test_no_modes_leave_the_split_alone_and_mismatches_are_refused():
    frame, store = _split()
    out, same = with_vocoded_fakes(frame, store, "")
    assert out is frame and same is store
    with pytest.raises(ValueError, match="6 clips"):
        with_vocoded_fakes(frame.iloc[:5], store, "3200")


def test_the_engine_trains_on_the_copies_and_says_so(tmp_path):
    frame, store = _split()
    val_frame, val_store = _split()
    val_frame["path"] = "val/" + val_frame["path"]
    common = dict(model="ifd_logreg", clip_seconds=1.0, device="cpu")
    with_copies = TrainConfig(name="with", vocoded_fakes="3200,1300", **common)
    without = TrainConfig(name="without", **common)
    results = train(
        [with_copies, without], frame, val_frame, store, val_store, tmp_path, progress=False
    )
    prov = {r.config.name: json.loads((r.folder / "provenance.json").read_text()) for r in results}
    assert prov["with"]["n_vocoded_fakes"] == 3 and prov["with"]["n_train"] == 9
    assert prov["without"]["n_vocoded_fakes"] == 0 and prov["without"]["n_train"] == 6
    saved = json.loads((results[0].folder / "config.json").read_text())
    assert "3200,1300" in json.dumps(saved)
    # The setting is part of what decides reuse; its default leaves old folders valid.
    assert fingerprint(with_copies, "a", "b") != fingerprint(
        TrainConfig(name="with", **common), "a", "b"
    )
    with pytest.raises(ValueError, match="unknown Codec 2 mode"):
        TrainConfig(vocoded_fakes="64000")


def test_a_classical_model_fits_on_one_augmented_copy_of_each_clip_beside_the_copies(tmp_path):
    from dfa_lib.data.augment import AugmentConfig

    frame, store = _split()
    val_frame, val_store = _split()
    val_frame["path"] = "val/" + val_frame["path"]
    augment = AugmentConfig(codec_p=0.0, noise_p=1.0, noise_types=("white",)).to_dict()
    config = TrainConfig(
        name="both",
        model="ifd_logreg",
        clip_seconds=1.0,
        device="cpu",
        augment=augment,
        vocoded_fakes="3200",
    )
    [result] = train(config, frame, val_frame, store, val_store, tmp_path, progress=False)
    prov = json.loads((result.folder / "provenance.json").read_text())
    # 6 clips, 3 Codec 2 copies of the real ones, then one augmented copy of each original.
    assert prov["n_vocoded_fakes"] == 3 and prov["n_augmented_copies"] == 6
    assert prov["n_train"] == 15


def test_each_seed_gets_its_own_augmented_copies(tmp_path, monkeypatch):
    import dfa_lib.training.engine as engine_module
    from dfa_lib.data.augment import AugmentConfig

    frame, store = _split()
    val_frame, val_store = _split()
    val_frame["path"] = "val/" + val_frame["path"]
    seeds = []
    original = engine_module.with_augmented_copies

    def counted(frame, store, config, seed=0, rows=None):
        seeds.append(seed)
        return original(frame, store, config, seed, rows)

    monkeypatch.setattr(engine_module, "with_augmented_copies", counted)
    augment = AugmentConfig(codec_p=0.0, noise_p=1.0, noise_types=("white",)).to_dict()
    common = dict(model="ifd_logreg", clip_seconds=1.0, device="cpu", augment=augment)
    configs = [
        TrainConfig(name="a", seed=0, **common),
        TrainConfig(name="b", seed=0, **common),
        TrainConfig(name="c", seed=1, **common),
    ]
    train(configs, frame, val_frame, store, val_store, tmp_path, progress=False)
    assert seeds == [0, 1]  # made once for seed 0, again for seed 1
