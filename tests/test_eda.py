"""What 01_eda shows: the corpus capped per split, the audit's tables, composition, examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import make_tone

from dfa_lib.evaluation.audit import AuditResult
from dfa_lib.reporting import eda


def _manifest(root: Path) -> pd.DataFrame:
    """Two sentences, each spoken by the real speaker and by two synthesisers, in two splits."""
    rows = []
    for split, tids in (("training", ["t1", "t2"]), ("testing", ["t3"])):
        for tid in tids:
            for label, generator, speaker in (
                ("real", "human", "anna"),
                ("fake", "espeak-ng", "en-1"),
                ("fake", "flite", "kal"),
            ):
                path = f"{split}/{tid}-{generator}.wav"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / path, make_tone(0.2, freq=300 if label == "real" else 500), 16000)
                rows.append(
                    {
                        "path": path,
                        "label": label,
                        "split": split,
                        "generator": generator,
                        "speaker": speaker,
                        "transcript_id": tid,
                        "source": "asterisk-en" if label == "real" else generator,
                        "language": "en",
                    }
                )
    return pd.DataFrame(rows)


def test_the_corpus_is_capped_per_split_and_class(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path)
    monkeypatch.setattr(eda, "load_dataset", lambda name, data_dir: (manifest, tmp_path))
    whole, root = eda.load_corpus("offline", tmp_path)
    assert len(whole) == 9 and root == tmp_path
    capped, _ = eda.load_corpus("offline", tmp_path, max_per_class=1, seed=0)
    counts = capped.groupby(["split", "label"]).size()
    assert counts.max() == 1 and len(counts) == 4


def test_the_composition_tables_count_clips_and_voices(tmp_path):
    tables = eda.composition_tables(_manifest(tmp_path))
    by_split = tables[0]
    assert by_split.loc["All", "All"] == 9 and by_split.loc["training", "fake"] == 4
    # Source and generator vary, language does not: two tables, then the voices.
    assert [t.index.name for t in tables[1:-1]] == ["source", "generator"]
    voices = tables[-1]["speakers or voices"]
    assert voices[("fake", "flite")] == 1 and voices[("real", "human")] == 1


def test_the_audit_tables_give_the_verdict_and_the_telling_cues_first():
    def result(classifier: str, auc: float) -> AuditResult:
        return AuditResult(
            auc=auc,
            auc_std=0.05,
            feature_auc={"duration": 0.52, "rms_dbfs": 0.2, "rolloff_hz": 0.7},
            n_clips=40,
            classifier=classifier,
            folds=5,
            features=pd.DataFrame(),
        )

    table = eda.audit_table([result("logistic", 0.55), result("boosting", 0.8)])
    assert list(table.index) == ["logistic", "boosting"]
    assert list(table["verdict"]) == ["near chance", "shortcuts present"]
    cues = eda.feature_auc_table(result("logistic", 0.55))
    assert list(cues.index) == ["rms_dbfs", "rolloff_hz", "duration"]
    assert cues.loc["rms_dbfs", "distance_from_chance"] == pytest.approx(0.3)


def test_example_pairs_put_one_sentence_real_then_fake(tmp_path):
    manifest = _manifest(tmp_path)
    pairs = eda.example_pairs(manifest, tmp_path, n=2, seed=0)
    assert len(pairs) == 2
    for (real_title, real_wave), (fake_title, fake_wave) in pairs:
        assert real_title == "real · anna" and fake_title.startswith("fake · ")
        assert real_wave.dtype == np.float32 and fake_wave.size == real_wave.size
    # The same seed draws the same sentences; a corpus without shared sentences has none.
    again = eda.example_pairs(manifest, tmp_path, n=2, seed=0)
    assert [p[1][0] for p in again] == [p[1][0] for p in pairs]
    only_real = manifest[manifest["label"] == "real"]
    assert eda.example_pairs(only_real, tmp_path, n=2) == []


def test_the_histograms_draw_each_statistic_for_both_classes():
    stats = pd.DataFrame(
        {column: np.linspace(0, 1, 8) for column in eda.SIGNAL_UNITS}
        | {"label": ["real", "fake"] * 4}
    )
    fig = eda.plot_signal_histograms(stats)
    assert [ax.get_title() for ax in fig.axes] == list(eda.SIGNAL_UNITS)
    assert all(len(ax.get_legend().get_texts()) == 2 for ax in fig.axes)
