"""``dfa evaluate``: run folders scored on a protocol's test split, bad folders, usage errors."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import write_toy_dataset

from dfa_lib.cli import main
from dfa_lib.data.protocol_data import prepare_protocol
from dfa_lib.data.protocols import protocol_mismatch
from dfa_lib.detector.fusion import fit_fusion
from dfa_lib.evaluation.evaluate import evaluation_key, run_folders
from dfa_lib.scoring.metrics import equal_error_rate
from dfa_lib.training.engine import TrainConfig, train


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A dataset in FoR layout: tones are real, noise bursts fake."""
    return write_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toyset",
        [("training", 16), ("validation", 10), ("testing", 8)],
    )


@pytest.fixture(scope="module")
def trained_runs(toy_root, tmp_path_factory) -> Path:
    """Two classical detectors trained on the toy set and their fusion, as 02 and 05 leave them."""
    cache = tmp_path_factory.mktemp("cache")
    data = prepare_protocol(str(toy_root), "in-domain", toy_root.parent, cache, progress=False)
    runs = tmp_path_factory.mktemp("runs") / "in-domain"
    results = train(
        [TrainConfig(name=m, model=m, clip_seconds=0.5) for m in ("lfcc_logreg", "ifd_logreg")],
        data.frames["training"],
        data.frames["validation"],
        data.stores["training"],
        data.stores["validation"],
        runs,
        dataset=data.info,
        progress=False,
    )
    labels = data.frames["validation"].set_index("path")["label"]
    fit_fusion([r.folder for r in results], labels)
    return runs


@pytest.fixture
def runs(trained_runs, tmp_path) -> Path:
    """A fresh copy for each test: evaluation writes into the run folders."""
    return Path(shutil.copytree(trained_runs, tmp_path / "runs" / "in-domain"))


def _evaluate(toy_root: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "evaluate",
                *args,
                "--dataset",
                str(toy_root),
                "--data-dir",
                str(toy_root.parent),
                "--cache-dir",
                str(toy_root.parent / "cache"),
                "--n-boot",
                "50",
            ]
        )
    return code, out.getvalue()


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_evaluate_scores_detectors_then_their_fusion(toy_root, runs):
    fused = runs / "lfcc_logreg+ifd_logreg"
    code, out = _evaluate(toy_root, str(runs), "--protocol", "in-domain", "--format", "csv")
    assert code == 0
    table = _csv(out)
    # Detectors first, the fusion after them (it reads their score files).
    assert list(table["model"]) == ["ifd_logreg", "lfcc_logreg", "lfcc_logreg+ifd_logreg"]
    assert table["error"].isna().all()
    assert (table["trained_on"] == f"{toy_root}/in-domain").all()
    assert (table["n"] == 16).all()
    for row in table.itertuples():
        folder = Path(row.folder)
        scored = pd.read_csv(folder / "scores" / "in-domain.scored.csv")
        real = scored["label"] == "real"
        eer = equal_error_rate(scored.loc[real, "score"], scored.loc[~real, "score"]).eer
        assert row._4 == pytest.approx(100 * eer)  # eer_%
        assert (folder / "scores" / "in-domain.2019.txt").is_file()
        metrics = json.loads((folder / "metrics.json").read_text())["in-domain"]
        assert 100 * metrics["eer"] == pytest.approx(row._4)
    # Tones against noise: every detector separates them, and says so with calibrated
    # probabilities (well under the 1 bit of a detector that always says 50 %).
    assert table["auc"].min() > 0.9
    assert (table["cllr"] < 0.5).all()
    assert fused.is_dir()


def test_a_fusion_alone_brings_its_members_and_reuse_reads_back(toy_root, runs):
    fused = runs / "lfcc_logreg+ifd_logreg"
    code, out = _evaluate(toy_root, str(fused), "--protocol", "in-domain", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [r["model"] for r in rows] == ["lfcc_logreg", "ifd_logreg", "lfcc_logreg+ifd_logreg"]
    assert all(r["error"] is None for r in rows)

    scored = runs / "lfcc_logreg" / "scores" / "in-domain.scored.csv"
    before = scored.stat().st_mtime_ns
    code, again = _evaluate(toy_root, str(runs / "lfcc_logreg"), "--protocol", "in-domain")
    assert code == 0 and scored.stat().st_mtime_ns == before  # read back, not scored again
    assert "lfcc_logreg" in again and "ok" in again
    code, _ = _evaluate(toy_root, str(runs / "lfcc_logreg"), "--protocol", "in-domain", "--rescore")
    assert code == 0 and scored.stat().st_mtime_ns != before


def _copy_with_config(source: Path, target: Path, **changes) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_one_bad_folder_does_not_stop_the_batch(toy_root, runs, tmp_path, capsys):
    good = runs / "lfcc_logreg"
    bad = tmp_path / "bad"
    broken = Path(shutil.copytree(runs / "ifd_logreg", bad / "broken_weights"))
    (broken / "classifier.safetensors").write_bytes(b"not safetensors")
    newer = _copy_with_config(good, bad / "newer", format_version=99)
    other = _copy_with_config(good, bad / "other_protocol", dataset__protocol="unseen-generator")
    (bad / "empty").mkdir()
    code, out = _evaluate(
        toy_root,
        str(good),
        str(broken),
        str(newer),
        str(other),
        str(bad / "empty"),
        str(bad / "missing"),
        "--protocol",
        "in-domain",
        "--format",
        "csv",
    )
    assert code == 1
    table = _csv(out).set_index("folder")
    assert pd.isna(table.loc[str(good), "error"]) and table.loc[str(good), "eer_%"] >= 0
    errors = table["error"].dropna()
    assert str(broken) in errors.loc[str(broken)]
    assert "format_version 99" in errors.loc[str(newer)]
    assert "for detectors trained on in-domain" in errors.loc[str(other)]
    assert "holds no detector folder" in errors.loc[str(bad / "empty")]
    assert "no such folder" in errors.loc[str(bad / "missing")]
    assert len(errors) == 5
    assert "5 of 6 folders failed" in capsys.readouterr().err


def test_a_fusion_whose_member_fails_is_not_fused_from_stale_scores(toy_root, runs):
    code, _ = _evaluate(toy_root, str(runs), "--protocol", "in-domain")
    assert code == 0  # every member now has in-domain score files
    (runs / "ifd_logreg" / "classifier.safetensors").write_bytes(b"broken")
    code, out = _evaluate(toy_root, str(runs), "--protocol", "in-domain", "--rescore")
    assert code == 1
    assert "ifd_logreg could not be evaluated here" in out
    assert out.count(" ok") == 1  # lfcc_logreg alone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "cross-source"], "supports ['in-domain']"),
        (["--protocol", "in-domain", "--dataset", "/nowhere/at/all"], "no folder or CSV file"),
        (["--protocol", "in-domain", "--n-boot", "0"], "must be positive"),
    ],
)
def test_usage_errors_exit_2(trained_runs, toy_root, capsys, args, message):
    base = ["evaluate", str(trained_runs), "--data-dir", str(toy_root.parent)]
    if "--dataset" not in args:
        base += ["--dataset", str(toy_root)]
    with pytest.raises(SystemExit) as stop:
        main([*base, *args])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_no_run_folder_and_missing_gpu_are_usage_errors(trained_runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(tmp_path / "nothing"), "--protocol", "in-domain"])
    assert stop.value.code == 2 and "no such folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stop:
            main(["evaluate", str(trained_runs), "--protocol", "in-domain", "--device", "cuda"])
        assert stop.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_protocol_mismatch_guards_against_testing_on_training_clips():
    def config(protocol, dataset="offline"):
        return {"dataset": {"dataset": dataset, "protocol": protocol}}

    assert protocol_mismatch(config("in-domain"), "offline", "in-domain") is None
    assert protocol_mismatch(config("in-domain"), "offline", "cross-source") is None
    rotation = "lofo-gan-vocoder"
    assert protocol_mismatch(config(rotation), "offline", rotation) is None
    # An in-domain detector trained on the family a rotation holds out, and a rotation's
    # detector answers its own rotation only.
    assert "trained on in-domain" in protocol_mismatch(config(rotation), "offline", "in-domain")
    assert f"for detectors trained on {rotation}" in protocol_mismatch(
        config("in-domain"), "offline", rotation
    )
    # Another dataset shares no clip: a cross-dataset test is allowed on any protocol.
    assert protocol_mismatch(config("in-domain", "for-2sec"), "offline", rotation) is None
    assert "does not record" in protocol_mismatch({}, "offline", "in-domain")


def test_run_folders_expands_parents_and_reports_what_names_none(trained_runs, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    folders, problems = run_folders(
        [trained_runs, trained_runs / "lfcc_logreg", tmp_path / "file.txt", tmp_path / "nope"]
    )
    assert [f.name for f in folders] == ["ifd_logreg", "lfcc_logreg", "lfcc_logreg+ifd_logreg"]
    assert [message.split(": ", 1)[1] for _, message in problems] == [
        "is a file; give a run folder",
        "no such folder",
    ]


def test_another_dataset_is_filed_beside_the_detectors_own_results(toy_root, runs, tmp_path):
    code, _ = _evaluate(toy_root, str(runs), "--protocol", "in-domain")
    assert code == 0
    own = {f.name: (f / "metrics.json").read_text() for f in runs.iterdir()}
    own_scores = (runs / "lfcc_logreg" / "scores" / "in-domain.scored.csv").read_bytes()
    # A second dataset: the toy test clips with their labels swapped.
    other = tmp_path / "swapped"
    for label, swapped in (("real", "fake"), ("fake", "real")):
        shutil.copytree(toy_root / "testing" / label, other / "testing" / swapped)
    code, out = _evaluate(other, str(runs), "--protocol", "in-domain", "--format", "csv")
    assert code == 0
    table = _csv(out)
    key = evaluation_key({"dataset": {"dataset": str(toy_root)}}, str(other), "in-domain")
    assert key.startswith("swapped-") and key.endswith(".in-domain")
    assert (table["protocol"] == key).all()
    assert table["auc"].max() < 0.1  # the labels are swapped: every detector is inverted
    assert (table["cllr"] > 1).all()  # and its confident probabilities mislead
    for folder in runs.iterdir():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert json.loads(own[folder.name])["in-domain"] == metrics["in-domain"]
        assert metrics[key]["auc"] < 0.1
        assert (folder / "scores" / f"{key}.scored.csv").is_file()
    assert (runs / "lfcc_logreg" / "scores" / "in-domain.scored.csv").read_bytes() == own_scores


def test_evaluation_key_names_other_datasets():
    config = {"dataset": {"dataset": "offline", "protocol": "in-domain"}}
    assert evaluation_key(config, "offline", "cross-source") == "cross-source"
    assert evaluation_key(config, "for-2sec", "in-domain") == "for-2sec.in-domain"
    one = evaluation_key(config, "/data/a/set.csv", "in-domain")
    two = evaluation_key(config, "/data/b/set.csv", "in-domain")
    assert one.startswith("set-") and two.startswith("set-") and one != two
    # A folder that does not name its dataset is taken to be on this one.
    assert evaluation_key({"dataset": {"protocol": "in-domain"}}, "x", "in-domain") == "in-domain"


def _rewrite_keeping_size_and_mtime(path: Path, wave) -> None:
    """New samples of the same length, the modification time put back (as `cp -p` leaves it)."""
    import os

    before = path.stat()
    sf.write(path, wave, 16000, subtype="PCM_16")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def test_changed_clip_contents_are_scored_again(toy_root, runs, tmp_path):
    import numpy as np

    data = Path(shutil.copytree(toy_root, tmp_path / "toyset", copy_function=shutil.copy2))
    clip = data / "testing" / "real" / "0.wav"
    samples, _ = sf.read(clip, dtype="float32")
    rng = np.random.default_rng(7)

    def score_of_clip() -> tuple[float, float]:
        code, out = _evaluate(data, str(runs / "lfcc_logreg"), "--protocol", "in-domain")
        assert code == 0
        (scores,) = (runs / "lfcc_logreg" / "scores").glob("toyset-*.in-domain.scored.csv")
        scored = pd.read_csv(scores).set_index("path")
        (key,) = (k for k in json.loads((runs / "lfcc_logreg" / "metrics.json").read_text())
                  if k.startswith("toyset-"))  # fmt: skip
        auc = json.loads((runs / "lfcc_logreg" / "metrics.json").read_text())[key]["auc"]
        return float(scored.loc["testing/real/0.wav", "score"]), auc

    first = score_of_clip()
    # Noise of the same length in place of the tone: the file keeps its size and mtime.
    _rewrite_keeping_size_and_mtime(clip, (0.3 * rng.standard_normal(samples.size)))
    second = score_of_clip()
    assert second[0] != pytest.approx(first[0]) and second[1] < first[1]
    # --rescore decodes the file as it is now, not a decoded copy kept from before.
    _rewrite_keeping_size_and_mtime(clip, samples)
    code, _ = _evaluate(data, str(runs / "lfcc_logreg"), "--protocol", "in-domain", "--rescore")
    assert code == 0
    (scores,) = (runs / "lfcc_logreg" / "scores").glob("toyset-*.in-domain.scored.csv")
    rescored = pd.read_csv(scores).set_index("path").loc["testing/real/0.wav", "score"]
    assert rescored == pytest.approx(first[0], abs=1e-6)


def test_inverted_labels_are_flagged_not_reported_as_ok(toy_root, runs, tmp_path):
    # Every toy clip, real and fake swapped: 34 clips of each class.
    rows = [
        f"{wav},{'fake' if wav.parent.name == 'real' else 'real'},testing"
        for wav in sorted(toy_root.rglob("*.wav"))
    ]
    listing = tmp_path / "swapped.csv"
    listing.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    code, out = _evaluate(listing, str(runs / "lfcc_logreg"), "--protocol", "in-domain")
    assert code == 0  # a warning, not a failure
    assert "warning" in out and "inverted" in out
    code, out = _evaluate(
        listing, str(runs / "lfcc_logreg"), "--protocol", "in-domain", "--format", "csv"
    )
    (row,) = _csv(out).itertuples()
    assert row._4 > 60 and "labels look inverted" in row.warning  # eer_%
    metrics = json.loads((runs / "lfcc_logreg" / "metrics.json").read_text())[row.protocol]
    assert any("inverted" in w for w in metrics["warnings"])


def test_undecodable_test_clips_are_counted_and_named(toy_root, runs, tmp_path):
    rows = [f"{wav},{wav.parent.name},testing" for wav in sorted(toy_root.glob("testing/*/*.wav"))]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    listing = tmp_path / "with_broken.csv"
    listing.write_text("path,label,split\n" + "\n".join([*rows, f"{broken},fake,testing"]) + "\n")
    code, out = _evaluate(
        listing, str(runs / "lfcc_logreg"), "--protocol", "in-domain", "--format", "json"
    )
    assert code == 0
    (row,) = json.loads(out)
    assert row["n"] == 16 and row["n_undecodable"] == 1
    assert (
        "1 test clip(s) could not be decoded" in row["warning"] and "broken.wav" in row["warning"]
    )
    metrics = json.loads((runs / "lfcc_logreg" / "metrics.json").read_text())[row["protocol"]]
    assert metrics["n_undecodable"] == 1 and metrics["undecodable"] == [str(broken)]
