"""The challenge datasets read as distributed (tiny trees in each official layout) and per-attack EERs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dfa_lib.data import challenges as ch
from dfa_lib.data.datasets import DATASET_NAMES, load_dataset
from dfa_lib.data.errors import DatasetError, DatasetFormatError, DatasetNotFoundError
from dfa_lib.data.manifest import MANIFEST_COLUMNS
from dfa_lib.data.protocol_data import ProtocolUnavailableError, prepare_protocol
from dfa_lib.evaluation.attacks import POOLED, attack_eer_by_model, attack_eer_table, attack_ids
from dfa_lib.scoring.metrics import equal_error_rate

SR = 16000
FAST = {"probe": False, "hash_files": False, "progress": False}
ASV19_ATTACKS = {"train": ("A01", "A02"), "dev": ("A01", "A02"), "eval": ("A07", "A19")}
ASV19_LETTER = {"train": "T", "dev": "D", "eval": "E"}


@pytest.fixture(autouse=True)
def _no_root_variables(monkeypatch):
    """Roots come from data_dir unless a test sets a variable itself."""
    for variable in (*ch.ROOT_VARIABLES.values(), ch.MAILABS_VARIABLE):
        monkeypatch.delenv(variable, raising=False)


def write_clip(path: Path, label: str, seed: int, seconds: float = 0.5) -> Path:
    """Write a short clip: a tone for a real one, noise for a fake (so a detector can learn them)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if label == "real":
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)
    else:
        wave = 0.3 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), SR)
    return path


def write_asvspoof2019(root: Path, per_class: int = 2, seconds: float = 0.5) -> dict[str, list]:
    """Write LA/ as LA.zip unpacks: per partition ``per_class`` bona fide and spoofed trials.

    Returns, per partition, the ``(speaker, file, attack, key)`` trials written.
    """
    trials: dict[str, list] = {}
    protocols = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True, exist_ok=True)
    for partition, file in ch._ASV19_PROTOCOLS.items():
        rows = []
        for i in range(per_class):
            speaker = f"LA_00{10 + i % 3}"
            rows.append((speaker, f"LA_{ASV19_LETTER[partition]}_1{i:06d}", "-", "bonafide"))
            attack = ASV19_ATTACKS[partition][i % 2]
            rows.append((speaker, f"LA_{ASV19_LETTER[partition]}_2{i:06d}", attack, "spoof"))
        lines = [f"{s} {f} - {a} {k}" for s, f, a, k in rows]
        (protocols / file).write_text("\n".join(lines) + "\n")
        for n, (_, f, _, k) in enumerate(rows):
            label = "real" if k == "bonafide" else "fake"
            flac = root / "LA" / f"ASVspoof2019_LA_{partition}" / "flac" / f"{f}.flac"
            write_clip(flac, label, seed=hash((partition, n)) % 1000, seconds=seconds)
        trials[partition] = rows
    return trials


def write_asvspoof2021(root: Path, track: str) -> list[list[str]]:
    """Write the 2021 evaluation audio and its keys (LA: 8 columns, DF: 13)."""
    if track == "LA":
        lines = [
            "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval",
            "LA_0009 LA_E_5464494 none - bonafide bonafide notrim eval",
            "LA_0012 LA_E_1000001 ulaw sin_tx A19 spoof notrim progress",
            "LA_0012 LA_E_1000002 opus loc_tx bonafide bonafide trim hidden_track",
        ]
    else:
        lines = [
            "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim eval traditional_vocoder - - - -",
            "LA_0023 DF_E_2000012 low_mp3 asvspoof - bonafide notrim eval bonafide - - - -",
            "TEF2 DF_E_2000013 high_m4a vcc2020 Task1-team20 spoof notrim eval unknown - - - -",
            "TEF2 DF_E_2000014 mp3m4a vcc2020 - bonafide notrim progress bonafide - - - -",
        ]
    keys = root / "keys" / track / "CM" / "trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text("\n".join(lines) + "\n")
    rows = [line.split() for line in lines]
    for n, parts in enumerate(rows):
        label = "real" if parts[5] == "bonafide" else "fake"
        write_clip(root / f"ASVspoof2021_{track}_eval" / "flac" / f"{parts[1]}.flac", label, n)
    return rows


def write_asvspoof5(root: Path) -> dict[str, list[list[str]]]:
    """Write ASVspoof 5's protocols (10 columns) and audio folders as the archives unpack."""
    folders = {"train": "flac_T", "dev": "flac_D", "eval": "flac_E_eval"}
    written = {}
    for partition, file in ch._ASV5_PROTOCOLS.items():
        letter = folders[partition][-1] if partition != "eval" else "E"
        lines = [
            f"{letter}_0001 {letter}_0000000001 F - - - bonafide bonafide bonafide -",
            f"{letter}_0002 {letter}_0000000002 M mp3 1 3 A05 A05 spoof -",
            f"{letter}_0002 {letter}_0000000003 M - - - A11 A11 spoof -",
        ]
        protocol = root / "ASVspoof5_protocols" / file
        protocol.parent.mkdir(parents=True, exist_ok=True)
        protocol.write_text("\n".join(lines) + "\n")
        rows = [line.split() for line in lines]
        for n, parts in enumerate(rows):
            label = "real" if parts[8] == "bonafide" else "fake"
            write_clip(root / folders[partition] / f"{parts[1]}.flac", label, n)
        written[partition] = rows
    return written


def write_in_the_wild(root: Path) -> list[tuple[str, str, str]]:
    """Write release_in_the_wild/ with meta.csv (file,speaker,label) and its wav files."""
    rows = [
        ("0.wav", "Alec Guinness", "spoof"),
        ("1.wav", "Alec Guinness", "bona-fide"),
        ("2.wav", "Barack Obama", "spoof"),
        ("3.wav", "Barack Obama", "bona-fide"),
    ]
    folder = root / "release_in_the_wild"
    folder.mkdir(parents=True)
    text = "file,speaker,label\n" + "".join(f"{f},{s},{lab}\n" for f, s, lab in rows)
    (folder / "meta.csv").write_text(text)
    for n, (file, _, label) in enumerate(rows):
        write_clip(folder / file, "real" if label == "bona-fide" else "fake", n)
    return rows


MLAAD_HEADER = (
    "path|original_file|language|is_original_language|duration|training_data|model_name|"
    "architecture|transcript"
)
MAILABS_CLIPS = (
    "en_US/by_book/female/judy_bieber/ozma_of_oz/wavs/ozma_of_oz_01_f000001.wav",
    "en_US/by_book/male/elliot_miller/pink_fairy_book/wavs/pink_fairy_book_01_f000002.wav",
    "de_DE/by_book/mix/grune_haus/wavs/grune_haus_01_f000003.wav",
)


def write_mlaad(root: Path, mailabs: Path) -> None:
    """Write fake/<language>/<model>/ with a '|'-separated meta.csv, and the M-AILABS originals."""
    models = {
        ("en", "tts_models_en_ljspeech_vits"): ("tts_models/en/ljspeech/vits", MAILABS_CLIPS[:2]),
        ("de", "facebook_mms-tts-deu"): ("facebook/mms-tts-deu", MAILABS_CLIPS[2:]),
    }
    n = 0
    for (language, folder), (model, originals) in models.items():
        lines = [MLAAD_HEADER]
        for i, original in enumerate(originals):
            file = f"./fake/{language}/{folder}/{i}.wav"
            lines.append(f"{file}|./{original}|{language}|True|0.5|ljspeech|{model}|vits|hello")
            write_clip(root / file.removeprefix("./"), "fake", n)
            n += 1
        (root / "fake" / language / folder / "meta.csv").write_text("\n".join(lines) + "\n")
    for i, original in enumerate(MAILABS_CLIPS):
        write_clip(mailabs / original, "real", 100 + i)


# --------------------------------------------------------------------------------------------
# ASVspoof 2019 LA
# --------------------------------------------------------------------------------------------


def test_asvspoof2019_gives_the_official_partitions_attacks_and_speakers(tmp_path):
    trials = write_asvspoof2019(tmp_path / "asvspoof2019-la")
    df, root = load_dataset("asvspoof2019-la", data_dir=tmp_path, progress=False)
    assert root == tmp_path / "asvspoof2019-la"
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert len(df) == sum(len(rows) for rows in trials.values())
    assert all((root / p).is_file() for p in df["path"])
    by_file = df.set_index("transcript_id")
    for partition, split in (("train", "training"), ("dev", "validation"), ("eval", "testing")):
        for speaker, file, attack, key in trials[partition]:
            row = by_file.loc[file]
            assert row["path"] == f"LA/ASVspoof2019_LA_{partition}/flac/{file}.flac"
            assert row["split"] == split
            assert row["speaker"] == speaker
            assert row["label"] == ("real" if key == "bonafide" else "fake")
            assert row["generator"] == ("human" if key == "bonafide" else attack)
    assert set(df.loc[df["split"] == "testing", "generator"]) == {"human", "A07", "A19"}
    assert set(df["corpus"]) == {"asvspoof2019-la"}
    # Headers probed and bytes hashed, as for every other dataset.
    assert np.allclose(df["duration"], 0.5) and set(df["sample_rate"]) == {SR}
    assert df["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_asvspoof2019_root_from_the_variable_or_the_la_folder_itself(tmp_path, monkeypatch):
    write_asvspoof2019(tmp_path / "elsewhere")
    monkeypatch.setenv("DFA_ASVSPOOF2019_LA_DIR", str(tmp_path / "elsewhere"))
    df, root = load_dataset("asvspoof2019-la", data_dir=tmp_path / "data", **FAST)
    assert root == tmp_path / "elsewhere" and len(df) == 12
    la_only = ch.prepare_asvspoof2019_la(tmp_path / "elsewhere" / "LA", **FAST)
    assert la_only["path"].iloc[0].startswith("ASVspoof2019_LA_")
    assert len(la_only) == 12


def test_a_missing_dataset_says_where_it_was_looked_for_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("asvspoof2019-la", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "asvspoof2019-la") in message
    assert "datashare.ed.ac.uk/handle/10283/3336" in message
    assert "DFA_ASVSPOOF2019_LA_DIR" in message
    (tmp_path / "asvspoof2019-la").mkdir()
    with pytest.raises(DatasetNotFoundError, match="ASVspoof2019_LA_cm_protocols"):
        load_dataset("asvspoof2019-la", data_dir=tmp_path)


def test_a_missing_protocol_file_is_named(tmp_path):
    root = tmp_path / "asvspoof2019-la"
    write_asvspoof2019(root)
    protocol = root / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    protocol.unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        ch.prepare_asvspoof2019_la(root, **FAST)
    assert str(protocol) in str(err.value) and "dev protocol" in str(err.value)


def test_missing_audio_is_counted_and_named_or_dropped_with_a_warning(tmp_path, caplog):
    root = tmp_path / "asvspoof2019-la"
    trials = write_asvspoof2019(root, per_class=4)
    gone = [f for _, f, _, _ in trials["eval"][:2]]
    for file in gone:
        (root / "LA" / "ASVspoof2019_LA_eval" / "flac" / f"{file}.flac").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        ch.prepare_asvspoof2019_la(root, **FAST)
    message = str(err.value)
    assert "2 of the 8 files listed in" in message and "ASVspoof2019.LA.cm.eval.trl.txt" in message
    assert all(file in message for file in gone)
    assert "allow_missing=True" in message
    with caplog.at_level(logging.WARNING, logger="dfa_lib.data.challenges"):
        df = ch.prepare_asvspoof2019_la(root, allow_missing=True, **FAST)
    assert len(df) == 24 - 2 and not set(gone) & set(df["transcript_id"])
    assert "2 of the 8 files" in caplog.text and "dropped" in caplog.text


def test_a_malformed_protocol_line_is_reported_with_its_line(tmp_path):
    root = tmp_path / "asvspoof2019-la"
    write_asvspoof2019(root)
    protocol = root / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    lines = protocol.read_text().splitlines()
    protocol.write_text("\n".join([lines[0], "LA_0010 LA_T_9 - A01"] + lines[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match=r"trn\.txt:2: expected at least 5 columns"):
        ch.prepare_asvspoof2019_la(root, **FAST)
    protocol.write_text("\n".join([lines[0], "LA_0010 LA_T_9 - A01 fake"]) + "\n")
    with pytest.raises(DatasetFormatError, match="key 'fake' is neither"):
        ch.prepare_asvspoof2019_la(root, **FAST)


# --------------------------------------------------------------------------------------------
# ASVspoof 2021 LA and DF
# --------------------------------------------------------------------------------------------


def test_asvspoof2021_la_tests_on_the_eval_subset_and_trains_on_2019(tmp_path):
    write_asvspoof2019(tmp_path / "asvspoof2019-la")
    write_asvspoof2021(tmp_path / "asvspoof2021-la", "LA")
    df, root = load_dataset("asvspoof2021-la", data_dir=tmp_path, **FAST)
    assert root == tmp_path.resolve()
    assert all((root / p).is_file() for p in df["path"])
    test = df[df["split"] == "testing"].set_index("transcript_id")
    # The default keeps the subset the challenge reports on.
    assert sorted(test.index) == ["LA_E_5464494", "LA_E_9332881"]
    assert test.loc["LA_E_9332881", ["generator", "codec", "transmission", "speaker"]].tolist() == [
        "A07",
        "alaw",
        "ita_tx",
        "LA_0009",
    ]
    assert test.loc["LA_E_5464494", "generator"] == "human"
    assert test["path"].str.startswith("asvspoof2021-la/ASVspoof2021_LA_eval/flac/").all()
    train = df[df["split"] != "testing"]
    assert set(train["split"]) == {"training", "validation"} and len(train) == 8
    assert train["path"].str.startswith("asvspoof2019-la/LA/").all()
    assert set(train.loc[train["label"] == "fake", "generator"]) == {"A01", "A02"}

    everything, _ = load_dataset("asvspoof2021-la", data_dir=tmp_path, eval_subset=None, **FAST)
    subsets = everything.loc[everything["split"] == "testing", "subset"]
    assert sorted(subsets) == ["eval", "eval", "hidden_track", "progress"]
    with pytest.raises(DatasetFormatError, match="eval, hidden_track, progress"):
        load_dataset("asvspoof2021-la", data_dir=tmp_path, eval_subset="final", **FAST)


def test_asvspoof2021_df_keeps_the_source_corpus_and_vcc_attacks(tmp_path):
    write_asvspoof2019(tmp_path / "asvspoof2019-la")
    write_asvspoof2021(tmp_path / "asvspoof2021-df", "DF")
    df, root = load_dataset("asvspoof2021-df", data_dir=tmp_path, **FAST)
    test = df[df["split"] == "testing"].set_index("transcript_id")
    assert sorted(test.index) == ["DF_E_2000011", "DF_E_2000012", "DF_E_2000013"]
    assert test.loc["DF_E_2000013", ["generator", "source", "codec"]].tolist() == [
        "Task1-team20",
        "vcc2020",
        "high_m4a",
    ]
    assert test.loc["DF_E_2000012", ["label", "generator"]].tolist() == ["real", "human"]
    assert all((root / p).is_file() for p in df["path"])


def test_asvspoof2021_without_keys_or_2019_says_what_is_missing(tmp_path):
    write_asvspoof2019(tmp_path / "asvspoof2019-la")
    write_asvspoof2021(tmp_path / "asvspoof2021-df", "DF")
    shutil.rmtree(tmp_path / "asvspoof2021-df" / "keys")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("asvspoof2021-df", data_dir=tmp_path, **FAST)
    message = str(err.value)
    assert "keys/DF/CM/trial_metadata.txt" in message and "DF-keys-full.tar.gz" in message
    assert "asvspoof.org/index2021.html" in message
    write_asvspoof2021(tmp_path / "other", "LA")
    with pytest.raises(DatasetNotFoundError, match="no asvspoof2019-la folder"):
        load_dataset("asvspoof2021-la", data_dir=tmp_path / "x", root=tmp_path / "other", **FAST)


# --------------------------------------------------------------------------------------------
# ASVspoof 5, In-the-Wild, MLAAD
# --------------------------------------------------------------------------------------------


def test_asvspoof5_reads_the_track_1_protocols(tmp_path):
    written = write_asvspoof5(tmp_path / "asvspoof5")
    df, root = load_dataset("asvspoof5", data_dir=tmp_path, **FAST)
    assert len(df) == 9 and all((root / p).is_file() for p in df["path"])
    row = df.set_index("transcript_id").loc["E_0000000002"]
    assert row[["split", "generator", "codec", "gender", "speaker", "path"]].tolist() == [
        "testing",
        "A05",
        "mp3",
        "M",
        "E_0002",
        "flac_E_eval/E_0000000002.flac",
    ]
    assert set(df.loc[df["label"] == "real", "generator"]) == {"human"}
    assert df.groupby("split").size().to_dict() == {"testing": 3, "training": 3, "validation": 3}
    assert written["train"][0][1] in set(df["transcript_id"])
    (root / "ASVspoof5_protocols" / "ASVspoof5.eval.track_1.tsv").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"ASVspoof5\.eval\.track_1\.tsv"):
        load_dataset("asvspoof5", data_dir=tmp_path, **FAST)


def test_in_the_wild_is_an_evaluation_set_with_its_speakers(tmp_path):
    rows = write_in_the_wild(tmp_path / "in-the-wild")
    df, root = load_dataset("in-the-wild", data_dir=tmp_path, **FAST)
    assert len(df) == len(rows) and set(df["split"]) == {"testing"}
    by_path = df.set_index("path")
    for file, speaker, label in rows:
        row = by_path.loc[f"release_in_the_wild/{file}"]
        assert row["speaker"] == speaker
        assert row["label"] == ("real" if label == "bona-fide" else "fake")
        assert row["generator"] == ("human" if label == "bona-fide" else "unknown")
    # No training clips: the training notebooks are refused with what to do instead.
    with pytest.raises(ProtocolUnavailableError, match="no training clips.*dfa evaluate"):
        prepare_protocol("in-the-wild", "in-domain", tmp_path, None, progress=False)
    test = prepare_protocol(
        "in-the-wild", "in-domain", tmp_path, None, splits=("testing",), progress=False
    )
    assert len(test.frames["testing"]) == 4


def test_mlaad_takes_its_bona_fide_side_from_m_ailabs(tmp_path, monkeypatch):
    write_mlaad(tmp_path / "mlaad", tmp_path / "m-ailabs")
    df, root = load_dataset("mlaad", data_dir=tmp_path, **FAST)
    assert root == tmp_path.resolve() and all((root / p).is_file() for p in df["path"])
    fakes, reals = df[df["label"] == "fake"], df[df["label"] == "real"]
    assert len(fakes) == 3 and len(reals) == 3
    assert sorted(set(fakes["generator"])) == [
        "facebook/mms-tts-deu",
        "tts_models/en/ljspeech/vits",
    ]
    assert sorted(fakes["language"]) == ["de", "en", "en"]
    assert sorted(reals["speaker"]) == [
        "m-ailabs/elliot_miller",
        "m-ailabs/judy_bieber",
        "m-ailabs/mix",
    ]
    assert sorted(reals["language"]) == ["de", "en", "en"]
    # Each fake is linked to the real clip whose sentence it reads.
    assert set(fakes["transcript_id"]) == set(reals["transcript_id"])
    assert set(df["split"]) == {"testing"}

    shutil.move(tmp_path / "m-ailabs", tmp_path / "speech")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mlaad", data_dir=tmp_path, **FAST)
    assert "DFA_MAILABS_DIR" in str(err.value) and "m-ailabs-dataset" in str(err.value)
    monkeypatch.setenv(ch.MAILABS_VARIABLE, str(tmp_path / "speech"))
    assert len(load_dataset("mlaad", data_dir=tmp_path, **FAST)[0]) == 6
    (tmp_path / "speech" / MAILABS_CLIPS[0]).unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of the 3 files listed in the original_file"):
        load_dataset("mlaad", data_dir=tmp_path, **FAST)


def test_every_challenge_name_is_a_dataset_name_and_its_errors_are_dataset_errors(tmp_path):
    assert set(ch.CHALLENGE_DATASETS) <= set(DATASET_NAMES)
    assert set(ch.CHALLENGE_DATASETS) <= set(ch.DOWNLOAD_PAGES)
    for name in ch.CHALLENGE_DATASETS:
        with pytest.raises(DatasetError, match=ch.ROOT_VARIABLES[name]):
            load_dataset(name, data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Per-attack EER tables
# --------------------------------------------------------------------------------------------


def _scored() -> pd.DataFrame:
    """Real clips scored 1..10; A07's fakes below every real clip, A19 among the lowest real ones."""
    real = np.arange(1.0, 11.0)
    a07 = np.array([-3.0, -2.0, -1.0, 0.0])
    a19 = np.array([0.5, 1.5, 2.5, 3.5])
    return pd.DataFrame(
        {
            "score": np.concatenate([real, a07, a19]),
            "label": ["real"] * 10 + ["fake"] * 8,
            "generator": ["human"] * 10 + ["A07"] * 4 + ["A19"] * 4,
        }
    )


def test_the_attack_table_scores_each_attack_against_every_real_clip_and_pools_last():
    scored = _scored()
    table = attack_eer_table(scored)
    assert table["attack"].tolist() == ["A07", "A19", POOLED]
    assert table["n_real"].tolist() == [10, 10, 10]
    assert table["n_fake"].tolist() == [4, 4, 8]
    assert table["eer"].iloc[0] == 0.0  # every A07 fake below every real clip
    real = scored.loc[scored["label"] == "real", "score"]
    a19 = scored.loc[scored["generator"] == "A19", "score"]
    assert table["eer"].iloc[1] == pytest.approx(equal_error_rate(real, a19).eer)
    assert 0.0 < table["eer"].iloc[1] < 0.5
    pooled = equal_error_rate(real, scored.loc[scored["label"] == "fake", "score"]).eer
    assert table["eer"].iloc[-1] == pytest.approx(pooled)
    assert table["eer"].iloc[0] < table["eer"].iloc[-1] < table["eer"].iloc[1]


def test_the_attack_table_by_model_has_a_column_per_detector_that_names_attacks():
    scored = _scored()
    unnamed = scored.assign(generator=np.where(scored["label"] == "real", "human", "unknown"))
    tables = {
        ("lcnn", "in-domain"): scored,
        ("rawnet", "in-domain"): scored.assign(score=-scored["score"]),
        ("lcnn", "cross-source"): scored,
        ("blind", "in-domain"): unnamed,
    }
    wide = attack_eer_by_model(tables, "in-domain")
    assert wide.index.tolist() == ["A07", "A19", POOLED]
    assert wide.columns.tolist() == ["lcnn", "rawnet"]
    assert wide.loc["A07", "lcnn"] == 0.0 and wide.loc["A07", "rawnet"] == 100.0
    assert attack_ids(unnamed) == [] and attack_ids(scored) == ["A07", "A19"]
    assert attack_eer_by_model({("blind", "in-domain"): unnamed}, "in-domain").empty


# --------------------------------------------------------------------------------------------
# End to end: the reports on ASVspoof 2019 LA
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.notebooks
def test_reports_run_on_asvspoof2019_la(tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager

    if "dfa" not in KernelSpecManager().find_kernel_specs():
        pytest.skip("Jupyter kernel 'dfa' is not registered: run `make setup`")
    data = tmp_path / "data"
    write_asvspoof2019(data / "asvspoof2019-la", per_class=20, seconds=1.0)
    cmd = [
        sys.executable, "-m", "dfa_lib.reporting.runner", "--profile", "smoke",
        "--kernel", "dfa", "--dataset", "asvspoof2019-la", "--only", "02_cnn,05_evaluation",
        "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"),
        "--reports-dir", str(tmp_path / "reports"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "reports" / "05_evaluation.html").read_text()
    assert "EER (%) by attack — in-domain" in page
    assert "A07" in page and "A19" in page and POOLED in page
    runs = tmp_path / "runs" / "smoke" / "asvspoof2019-la" / "in-domain"
    assert any(runs.glob("*/scores/in-domain.2019.txt"))
