"""Ablation studies: every variant trained and tested on the same data, tables written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_toy_split

import dfa_lib
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.studies.ablation import (
    STUDIES,
    Variant,
    build_parser,
    main,
    markdown_table,
    report_stem,
    run_study,
    runs_folder,
    seed_summary,
    select_variants,
    with_codec_cache,
)
from dfa_lib.training.engine import TrainConfig


@pytest.fixture(scope="module")
def toy():
    parts = {
        s: make_toy_split(n, i, s, seconds=1.0, noise=0.1)
        for i, (s, n) in enumerate([("training", 12), ("validation", 6), ("testing", 6)])
    }
    frames = {s: p[0] for s, p in parts.items()}
    stores = {s: p[1] for s, p in parts.items()}
    data = ProtocolData(
        "toy", "in-domain", None, {s: frames[s] for s in ("training", "validation")}, stores
    )
    test = ProtocolData(
        "toy", "in-domain", None, {"testing": frames["testing"]}, {"testing": stores["testing"]}
    )
    return data, test


def test_every_variant_is_trained_and_tested(tmp_path, toy):
    data, test = toy
    small = {"model": "lcnn", "model_kwargs": {"frontend": "mel", "width": 4, "embedding": 8}}
    masked = {**small, "model_kwargs": {**small["model_kwargs"], "spec_augment": {}}}
    table = run_study(
        "toy-study",
        data,
        test,
        tmp_path,
        epochs=1,
        clip_seconds=1.0,
        n_boot=10,
        device="cpu",
        variants=[Variant("plain", small), Variant("masked", masked)],
        also=[ProtocolData("toy", "cross-source", None, test.frames, test.stores)],
    )
    assert table["variant"].tolist() == ["plain", "masked"]
    # The same test clips under another protocol's name: the same EER, in its own column.
    assert table["cross-source_eer_%"].tolist() == table["test_eer_%"].tolist()
    assert table["test_eer_%"].between(0, 100).all() and table["val_eer_%"].between(0, 100).all()
    for name in ("plain", "masked"):
        assert (tmp_path / "toy-study" / name / "metrics.json").is_file()
    # Each variant against the first, paired on the same test clips: the first against itself
    # is exactly 0; the other's difference is its EER minus the first's.
    assert table["vs_plain_%"].iloc[0] == 0 and table["vs_ci_clips_%"].iloc[0] == "0.0 to 0.0"
    assert table["vs_plain_%"].iloc[1] == pytest.approx(
        table["test_eer_%"].iloc[1] - table["test_eer_%"].iloc[0]
    )
    low, high = map(float, table["vs_ci_clips_%"].iloc[1].split(" to "))
    assert low <= table["vs_plain_%"].iloc[1] <= high
    assert {"test_eer_voice_ci_%", "vs_ci_voices_%"} <= set(table.columns)
    text = markdown_table(table)
    assert text.splitlines()[0].startswith("| variant | best_epoch |")
    assert len(text.splitlines()) == 4


def test_studies_name_real_model_settings():
    from dfa_lib.models.classical import CLASSICAL_MODEL_NAMES, build_classical
    from dfa_lib.models.registry import build_model

    for variants in STUDIES.values():
        assert len({v.name for v in variants}) == len(variants)
        for v in variants:
            build = build_classical if v.settings["model"] in CLASSICAL_MODEL_NAMES else build_model
            build(v.settings["model"], **v.settings["model_kwargs"])
            replace(TrainConfig(), **v.settings)  # every other setting is a config field
    assert replace(TrainConfig(), **STUDIES["cpu-bfloat16"][1].settings).cpu_bfloat16
    harmonics = [v.settings["model_kwargs"].get("rps") for v in STUDIES["phase-statistics"]]
    assert harmonics[4] == {"frame_period_ms": 20.0}
    # Each vocoded-fakes pair differs in the copies alone, the modes the smoke profile runs.
    pairs = STUDIES["vocoded-fakes"]
    profile = json.loads((Path(dfa_lib.__file__).parent / "profiles/smoke.json").read_text())
    [cnn] = [n for n in profile["notebooks"] if n["name"] == "02_cnn"]
    for plain, copied in zip(pairs[::2], pairs[1::2], strict=True):
        assert copied.name == plain.name + "+codec2"
        assert copied.settings == {
            **plain.settings,
            "vocoded_fakes": cnn["parameters"]["vocoded_fakes"],
        }


def test_an_unknown_study_is_refused(tmp_path, toy, capsys):
    with pytest.raises(KeyError, match="lcnn-frontend"):
        run_study("nope", *toy, tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["nope"])
    assert stop.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_a_subset_of_variants_is_selected_by_name_in_the_order_given(capsys):
    assert select_variants("lcnn-phase") == STUDIES["lcnn-phase"]
    chosen = select_variants("lcnn-phase", " ifd-4k-unnormalised, mel-4k ")
    assert [v.name for v in chosen] == ["ifd-4k-unnormalised", "mel-4k"]
    with pytest.raises(KeyError, match=r"no variant \['ifd-8k'\]; it has \["):
        select_variants("lcnn-phase", "mel-4k,ifd-8k")
    # The command line refuses it before loading any data.
    with pytest.raises(SystemExit):
        main(["lcnn-phase", "--variants", "ifd-8k", "--data-dir", "/nonexistent"])
    assert "no variant ['ifd-8k']" in capsys.readouterr().err


def test_augmenting_variants_cache_their_codec_outputs_unless_they_name_a_folder(tmp_path):
    from dfa_lib.data.augment import AugmentConfig

    plain, augmented = select_variants("vocoded-fakes", "ifd+rps,ifd+rps+aug")
    named = Variant("named", {**augmented.settings, "augment": {"codec_cache_dir": "elsewhere"}})
    out = with_codec_cache([plain, augmented, named], tmp_path / "codecs")
    assert out[0] == plain and out[2] == named
    assert out[1].settings["augment"]["codec_cache_dir"] == str(tmp_path / "codecs")
    assert augmented.settings["augment"]["codec_cache_dir"] is None  # the study is left as is
    # The rest are AugmentConfig's defaults, the augmentation 02_cnn's ifd_rps_logreg_aug gets.
    config = AugmentConfig.from_dict(out[1].settings["augment"])
    assert config == AugmentConfig(codec_cache_dir=str(tmp_path / "codecs"))


def test_only_the_full_default_study_writes_the_canonical_tables():
    parser = build_parser()

    def stem(*argv: str) -> str:
        return report_stem(parser.parse_args(argv), parser)

    every = ",".join(v.name for v in STUDIES["lcnn-phase"])
    assert stem("lcnn-phase") == stem("lcnn-phase", "--variants", every) == "ablation_lcnn-phase"
    # Settings that change the numbers, fusions and subsets name themselves, in a fixed order.
    assert (
        stem("lcnn-phase", "--variants", "mel-4k", "--max-per-class", "0", "--seed", "1")
        == "ablation_lcnn-phase_all-clips_seed1_mel-4k"
    )
    assert (
        stem("lcnn-pooling", "--protocol", "unseen-generator", "--max-per-class", "500")
        == "ablation_lcnn-pooling_unseen-generator_500-per-class"
    )
    assert stem("lcnn-phase", "--fuse-with", "a,b") == "ablation_lcnn-phase_fused"
    assert stem("lcnn-phase", "--cpu-bfloat16") == "ablation_lcnn-phase_bfloat16"
    assert stem("lcnn-phase", "--epochs", "3", "--patience", "1") == (
        "ablation_lcnn-phase_3-epochs_patience1"
    )
    # Where the tables go does not change the numbers' meaning, and the CPU is the default.
    assert stem("lcnn-phase", "--out", "elsewhere", "--device", "cpu") == "ablation_lcnn-phase"
    # A table without the other protocols' columns does not replace the complete one.
    assert stem("lcnn-phase", "--own-test-only") == "ablation_lcnn-phase_own-test-only"

    # Run folders: the default settings keep <runs-dir>/<study>; other training settings get
    # a folder of their own, so that they never replace those models; fusions and subsets
    # share the models of the same settings.
    def runs(*argv: str) -> Path:
        return runs_folder(parser.parse_args(argv), parser)

    assert runs("lcnn-phase", "--variants", "mel-4k", "--fuse-with", "a") == Path(
        "runs/ablation/lcnn-phase"
    )
    assert runs(
        "lcnn-phase", "--protocol", "lofo-gan-vocoder", "--cpu-bfloat16", "--runs-dir", "r"
    ) == Path("r/lofo-gan-vocoder_bfloat16/lcnn-phase")
    assert runs("lcnn-pooling", "--max-per-class", "0", "--seed", "1") == Path(
        "runs/ablation/all-clips_seed1/lcnn-pooling"
    )
    # Scoring fewer test splits trains the same models.
    assert runs("lcnn-phase", "--own-test-only") == Path("runs/ablation/lcnn-phase")


def test_a_gpu_names_itself_in_the_settings(monkeypatch):
    """Mixed-precision training on CUDA gives other numbers than the CPU's float32."""
    parser = build_parser()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for argv in (["lcnn-phase"], ["lcnn-phase", "--device", "cuda"]):
        args = parser.parse_args([*argv, "--max-per-class", "0"])
        assert report_stem(args, parser) == "ablation_lcnn-phase_all-clips_cuda"
        assert runs_folder(args, parser) == Path("runs/ablation/all-clips_cuda/lcnn-phase")
    args = parser.parse_args(["lcnn-phase", "--device", "cpu"])
    assert report_stem(args, parser) == "ablation_lcnn-phase"


def test_a_missing_gpu_is_refused_before_any_data_is_read(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        main(["lcnn-phase", "--device", "cuda", "--data-dir", "/nonexistent"])
    assert "no CUDA device is available" in capsys.readouterr().err


def test_variants_fused_with_trained_detectors(tmp_path, toy):
    """--fuse-with: each variant is fused with folders trained on the same split."""
    from dfa_lib.detector.fusion import is_fusion_folder
    from dfa_lib.evaluation.fusions import evaluate_fusion
    from dfa_lib.studies.ablation import check_fusable

    data, test = toy
    cross = ProtocolData("toy", "cross-source", None, test.frames, test.stores)
    small = {"model": "lcnn", "model_kwargs": {"frontend": "mel", "width": 4, "embedding": 8}}
    common = {"epochs": 1, "clip_seconds": 1.0, "n_boot": 10, "device": "cpu", "also": [cross]}
    run_study("partners", data, test, tmp_path, variants=[Variant("partner", small)], **common)
    partner = tmp_path / "partners" / "partner"
    labels = data.frames["validation"].set_index("path")["label"]
    check_fusable([[partner]], data)  # same validation clips, scored on the protocol: fine
    table = run_study(
        "study",
        data,
        test,
        tmp_path,
        variants=[Variant("plain", {**small, "seed": 3})],
        fuse_with=[[partner]],
        labels=labels,
        **common,
    )
    fused = tmp_path / "study" / "plain+partner"
    assert is_fusion_folder(fused)
    row = table.iloc[0]
    assert row["+partner_eer_%"] == pytest.approx(100 * evaluate_fusion(fused, "in-domain")["eer"])
    assert row["+partner_cross-source_eer_%"] == pytest.approx(row["+partner_eer_%"])
    low, high = map(float, row["+partner_ci_%"].split("-"))
    assert low <= row["+partner_eer_%"] <= high

    # Folders from another split, or never scored on the protocol, are refused before training.
    scores = partner / "scores" / "validation.txt"
    lines = scores.read_text().splitlines()
    scores.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match="cover 11 clips, 11 of them among the 12 validation"):
        check_fusable([[partner]], data)
    scores.write_text("\n".join(lines) + "\n")
    (partner / "scores" / "in-domain.scored.csv").unlink()
    with pytest.raises(ValueError, match="not evaluated on in-domain"):
        check_fusable([[partner]], data)
    with pytest.raises(ValueError, match="nowhere: no such folder"):
        check_fusable([[tmp_path / "nowhere"]], data)
    (partner / "scores" / "validation.txt").unlink()
    with pytest.raises(ValueError, match="partner: score file not found"):
        check_fusable([[partner]], data)


def _seed_table(test: list[float], cross: list[float], val: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": ["plain", "masked"],
            "val_eer_%": val,
            "test_eer_%": test,
            "vs_plain_%": [0.0, test[1] - test[0]],
            "cross-source_eer_%": cross,
            "seconds": [1.0, 2.0],
        }
    )


def test_seed_summary_gives_each_seed_the_mean_the_spread_and_the_sign_count():
    tables = {
        0: _seed_table([20.0, 15.0], [30.0, 35.0], [18.0, 12.0]),
        1: _seed_table([22.0, 24.0], [31.0, 29.0], [19.0, 13.0]),
        2: _seed_table([21.0, 18.0], [32.0, 33.0], [20.0, 14.0]),
    }
    summary = seed_summary(tables).set_index("variant")
    masked = summary.loc["masked"]
    assert masked["test_eer_per_seed"] == "15.0 / 24.0 / 18.0"
    assert masked["test_eer_mean_%"] == pytest.approx(19.0)
    assert masked["test_eer_spread"] == pytest.approx(9.0)
    assert masked["cross-source_eer_mean_%"] == pytest.approx(97 / 3)
    assert masked["val_eer_mean_%"] == pytest.approx(13.0)
    # Lower than the first variant under two seeds of three, higher under the other.
    assert masked["vs_plain_per_seed"] == "-5.0 / +2.0 / -3.0"
    assert masked["vs_plain_mean_%"] == pytest.approx(-2.0)
    assert masked["lower_in"] == "2 of 3 seeds"
    assert summary.loc["plain", "lower_in"] == "-"
    # Runs of different variants cannot be set side by side.
    other = _seed_table([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]).assign(variant=["plain", "x"])
    with pytest.raises(ValueError, match="other variants"):
        seed_summary({0: tables[0], 1: other})


def test_seeds_run_the_study_once_per_seed_and_write_the_summary(tmp_path, monkeypatch):
    import json

    import dfa_lib.studies.ablation as ablation

    seen = []

    def fake_run(args, parser, variants):
        seen.append((args.seed, args.seeds, report_stem(args, parser)))
        return _seed_table([20.0 + args.seed, 15.0], [30.0, 35.0], [18.0, 12.0])

    monkeypatch.setattr(ablation, "_run", fake_run)
    assert main(["lcnn-specaugment", "--seeds", "0,2,2", "--out", str(tmp_path)]) == 0
    # Each seed as --seed would run it: the default seed keeps the canonical tables.
    assert seen == [
        (0, None, "ablation_lcnn-specaugment"),
        (2, None, "ablation_lcnn-specaugment_seed2"),
    ]
    record = json.loads((tmp_path / "ablation_lcnn-specaugment_seeds0-2.json").read_text())
    assert record["seeds"] == [0, 2] and set(record["per_seed"]) == {"0", "2"}
    assert record["summary"][0]["test_eer_per_seed"] == "20.0 / 22.0"
    assert "| variant |" in (tmp_path / "ablation_lcnn-specaugment_seeds0-2.md").read_text()


@pytest.mark.parametrize("own_only, tested", [(False, ["cross-source"]), (True, [])])
def test_own_test_only_leaves_out_the_other_protocols(tmp_path, monkeypatch, own_only, tested):
    import dfa_lib.studies.ablation as ablation

    prepared, also_seen = [], []

    def fake_prepare(dataset, protocol, *args, **kwargs):
        prepared.append(protocol)
        return ProtocolData(dataset=dataset, protocol=protocol, root=tmp_path, frames={})

    def fake_study(study, data, test, runs, **kwargs):
        also_seen.extend(other.protocol for other in kwargs["also"])
        return _seed_table([20.0, 15.0], [30.0, 35.0], [18.0, 12.0])

    monkeypatch.setattr(ablation, "prepare_protocol", fake_prepare)
    monkeypatch.setattr(ablation, "run_study", fake_study)
    argv = ["lcnn-phase", "--variants", "mel-4k", "--out", str(tmp_path), "--device", "cpu"]
    assert main(argv + (["--own-test-only"] if own_only else [])) == 0
    assert prepared == ["in-domain", "in-domain", *tested]
    assert also_seen == tested


@pytest.mark.parametrize(
    "argv", [["--seeds", "1"], ["--seeds", "0,x"], ["--seeds", "0,1", "--seed", "3"]]
)
def test_bad_seed_lists_are_refused_before_training(argv, capsys):
    with pytest.raises(SystemExit):
        main(["lcnn-specaugment", *argv, "--data-dir", "/nonexistent"])
    assert "seed" in capsys.readouterr().err


def test_the_phase_lcnn_of_02_is_the_ablations_masked_phase_variant():
    from dfa_lib.models.networks import phase_lcnn_kwargs
    from dfa_lib.studies.ablation import _lcnn

    [variant] = select_variants("lcnn-phase", "ifd-4k-unnormalised+specaugment")
    # The same settings as the study always had, so its trained folders are still reused.
    assert variant.settings == _lcnn("ifd", 4000.0, normalize=False, spec_augment={})
    assert variant.settings["model_kwargs"] == phase_lcnn_kwargs(4000.0)
