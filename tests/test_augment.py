"""Waveform augmentations: length, dtype, the SNR and RT60 they claim, seeding, the Augmenter."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dfa_lib.data import augment as A

SR = 16000


def voiced(seconds: float = 2.0, f0_start: float = 120.0, seed: int = 0) -> np.ndarray:
    """A speech-like test clip: a gliding harmonic series, syllable-rate envelope, some hiss."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_start + 60.0 * t / seconds) / SR
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)) ** 2
    hiss = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    x = harmonics * envelope + hiss
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * SR / x.size)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean64 = clean.astype(np.float64)
    noise = noisy.astype(np.float64) - clean64
    return float(10 * np.log10(np.mean(clean64**2) / np.mean(noise**2)))


POOL = [voiced(1.5, f0, seed=i) for i, f0 in enumerate((100.0, 150.0, 210.0, 260.0))]

# Every augmentation with fixed parameters, called with a seed: (name, function, output length).
CASES = {
    "white": (lambda x, r: A.add_noise(x, 10.0, r, "white"), None),
    "pink": (lambda x, r: A.add_noise(x, 10.0, r, "pink"), None),
    "babble": (lambda x, r: A.add_noise(x, 10.0, r, "babble", POOL), None),
    "gain": (lambda x, r: A.apply_gain(x, -6.0), None),
    "pitch": (lambda x, r: A.pitch_shift(x, SR, 2.0), None),
    "stretch": (lambda x, r: A.time_stretch(x, 1.1), None),
    "speed": (lambda x, r: A.change_speed(x, 0.9, keep_length=True), None),
    "crop": (lambda x, r: A.random_crop(x, 12000, r), 12000),
    "crop-longer": (lambda x, r: A.random_crop(x, 40000, r), 40000),
    "reverb": (lambda x, r: A.add_reverb(x, SR, r, 0.4, 5.0), None),
    "telephone": (lambda x, r: A.telephone_band(x, SR), None),
    "rawboost-convolutive": (lambda x, r: A.rawboost_convolutive(x, SR, r), None),
    "rawboost-impulsive": (lambda x, r: A.rawboost_impulsive(x, r), None),
    "rawboost-coloured": (lambda x, r: A.rawboost_coloured_noise(x, SR, r), None),
    "rawboost": (lambda x, r: A.rawboost(x, SR, r), None),
}
RANDOM_CASES = [
    "white",
    "pink",
    "babble",
    "crop",
    "reverb",
    "rawboost-convolutive",
    "rawboost-impulsive",
    "rawboost-coloured",
    "rawboost",
]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("n", [32001, 777])
def test_length_dtype_and_finite(name: str, n: int) -> None:
    func, length = CASES[name]
    x = voiced(n / SR + 1e-9)[:n]
    y = func(x, 0)
    assert y.dtype == np.float32
    assert y.shape == ((length,) if length else x.shape)
    assert np.all(np.isfinite(y))
    if name not in {"crop", "crop-longer"}:
        assert not np.array_equal(y, x), "the augmentation left the clip untouched"


@pytest.mark.parametrize("name", RANDOM_CASES)
def test_same_seed_same_output_other_seed_differs(name: str) -> None:
    func, _ = CASES[name]
    x = voiced(1.0)
    first, again = func(x, 7), func(x, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, func(x, 8))


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("target", [0.0, 5.0, 20.0])
def test_noise_has_the_snr_it_claims(kind: str, target: float) -> None:
    x = voiced(2.0)
    y = A.add_noise(x, target, 3, kind, POOL)
    assert snr_db(x, y) == pytest.approx(target, abs=0.01)


def test_pink_noise_falls_3_db_per_octave() -> None:
    noise = A.pink_noise(2**18, 0).astype(np.float64)
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / SR)
    low = power[(freqs >= 250) & (freqs < 500)].mean()
    high = power[(freqs >= 2000) & (freqs < 4000)].mean()
    # Three octaves up: mean power per bin 1/8, i.e. about -9 dB.
    assert 10 * np.log10(high / low) == pytest.approx(-9.0, abs=1.0)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-6)


def test_babble_without_pool_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="noise_pool"):
        A.add_noise(voiced(0.5), 10.0, 0, "babble")
    with pytest.raises(ValueError, match="unknown noise kind"):
        A.add_noise(voiced(0.5), 10.0, 0, "brown")


def test_silent_clip_gets_no_noise() -> None:
    silence = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(A.add_noise(silence, 10.0, 0), silence)


def test_gain_in_decibels() -> None:
    x = voiced(0.5)
    ratio = np.max(np.abs(A.apply_gain(x, -6.0))) / np.max(np.abs(x))
    assert 20 * np.log10(ratio) == pytest.approx(-6.0, abs=1e-4)


@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_moves_a_tone_by_the_interval(semitones: float) -> None:
    y = A.pitch_shift(tone(440.0), SR, semitones)
    assert peak_frequency(y) == pytest.approx(440.0 * 2 ** (semitones / 12), abs=2.0)


def test_time_stretch_changes_tempo_not_pitch() -> None:
    x = tone(440.0)
    slower = A.time_stretch(x, 0.8, keep_length=False)
    assert slower.size == round(x.size / 0.8)
    assert peak_frequency(slower) == pytest.approx(440.0, abs=2.0)
    # The sound lasts as long as the output: no silent tail from a wrong frame count.
    assert np.sqrt(np.mean(slower[-2000:] ** 2)) > 0.3


def test_change_speed_scales_pitch_and_duration() -> None:
    y = A.change_speed(tone(440.0), 1.1)
    assert y.size == round(SR / 1.1)
    assert peak_frequency(y) == pytest.approx(484.0, abs=2.0)


def test_random_crop_takes_a_contiguous_window() -> None:
    x = np.arange(1000, dtype=np.float32)
    y = A.random_crop(x, 100, 5)
    assert np.array_equal(np.diff(y), np.ones(99, dtype=np.float32))


def schroeder_rt60(rir: np.ndarray) -> float:
    """RT60 from the T20 slope of the Schroeder backward-integrated energy decay."""
    energy = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    start, stop = np.argmax(decay_db < -5), np.argmax(decay_db < -25)
    return 3.0 * (stop - start) / SR


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_room_impulse_response_rt60_and_drr(rt60: float) -> None:
    rir = A.room_impulse_response(SR, rt60, drr_db=6.0, rng=1)
    assert schroeder_rt60(rir) == pytest.approx(rt60, rel=0.15)
    direct, reverberant = rir[0] ** 2, np.sum(rir[1:].astype(np.float64) ** 2)
    assert 10 * np.log10(direct / reverberant) == pytest.approx(6.0, abs=0.01)


def test_reverb_keeps_level_and_smears_the_signal() -> None:
    x = voiced(1.0)
    y = A.add_reverb(x, SR, 2, rt60=0.6, drr_db=0.0)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    # An impulse comes out with a tail lasting hundreds of milliseconds.
    click = np.zeros(SR, dtype=np.float32)
    click[100] = 1.0
    tail = A.add_reverb(click, SR, 2, rt60=0.6, drr_db=0.0)
    assert np.abs(tail[100 + int(0.2 * SR) :][:800]).max() > 1e-3


def band_energy(x: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(power[(freqs >= low) & (freqs < high)].sum())


def test_telephone_band_removes_energy_outside_300_3400() -> None:
    noise = 0.1 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y = A.telephone_band(noise, SR)
    assert band_energy(y, 4000, 8000) < 1e-3 * band_energy(noise, 4000, 8000)
    assert band_energy(y, 0, 150) < 0.01 * band_energy(noise, 0, 150)
    assert band_energy(y, 500, 3000) == pytest.approx(band_energy(noise, 500, 3000), rel=0.1)


def test_rawboost_impulsive_noise_follows_the_signal() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[4000:12000] = voiced(0.5)
    y = A.rawboost_impulsive(x, 0, A.RawBoostConfig(impulsive_fraction=(0.05, 0.05)))
    assert np.array_equal(y[:4000], x[:4000]) and np.array_equal(y[12000:], x[12000:])
    changed = np.count_nonzero(y != x)
    assert 0.04 * 8000 < changed <= 0.05 * SR


def test_rawboost_coloured_noise_snr_in_range() -> None:
    x = voiced(1.0)
    cfg = A.RawBoostConfig(coloured_snr_db=(15.0, 15.0))
    assert snr_db(x, A.rawboost_coloured_noise(x, SR, 4, cfg)) == pytest.approx(15.0, abs=0.01)


def test_rawboost_convolutive_colours_the_spectrum_and_keeps_the_peak() -> None:
    x = 0.5 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y = A.rawboost_convolutive(x, SR, 3)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)
    # White input, filtered output: the band energies no longer match.
    ratios = [
        band_energy(y, lo, lo + 1000) / band_energy(x, lo, lo + 1000) for lo in range(0, 8000, 1000)
    ]
    assert max(ratios) / min(ratios) > 2.0
    with pytest.raises(ValueError, match="unknown RawBoost stage"):
        A.rawboost(x, SR, 0, stages=("convolutive", "shouting"))


def test_config_round_trip_and_validation() -> None:
    cfg = A.AugmentConfig(crop_seconds=2.0, noise_types=("white", "pink"))
    assert A.AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert A.AugmentConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="noise_p"):
        A.AugmentConfig(noise_p=1.5)
    with pytest.raises(ValueError, match="snr_db_range"):
        A.AugmentConfig(snr_db_range=(30.0, 5.0))
    with pytest.raises(ValueError, match="unknown codec"):
        A.AugmentConfig(codecs=(("vorbis", None),))
    with pytest.raises(ValueError, match="unknown AugmentConfig keys"):
        A.AugmentConfig.from_dict({"noise_probability": 0.3})
    off = A.AugmentConfig.off()
    x = voiced(1.0)
    np.testing.assert_array_equal(A.Augmenter(off)(x, 0), x)


def test_augmenter_babble_needs_a_pool() -> None:
    with pytest.raises(ValueError, match="noise_pool"):
        A.Augmenter(A.AugmentConfig())
    A.Augmenter(A.AugmentConfig(noise_types=("white", "pink")))


def everything_on(**overrides: object) -> A.AugmentConfig:
    probs = {f"{name}_p": 1.0 for name in ("stretch", "pitch", "reverb", "noise", "rawboost")}
    probs |= {"telephone_p": 1.0, "gain_p": 1.0, "codec_p": 0.0}
    return A.AugmentConfig(**(probs | overrides))


def test_augmenter_all_stages_length_seeding_and_peak() -> None:
    augmenter = A.Augmenter(everything_on(crop_seconds=1.5), seed=11, noise_pool=POOL)
    x = voiced(2.5)
    y, applied = augmenter.apply(x, augmenter.rng_for(epoch=0, index=3))
    assert y.dtype == np.float32 and y.shape == (24000,)
    assert np.max(np.abs(y)) <= 1.0
    assert [a.split(":")[0] for a in applied] == [
        "crop",
        "stretch",
        "pitch",
        "reverb",
        "noise",
        "rawboost",
        "telephone",
        "gain",
    ]
    again = augmenter(x, augmenter.rng_for(epoch=0, index=3))
    np.testing.assert_array_equal(y, again)
    assert not np.array_equal(y, augmenter(x, augmenter.rng_for(epoch=1, index=3)))
    assert not np.array_equal(y, augmenter(x, augmenter.rng_for(epoch=0, index=4)))
    other_seed = A.Augmenter(everything_on(crop_seconds=1.5), seed=12, noise_pool=POOL)
    assert not np.array_equal(y, other_seed(x, other_seed.rng_for(epoch=0, index=3)))


def test_augmenter_without_crop_keeps_length_and_short_clips_work() -> None:
    augmenter = A.Augmenter(everything_on(), seed=0, noise_pool=POOL)
    for n in (16000, 301):
        x = voiced(1.0)[:n]
        assert augmenter(x, n).shape == (n,)


def test_augmenter_probabilities_are_respected() -> None:
    cfg = A.AugmentConfig.off(gain_p=0.5)
    augmenter = A.Augmenter(cfg, seed=0)
    x = voiced(0.2)
    runs = [augmenter.apply(x, augmenter.rng_for(0, i))[1] for i in range(200)]
    share = sum(bool(r) for r in runs) / len(runs)
    assert 0.4 < share < 0.6


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_augmenter_codec_stage_uses_the_cache(tmp_path) -> None:
    cfg = A.AugmentConfig.off(codec_p=1.0, codecs=(("g722", None),), codec_cache_dir=tmp_path)
    assert json.loads(json.dumps(cfg.to_dict()))["codec_cache_dir"] == str(tmp_path)
    augmenter = A.Augmenter(cfg, seed=0)
    x = voiced(1.0)
    y, applied = augmenter.apply(x, 0)
    assert applied == ["codec:g722-default"]
    assert y.shape == x.shape and np.corrcoef(x, y)[0, 1] > 0.95
    assert len(list(tmp_path.rglob("*.npy"))) == 1
    np.testing.assert_array_equal(augmenter(x, 1), y)


def test_training_augmenter_draws_its_babble_pool_from_decodable_training_clips():
    from dfa_lib.data.clips import ClipStore

    waves = [np.full(800, 0.01 * (i + 1), dtype=np.float32) for i in range(10)]
    store = ClipStore.from_waves(waves, 16000)
    store.errors[3] = "could not decode"
    config = A.AugmentConfig.off(noise_p=1.0, noise_types=("babble",))
    aug = A.Augmenter.for_training(config, store, [1, 2, 3, 4, 5], seed=0, pool_size=4)
    levels = sorted(round(float(c[0]), 2) for c in aug.noise_pool)
    assert len(levels) <= 4 and set(levels) <= {0.02, 0.03, 0.05, 0.06}  # rows 1, 2, 4, 5
    again = A.Augmenter.for_training(config, store, [1, 2, 3, 4, 5], seed=0, pool_size=4)
    assert [c[0] for c in again.noise_pool] == [c[0] for c in aug.noise_pool]


def test_augmented_copies_extend_a_split_reproducibly():
    import pandas as pd

    from dfa_lib.data.clips import ClipStore

    waves = [voiced(1.0, f0_start=100 + 20 * i, seed=i) for i in range(4)]
    frame = pd.DataFrame(
        {
            "path": [f"c{i}.wav" for i in range(4)],
            "label": ["real", "fake", "real", "fake"],
            "sha256": ["h"] * 4,
        }
    )
    store = ClipStore.from_waves(waves, SR)
    store.errors[3] = "could not decode"
    config = A.AugmentConfig(codec_p=0.0, noise_p=1.0, noise_types=("white",))
    out, extended = A.with_augmented_copies(frame, store, config, seed=5)
    assert out["path"].tolist()[4:] == ["c0.wav#aug", "c1.wav#aug", "c2.wav#aug"]
    assert out["label"].tolist()[4:] == ["real", "fake", "real"]  # labels kept
    assert set(out["sha256"].iloc[4:]) == {""} and len(extended) == 7
    for k, i in enumerate([0, 1, 2]):
        assert np.array_equal(extended[i], store[i])  # the originals untouched
        assert extended[4 + k].shape == store[i].shape
        assert not np.allclose(extended[4 + k], store[i], atol=1e-3)  # noise was added
    again, extended_again = A.with_augmented_copies(frame, store, config, seed=5)
    assert np.array_equal(extended_again.samples, extended.samples)
    other_seed = A.with_augmented_copies(frame, store, config, seed=6)[1]
    assert not np.array_equal(other_seed.samples, extended.samples)
    only_first = A.with_augmented_copies(frame, store, config, seed=5, rows=[0])[0]
    assert only_first["path"].tolist()[4:] == ["c0.wav#aug"]
    with pytest.raises(ValueError, match="must match"):
        A.with_augmented_copies(frame.iloc[:3], store, config)
