"""Tests of the evaluation protocols and subsets on manifests shaped like the built corpora."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from dfa_lib.core.labels import SPLITS
from dfa_lib.data.protocols import (
    DEFAULT_HELD_OUT,
    FAMILIES_ORDER,
    LOFO,
    PROTOCOLS,
    TRAINED_ON,
    ProtocolError,
    apply_protocol,
    lofo_family,
    lofo_rotations,
    make_subset,
    protocol_mismatch,
    speaker_leaks,
    split_leaks,
)

# Generators of every family, as the corpus registry files them (two for some families, so a
# generator can be held out without emptying its family).
GENERATOR_FAMILY = {
    "festival": "concatenative",
    "espeak-ng": "formant",
    "flite": "statistical",
    "pico": "statistical",
    "world": "dsp-vocoder",
    "griffin-lim": "dsp-vocoder",
    "hifigan": "gan-vocoder",
    "encodec": "codec-vocoder",
    "hibari": "neural-tts",
}
GENERATORS = tuple(GENERATOR_FAMILY)
REAL_SPEAKERS_PER_SPLIT = 3
VOICES_PER_GENERATOR_AND_SPLIT = 2


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _row(path, label, split, speaker, generator, tid, corpus="offline-main"):
    return {
        "path": path,
        "label": label,
        "split": split,
        "source": "asterisk" if label == "real" else generator,
        "speaker": speaker,
        "generator": generator,
        "family": "human" if label == "real" else GENERATOR_FAMILY[generator],
        "language": "en",
        "transcript_id": tid,
        "duration": 2.0,
        "sample_rate": 16000,
        "sha256": _sha(f"{corpus}/{path}"),
        "corpus": corpus,
    }


def main_manifest(per_split: int = 36, generators: tuple[str, ...] = GENERATORS) -> pd.DataFrame:
    """A manifest laid out as the build lays it out: speaker-, voice- and sentence-disjoint.

    Every split has its own real speakers and its own voices of every generator; each sentence
    is read by one real speaker and spoken by one fake voice, in one split.
    """
    rows = []
    for split in SPLITS:
        for i in range(per_split):
            tid = f"prompt:{split}{i}"
            speaker = f"person-{split}-{i % REAL_SPEAKERS_PER_SPLIT}"
            gen = generators[i % len(generators)]
            voice = f"{gen}:{split}-{(i // len(generators)) % VOICES_PER_GENERATOR_AND_SPLIT}"
            rows.append(_row(f"{split}/real/{i}.wav", "real", split, speaker, "human", tid))
            rows.append(_row(f"{split}/fake/{gen}-{i}.wav", "fake", split, voice, gen, tid))
    return pd.DataFrame(rows)


def cross_manifest() -> pd.DataFrame:
    rows = []
    for i in range(6):
        tid = f"fillets:l{i}"
        rows.append(_row(f"testing/real/{i}.wav", "real", "testing", "actor", "human", tid, "x"))
        rows.append(
            _row(f"testing/fake/{i}.wav", "fake", "testing", "festival:czech", "festival", tid, "x")
        )
    return pd.DataFrame(rows)


def test_the_test_manifest_covers_every_family():
    main = main_manifest()
    for split in SPLITS:
        fakes = main[(main.split == split) & (main.label == "fake")]
        assert set(fakes.family) == set(FAMILIES_ORDER)
        assert set(fakes.generator) == set(GENERATORS)


@pytest.mark.parametrize("name", PROTOCOLS)
def test_protocols_have_no_leaks(name):
    df = apply_protocol(main_manifest(), name, cross=cross_manifest())
    assert set(df["split"]) == set(SPLITS)
    assert split_leaks(df) == {"transcript_id": [], "sha256": [], "fake_voice": []}
    assert speaker_leaks(df) == []
    for split in SPLITS:
        assert set(df.loc[df.split == split, "label"]) == {"real", "fake"}


def test_unseen_generator_tests_only_held_out_engines():
    main = main_manifest()
    df = apply_protocol(main, "unseen-generator")
    seen = set(df.loc[(df.split != "testing") & (df.label == "fake"), "generator"])
    test = set(df.loc[(df.split == "testing") & (df.label == "fake"), "generator"])
    assert test == set(DEFAULT_HELD_OUT)
    assert seen == set(GENERATORS) - set(DEFAULT_HELD_OUT)
    only_festival = apply_protocol(main, "unseen-generator", held_out_generators=["festival"])
    assert set(only_festival.query("split == 'testing' and label == 'fake'")["generator"]) == {
        "festival"
    }
    with pytest.raises(ProtocolError, match="not in the manifest"):
        apply_protocol(main, "unseen-generator", held_out_generators=["vall-e"])


def test_cross_source_tests_on_the_cross_set_only():
    main, cross = main_manifest(), cross_manifest()
    df = apply_protocol(main, "cross-source", cross=cross)
    assert set(df.loc[df.split == "testing", "corpus"]) == {"x"}
    assert set(df.loc[df.split != "testing", "corpus"]) == {"offline-main"}
    assert len(df[df.split == "testing"]) == len(cross)
    with pytest.raises(ProtocolError, match="cross=read_manifest"):
        apply_protocol(main, "cross-source")
    # A cross voice that is also in main training would make the test set not cross-source.
    bad = cross.copy()
    bad.loc[bad.label == "fake", "speaker"] = main.loc[
        (main.split == "training") & (main.label == "fake"), "speaker"
    ].iloc[0]
    with pytest.raises(ProtocolError, match="in both sets"):
        apply_protocol(main, "cross-source", cross=bad)


def test_leaks_are_detected():
    main = main_manifest()
    leaky = main.copy()
    first_test = leaky.index[leaky.split == "testing"][0]
    leaky.loc[first_test, "split"] = "training"  # a test sentence's real clip moves to training
    with pytest.raises(ProtocolError, match="transcript_id"):
        apply_protocol(leaky, "in-domain")
    dup = main.copy()
    a = dup.index[dup.split == "training"][0]
    b = dup.index[dup.split == "testing"][0]
    dup.loc[b, "sha256"] = dup.loc[a, "sha256"]  # the same audio in two splits
    assert split_leaks(dup)["sha256"] == [dup.loc[a, "sha256"]]


def test_speaker_leaks_finds_real_speakers_in_two_splits():
    main = main_manifest()
    assert speaker_leaks(main) == []
    moved = main.copy()
    test_real = moved.index[(moved.split == "testing") & (moved.label == "real")]
    # A training speaker reads a test prompt.
    moved.loc[test_real[0], "speaker"] = "person-training-1"
    assert speaker_leaks(moved) == ["person-training-1"]
    for name in ("in-domain", "lofo-formant"):
        with pytest.raises(ProtocolError, match="real_speaker.*person-training-1"):
            apply_protocol(moved, name)
    # A fake voice across splits is a fake-voice leak, not a speaker leak.
    voice = main.copy()
    test_fake = voice.index[(voice.split == "testing") & (voice.label == "fake")]
    voice.loc[test_fake[0], "speaker"] = voice.loc[
        (voice.split == "training") & (voice.label == "fake"), "speaker"
    ].iloc[0]
    assert speaker_leaks(voice) == []
    assert split_leaks(voice)["fake_voice"]
    # Datasets without speakers (Fake-or-Real, a folder) have nothing to check.
    assert speaker_leaks(main.drop(columns="speaker")) == []
    unknown = main.copy()
    unknown.loc[unknown.label == "real", "speaker"] = None
    assert speaker_leaks(unknown) == []


def test_unknown_protocol_and_missing_columns():
    with pytest.raises(ProtocolError, match="choose one of"):
        apply_protocol(main_manifest(), "leave-one-out")
    with pytest.raises(ProtocolError, match="lacks column"):
        apply_protocol(pd.DataFrame({"path": ["a.wav"], "label": ["real"]}), "in-domain")


def test_make_subset_is_stratified_and_seeded():
    main = main_manifest(per_split=60)
    capped = make_subset(main, max_per_class=5, seed=3)
    assert capped.groupby(["split", "label"]).size().max() == 5
    assert set(capped.groupby(["split", "label"]).size().index) == set(
        main.groupby(["split", "label"]).size().index
    )
    assert capped.equals(make_subset(main, max_per_class=5, seed=3))
    assert not capped.equals(make_subset(main, max_per_class=5, seed=4))
    half = make_subset(main, fraction=0.5)
    sizes, full = half.groupby(["split", "label"]).size(), main.groupby(["split", "label"]).size()
    assert ((sizes - full / 2).abs() <= 1).all()
    assert make_subset(main).equals(main.sort_values("path"))
    assert set(capped.index) <= set(main.index)
    assert (main.loc[capped.index, "path"] == capped["path"]).all()
    with pytest.raises(ValueError, match="fraction"):
        make_subset(main, fraction=1.5)


# --- leave one family out -----------------------------------------------------------------


def test_lofo_names():
    rotations = [f"lofo-{family}" for family in FAMILIES_ORDER]
    assert lofo_rotations() == rotations
    assert set(rotations) <= set(PROTOCOLS)
    assert lofo_rotations(main_manifest()) == rotations
    assert [lofo_family(name) for name in rotations] == list(FAMILIES_ORDER)
    assert lofo_family("lofo-gan-vocoder") == "gan-vocoder"
    for other in ("in-domain", "unseen-generator", "cross-source", LOFO, "lofo-"):
        assert lofo_family(other) is None
    # Every protocol an evaluation loops over names the training run that answers it; a
    # rotation is answered by its own run only.
    assert set(PROTOCOLS) <= set(TRAINED_ON)
    assert all(TRAINED_ON[name] == name for name in rotations)


@pytest.mark.parametrize("family", FAMILIES_ORDER)
def test_lofo_trains_without_the_family_and_tests_on_everything(family):
    main = main_manifest()
    df = apply_protocol(main, f"lofo-{family}")
    trained = df[df.split != "testing"]
    # The held-out family is nowhere in training or validation; every other family is.
    assert family not in set(trained.family)
    assert set(trained.loc[trained.label == "fake", "family"]) == set(FAMILIES_ORDER) - {family}
    # Training and validation are the manifest's, less the family's fakes, split unchanged.
    held = (main.label == "fake") & (main.family == family) & (main.split != "testing")
    expected = main[(main.split != "testing") & ~held]
    pairs = sorted(zip(trained.path, trained.split, strict=True))
    assert pairs == sorted(zip(expected.path, expected.split, strict=True))
    # The whole testing split is kept: real clips and the fakes of every family.
    test, main_test = df[df.split == "testing"], main[main.split == "testing"]
    assert sorted(test.path) == sorted(main_test.path)
    assert set(test.loc[test.label == "fake", "family"]) == set(FAMILIES_ORDER)
    # No real speaker and no fake voice of the test split was heard in training.
    assert not set(test.speaker) & set(trained.speaker)
    assert speaker_leaks(df) == []


def test_lofo_errors():
    main = main_manifest()
    # A family with fakes in training but none in testing cannot be scored.
    no_test = main[~((main.split == "testing") & (main.family == "neural-tts"))]
    assert "lofo-neural-tts" not in lofo_rotations(no_test)
    assert len(lofo_rotations(no_test)) == len(FAMILIES_ORDER) - 1
    with pytest.raises(ProtocolError, match="no fakes of family 'neural-tts'.*make data"):
        apply_protocol(no_test, "lofo-neural-tts")
    with pytest.raises(ProtocolError, match="no fakes of family 'wavenet'"):
        apply_protocol(main, "lofo-wavenet")
    # One family only: holding it out leaves training without fakes.
    formant_only = main_manifest(generators=("espeak-ng",))
    assert lofo_rotations(formant_only) == ["lofo-formant"]
    with pytest.raises(ProtocolError, match="training split has no fakes left"):
        apply_protocol(formant_only, "lofo-formant")
    with pytest.raises(ProtocolError, match="needs the family"):
        apply_protocol(main, LOFO)
    with pytest.raises(ProtocolError, match="lacks column"):
        apply_protocol(main.drop(columns="family"), "lofo-formant")
    with pytest.raises(ProtocolError, match="lacks column"):
        lofo_rotations(main.drop(columns="family"))


def _trained_on(protocol: str, dataset: str = "offline") -> dict:
    return {"dataset": {"dataset": dataset, "protocol": protocol}}


def test_protocol_mismatch_keeps_rotations_apart():
    gan, codec = "lofo-gan-vocoder", "lofo-codec-vocoder"
    assert protocol_mismatch(_trained_on(gan), "offline", gan) is None
    # A rotation's detector saw the other families: not a held-out test of theirs.
    assert f"for detectors trained on {codec}" in protocol_mismatch(
        _trained_on(gan), "offline", codec
    )
    assert "trained on offline/lofo-gan-vocoder" in protocol_mismatch(
        _trained_on(gan), "offline", "in-domain"
    )
    assert protocol_mismatch(_trained_on(gan), "offline", "cross-source") is not None
    # An in-domain detector trained on every family cannot answer a rotation.
    assert f"for detectors trained on {gan}" in protocol_mismatch(
        _trained_on("in-domain"), "offline", gan
    )
    assert protocol_mismatch(_trained_on("in-domain"), "offline", "cross-source") is None
    # Trained on another dataset, any protocol is a cross-dataset test.
    assert protocol_mismatch(_trained_on("in-domain", "for-2sec"), "offline", gan) is None
    assert "does not record" in protocol_mismatch({}, "offline", gan)


# --- the corpus registry --------------------------------------------------------------------


def test_names_match_the_corpus_registry():
    synthesis = pytest.importorskip("dfa_lib.data.corpus.synthesis")
    assert set(DEFAULT_HELD_OUT) <= set(synthesis.GENERATORS)
    if not hasattr(synthesis, "FAMILIES"):
        pytest.skip("the corpus registry does not list its families yet")
    assert tuple(synthesis.FAMILIES) == FAMILIES_ORDER
