"""Relative phase shifts of harmonics (dfa_lib.features.harmonics) on signals whose phases are known."""

from __future__ import annotations

import numpy as np
import pytest

from dfa_lib.features.harmonics import (
    HarmonicsError,
    RPSConfig,
    relative_phase_shifts,
    rps_statistics,
)

SR = 16000
PHASES = np.array([0.3, -1.2, 2.5, 0.7, -2.8, 1.9, -0.4, 1.1, -1.7, 2.2, 0.0, -0.9])


def wrap(angle):
    return np.angle(np.exp(1j * np.asarray(angle)))


def harmonic_signal(f0=150.0, seconds=1.5, phases=PHASES, delay=0.0, vibrato=0.0, seed=None):
    """Twelve harmonics with the given phases at t = delay (optionally a slow F0 glide and
    phases redrawn every 10 ms, like a vocoder that invents them)."""
    t = np.arange(int(seconds * SR)) / SR - delay
    f_inst = f0 * (1 + vibrato * np.sin(2 * np.pi * 2 * t))
    cycle = 2 * np.pi * np.cumsum(f_inst) / SR
    out = np.zeros_like(t)
    rng = np.random.default_rng(seed) if seed is not None else None
    for k, phase in enumerate(phases, start=1):
        if rng is not None:
            phase = np.repeat(rng.uniform(-np.pi, np.pi, t.size // 160 + 1), 160)[: t.size]
        out += np.cos(k * cycle + phase) / k
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def test_the_rps_of_a_steady_harmonic_signal_is_its_phase_pattern() -> None:
    rps, f0 = relative_phase_shifts(harmonic_signal())
    assert rps.shape[1] == 11 and rps.shape[0] > 100
    assert np.median(f0) == pytest.approx(150.0, rel=0.01)
    expected = wrap(PHASES[1:] - np.arange(2, 13) * PHASES[0])
    middle = rps[10:-10]  # frames whose window lies inside the clip
    error = np.abs(wrap(middle - expected[None, :]))
    assert np.all(np.isfinite(middle)) and np.median(error) < 0.05 and error.max() < 0.3


def test_statistics_see_a_steady_pattern_and_do_not_move_with_a_delay() -> None:
    config = RPSConfig()
    steady, shifted = rps_statistics(
        [harmonic_signal(), harmonic_signal(delay=0.00237)], config, workers=1
    )
    n = config.n_harmonics - 1
    resultant, frame_resultant = steady[2 * n : 3 * n], steady[3 * n :]
    assert resultant.min() > 0.95 and frame_resultant.min() > 0.95
    expected = wrap(PHASES[1:] - np.arange(2, 13) * PHASES[0])
    mean_angle = np.arctan2(steady[n : 2 * n], steady[:n])
    assert np.abs(wrap(mean_angle - expected)).max() < 0.1
    # A delay of a fraction of a period changes every phase but not their relation.
    assert np.abs(shifted - steady).max() < 0.05


def test_invented_phases_leave_no_consistent_pattern() -> None:
    config = RPSConfig()
    stats = rps_statistics([harmonic_signal(seed=0), harmonic_signal(vibrato=0.05)], config)
    n = config.n_harmonics - 1
    random_phases, gliding = stats[0], stats[1]
    assert random_phases[2 * n : 3 * n].mean() < 0.3  # phases redrawn every 10 ms
    assert random_phases[3 * n :].mean() < 0.3
    # A gliding F0 with fixed harmonic phases keeps the pattern.
    assert gliding[2 * n : 3 * n].min() > 0.9


def test_harmonics_above_f_max_are_left_out() -> None:
    config = RPSConfig(f_max=1100.0)
    rps, f0 = relative_phase_shifts(harmonic_signal(f0=200.0), config)
    assert np.median(f0) == pytest.approx(200.0, rel=0.01)
    # 200 Hz x 2..5 < 1100 Hz; harmonics 6..12 are out of band in every frame.
    assert np.all(np.isfinite(rps[:, :4])) and np.all(np.isnan(rps[:, 4:]))
    stats = rps_statistics([harmonic_signal(f0=200.0)], config)[0].reshape(4, 11)
    assert np.all(stats[:, 4:] == 0) and np.all(stats[2, :4] > 0.9)


def test_clips_without_voice_give_zeros_not_errors() -> None:
    rng = np.random.default_rng(0)
    clips = [
        np.zeros(24000, np.float32),  # silence
        np.zeros(0, np.float32),  # empty
        np.full(8000, np.nan, np.float32),  # not finite
        (0.1 * rng.standard_normal(24000)).astype(np.float32),  # noise
        harmonic_signal(),
    ]
    stats = rps_statistics(clips, workers=2)
    assert stats.shape == (5, RPSConfig().n_features) and np.all(np.isfinite(stats))
    assert not stats[:3].any()
    assert stats[4].any()
    assert relative_phase_shifts(np.zeros(100))[0].shape == (0, 11)
    assert rps_statistics([]).shape == (0, 44)


def test_long_files_go_through_in_blocks_with_the_same_result(monkeypatch) -> None:
    from dfa_lib.features import harmonics

    wave = harmonic_signal(seconds=6.0, vibrato=0.05)
    whole = relative_phase_shifts(wave)
    monkeypatch.setattr(harmonics, "_FRAMES_PER_BLOCK", 7)
    blocks = relative_phase_shifts(wave)
    assert whole[0].shape[0] > 500
    assert np.array_equal(whole[0], blocks[0], equal_nan=True)


def test_threads_do_not_change_the_result() -> None:
    clips = [harmonic_signal(f0=f, seed=s) for f, s in [(120, None), (180, 1), (220, None)]] * 4
    assert np.array_equal(rps_statistics(clips, workers=1), rps_statistics(clips, workers=3))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"n_harmonics": 1}, "n_harmonics"),
        ({"f0_floor": 300.0, "f0_ceil": 200.0}, "f0_floor < f0_ceil"),
        ({"f_max": 9000.0}, "f_max"),
        ({"frame_period_ms": 0}, "positive"),
        ({"dio_speed": 0}, "dio_speed"),
    ],
)
def test_bad_settings_are_named(settings, message) -> None:
    with pytest.raises(HarmonicsError, match=message):
        RPSConfig(**settings)


def test_feature_names_follow_the_layout() -> None:
    names = RPSConfig(n_harmonics=3).feature_names()
    assert names == [
        "cos_2", "cos_3", "sin_2", "sin_3", "resultant_2", "resultant_3",
        "frame_resultant_2", "frame_resultant_3",
    ]  # fmt: skip
