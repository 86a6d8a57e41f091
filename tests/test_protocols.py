"""Tests of the evaluation protocols and subsets on manifests shaped like the built corpora."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from dfa_lib.core.labels import SPLITS
from dfa_lib.data.corpus.build import assign_split, assign_voice_splits
from dfa_lib.data.corpus.synthesis import GENERATORS, neural_families, voice_id
from dfa_lib.data.protocols import (
    DEFAULT_HELD_OUT,
    DEFAULT_HELD_OUT_FAMILY,
    NEURAL_FAMILIES,
    NEURAL_ROTATIONS,
    PROTOCOLS,
    TRAINED_ON,
    ProtocolError,
    apply_protocol,
    held_out_family_of,
    make_subset,
    neural_rotations,
    split_leaks,
)

LANGS = {"en": "allison", "es": "allison", "fr": "june", "it": "carlo", "ru": "ivr"}
VOICES = {
    "en": [
        ("espeak-ng", "en+m3"),
        ("espeak-ng", "en+f2"),
        ("flite", "awb"),
        ("flite", "slt"),
        ("festival", "kal_diphone"),
        ("pico", "en-US"),
        ("pico", "en-GB"),
    ],
    "es": [("espeak-ng", "es+m1"), ("espeak-ng", "es+f3"), ("pico", "es-ES")],
    "fr": [("espeak-ng", "fr+m4"), ("pico", "fr-FR"), ("espeak-ng", "fr+f2")],
    "it": [("espeak-ng", "it+m2"), ("festival", "lp_diphone"), ("pico", "it-IT")],
    "ru": [("espeak-ng", "ru+m5"), ("espeak-ng", "ru+f1"), ("festival", "msu_ru_nsh_clunits")],
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _row(path, label, split, source, speaker, generator, lang, tid, corpus="offline-main"):
    family = "human" if label == "real" else GENERATORS[generator].family
    return {
        "path": path,
        "label": label,
        "split": split,
        "source": source,
        "speaker": speaker,
        "generator": generator,
        "language": lang,
        "transcript_id": tid,
        "duration": 2.0,
        "sample_rate": 16000,
        "sha256": _sha(path),
        "corpus": corpus,
        "family": family,
    }


def main_manifest(seed: int = 0, per_language: int = 40) -> pd.DataFrame:
    """A manifest laid out the way the build lays it out (transcript and voice splits)."""
    voices = {lang: list(v) for lang, v in VOICES.items()}
    vocoders = ("world", "griffin-lim", "hifigan", "hifigan-16k", "lpcnet", "fargan")
    for lang, spk in LANGS.items():
        voices[lang] += [(gen, f"asterisk-{spk}") for gen in vocoders]
    split_of_voice = assign_voice_splits(voices, seed)
    rows = []
    for lang, spk in LANGS.items():
        for i in range(per_language):
            tid = f"asterisk-{lang}:p{i}"
            split = assign_split(seed, tid, (0.7, 0.15, 0.15))
            pool = [gv for gv in voices[lang] if split_of_voice[voice_id(*gv)] == split]
            gen, voice = pool[i % len(pool)]
            rows.append(
                _row(
                    f"{split}/real/{lang}{i}.wav",
                    "real",
                    split,
                    f"asterisk-{lang}",
                    f"asterisk-{spk}",
                    "human",
                    lang,
                    tid,
                )
            )
            rows.append(
                _row(
                    f"{split}/fake/{gen}-{lang}{i}.wav",
                    "fake",
                    split,
                    gen,
                    voice_id(gen, voice),
                    gen,
                    lang,
                    tid,
                )
            )
    return pd.DataFrame(rows)


def cross_manifest() -> pd.DataFrame:
    rows = []
    for i in range(6):
        for lang, gen, voice in (("cs", "festival", "czech_dita"), ("nl", "espeak-ng", "nl+m6")):
            tid = f"fillets-{lang}:l{i}"
            rows.append(
                _row(
                    f"testing/real/{lang}{i}.wav",
                    "real",
                    "testing",
                    f"fillets-{lang}",
                    f"fillets-{lang}-m",
                    "human",
                    lang,
                    tid,
                    "offline-cross",
                )
            )
            rows.append(
                _row(
                    f"testing/fake/{lang}{i}.wav",
                    "fake",
                    "testing",
                    gen,
                    voice_id(gen, voice),
                    gen,
                    lang,
                    tid,
                    "offline-cross",
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", PROTOCOLS)
def test_protocols_have_no_leaks(name, seed):
    main = main_manifest(seed)
    df = apply_protocol(main, name, cross=cross_manifest())
    assert set(df["split"]) == set(SPLITS)
    leaks = split_leaks(df)
    assert leaks == {"transcript_id": [], "sha256": [], "fake_voice": []}
    for split in SPLITS:
        assert set(df.loc[df.split == split, "label"]) == {"real", "fake"}


def test_unseen_generator_tests_only_held_out_engines():
    main = main_manifest()
    df = apply_protocol(main, "unseen-generator")
    seen = set(df.loc[(df.split != "testing") & (df.label == "fake"), "generator"])
    test = set(df.loc[(df.split == "testing") & (df.label == "fake"), "generator"])
    assert test and test <= set(DEFAULT_HELD_OUT)
    assert not seen & set(DEFAULT_HELD_OUT)
    only_festival = apply_protocol(main, "unseen-generator", held_out_generators=["festival"])
    assert set(only_festival.query("split == 'testing' and label == 'fake'")["generator"]) == {
        "festival"
    }
    with pytest.raises(ProtocolError, match="not in the manifest"):
        apply_protocol(main, "unseen-generator", held_out_generators=["vall-e"])


def test_cross_source_tests_on_the_cross_set_only():
    main, cross = main_manifest(), cross_manifest()
    df = apply_protocol(main, "cross-source", cross=cross)
    assert set(df.loc[df.split == "testing", "corpus"]) == {"offline-cross"}
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


def test_unknown_protocol_and_missing_columns():
    with pytest.raises(ProtocolError, match="choose one of"):
        apply_protocol(main_manifest(), "leave-one-out")
    with pytest.raises(ProtocolError, match="lacks column"):
        apply_protocol(pd.DataFrame({"path": ["a.wav"], "label": ["real"]}), "in-domain")


def test_make_subset_is_stratified_and_seeded():
    main = main_manifest(per_language=60)
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


# --- unseen-neural ---------------------------------------------------------------------------


def test_neural_protocol_names_follow_the_registry():
    assert neural_families() == NEURAL_FAMILIES
    assert tuple(f"unseen-neural-{f}" for f in NEURAL_FAMILIES) == NEURAL_ROTATIONS
    assert set(NEURAL_ROTATIONS) <= set(PROTOCOLS)
    # Every protocol an evaluation loops over names the training run that answers it.
    assert set(PROTOCOLS) <= set(TRAINED_ON)
    assert DEFAULT_HELD_OUT_FAMILY in NEURAL_FAMILIES
    assert held_out_family_of("unseen-neural") == DEFAULT_HELD_OUT_FAMILY
    assert held_out_family_of("unseen-neural", "lpcnet") == "lpcnet"
    assert held_out_family_of("unseen-neural-lpcnet") == "lpcnet"
    with pytest.raises(ProtocolError, match="holds out"):
        held_out_family_of("unseen-neural-lpcnet", "hifigan")


@pytest.mark.parametrize("family", NEURAL_FAMILIES)
def test_unseen_neural_tests_only_the_held_out_family(family):
    main = main_manifest()
    assert neural_rotations(main) == list(NEURAL_ROTATIONS)
    df = apply_protocol(main, f"unseen-neural-{family}")
    fakes = df[df.label == "fake"]
    test = df[df.split == "testing"]
    assert set(fakes.loc[fakes.split == "testing", "family"]) == {family}
    seen = set(fakes.loc[fakes.split != "testing", "family"])
    assert family not in seen and seen == {"classical", *NEURAL_FAMILIES} - {family}
    # All of the family's clips are tested, beside the real clips of the prompts they copy.
    assert (test.label == "fake").sum() == (main.family == family).sum()
    assert set(test.transcript_id) == set(main.loc[main.family == family, "transcript_id"])
    assert (test.label == "real").any()
    # Nothing else moves: training and validation are in-domain's, less the tested prompts.
    rest = df[df.split != "testing"].set_index("path")["split"]
    assert (main.set_index("path").loc[rest.index, "split"] == rest).all()


def test_unseen_neural_default_and_errors():
    main = main_manifest()
    default = apply_protocol(main, "unseen-neural")
    assert default.equals(apply_protocol(main, f"unseen-neural-{DEFAULT_HELD_OUT_FAMILY}"))
    other = apply_protocol(main, "unseen-neural", held_out_family="lpcnet")
    assert other.equals(apply_protocol(main, "unseen-neural-lpcnet"))
    with pytest.raises(ProtocolError, match="no fakes of neural family 'wavenet'"):
        apply_protocol(main, "unseen-neural-wavenet")
    classical_only = main[main.family.isin(["human", "classical"])]
    assert neural_rotations(classical_only) == []
    with pytest.raises(ProtocolError, match="make data"):
        apply_protocol(classical_only, "unseen-neural")
    with pytest.raises(ProtocolError, match="lacks column"):
        apply_protocol(main.drop(columns="family"), "unseen-neural-lpcnet")
