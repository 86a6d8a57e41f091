"""Tests of the generator families and the synthesisers that brought new ones (hibari, open-jtalk)."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from dfa_lib.data.corpus import synthesis
from dfa_lib.data.corpus.neural import NEURAL_GENERATORS
from dfa_lib.data.protocols import FAMILIES_ORDER

HAVE_HIBARI = importlib.util.find_spec("hibari") is not None
HAVE_JTALK = (
    shutil.which("open_jtalk") is not None
    and (synthesis.OPEN_JTALK_DICTIONARY / "sys.dic").is_file()
    and synthesis.HTS_VOICES.is_dir()
)


def test_every_generator_has_known_families_and_every_family_a_generator():
    assert tuple(synthesis.FAMILIES) == FAMILIES_ORDER
    used = {f for g in synthesis.GENERATORS.values() for f in g.families}
    assert used == set(synthesis.FAMILIES)
    with pytest.raises(ValueError, match="has family 'neural'"):
        synthesis.Generator("x", "vocoder", "neural", vocode=lambda w, sr: (w, sr))
    with pytest.raises(ValueError, match="voices it does not have"):
        synthesis.Generator(
            "x",
            "tts",
            "formant",
            voices={"en": ("a",)},
            synthesize=lambda t, lang, v: (np.zeros(1), 1),
            voice_families={"b": "statistical"},
        )


def test_voice_families_override_the_generators_family():
    festival = synthesis.GENERATORS["festival"]
    assert festival.family_of("kal_diphone") == "concatenative"
    assert festival.family_of("cmu_us_slt_arctic_hts") == "statistical"
    assert festival.family_of("festival:cmu_us_slt_arctic_hts") == "statistical"
    flite = synthesis.GENERATORS["flite"]
    assert flite.family_of("slt") == "statistical" and flite.family_of("kal16") == "concatenative"
    assert synthesis.GENERATORS["world"].family_of("asterisk-june") == "dsp-vocoder"
    assert synthesis.GENERATORS["lpcnet"].family == "codec-vocoder"
    assert synthesis.GENERATORS["hibari"].family == "neural-tts"


def test_is_neural_marks_the_slow_generators():
    neural = {n for n in synthesis.GENERATORS if synthesis.is_neural(n)}
    assert neural == set(NEURAL_GENERATORS)
    with pytest.raises(KeyError, match="unknown generator"):
        synthesis.is_neural("nope")


@pytest.mark.skipif(not HAVE_HIBARI, reason="needs hibari-tts (pip install hibari-tts==0.2.1)")
def test_hibari_speaks_english_deterministically():
    gen = synthesis.GENERATORS["hibari"]
    a, sr = gen.synthesize("Please hold the line.", "en", "af_heart")
    b, _ = gen.synthesize("Please hold the line.", "en", "af_heart")
    assert sr == 24000 and len(a) > sr // 2 and np.array_equal(a, b)
    assert np.sqrt(np.mean(a**2)) > 0.01
    with pytest.raises(ValueError, match="English only"):
        gen.synthesize("Bonjour.", "fr", "af_heart")


@pytest.mark.skipif(not HAVE_JTALK, reason="needs open-jtalk and its HTS voice (Debian contrib)")
def test_open_jtalk_speaks_japanese_deterministically():
    text = synthesis.japanese_sentences()[0][1]
    a, sr = synthesis.open_jtalk_synthesize(text, "ja", "nitech-jp-atr503-m001")
    b, _ = synthesis.open_jtalk_synthesize(text, "ja", "nitech-jp-atr503-m001")
    assert len(a) > sr // 2 and np.array_equal(a, b) and np.std(a) > 0.01
    with pytest.raises(synthesis.SynthesisError, match="Japanese only"):
        synthesis.open_jtalk_synthesize("hello", "en", "nitech-jp-atr503-m001")
    with pytest.raises(synthesis.SynthesisError, match="hts-voice-nobody"):
        synthesis.open_jtalk_synthesize(text, "ja", "nobody")


@pytest.mark.skipif(not synthesis.TUXPAINT_STAMPS.is_dir(), reason="needs tuxpaint-stamps-default")
def test_japanese_sentences_come_from_the_stamp_descriptions():
    sentences = synthesis.japanese_sentences()
    assert len(sentences) >= 100
    assert len({t for _, t in sentences}) == len(sentences)
    assert len({i for i, _ in sentences}) == len(sentences)
    assert all(i.startswith("tuxpaint-stamps:") and len(t) >= 4 for i, t in sentences)


def test_japanese_sentences_name_the_missing_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="tuxpaint-stamps-default"):
        synthesis.japanese_sentences(tmp_path)
