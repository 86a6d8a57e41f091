"""Tests of dfa_lib.evaluation.evaluate's tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dfa_lib.evaluation.evaluate import (
    calibration_costs,
    eer_by_voice,
    eer_intervals,
    errors_by_group,
    voice_eer_table,
)
from dfa_lib.scoring.metrics import cllr, min_cllr


def _scored() -> pd.DataFrame:
    # Threshold 0: real clips below it and fakes at or above it are errors.
    return pd.DataFrame(
        {
            "label": ["real", "real", "real", "real", "fake", "fake", "fake", "fake", "fake"],
            "speaker": ["ann", "ann", "bob", "bob", "v1", "v1", "v1", "v2", "v2"],
            "score": [1.0, -0.5, -2.0, -1.0, 0.0, 3.0, -1.0, -4.0, -0.1],
        }
    )


def test_errors_by_group_counts_each_label_at_the_threshold():
    table = errors_by_group(_scored(), threshold=0.0, by="speaker")
    assert list(table.columns) == ["label", "speaker", "n", "errors", "error_%", "share_%"]
    rows = {(r.label, r.speaker): r for r in table.itertuples()}
    # bob: both real clips rejected; ann: one of two. A score equal to the threshold is real.
    assert (rows["real", "bob"].n, rows["real", "bob"].errors) == (2, 2)
    assert rows["real", "ann"].errors == 1
    assert rows["fake", "v1"].errors == 2  # 0.0 and 3.0 are accepted
    assert rows["fake", "v2"].errors == 0
    # Shares are of each label's errors: real 2/3 and 1/3, fake 2/2 and 0.
    real = table[table["label"] == "real"].set_index("speaker")
    assert real.loc["bob", "share_%"] == pytest.approx(200 / 3)
    assert real.loc["ann", "error_%"] == pytest.approx(50.0)
    fake = table[table["label"] == "fake"].set_index("speaker")
    assert fake.loc["v1", "error_%"] == pytest.approx(200 / 3)
    assert fake.loc["v2", "share_%"] == 0.0
    # Real rows first, then the groups with the most errors.
    assert list(zip(table["label"], table["speaker"], strict=True)) == [
        ("real", "bob"),
        ("real", "ann"),
        ("fake", "v1"),
        ("fake", "v2"),
    ]


def test_eer_by_voice_scores_each_fake_voice_against_every_real_clip():
    real = [2.0, 3.0, 4.0, 5.0]
    frame = pd.DataFrame(
        {
            "label": ["real"] * 4 + ["fake"] * 6,
            "speaker": ["ann", "ann", "bob", "bob", "caught", "caught", "missed", "missed"]
            + ["half", "half"],
            # caught: below every real clip; missed: above every one; half: one of each.
            "score": [*real, -1.0, 0.0, 9.0, 8.0, -3.0, 7.0],
        }
    )
    eer = eer_by_voice(frame)
    assert list(eer.index) == ["missed", "half", "caught"]  # highest first
    assert eer["caught"] == 0.0 and eer["missed"] == 100.0
    assert eer["half"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="lacks column"):
        eer_by_voice(frame.drop(columns=["speaker"]))
    with pytest.raises(ValueError, match="need real and fake"):
        eer_by_voice(frame[frame["label"] == "fake"])


def test_voice_eer_table_puts_the_voices_missed_most_first():
    def scored(caught: float, missed: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "label": ["real", "real", "fake", "fake"],
                "speaker": ["ann", "ann", "v1", "v2"],
                "score": [1.0, 2.0, caught, missed],
            }
        )

    frames = {
        ("a", "in-domain"): scored(0.0, 5.0),  # v1 caught, v2 missed
        ("b", "in-domain"): scored(0.0, 1.5),  # v2 half missed
        ("a", "cross-source"): scored(5.0, 0.0),
        ("c", "in-domain"): scored(0.0, 5.0).drop(columns=["speaker"]),  # no voices: left out
    }
    table = voice_eer_table(frames, "in-domain")
    assert list(table.index) == ["a", "b"] and list(table.columns) == ["v2", "v1"]
    assert table.loc["a", "v2"] == 100.0 and table.loc["b", "v1"] == 0.0
    assert table.loc["b", "v2"] == pytest.approx(50.0)
    assert voice_eer_table(frames, "unseen-generator").empty


def test_errors_by_group_with_no_errors_has_zero_shares():
    table = errors_by_group(_scored(), threshold=-10.0, by="speaker")
    real = table[table["label"] == "real"]
    assert real["errors"].sum() == 0 and (real["share_%"] == 0).all()
    assert table.loc[table["label"] == "fake", "errors"].sum() == 5


def test_errors_by_group_errors_name_the_problem():
    with pytest.raises(ValueError, match="lacks column"):
        errors_by_group(_scored().drop(columns=["speaker"]), 0.0, by="speaker")
    bad = _scored().assign(label=["real"] * 8 + ["spoof"])
    with pytest.raises(ValueError, match="'real' or 'fake'"):
        errors_by_group(bad, 0.0, by="speaker")
    empty = errors_by_group(_scored().iloc[:0], 0.0, by="speaker")
    assert empty.empty and "share_%" in empty.columns


def test_eer_intervals_give_the_clip_and_the_voice_interval():
    from dfa_lib.scoring.metrics import eer_bootstrap_ci

    rng = np.random.default_rng(0)
    voices = np.repeat([f"v{i}" for i in range(8)], 25)
    fake_scores = np.where(voices == "v0", 5.0, -5.0) + rng.normal(0, 0.1, voices.size)
    real_scores = rng.uniform(0, 1, 150)
    scored = pd.DataFrame(
        {
            "label": ["real"] * 150 + ["fake"] * voices.size,
            "speaker": ["r"] * 150 + list(voices),
            "score": np.concatenate([real_scores, fake_scores]),
        }
    )
    row = eer_intervals(scored, n_boot=500, seed=2)
    assert row["eer_%"] == pytest.approx(12.5)  # v0 is 25 of 200 fakes
    assert row["n_voices"] == 8
    assert row["ci_clips_%"] == pytest.approx(
        tuple(100 * v for v in eer_bootstrap_ci(real_scores, fake_scores, n_boot=500, seed=2))
    )
    assert row["ci_voices_%"][0] == 0.0  # replicates without v0
    assert row["ci_voices_%"][1] > row["ci_clips_%"][1]
    # One voice, or no voice column: no voice interval.
    single = eer_intervals(scored.assign(speaker="one"), n_boot=50)
    assert single["n_voices"] == 1 and np.isnan(single["ci_voices_%"]).all()
    assert np.isnan(eer_intervals(scored.drop(columns="speaker"), n_boot=50)["ci_voices_%"][0])


def test_paired_difference_matches_clips_by_path_and_checks_them():
    from dfa_lib.evaluation.evaluate import paired_difference

    a = _scored().assign(path=[f"c{i}" for i in range(9)])
    b = a.assign(score=np.where(a["label"] == "fake", -5.0, a["score"]))  # B rejects every fake
    shuffled = b.iloc[::-1]  # order does not matter: clips are matched by path
    row = paired_difference(a, shuffled, n_boot=200, seed=0)
    assert row["diff_%"] < 0
    assert row["ci_clips_%"][0] <= row["diff_%"] <= row["ci_clips_%"][1]
    assert not np.isnan(row["ci_voices_%"][0])  # two fake voices
    same = paired_difference(a, a, n_boot=50)
    assert same["diff_%"] == 0 and same["ci_clips_%"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="different clips"):
        paired_difference(a, b.iloc[1:], n_boot=10)
    with pytest.raises(ValueError, match="label some clip differently"):
        paired_difference(a, b.assign(label=list(reversed(b["label"]))), n_boot=10)


def test_paired_table_covers_every_protocol_both_models_scored():
    from dfa_lib.evaluation.evaluate import paired_table

    a = _scored().assign(path=[f"c{i}" for i in range(9)])
    b = a.assign(score=np.where(a["label"] == "fake", -5.0, a["score"]))
    scored = {("m1", "p1"): a, ("m2", "p1"): b, ("m1", "p2"): a}  # m2 not scored on p2
    table = paired_table(scored, [("m1", "m2")], n_boot=100, seed=0)
    assert table[["protocol", "a", "b"]].values.tolist() == [["p1", "m1", "m2"]]
    row = table.iloc[0]
    assert row["diff_%"] == pytest.approx(row["eer_b_%"] - row["eer_a_%"])
    assert " to " in row["ci_clips_%"] and " to " in row["ci_voices_%"]
    assert paired_table(scored, [("m1", "absent")]).empty


def test_comparison_pairs_list_fusion_members_then_augmented_twins_once():
    from dfa_lib.evaluation.evaluate import comparison_pairs

    weights = pd.DataFrame(
        {
            "fusion": ["a+b", "a+b", "a+b", "a+b"],
            "trained_on": ["in-domain", "in-domain", "unseen-generator", "unseen-generator"],
            "member": ["a", "b", "a", "b"],
        }
    )
    models = {"a", "b", "a+b", "lcnn", "lcnn_aug", "head_aug"}
    assert comparison_pairs(models, weights) == [("a", "a+b"), ("b", "a+b"), ("lcnn", "lcnn_aug")]
    assert comparison_pairs({"x", "x_aug"}, pd.DataFrame()) == [("x", "x_aug")]
    # A fusion nested in a larger one is compared with it (what the extra member adds).
    nested = pd.DataFrame(
        {
            "fusion": ["a+b", "a+b", "a+b+c", "a+b+c", "a+b+c", "a+c", "a+c"],
            "member": ["a", "b", "a", "b", "c", "a", "c"],
        }
    )
    pairs = comparison_pairs(set(), nested)
    assert [p for p in pairs if "+" in p[0]] == [("a+b", "a+b+c"), ("a+c", "a+b+c")]
    assert ("c", "a+b+c") in pairs and ("a+b", "a+c") not in pairs


def test_calibration_costs_read_scores_as_llrs():
    scored = _scored()
    costs = calibration_costs(scored)
    real = scored["label"] == "real"
    bona, spoof = scored.loc[real, "score"], scored.loc[~real, "score"]
    assert costs["cllr"] == pytest.approx(cllr(bona, spoof))
    assert costs["min_cllr"] == pytest.approx(min_cllr(bona, spoof))
    assert costs["calibration_loss"] == pytest.approx(costs["cllr"] - costs["min_cllr"])
    # Halving every score keeps the order, so only the calibration cost moves.
    halved = calibration_costs(scored.assign(score=scored["score"] / 2))
    assert halved["min_cllr"] == pytest.approx(costs["min_cllr"])
    assert halved["cllr"] != pytest.approx(costs["cllr"])


def test_an_eer_far_above_chance_warns_that_the_labels_look_inverted():
    from dfa_lib.evaluation.results import evaluate_scores, metric_warnings

    rng = np.random.default_rng(0)
    n = 30
    scored = pd.DataFrame(
        {
            "label": ["real"] * n + ["fake"] * n,
            # Bona fide scores are higher for real clips: here the fakes score higher.
            "score": np.concatenate([rng.normal(-2, 1, n), rng.normal(2, 1, n)]),
        }
    )
    metrics = evaluate_scores(scored, threshold=0.0, n_boot=50)
    assert metrics["eer"] > 0.9
    (warning,) = metrics["warnings"]
    assert "inverted" in warning and f"{100 * metrics['eer']:.1f} %" in warning
    fixed = evaluate_scores(scored.assign(score=-scored["score"]), threshold=0.0, n_boot=50)
    assert fixed["warnings"] == []
    # A handful of clips is no evidence: chance alone gives such EERs.
    few = evaluate_scores(scored.iloc[list(range(5)) + list(range(n, n + 5))], 0.0, n_boot=50)
    assert few["eer"] > 0.6 and few["warnings"] == []
    # Clips left out are named, so an evaluation never hides them.
    (left_out,) = metric_warnings(
        {**fixed, "n_undecodable": 3, "undecodable": ["a.wav", "b.wav", "c.wav"]}
    )
    assert left_out.startswith("3 test clip(s) could not be decoded") and "b.wav" in left_out


def test_evaluations_report_asvspoof5_min_dcf_beside_the_eer():
    from dfa_lib.evaluation.results import evaluate_scores

    scored = pd.DataFrame(
        {"label": ["real", "real", "fake", "fake"], "score": [2.0, 1.0, 0.0, -1.0]}
    )
    assert evaluate_scores(scored, threshold=0.5, n_boot=10)["min_dcf"] == 0.0
    # One fake above every real clip: the best threshold accepts both real clips and that fake,
    # a false-alarm rate of 1/2, which costs C_fa * P_spoof / 2 = 10 * 0.05 / 2 = 0.25, over the
    # normaliser min(C_miss * P_bona, C_fa * P_spoof) = min(0.95, 0.5): 0.5.
    scored.loc[3, "score"] = 3.0
    assert evaluate_scores(scored, threshold=0.5, n_boot=10)["min_dcf"] == pytest.approx(0.5)
