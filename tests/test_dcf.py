"""Tests for dfa_lib.scoring.dcf: hand-computed costs, brute-force references, score files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfa_lib.scoring.dcf import (
    ASVSPOOF2019_TDCF,
    SHIM2024_ADCF,
    ADCFCostModel,
    ASVErrorRates,
    DCFCostModel,
    MinDetectionCost,
    TDCFCostModel,
    asv_error_rates,
    main,
    min_a_dcf,
    min_dcf,
    min_tdcf,
    read_asv_scores_asvspoof2019,
    read_asv_scores_asvspoof2021,
    read_sasv_scores,
    tdcf_coefficients,
)
from dfa_lib.scoring.metrics import MetricError, ScoreFileError, det_curve, det_rates

# Three bona fide and three spoof CM scores, interleaved. Sorted: 0.1 s, 0.2 b, 0.4 s, 0.6 b,
# 0.7 s, 0.9 b. Accepting score >= t, the rates at each threshold are
#   t      0.1   0.2   0.4   0.6   0.7   0.9   above
#   Pmiss  0     0     1/3   1/3   2/3   2/3   1
#   Pfa    1     2/3   2/3   1/3   1/3   0     0
BONA = [0.2, 0.6, 0.9]
SPOOF = [0.1, 0.4, 0.7]


def _random_scores(seed: int, n_bona: int = 300, n_spoof: int = 400) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 1.0, n_bona), rng.normal(-1.0, 1.2, n_spoof)


def _brute_force(bona: np.ndarray, spoof: np.ndarray, cost) -> float:
    """The minimum of ``cost(Pmiss, Pfa)`` by trying every threshold one at a time."""
    candidates = np.append(np.unique(np.concatenate([bona, spoof])), np.inf)
    return min(cost(np.mean(bona < t), np.mean(spoof >= t)) for t in candidates)


# --------------------------------------------------------------------------------------
# min DCF (ASVspoof 5 track 1)
# --------------------------------------------------------------------------------------


def test_min_dcf_hand_computed() -> None:
    # ASVspoof 5 costs: (0.95 Pmiss + 0.5 Pfa) / min(0.95, 0.5) = 1.9 Pmiss + Pfa. Over the
    # table above: 1, 2/3, 1.3, 0.967, 1.6, 1.267, 1.9; the minimum 2/3 is at t = 0.2 (accept
    # every bona fide clip and the spoof at 0.4 and 0.7).
    result = min_dcf(BONA, SPOOF)
    assert result == MinDetectionCost(cost=pytest.approx(2 / 3), threshold=0.2)


def test_min_dcf_other_costs_move_the_threshold() -> None:
    # Spoofs nine times as likely, equal costs: (0.1 Pmiss + 0.9 Pfa) / 0.1 = Pmiss + 9 Pfa:
    # 9, 6, 6.33, 3.33, 3.67, 2/3, 1. The minimum 2/3 is now at t = 0.9 (reject two bona fide
    # clips rather than accept any spoof).
    result = min_dcf(BONA, SPOOF, DCFCostModel(p_spoof=0.9, c_miss=1.0, c_fa=1.0))
    assert result == MinDetectionCost(cost=pytest.approx(2 / 3), threshold=0.9)


def test_min_dcf_ties_keep_the_lowest_threshold() -> None:
    # Equal priors and costs: Pmiss + Pfa = 1, 2/3, 1, 2/3, 1, 2/3, 1; three thresholds tie.
    result = min_dcf(BONA, SPOOF, DCFCostModel(p_spoof=0.5, c_miss=1.0, c_fa=1.0))
    assert result == MinDetectionCost(cost=pytest.approx(2 / 3), threshold=0.2)


def test_min_dcf_matches_brute_force() -> None:
    bona, spoof = _random_scores(seed=1)
    expected = _brute_force(bona, spoof, lambda m, f: (0.95 * m + 0.5 * f) / 0.5)
    assert min_dcf(bona, spoof).cost == pytest.approx(expected, abs=1e-12)


def test_min_dcf_bounds() -> None:
    assert min_dcf([2.0, 3.0], [0.0, 1.0]) == MinDetectionCost(cost=0.0, threshold=2.0)
    # Equal scores: accepting everything costs 0.5 (normalised 1), rejecting 0.95 (1.9).
    assert min_dcf([1.0, 1.0, 1.0], [1.0, 1.0]).cost == pytest.approx(1.0)
    # Inverted scores cannot beat the trivial systems either.
    assert min_dcf([0.0, 1.0], [2.0, 3.0]).cost == pytest.approx(1.0)


def test_min_dcf_is_invariant_to_monotone_transforms() -> None:
    bona, spoof = _random_scores(seed=2)
    base = min_dcf(bona, spoof)
    for transform in (lambda x: 3.0 * x + 5.0, np.exp, np.arctan):
        moved = min_dcf(transform(bona), transform(spoof))
        assert moved.cost == pytest.approx(base.cost, abs=1e-12)
        assert moved.threshold == pytest.approx(transform(base.threshold))


def test_min_dcf_rejects_bad_input() -> None:
    with pytest.raises(MetricError, match="NaN"):
        min_dcf([0.1, float("nan")], [0.2])
    with pytest.raises(MetricError, match="empty"):
        min_dcf([], [0.2])
    with pytest.raises(MetricError, match="priors"):
        DCFCostModel(p_spoof=1.5)
    with pytest.raises(MetricError, match="non-negative"):
        DCFCostModel(c_fa=-1.0)


# --------------------------------------------------------------------------------------
# min t-DCF
# --------------------------------------------------------------------------------------

# An ASV that misses 10 % of targets, accepts 5 % of non-targets and half of the spoofs.
# ASVspoof 2019 costs and priors give
#   C0 = 0.9405 x 0.1 + 0.0095 x 10 x 0.05           = 0.0988
#   C1 = 0.9405 x (1 - 0.1) - 0.0095 x 10 x 0.05     = 0.8417
#   C2 = 10 x 0.05 x 0.5                              = 0.25
ASV = ASVErrorRates(p_miss=0.1, p_fa=0.05, p_fa_spoof=0.5)


def test_tdcf_coefficients_hand_computed() -> None:
    c0, c1, c2 = tdcf_coefficients(ASV)
    assert (c0, c1, c2) == (pytest.approx(0.0988), pytest.approx(0.8417), pytest.approx(0.25))
    # C0 + C1 is the cost of rejecting every target: P_tar x C_miss, whatever the ASV.
    assert c0 + c1 == pytest.approx(ASVSPOOF2019_TDCF.p_target)


def test_min_tdcf_2019_hand_computed() -> None:
    # (0.8417 Pmiss + 0.25 Pfa) / 0.25 = 3.3668 Pmiss + Pfa over the table: 1, 2/3, 1.789,
    # 1.456, 2.578, 2.245, 3.367. Minimum 2/3 at t = 0.2.
    result = min_tdcf(BONA, SPOOF, ASV)
    assert result == MinDetectionCost(cost=pytest.approx(2 / 3), threshold=0.2)


def test_min_tdcf_2021_hand_computed() -> None:
    # (0.0988 + 0.8417 Pmiss + 0.25 Pfa) / (0.0988 + 0.25); at t = 0.2 that is
    # (0.0988 + 0.25 x 2/3) / 0.3488 = 0.76109; at t = 0.1 exactly 1, at t = 0.6 1.326.
    result = min_tdcf(BONA, SPOOF, ASV, formulation="asvspoof2021")
    assert result.cost == pytest.approx((0.0988 + 0.25 * 2 / 3) / 0.3488)
    assert result.threshold == 0.2


def test_min_tdcf_perfect_and_useless_cm() -> None:
    c0, c1, c2 = tdcf_coefficients(ASV)
    perfect = ([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0])
    assert min_tdcf(*perfect, ASV).cost == 0.0
    # The revised t-DCF keeps the ASV's own errors: an error-free CM leaves C0.
    assert min_tdcf(*perfect, ASV, formulation="asvspoof2021").cost == pytest.approx(
        c0 / (c0 + min(c1, c2))
    )
    flat = ([0.5, 0.5], [0.5, 0.5, 0.5])
    assert min_tdcf(*flat, ASV).cost == pytest.approx(1.0)
    assert min_tdcf(*flat, ASV, formulation="asvspoof2021").cost == pytest.approx(1.0)


def test_min_tdcf_matches_brute_force_and_is_invariant() -> None:
    bona, spoof = _random_scores(seed=3)
    c0, c1, c2 = tdcf_coefficients(ASV)
    expected = _brute_force(bona, spoof, lambda m, f: (c0 + c1 * m + c2 * f) / (c0 + min(c1, c2)))
    result = min_tdcf(bona, spoof, ASV, formulation="asvspoof2021")
    assert result.cost == pytest.approx(expected, abs=1e-12)
    moved = min_tdcf(np.exp(bona), np.exp(spoof), ASV, formulation="asvspoof2021")
    assert moved.cost == pytest.approx(result.cost, abs=1e-12)


def test_min_tdcf_accepts_an_asv_score_frame(tmp_path: Path) -> None:
    path = tmp_path / "asv.txt"
    path.write_text(
        "bonafide target 4.0\nbonafide target 2.5\nbonafide target 1.0\n"
        "bonafide nontarget -1.0\nbonafide nontarget 3.0\nbonafide nontarget 0.0\n"
        "A07 spoof 2.7\nA08 spoof -2.0\n"
    )
    frame = read_asv_scores_asvspoof2019(path)
    rates = asv_error_rates(
        frame.score[frame.key == "target"],
        frame.score[frame.key == "nontarget"],
        frame.score[frame.key == "spoof"],
    )
    # EER threshold 2.5: Pmiss 1/3 (the 1), Pfa 1/3 (the 3), Pfa_spoof 1/2 (the 2.7).
    assert rates == ASVErrorRates(p_miss=1 / 3, p_fa=1 / 3, p_fa_spoof=0.5, threshold=2.5)
    assert min_tdcf(BONA, SPOOF, frame) == min_tdcf(BONA, SPOOF, rates)


def test_min_tdcf_rejects_degenerate_asv_and_bad_settings() -> None:
    # An ASV that accepts no spoof leaves the CM nothing to do (C2 = 0).
    with pytest.raises(MetricError, match="C2"):
        min_tdcf(BONA, SPOOF, ASVErrorRates(p_miss=0.1, p_fa=0.05, p_fa_spoof=0.0))
    with pytest.raises(MetricError, match="formulation"):
        min_tdcf(BONA, SPOOF, ASV, formulation="asvspoof2017")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="one miss cost"):
        min_tdcf(BONA, SPOOF, ASV, TDCFCostModel(c_miss_cm=2.0), formulation="asvspoof2021")
    with pytest.raises(MetricError, match="percentages"):
        ASVErrorRates(p_miss=10.0, p_fa=0.05, p_fa_spoof=0.5)
    with pytest.raises(MetricError, match="sum to"):
        TDCFCostModel(p_target=0.9, p_nontarget=0.09, p_spoof=0.05)
    with pytest.raises(MetricError, match="nontarget"):
        min_tdcf(BONA, SPOOF, pd.DataFrame({"key": ["target", "spoof"], "score": [1.0, 0.0]}))


# --------------------------------------------------------------------------------------
# ASV error rates
# --------------------------------------------------------------------------------------


def test_asv_error_rates_at_a_given_threshold() -> None:
    rates = asv_error_rates([1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.5, 5.0], [0.0, 2.0, 3.0], 2.0)
    assert rates == ASVErrorRates(p_miss=0.25, p_fa=0.25, p_fa_spoof=2 / 3, threshold=2.0)


def test_asv_error_rates_at_the_eer_threshold_and_the_reference_rule() -> None:
    # Targets 1..4, non-targets -1, 0, 1.5, 5. At t = 1.5: Pmiss 1/4 (the 1), Pfa 2/4 (1.5 and
    # 5); at t = 2: 1/4 and 1/4, on the diagonal: the EER threshold is 2. The organisers' code
    # applies the pooled score just below it, 1.5.
    target, nontarget, spoof = [1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.5, 5.0], [0.0, 1.8, 3.0]
    eer = asv_error_rates(target, nontarget, spoof)
    assert eer == ASVErrorRates(p_miss=0.25, p_fa=0.25, p_fa_spoof=1 / 3, threshold=2.0)
    reference = asv_error_rates(target, nontarget, spoof, rule="reference")
    assert reference == ASVErrorRates(p_miss=0.25, p_fa=0.5, p_fa_spoof=2 / 3, threshold=1.5)
    with pytest.raises(MetricError, match="rule"):
        asv_error_rates(target, nontarget, spoof, rule="nearest")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="ASV spoof scores"):
        asv_error_rates(target, nontarget, [])


# --------------------------------------------------------------------------------------
# a-DCF (ASVspoof 5 track 2)
# --------------------------------------------------------------------------------------

# Targets 2, 3; non-targets 0, 1.5; spoofs 1, 2.5. Rates accepting score >= t:
#   t        0    1    1.5  2    2.5  3    above
#   Pmiss    0    0    0    0    1/2  1/2  1
#   Pfa,non  1    1/2  1/2  0    0    0    0
#   Pfa,spf  1    1    1/2  1/2  1/2  0    0
TARGET, NONTARGET, SPOOF_TRIALS = [2.0, 3.0], [0.0, 1.5], [1.0, 2.5]


def test_min_a_dcf_hand_computed_asvspoof5() -> None:
    # 0.9405 Pmiss + 0.095 Pfa,non + 0.5 Pfa,spf, normalised by min(0.9405, 0.595) = 0.595:
    # 1, 0.920, 0.5, 0.420, 1.211, 0.790, 1.581. Minimum 0.25 / 0.595 at t = 2.
    result = min_a_dcf(TARGET, NONTARGET, SPOOF_TRIALS)
    assert result == MinDetectionCost(cost=pytest.approx(0.25 / 0.595), threshold=2.0)


def test_min_a_dcf_hand_computed_shim2024() -> None:
    # 0.9 Pmiss + 0.5 Pfa,non + 1.0 Pfa,spf, normalised by min(0.9, 1.5) = 0.9:
    # 1.667, 1.333, 0.833, 0.556, 1.056, 0.5, 1. Minimum 0.45 / 0.9 = 0.5 at t = 3: dearer
    # spoofs move the threshold up.
    result = min_a_dcf(TARGET, NONTARGET, SPOOF_TRIALS, SHIM2024_ADCF)
    assert result == MinDetectionCost(cost=pytest.approx(0.5), threshold=3.0)


def test_min_a_dcf_matches_brute_force_and_bounds() -> None:
    rng = np.random.default_rng(4)
    tar, non, spf = rng.normal(2, 1, 200), rng.normal(0, 1, 250), rng.normal(1, 1.5, 300)
    m = ADCFCostModel()
    norm = min(m.c_miss * m.p_target, m.c_fa_nontarget * m.p_nontarget + m.c_fa_spoof * m.p_spoof)
    candidates = np.append(np.unique(np.concatenate([tar, non, spf])), np.inf)
    expected = min(
        (
            m.c_miss * m.p_target * np.mean(tar < t)
            + m.c_fa_nontarget * m.p_nontarget * np.mean(non >= t)
            + m.c_fa_spoof * m.p_spoof * np.mean(spf >= t)
        )
        / norm
        for t in candidates
    )
    assert min_a_dcf(tar, non, spf).cost == pytest.approx(expected, abs=1e-12)
    assert min_a_dcf(np.exp(tar), np.exp(non), np.exp(spf)).cost == pytest.approx(expected)
    assert min_a_dcf([5.0, 6.0], [0.0, 1.0], [2.0, 3.0]).cost == 0.0
    assert min_a_dcf([1.0], [1.0, 1.0], [1.0]).cost == pytest.approx(1.0)
    with pytest.raises(MetricError, match="sum to"):
        ADCFCostModel(p_target=0.9, p_nontarget=0.05, p_spoof=0.1)


def test_det_rates_generalises_det_curve() -> None:
    bona, spoof = _random_scores(seed=5, n_bona=50, n_spoof=60)
    frr, far, thresholds = det_curve(bona, spoof)
    miss, (false_alarm,), same_thresholds = det_rates(bona, spoof)
    np.testing.assert_array_equal(frr, miss)
    np.testing.assert_array_equal(far, false_alarm)
    np.testing.assert_array_equal(thresholds, same_thresholds)
    with pytest.raises(MetricError, match="at least one class"):
        det_rates(bona)


# --------------------------------------------------------------------------------------
# Score files
# --------------------------------------------------------------------------------------


def test_read_asv_scores_asvspoof2019(tmp_path: Path) -> None:
    path = tmp_path / "ASVspoof2019.LA.asv.dev.gi.trl.scores.txt"
    path.write_text("bonafide target 18.2\n\n- nontarget -39.1\nA01 spoof 2.5e1\n")
    frame = read_asv_scores_asvspoof2019(path)
    assert list(frame.columns) == ["attack", "key", "score"]
    assert frame["attack"].tolist() == ["bonafide", "-", "A01"]
    assert frame["key"].tolist() == ["target", "nontarget", "spoof"]
    assert frame["score"].tolist() == [18.2, -39.1, 25.0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bonafide target", "expected 3 columns"),
        ("bonafide impostor 1.0", "trial key 'impostor'"),
        ("bonafide target high", "'high' is not a number"),
        ("bonafide target inf", "NaN or infinite"),
        ("bonafide spoof 1.0", "contradicts"),
        ("A03 target 1.0", "contradicts"),
    ],
)
def test_read_asv_scores_asvspoof2019_names_the_bad_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "asv.txt"
    path.write_text(f"bonafide target 1.0\n{line}\n")
    with pytest.raises(ScoreFileError, match=message) as caught:
        read_asv_scores_asvspoof2019(path)
    assert f"{path}:2" in str(caught.value)


def test_read_asv_scores_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ScoreFileError, match="not found"):
        read_asv_scores_asvspoof2019(tmp_path / "absent.txt")
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(ScoreFileError, match="no trials"):
        read_asv_scores_asvspoof2019(tmp_path / "blank.txt")


def _write_2021(tmp_path: Path, score_lines: list[str]) -> tuple[Path, Path]:
    metadata = tmp_path / "trial_metadata.txt"
    metadata.write_text(
        "LA_0007-alaw LA_E_1-alaw alaw ita_tx bonafide nontarget notrim eval\n"
        "LA_0007-alaw LA_E_2-alaw alaw ita_tx bonafide target notrim progress\n"
        "LA_0009-none LA_E_3 none - A07 spoof notrim eval\n"
    )
    scores = tmp_path / "score.txt"
    scores.write_text("".join(f"{line}\n" for line in score_lines))
    return metadata, scores


def test_read_asv_scores_asvspoof2021(tmp_path: Path) -> None:
    metadata, scores = _write_2021(
        tmp_path,
        ["LA_0007-alaw LA_E_1-alaw -9.8", "LA_0007-alaw LA_E_2-alaw 12.5", "LA_0009-none LA_E_3 3"],
    )
    frame = read_asv_scores_asvspoof2021(metadata, scores)
    assert frame["key"].tolist() == ["nontarget", "target", "spoof"]
    assert frame["attack"].tolist() == ["bonafide", "bonafide", "A07"]
    assert frame["score"].tolist() == [-9.8, 12.5, 3.0]
    evaluation = read_asv_scores_asvspoof2021(metadata, scores, subset="eval")
    assert evaluation["trial"].tolist() == ["LA_E_1-alaw", "LA_E_3"]
    with pytest.raises(ScoreFileError, match="no trial of subset 'hidden'"):
        read_asv_scores_asvspoof2021(metadata, scores, subset="hidden")


def test_read_asv_scores_asvspoof2021_physical_access_layout(tmp_path: Path) -> None:
    # PA metadata has 12 columns (room, microphone and distance factors); no attack column.
    metadata = tmp_path / "trial_metadata.txt"
    metadata.write_text(
        "PA_0010 PA_E_1 R3 M3 d4 r1 m1 s4 c4 spoof notrim eval\n"
        "PA_0010 PA_E_2 R3 M3 d4 - - - - target notrim eval\n"
    )
    scores = tmp_path / "score.txt"
    scores.write_text("PA_0010 PA_E_1 -1.5\nPA_0010 PA_E_2 8\n")
    frame = read_asv_scores_asvspoof2021(metadata, scores)
    assert "attack" not in frame.columns
    assert frame["key"].tolist() == ["spoof", "target"]
    assert frame["score"].tolist() == [-1.5, 8.0]


def test_read_asv_scores_asvspoof2021_rejects_misaligned_files(tmp_path: Path) -> None:
    metadata, scores = _write_2021(
        tmp_path,
        ["LA_0007-alaw LA_E_1-alaw -9.8", "LA_0007-alaw LA_E_9-alaw 12.5", "LA_0009-none LA_E_3 3"],
    )
    with pytest.raises(ScoreFileError, match="not aligned") as caught:
        read_asv_scores_asvspoof2021(metadata, scores)
    assert f"{scores}:2" in str(caught.value) and f"{metadata}:2" in str(caught.value)
    metadata, scores = _write_2021(tmp_path, ["LA_0007-alaw LA_E_1-alaw -9.8"])
    with pytest.raises(ScoreFileError, match="1 trials but .* has 3"):
        read_asv_scores_asvspoof2021(metadata, scores)


def test_read_sasv_scores(tmp_path: Path) -> None:
    path = tmp_path / "sasv.txt"
    path.write_text("LA_0015 LA_E_1 6.96 target\nLA_0007 LA_E_2 -2.3 spoof\n")
    frame = read_sasv_scores(path)
    assert frame["key"].tolist() == ["target", "spoof"]
    assert frame["score"].tolist() == [6.96, -2.3]
    path.write_text("LA_0015 LA_E_1 6.96 bonafide\n")
    with pytest.raises(ScoreFileError, match=r"sasv.txt:1: trial key 'bonafide'"):
        read_sasv_scores(path)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cm = tmp_path / "cm.txt"
    cm.write_text(
        "".join(f"b{i} - bonafide {s}\n" for i, s in enumerate(BONA))
        + "".join(f"s{i} A01 spoof {s}\n" for i, s in enumerate(SPOOF))
    )
    asv = tmp_path / "asv.txt"
    asv.write_text("bonafide target 3\nbonafide target 2\nbonafide nontarget 0\nA01 spoof 2.5\n")
    sasv = tmp_path / "sasv.txt"
    sasv.write_text("a t1 2 target\na t2 3 target\nb n1 0 nontarget\nb n2 1.5 nontarget\n")
    with sasv.open("a") as handle:
        handle.write("a s1 1 spoof\na s2 2.5 spoof\n")
    assert main(["--cm", str(cm), "--asv", str(asv), "--sasv", str(sasv)]) == 0
    out = capsys.readouterr().out
    assert "CM min DCF       0.666667" in out
    # The ASV's EER threshold is 2; the organisers' rule, which the command follows, takes the
    # pooled score below it, 0, accepting every ASV trial: C1 = 0.9405 - 0.095 = 0.8455,
    # C2 = 0.5, so min t-DCF (2019) = min over t of 1.691 Pmiss + Pfa = 2/3 at t = 0.2.
    assert "ASV at threshold 0: Pmiss 0.000000, Pfa 1.000000, Pfa_spoof 1.000000" in out
    assert "min t-DCF        0.666667  (asvspoof2019" in out
    assert f"SASV min a-DCF   {0.25 / 0.595:.6f}  (ASVspoof 5" in out
    assert "SASV min a-DCF   0.500000  (Shim" in out
    asv.write_text("bonafide target 3\nbonafide spoof 2\n")
    assert main(["--cm", str(cm), "--asv", str(asv)]) == 2
    assert "contradicts" in capsys.readouterr().err


# The t-DCF package the ASVspoof 2019 organisers published (tDCF_python v1) ships an example
# CM score file (scores/cm_dev.txt) and ASV score file (scores/asv_dev.txt). Its own code gives
# min t-DCF 0.1104983661284351 (2019 formulation) and, with the ASVspoof 2021 package's
# compute_tDCF, 0.2148537633052445; the ASVspoof 5 package's compute_mindcf gives min DCF
# 0.10019556664484197 on the same CM scores. The files are not ours to redistribute: point
# DFA_TDCF_EXAMPLE_DIR at a folder holding them to run this check.
EXAMPLE_DIR = os.environ.get("DFA_TDCF_EXAMPLE_DIR")


@pytest.mark.skipif(EXAMPLE_DIR is None, reason="set DFA_TDCF_EXAMPLE_DIR to the tDCF example")
def test_matches_the_organisers_code_on_their_example() -> None:
    folder = Path(str(EXAMPLE_DIR))
    cm = pd.read_csv(folder / "cm_dev.txt", sep=" ", header=None, names=["u", "a", "key", "s"])
    bona, spoof = cm.s[cm.key == "bonafide"].to_numpy(), cm.s[cm.key == "spoof"].to_numpy()
    asv = read_asv_scores_asvspoof2019(folder / "asv_dev.txt")
    rates = asv_error_rates(
        *(asv.score[asv.key == key] for key in ("target", "nontarget", "spoof")), rule="reference"
    )
    assert min_tdcf(bona, spoof, rates).cost == pytest.approx(0.1104983661284351, abs=1e-12)
    assert min_tdcf(bona, spoof, rates, formulation="asvspoof2021").cost == pytest.approx(
        0.2148537633052445, abs=1e-12
    )
    assert min_dcf(bona, spoof).cost == pytest.approx(0.10019556664484197, abs=1e-12)
