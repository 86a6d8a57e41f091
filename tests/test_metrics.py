"""Tests for dfa_lib.scoring.metrics against hand-computed cases and brute-force references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dfa_lib.scoring.metrics import (
    EER,
    MetricError,
    ScoreFileError,
    breakdown,
    calibration_error_of_table,
    classification_summary,
    cllr,
    det_curve,
    eer_bootstrap_ci,
    eer_by_generator,
    eer_by_group,
    equal_error_rate,
    expected_calibration_error,
    labels_from_scores,
    min_cllr,
    read_scores_asvspoof2019,
    read_scores_asvspoof2021,
    reliability_table,
    roc_auc,
    summarize_scores,
    write_scores_asvspoof2019,
    write_scores_asvspoof2021,
)


def _naive_det(bona: np.ndarray, spoof: np.ndarray) -> tuple[list, list, list]:
    """DET rates by looping over candidate thresholds one at a time."""
    thresholds = sorted(set(bona.tolist()) | set(spoof.tolist()))
    thresholds.append(np.nextafter(thresholds[-1], np.inf))
    frr = [float(np.mean(bona < t)) for t in thresholds]
    far = [float(np.mean(spoof >= t)) for t in thresholds]
    return frr, far, thresholds


def _naive_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    """The documented EER rule written as a plain loop."""
    frr, far, _ = _naive_det(bona, spoof)
    for j in range(1, len(frr)):
        if frr[j] >= far[j]:
            if frr[j] == far[j]:
                return frr[j]
            d_lo, d_hi = frr[j - 1] - far[j - 1], frr[j] - far[j]
            w = -d_lo / (d_hi - d_lo)
            return frr[j - 1] + w * (frr[j] - frr[j - 1])
    raise AssertionError("the DET curve always reaches FRR >= FAR")


# ---------------------------------------------------------------- EER: hand-computed cases


def test_perfect_separation_gives_zero_at_lowest_bonafide_score() -> None:
    result = equal_error_rate([2.0, 3.0, 5.0], [-1.0, 0.0, 1.0])
    assert result == EER(eer=0.0, threshold=2.0)


def test_fully_inverted_scores_give_one() -> None:
    assert equal_error_rate([-1.0, 0.0], [1.0, 2.0]).eer == 1.0


def test_all_scores_tied_give_one_half() -> None:
    result = equal_error_rate([0.3] * 4, [0.3] * 7)
    assert result.eer == 0.5
    # Both operating points are equally far from the diagonal; the lower (accept all) is kept.
    assert result.threshold == 0.3


def test_hand_worked_example_with_operating_point_on_the_diagonal() -> None:
    # thresholds 0.1 0.2 0.3 0.6 0.9 0.95: at 0.6, bona fide 0.1 rejected (FRR 1/3) and
    # spoof 0.95 accepted (FAR 1/3).
    result = equal_error_rate([0.9, 0.6, 0.1], [0.2, 0.3, 0.95])
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == 0.6


def test_hand_worked_example_crossing_a_vertical_segment() -> None:
    # At 1.5: FRR 1/3, FAR 1/2. At 2: FRR 1/3, FAR 0. The segment between them crosses the
    # diagonal at 1/3 (ASVspoof's argmin-mean would say 5/12); 1.5 is nearer the diagonal.
    result = equal_error_rate([1.0, 2.0, 3.0], [0.0, 1.5])
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == 1.5


def test_hand_worked_example_with_ties_across_classes() -> None:
    # Score 1 is held by two bona fide clips and one spoof clip, so the curve jumps from
    # (FRR 1/4, FAR 1) at threshold 1 to (FRR 3/4, FAR 1/2) at threshold 2 in one step;
    # the segment meets FRR = FAR at 5/8.
    result = equal_error_rate([0.0, 1.0, 1.0, 3.0], [1.0, 2.0])
    assert result.eer == pytest.approx(5 / 8)
    assert result.threshold == 2.0


def test_det_curve_hand_worked() -> None:
    frr, far, thresholds = det_curve([0.0, 1.0, 1.0, 3.0], [1.0, 2.0])
    np.testing.assert_allclose(frr, [0, 0.25, 0.75, 0.75, 1])
    np.testing.assert_allclose(far, [1, 1, 0.5, 0, 0])
    np.testing.assert_array_equal(thresholds[:-1], [0.0, 1.0, 2.0, 3.0])
    assert 3.0 < thresholds[-1] < 3.0 + 1e-12


def test_det_curve_and_eer_match_brute_force_on_heavily_tied_scores() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        bona = rng.integers(-3, 6, size=rng.integers(1, 25)).astype(float)
        spoof = rng.integers(-5, 4, size=rng.integers(1, 25)).astype(float)
        frr, far, thresholds = det_curve(bona, spoof)
        ref_frr, ref_far, ref_thr = _naive_det(bona, spoof)
        np.testing.assert_allclose(frr, ref_frr)
        np.testing.assert_allclose(far, ref_far)
        np.testing.assert_array_equal(thresholds, ref_thr)
        result = equal_error_rate(bona, spoof)
        assert result.eer == pytest.approx(_naive_eer(bona, spoof))
        # The threshold is where |FRR - FAR| is smallest (first such point on a tie).
        assert result.threshold == ref_thr[int(np.argmin(np.abs(np.subtract(ref_frr, ref_far))))]


def test_eer_does_not_depend_on_score_order() -> None:
    rng = np.random.default_rng(1)
    bona = rng.integers(0, 5, size=40).astype(float)
    spoof = rng.integers(-2, 3, size=30).astype(float)
    reference = equal_error_rate(bona, spoof)
    assert equal_error_rate(rng.permutation(bona), rng.permutation(spoof)) == reference


def test_eer_of_gaussian_scores_matches_theory_on_a_million_scores() -> None:
    rng = np.random.default_rng(0)
    bona = rng.normal(1.0, 1.0, 1_000_000)
    spoof = rng.normal(-1.0, 1.0, 1_000_000)
    result = equal_error_rate(bona, spoof)
    # Two unit Gaussians two apart cross at 0 with EER = Phi(-1) = 0.1587.
    assert result.eer == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), abs=2e-3)
    assert abs(result.threshold) < 0.01


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("bona", "spoof", "message"),
    [
        ([], [0.1, 0.2], "empty"),
        ([0.1, 0.2], [], "empty"),
        ([0.1, float("nan")], [0.2], "NaN"),
        ([0.1], [0.2, float("inf")], "infinite"),
        ([[0.1, 0.2]], [0.2], "1-D"),
        (["a"], [0.2], "numbers"),
    ],
)
def test_bad_scores_raise_metric_error(bona: list, spoof: list, message: str) -> None:
    for function in (equal_error_rate, det_curve, roc_auc, eer_bootstrap_ci):
        with pytest.raises(MetricError, match=message):
            function(bona, spoof)


def test_metric_error_is_a_value_error() -> None:
    assert issubclass(MetricError, ValueError)
    assert issubclass(ScoreFileError, MetricError)


def test_one_class_only_in_labels_is_a_clear_error() -> None:
    with pytest.raises(MetricError, match=r"spoof \(fake\) scores is empty"):
        summarize_scores([0.1, 0.5, 0.9], ["real", "real", "real"])


def test_unknown_or_boolean_labels_are_rejected() -> None:
    with pytest.raises(MetricError, match="unknown value"):
        summarize_scores([0.1, 0.9], ["real", "maybe"])
    with pytest.raises(MetricError, match="0 \\(real\\) or 1 \\(fake\\)"):
        summarize_scores([0.1, 0.9], np.array([0, 2]))
    with pytest.raises(MetricError, match="dtype bool"):
        summarize_scores([0.1, 0.9], np.array([True, False]))
    with pytest.raises(MetricError, match="differ in length"):
        summarize_scores([0.1, 0.9, 0.3], ["real", "fake"])


def test_bootstrap_arguments_are_checked() -> None:
    with pytest.raises(MetricError, match="n_boot"):
        eer_bootstrap_ci([1.0], [0.0], n_boot=0)
    with pytest.raises(MetricError, match="confidence"):
        eer_bootstrap_ci([1.0], [0.0], confidence=95)


# ---------------------------------------------------------------- bootstrap


def _overlapping_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)


def test_bootstrap_interval_contains_estimate_and_is_deterministic() -> None:
    bona, spoof = _overlapping_scores(400)
    point = equal_error_rate(bona, spoof).eer
    low, high = eer_bootstrap_ci(bona, spoof, n_boot=300, seed=7)
    assert 0.0 <= low < point < high <= 1.0
    assert eer_bootstrap_ci(bona, spoof, n_boot=300, seed=7) == (low, high)
    assert eer_bootstrap_ci(bona, spoof, n_boot=300, seed=8) != (low, high)
    narrow = eer_bootstrap_ci(bona, spoof, n_boot=300, confidence=0.5, seed=7)
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_replicate_equals_eer_of_the_resampled_scores() -> None:
    # With one replicate the interval collapses to that replicate's EER; redrawing the same
    # indices (bona fide first, then spoof) checks the vectorised counting against the
    # plain EER of the resampled arrays, ties from repeated draws included.
    bona, spoof = _overlapping_scores(50, seed=2)
    rng = np.random.default_rng(11)
    pick_bona = rng.integers(0, bona.size, size=(1, bona.size))[0]
    pick_spoof = rng.integers(0, spoof.size, size=(1, spoof.size))[0]
    expected = equal_error_rate(bona[pick_bona], spoof[pick_spoof]).eer
    low, high = eer_bootstrap_ci(bona, spoof, n_boot=1, seed=11)
    assert low == pytest.approx(expected)
    assert high == pytest.approx(expected)


def test_bootstrap_of_separable_scores_is_zero() -> None:
    assert eer_bootstrap_ci([5.0, 6.0, 7.0], [0.0, 1.0], n_boot=50) == (0.0, 0.0)


# ---------------------------------------------------------------- AUC


def test_roc_auc_reference_cases() -> None:
    assert roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert roc_auc([1.0, 1.0], [1.0]) == 0.5
    # pairs: (2 vs 1) win, (2 vs 2) half, (0 vs 1) loss, (0 vs 2) loss -> 1.5 / 4
    assert roc_auc([2.0, 0.0], [1.0, 2.0]) == pytest.approx(0.375)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(5)
    bona = rng.integers(0, 10, size=300).astype(float)
    spoof = rng.integers(-3, 7, size=200).astype(float)
    y_true = np.r_[np.ones(bona.size), np.zeros(spoof.size)]
    assert roc_auc(bona, spoof) == pytest.approx(roc_auc_score(y_true, np.r_[bona, spoof]))


# ---------------------------------------------------------------- decisions and summaries


def test_classification_summary_hand_worked() -> None:
    truth = ["real", "real", "real", "fake", "fake"]
    pred = ["real", "real", "fake", "fake", "real"]
    summary = classification_summary(truth, pred)
    assert summary["n"] == 5
    assert summary["accuracy"] == pytest.approx(3 / 5)
    assert summary["confusion_matrix"] == [[2, 1], [1, 1]]
    real, fake = summary["per_class"]["real"], summary["per_class"]["fake"]
    assert (real["precision"], real["recall"], real["support"]) == (2 / 3, 2 / 3, 3)
    assert (fake["precision"], fake["recall"], fake["support"]) == (1 / 2, 1 / 2, 2)
    assert real["f1"] == pytest.approx(2 / 3)
    assert fake["f1"] == pytest.approx(1 / 2)
    assert summary["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert "real" in summary["report"] and "fake" in summary["report"]
    assert "accuracy" in summary["report"]


def test_classification_summary_accepts_integer_and_mixed_labels() -> None:
    as_strings = classification_summary(["real", "fake", "fake"], ["fake", "fake", "real"])
    as_ints = classification_summary(np.array([0, 1, 1]), np.array([1, 1, 0]))
    mixed = classification_summary(["real", 1, "fake"], [1, "fake", 0])
    assert as_strings == as_ints == mixed


def test_classification_summary_never_predicting_a_class_gives_zero_precision() -> None:
    summary = classification_summary(["real", "fake"], ["fake", "fake"])
    assert summary["per_class"]["real"]["precision"] == 0.0
    assert summary["confusion_matrix"] == [[0, 1], [0, 1]]


def test_labels_from_scores_accepts_at_the_threshold() -> None:
    assert labels_from_scores([0.0, 0.5, 1.0], 0.5).tolist() == ["fake", "real", "real"]


def test_summarize_scores_hand_worked() -> None:
    scores = [0.9, 0.6, 0.1, 0.2, 0.3, 0.95]
    labels = ["real", "real", "real", "fake", "fake", "fake"]
    summary = summarize_scores(scores, labels, n_boot=200)
    assert summary["n"] == 6 and summary["n_real"] == 3 and summary["n_fake"] == 3
    assert summary["eer"] == pytest.approx(1 / 3)
    assert summary["eer_threshold"] == summary["threshold"] == 0.6
    assert summary["eer_ci_low"] <= summary["eer"] <= summary["eer_ci_high"]
    # At 0.6: real 0.1 rejected, fake 0.95 accepted -> 4 of 6 right.
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["frr"] == pytest.approx(1 / 3) and summary["far"] == pytest.approx(1 / 3)
    # 9 pairs: 0.9 beats 0.2, 0.3; 0.6 beats 0.2, 0.3; 0.1 beats none -> 4/9.
    assert summary["auc"] == pytest.approx(4 / 9)
    at_zero = summarize_scores(scores, labels, threshold=0.0, n_boot=0)
    assert at_zero["accuracy"] == 0.5 and at_zero["frr"] == 0.0 and at_zero["far"] == 1.0
    assert math.isnan(at_zero["eer_ci_low"])


# ---------------------------------------------------------------- breakdowns


@pytest.fixture
def tiny_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": [3.0, 2.0, 1.0, 0.5, 2.5, -1.0, 0.0, 1.5],
            "label": ["real"] * 3 + ["fake"] * 5,
            "generator": ["human"] * 3 + ["flite", "flite", "world", "world", "pico"],
            "language": ["en", "en", "cs", "en", "cs", "en", "cs", "de"],
        }
    )


def test_eer_by_generator_scores_each_generator_against_all_real_clips(
    tiny_scores: pd.DataFrame,
) -> None:
    table = eer_by_generator(tiny_scores).set_index("generator")
    assert list(table.index) == ["flite", "pico", "world"]
    assert (table["n_real"] == 3).all()
    assert table.loc["flite", "n_fake"] == 2 and table.loc["pico", "n_fake"] == 1
    for generator in table.index:
        fakes = tiny_scores.loc[tiny_scores["generator"] == generator, "score"]
        expected = equal_error_rate([3.0, 2.0, 1.0], fakes)
        assert table.loc[generator, "eer"] == pytest.approx(expected.eer)
        assert table.loc[generator, "threshold"] == expected.threshold
    # world's fakes (-1, 0) are all below every real clip.
    assert table.loc["world", "eer"] == 0.0
    assert table.loc["world", "auc"] == 1.0
    assert breakdown(tiny_scores, "generator").equals(eer_by_generator(tiny_scores))


def test_eer_by_group_marks_groups_without_both_classes(tiny_scores: pd.DataFrame) -> None:
    table = breakdown(tiny_scores, "language").set_index("language")
    assert list(table.index) == ["cs", "de", "en"]
    assert math.isnan(table.loc["de", "eer"])
    assert "no real clips" in table.loc["de", "note"]
    # en: real (3, 2) against fake (0.5, -1) -> perfectly separated.
    assert table.loc["en", "eer"] == 0.0 and table.loc["en", "note"] == ""
    # cs: real 1 against fakes 2.5 and 0 -> curve (0,1) (0,1/2) (1,1/2) (1,0): crossing 1/2.
    assert table.loc["cs", "eer"] == pytest.approx(0.5)
    assert table.equals(eer_by_group(tiny_scores, "language").set_index("language"))


def test_breakdown_by_language_and_generator_pairs_fakes_with_reals_of_their_language(
    tiny_scores: pd.DataFrame,
) -> None:
    table = breakdown(tiny_scores, ["language", "generator"], n_boot=20)
    row = table[(table["language"] == "en") & (table["generator"] == "flite")].iloc[0]
    assert (row["n_real"], row["n_fake"]) == (2, 1)
    assert row["eer"] == 0.0 and row["eer_ci_low"] == 0.0 and row["eer_ci_high"] == 0.0
    de = table[table["language"] == "de"].iloc[0]
    assert de["n_real"] == 0 and math.isnan(de["eer"]) and "no real clips" in de["note"]


def test_breakdown_names_missing_columns(tiny_scores: pd.DataFrame) -> None:
    with pytest.raises(MetricError, match="source"):
        breakdown(tiny_scores, "source")
    with pytest.raises(MetricError, match="generator"):
        eer_by_generator(tiny_scores, by="language")


# ---------------------------------------------------------------- score files


def test_asvspoof2019_score_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "scores" / "cm_2019.txt"
    scores = [0.1, -2.5e-7, 1 / 3, 12345.678901234]
    written = write_scores_asvspoof2019(
        path,
        ["a1", "a2", "a3", "a4"],
        ["asterisk-en", "flite", "espeak-ng", "human"],
        ["fake", "fake", "fake", 0],
        scores,
    )
    assert written == path
    lines = path.read_text().splitlines()
    assert lines[0].split()[:3] == ["a1", "asterisk-en", "spoof"]
    assert lines[3].split()[:3] == ["a4", "-", "bonafide"]
    table = read_scores_asvspoof2019(path)
    assert list(table.columns) == ["utt_id", "attack", "key", "score", "label"]
    assert table["utt_id"].tolist() == ["a1", "a2", "a3", "a4"]
    assert table["attack"].tolist() == ["asterisk-en", "flite", "espeak-ng", "-"]
    assert table["label"].tolist() == ["fake", "fake", "fake", "real"]
    assert table["score"].tolist() == scores  # exact: full precision is written
    assert [p.name for p in path.parent.iterdir()] == ["cm_2019.txt"]  # no temp file left


def test_asvspoof2021_score_file_round_trip_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "scores_2021.txt"
    path.write_text("old content\n")
    write_scores_asvspoof2021(path, ["x", "y"], np.array([0.25, -1e-12], dtype=np.float32))
    table = read_scores_asvspoof2021(path)
    assert table["utt_id"].tolist() == ["x", "y"]
    assert table["score"].tolist() == [0.25, float(np.float32(-1e-12))]
    assert path.read_text().splitlines()[0] == "x 0.25"


def test_score_writers_reject_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    with pytest.raises(ScoreFileError, match="whitespace"):
        write_scores_asvspoof2021(path, ["has space"], [0.1])
    with pytest.raises(ScoreFileError, match="differ in length"):
        write_scores_asvspoof2021(path, ["a", "b"], [0.1])
    with pytest.raises(MetricError, match="NaN"):
        write_scores_asvspoof2019(path, ["a"], ["flite"], ["fake"], [float("nan")])
    assert not path.exists()


def test_score_readers_point_at_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("a - bonafide 0.5\nb flite spoof\n")
    with pytest.raises(ScoreFileError, match=r"bad.txt:2: expected 4 columns"):
        read_scores_asvspoof2019(path)
    path.write_text("a - genuine 0.5\n")
    with pytest.raises(ScoreFileError, match="neither 'bonafide' nor 'spoof'"):
        read_scores_asvspoof2019(path)
    path.write_text("a 0.5\nb high\n")
    with pytest.raises(ScoreFileError, match=r"bad.txt:2: score 'high'"):
        read_scores_asvspoof2021(path)
    with pytest.raises(ScoreFileError, match="not found"):
        read_scores_asvspoof2021(tmp_path / "missing.txt")


# --- cluster bootstrap ---------------------------------------------------------------------


def _one_voice_slips_through(n_voices: int = 10, per_voice: int = 20):
    rng = np.random.default_rng(0)
    bona = rng.uniform(0.0, 1.0, 100)
    voices = np.repeat([f"v{i}" for i in range(n_voices)], per_voice)
    spoof = np.where(voices == "v0", 10.0, -10.0)  # v0 beats every real clip, the rest none
    return bona, spoof, voices


def test_cluster_bootstrap_widens_the_interval_when_errors_come_in_voices():
    bona, spoof, voices = _one_voice_slips_through()
    assert equal_error_rate(bona, spoof).eer == pytest.approx(0.1)
    by_clip = eer_bootstrap_ci(bona, spoof, n_boot=2000, seed=1)
    by_voice = eer_bootstrap_ci(bona, spoof, n_boot=2000, seed=1, spoof_groups=voices)
    # One clip at a time, the slipping clips' share stays near 10 % (binomial, 200 draws).
    assert 0.04 < by_clip[0] < 0.1 < by_clip[1] < 0.16
    # One voice at a time, a third of the replicates lack v0 (EER 0) and some draw it 3 times.
    assert by_voice[0] == 0.0 and by_voice[1] >= 0.2
    assert eer_bootstrap_ci(bona, spoof, n_boot=2000, seed=1, spoof_groups=voices) == by_voice


def test_cluster_bootstrap_of_single_clip_groups_matches_the_plain_one():
    rng = np.random.default_rng(3)
    bona, spoof = rng.normal(1.0, 1.0, 300), rng.normal(-1.0, 1.0, 200)
    plain = eer_bootstrap_ci(bona, spoof, n_boot=2000, seed=0)
    grouped = eer_bootstrap_ci(
        bona,
        spoof,
        n_boot=2000,
        seed=0,
        bonafide_groups=np.arange(300),
        spoof_groups=[f"clip{i}" for i in range(200)],
    )
    # Different draws of the same distribution: the two intervals agree closely.
    assert grouped[0] == pytest.approx(plain[0], abs=0.015)
    assert grouped[1] == pytest.approx(plain[1], abs=0.015)


def test_cluster_bootstrap_groups_must_fit_the_scores():
    bona, spoof, voices = _one_voice_slips_through()
    with pytest.raises(MetricError, match="spoof_groups has 199 labels for 200 scores"):
        eer_bootstrap_ci(bona, spoof, spoof_groups=voices[:-1])
    with pytest.raises(MetricError, match="one group"):
        eer_bootstrap_ci(bona, spoof, bonafide_groups=["same"] * bona.size)


def test_paired_difference_of_a_system_with_itself_is_exactly_zero():
    from dfa_lib.scoring.metrics import eer_difference_ci

    rng = np.random.default_rng(5)
    bona, spoof = rng.normal(1, 1, 200), rng.normal(-1, 1, 150)
    assert eer_difference_ci(bona, spoof, bona, spoof, n_boot=200) == (0.0, 0.0, 0.0)


def test_paired_difference_finds_a_gain_that_separate_intervals_hide():
    from dfa_lib.scoring.metrics import eer_difference_ci

    rng = np.random.default_rng(6)
    bona, spoof = rng.normal(1, 1, 300), rng.normal(-1, 1, 300)
    better_spoof = spoof - 0.3  # system B pushes every fake a little further down
    a, b = equal_error_rate(bona, spoof).eer, equal_error_rate(bona, better_spoof).eer
    diff, low, high = eer_difference_ci(bona, spoof, bona, better_spoof, n_boot=1000, seed=1)
    assert diff == pytest.approx(b - a) and diff < 0
    assert low < diff < high < 0  # the paired interval excludes "no difference"...
    ci_a = eer_bootstrap_ci(bona, spoof, n_boot=1000, seed=1)
    ci_b = eer_bootstrap_ci(bona, better_spoof, n_boot=1000, seed=1)
    assert ci_b[1] > ci_a[0]  # ...while the two separate intervals overlap


def test_paired_difference_over_voices_when_one_voice_makes_the_gain():
    from dfa_lib.scoring.metrics import eer_difference_ci

    bona, spoof_a, voices = _one_voice_slips_through()
    spoof_b = np.full_like(spoof_a, -10.0)  # B also catches v0
    by_clip = eer_difference_ci(bona, spoof_a, bona, spoof_b, n_boot=1000, seed=0)
    by_voice = eer_difference_ci(
        bona, spoof_a, bona, spoof_b, n_boot=1000, seed=0, spoof_groups=voices
    )
    assert by_clip[0] == by_voice[0] == pytest.approx(-0.1)
    assert by_clip[2] < 0  # clip by clip the gain looks certain
    assert by_voice[2] == 0.0  # a resample without v0 shows no gain at all
    with pytest.raises(MetricError, match="scored different clips"):
        eer_difference_ci(bona, spoof_a, bona[:-1], spoof_b)


def test_cllr_hand_computed_cases():
    log3 = np.log(3.0)
    # Each clip given odds of 3 to 1 for its true class: log2(1 + 1/3) for both classes.
    assert cllr([log3], [-log3]) == pytest.approx(np.log2(4 / 3))
    assert cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)  # no information, honestly stated
    assert cllr([-log3], [log3]) == pytest.approx(2.0)  # odds of 3 to 1 for the wrong class
    assert cllr([60.0], [-60.0]) == pytest.approx(0.0, abs=1e-20)
    # Large scores stay finite (log1p(exp(800)) would overflow).
    assert cllr([-800.0], [800.0]) == pytest.approx(800.0 / np.log(2.0))


def test_min_cllr_hand_computed_cases():
    assert min_cllr([1.0, 2.0], [-1.0, 0.5]) == 0.0  # separable: some monotone map is perfect
    assert min_cllr([0.0, 0.0], [0.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert min_cllr([-2.0, -1.0], [1.0, 2.0]) == pytest.approx(1.0)  # inverted: no monotone fix
    # Sorted: 0 spoof, 1 bona, 2 spoof, 3 bona. The violators pool into {1, 2} (one clip of
    # each: LLR 0, log 2 nats per clip); 0 and 3 are pure (pay nothing): (0.5 + 0.5) / 2 bits.
    assert min_cllr([1.0, 3.0], [0.0, 2.0]) == pytest.approx(0.5)


def test_min_cllr_depends_on_order_only_and_never_exceeds_cllr():
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(1.0, 1.0, 300), rng.normal(-1.0, 1.5, 200)
    base = min_cllr(bona, spoof)
    assert 0.0 < base < cllr(bona, spoof)
    assert min_cllr(3 * bona + 7, 3 * spoof + 7) == pytest.approx(base)
    assert min_cllr(np.exp(bona), np.exp(spoof)) == pytest.approx(base)
    # Scaling the same scores changes their calibration but not their order.
    assert cllr(10 * bona, 10 * spoof) > cllr(bona, spoof)
    assert min_cllr(10 * bona, 10 * spoof) == pytest.approx(base)


@pytest.mark.parametrize("metric", [cllr, min_cllr])
def test_calibration_metrics_refuse_one_class_and_bad_scores(metric):
    with pytest.raises(MetricError, match="empty"):
        metric([], [0.1, 0.2])
    with pytest.raises(MetricError):
        metric([0.1, np.nan], [0.2])


# --- calibration error and reliability table ----------------------------------------------


def test_reliability_table_hand_computed():
    # Ten equal-width bins: 0.12 -> bin 1, 0.34 -> bin 3, 0.88 -> bin 8.
    table = reliability_table([0.12, 0.34, 0.34, 0.88], ["real", "real", "fake", "fake"])
    assert list(table.columns) == ["bin", "lower", "upper", "mean_p_fake", "fake_rate", "count"]
    assert table["bin"].tolist() == list(range(10))
    assert table["lower"].tolist() == pytest.approx([i / 10 for i in range(10)])
    assert table["upper"].tolist() == pytest.approx([i / 10 for i in range(1, 11)])
    assert table["count"].tolist() == [0, 1, 0, 2, 0, 0, 0, 0, 1, 0]
    filled = table[table["count"] > 0]
    assert filled["mean_p_fake"].tolist() == pytest.approx([0.12, 0.34, 0.88])
    assert filled["fake_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert table.loc[table["count"] == 0, ["mean_p_fake", "fake_rate"]].isna().all().all()


def test_expected_calibration_error_hand_computed():
    labels = ["real", "real", "fake", "fake"]
    # Bin gaps 0.12, 0.16 and 0.12, weighted 1/4, 2/4 and 1/4.
    ece = 0.25 * 0.12 + 0.5 * 0.16 + 0.25 * 0.12
    assert expected_calibration_error([0.12, 0.34, 0.34, 0.88], labels) == pytest.approx(ece)
    assert expected_calibration_error([0.12, 0.34, 0.34, 0.88], [0, 0, 1, 1]) == pytest.approx(ece)
    # Calibrated: a quarter of the clips said 0.25 are fake.
    assert expected_calibration_error([0.25] * 4, [0, 0, 0, 1]) == pytest.approx(0.0)
    # One bin: the gap between the mean probability and the share of fakes.
    assert expected_calibration_error([0.9, 0.7, 0.2], [1, 0, 0], bins=1) == pytest.approx(
        0.6 - 1 / 3
    )
    # The ends land in the first and last bins; confident and right costs nothing.
    table = reliability_table([0.0, 1.0], ["real", "fake"], bins=4)
    assert table["count"].tolist() == [1, 0, 0, 1]
    assert expected_calibration_error([0.0, 1.0], ["real", "fake"]) == 0.0
    # Confident and wrong costs everything.
    assert expected_calibration_error([1.0, 0.0], ["real", "fake"]) == 1.0
    assert calibration_error_of_table(table) == 0.0


def test_expected_calibration_error_refuses_what_is_not_a_probability():
    with pytest.raises(MetricError, match=r"probabilities in \[0, 1\].*sigmoid\(-score\)"):
        expected_calibration_error([2.3, -1.0], ["real", "fake"])
    with pytest.raises(MetricError, match="NaN"):
        expected_calibration_error([0.5, np.nan], ["real", "fake"])
    with pytest.raises(MetricError, match="differ in length"):
        expected_calibration_error([0.5, 0.5], ["real"])
    with pytest.raises(MetricError, match="bins must be a positive integer"):
        expected_calibration_error([0.5], ["real"], bins=0)
    with pytest.raises(MetricError, match="empty"):
        reliability_table([], [])
