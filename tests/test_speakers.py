"""Tests for the many-speaker sources (dfa_lib.data.corpus.speakers) on small fake package trees."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfa_lib.data.corpus import speakers as S
from dfa_lib.data.corpus.sources import (
    PART_GAP_SECONDS,
    SourceNotFoundError,
    Utterance,
    load_utterance_audio,
)


def tone(seconds: float, sr: int, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A voiced-like tone with a little noise (different seeds give different bytes)."""
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def write_clip(
    path: Path,
    seconds: float = 0.5,
    sr: int = 16000,
    artist: str = "",
    comment: str = "",
    seed: int = 0,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ogg = path.suffix == ".ogg"
    kwargs = (
        {"format": "OGG", "subtype": "VORBIS"} if ogg else {"format": "WAV", "subtype": "PCM_16"}
    )
    with sf.SoundFile(str(path), "w", sr, 1, **kwargs) as fh:
        if artist:
            fh.artist = artist
        if comment:
            fh.comment = comment
        fh.write(tone(seconds, sr, seed=seed))
    return path


def speakers_of(utts: list[Utterance]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for u in utts:
        out[u.speaker] += 1
    return dict(out)


# ---------------------------------------------------------------- clip_info


def test_clip_info_reads_ogg_tags_and_length_without_decoding(tmp_path: Path) -> None:
    ogg = write_clip(tmp_path / "a.ogg", 0.75, 22050, artist="Ana Núñez", comment="da:Hvad!")
    wav = write_clip(tmp_path / "b.wav", 1.25, 8000)
    info = S.clip_info(ogg)
    assert info.seconds == pytest.approx(0.75, abs=1e-3)
    assert (info.artist, info.comment) == ("Ana Núñez", "da:Hvad!")
    assert S.clip_info(wav).seconds == pytest.approx(1.25, abs=1e-3)
    (tmp_path / "bad.ogg").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="bad.ogg"):
        S.clip_info(tmp_path / "bad.ogg")


# ---------------------------------------------------------------- parsers


def _theme(root: Path, folder: str, files: dict[str, str]) -> None:
    lines = [f'<sound name="{name}" file="{folder}/{f}" />' for name, f in files.items()]
    body = "\n".join(lines)
    (root / f"{folder}.soundtheme").write_text(f'<language code="{folder}">\n{body}\n</language>\n')


def test_ktuberling_tags_merges_first_names_and_keeps_one_serbian_copy(tmp_path: Path) -> None:
    root = tmp_path / "sounds"
    root.mkdir()
    # ca: three tagged files, "Bernat" is "Bernat Mas"; one file is named after the English key.
    write_clip(root / "ca" / "patata_pilota.ogg", artist="Bernat", seed=1)
    write_clip(root / "ca" / "patata_nas.ogg", artist="Bernat Mas", seed=2)
    write_clip(root / "ca" / "apple.ogg", artist="Orestes", seed=3)
    _theme(
        root, "ca", {"ball": "patata_pilota.ogg", "nose": "patata_nas.ogg", "apple": "apple.ogg"}
    )
    # da: one tagged with the word said, one untagged.
    write_clip(root / "da" / "what.ogg", artist="Martha Schou", comment="da:Hvad!", seed=4)
    write_clip(root / "da" / "bold.wav", seed=5)
    _theme(root, "da", {"what": "what.ogg", "ball": "bold.wav"})
    # sr and sr@latin: byte-identical copies; a name listed twice is one clip.
    write_clip(root / "sr" / "oko.ogg", seed=6)
    write_clip(root / "sr" / "nos.ogg", seed=7)
    (root / "sr@latin").mkdir()
    for folder in ("sr", "sr@latin"):
        for name in ("oko.ogg", "nos.ogg"):
            (root / folder / name).write_bytes((root / "sr" / name).read_bytes())
        _theme(root, folder, {"eye": "oko.ogg", "nose": "nos.ogg", "nose2": "nos.ogg"})
    # id: a theme whose folder is missing.
    _theme(root, "id", {"ball": "ball_bola.wav"})

    utts = S.ktuberling_words(root)
    assert speakers_of(utts) == {
        "ktuberling-bernat-mas": 2,
        "ktuberling-orestes": 1,
        "ktuberling-martha-schou": 1,
        "ktuberling-da-unnamed": 1,
        "ktuberling-sr-unnamed": 2,
    }
    by_id = {u.utterance_id: u for u in utts}
    assert by_id["ktuberling-ca:patata_pilota"].text == "pilota"
    assert by_id["ktuberling-da:what"].text == "Hvad!"
    assert by_id["ktuberling-sr:oko"].language == "sr"
    assert {u.source for u in utts} == {"ktuberling-ca", "ktuberling-da", "ktuberling-sr"}


def test_ktuberling_keeps_a_same_language_folder_that_differs(tmp_path: Path) -> None:
    root = tmp_path / "sounds"
    root.mkdir()
    for i, folder in enumerate(("sr", "sr@latin")):
        write_clip(root / folder / "oko.ogg", seed=10 + i)
        _theme(root, folder, {"eye": "oko.ogg"})
    assert {u.source for u in S.ktuberling_words(root)} == {"ktuberling-sr", "ktuberling-sr-latin"}


def test_tuxpaint_texts_languages_tags_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "stamps"
    cats = root / "animals" / "cats"
    cats.mkdir(parents=True)
    (cats / "cat.txt").write_text(
        "A cat.\nfr.utf8=Un chat (Felis).\nlt.utf8=Katė.\n", encoding="utf-8"
    )
    write_clip(cats / "cat_desc.ogg", seed=1)
    write_clip(cats / "cat_desc_fr.ogg", seed=2)
    write_clip(cats / "cat_desc_lt.ogg", artist="Andrius Jurkus", seed=3)
    # A second stamp reusing the very same French recording: kept once.
    (cats / "kitten_desc_fr.ogg").write_bytes((cats / "cat_desc_fr.ogg").read_bytes())
    write_clip(cats / "lion_desc_fr.ogg", seed=4)  # no .txt: the stamp's name
    write_clip(cats / "cat_fr.ogg", seed=5)  # a name sound, not a description
    utts = S.tuxpaint_descriptions(root)
    by_id = {u.utterance_id: u for u in utts}
    assert set(by_id) == {
        "tuxpaint-en:animals/cats/cat_desc",
        "tuxpaint-fr:animals/cats/cat_desc_fr",
        "tuxpaint-fr:animals/cats/lion_desc_fr",
        "tuxpaint-lt:animals/cats/cat_desc_lt",
    }
    assert by_id["tuxpaint-en:animals/cats/cat_desc"].text == "A cat."
    assert by_id["tuxpaint-fr:animals/cats/cat_desc_fr"].text == "Un chat."
    assert by_id["tuxpaint-fr:animals/cats/lion_desc_fr"].text == "lion"
    assert by_id["tuxpaint-lt:animals/cats/cat_desc_lt"].speaker == "tuxpaint-andrius-jurkus"
    assert by_id["tuxpaint-fr:animals/cats/cat_desc_fr"].speaker == "tuxpaint-fr-unnamed"


def test_klettres_folders_names_and_non_name_tags(tmp_path: Path) -> None:
    root = tmp_path / "klettres"
    for folder in ("en", "en_GB", "nb"):
        write_clip(root / folder / "alpha" / "a-0.ogg", seed=len(folder))
        tag = (
            "Copyright 2007 X/Y. This file is distributed under the terms of the GNU GPL."
            if folder == "nb"
            else ""
        )
        write_clip(root / folder / "syllab" / "ad-0.ogg", artist=tag, seed=10 + len(folder))
        (root / folder / "sounds.xml").write_text(
            "<klettres><!-- a comment --><language code='x'>"
            f"<alphabet><sound name='A' file='{folder}/alpha/a-0.ogg'/></alphabet>"
            f"<syllables><sound name='LA' file='{folder}/syllab/ad-0.ogg'/>"
            f"<sound name='LE' file='{folder}/syllab/missing.ogg'/></syllables>"
            "</language></klettres>"
        )
    utts = S.klettres_sounds(root)
    assert speakers_of(utts) == {
        "klettres-en-unnamed": 2,
        "klettres-en-gb-unnamed": 2,
        "klettres-nb-unnamed": 2,
    }
    assert {u.language for u in utts} == {"en", "nb"}
    assert sorted(u.text for u in utts if u.source == "klettres-en") == ["A", "la"]


def test_hedgewars_drops_robot_nonverbal_and_copies(tmp_path: Path) -> None:
    root = tmp_path / "voices"
    write_clip(root / "Default" / "Comeonthen.ogg", seed=1)
    write_clip(root / "Default" / "Laugh.ogg", seed=2)
    write_clip(root / "Default" / "Jump1.ogg", seed=3)
    write_clip(root / "Classic" / "Hello.ogg", seed=4)
    (root / "Classic" / "Comeonthen.ogg").write_bytes(
        (root / "Default" / "Comeonthen.ogg").read_bytes()
    )
    write_clip(root / "Robot" / "Hello.ogg", seed=5)
    write_clip(root / "Default_pl" / "Hello.ogg", seed=6)
    utts = S.hedgewars_voices(root)
    assert {(u.utterance_id, u.speaker, u.language, u.text) for u in utts} == {
        ("hedgewars:Classic/Comeonthen", "hedgewars-default", "en", "come on then"),
        ("hedgewars:Classic/Hello", "hedgewars-default", "en", "hello"),
        ("hedgewars:Default_pl/Hello", "hedgewars-default-pl", "pl", "hello"),
    }


def test_kajongg_voice_is_one_speaker_in_both_languages(tmp_path: Path) -> None:
    root = tmp_path / "voices"
    write_clip(root / "female1" / "b3.ogg", artist="Petra", seed=1)
    write_clip(root / "female1" / "dr.ogg", artist="Petra", seed=2)
    write_clip(root / "de" / "female1" / "b3.ogg", artist="Petra", seed=3)
    write_clip(root / "male2" / "chow.ogg", seed=4)
    utts = S.kajongg_voices(root)
    assert speakers_of(utts) == {"kajongg-female1": 3, "kajongg-male2": 1}
    assert {u.source for u in utts} == {"kajongg"}
    assert {(u.language, u.text) for u in utts if u.speaker == "kajongg-female1"} == {
        ("en", "bamboo 3"),
        ("en", "red dragon"),
        ("de", "bamboo 3"),
    }


def test_gcin_two_speakers_and_tone_marks(tmp_path: Path) -> None:
    root = tmp_path / "ogg"
    write_clip(root / "ㄅㄚ3" / "3.ogg", seed=1)
    write_clip(root / "ㄅㄚ3" / "5.ogg", seed=2)
    write_clip(root / "ㄇㄚ" / "3.ogg", seed=3)
    utts = S.gcin_syllables(root)
    assert speakers_of(utts) == {"gcin-voice-edward-der-hua-liu": 2, "gcin-voice-chu-lo": 1}
    assert {u.text for u in utts} == {"ㄅㄚˇ", "ㄇㄚ"}
    assert {u.language for u in utts} == {"zh"}


@pytest.mark.parametrize(
    ("function", "package"),
    [
        (S.ktuberling_words, "ktuberling-data"),
        (S.tuxpaint_descriptions, "tuxpaint-stamps-default"),
        (S.klettres_sounds, "klettres-data"),
        (S.hedgewars_voices, "hedgewars-data"),
        (S.kajongg_voices, "kajongg"),
        (S.gcin_syllables, "gcin-voice"),
    ],
)
def test_missing_package_names_it(tmp_path: Path, function, package: str) -> None:
    with pytest.raises(SourceNotFoundError, match=f"apt-get install {package}"):
        function(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFoundError, match=package):
        function(tmp_path / "empty")


def test_speaker_utterances_is_strict_about_a_missing_package(tmp_path: Path, monkeypatch) -> None:
    missing = S.SpeakerSource(lambda: S.gcin_syllables(tmp_path / "absent"), "gcin-voice", "x", "x")
    monkeypatch.setitem(S.SPEAKER_SOURCES, "gcin-voice", missing)
    with pytest.raises(SourceNotFoundError, match="gcin-voice"):
        S.speaker_utterances(sources=["gcin-voice"])
    with pytest.raises(ValueError, match="unknown speaker sources"):
        S.speaker_utterances(sources=["nope"])


def test_speaker_utterances_caps_speakers_and_drops_thin_ones(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "ogg"
    for i, syllable in enumerate("ㄅㄆㄇㄈㄉㄊㄋㄌㄍㄎㄏㄐ"):
        write_clip(root / f"{syllable}ㄚ1" / "3.ogg", 1.0, seed=i)  # 12 s: four composites
    for i, syllable in enumerate("ㄅㄆ"):
        write_clip(root / f"{syllable}ㄛ1" / "5.ogg", 1.0, seed=50 + i)  # 2 s: none
    fake = S.SpeakerSource(lambda: S.gcin_syllables(root), "gcin-voice", "x", "x")
    monkeypatch.setattr(S, "SPEAKER_SOURCES", {"gcin-voice": fake})
    utts = S.speaker_utterances(seed=0, per_speaker=3)
    assert speakers_of(utts) == {"gcin-voice-edward-der-hua-liu": 3}
    assert all(len(u.audio_parts) == 3 for u in utts)
    assert utts == S.speaker_utterances(seed=0, per_speaker=3)
    assert utts != S.speaker_utterances(seed=1, per_speaker=3)
    assert len(S.speaker_utterances(seed=0, per_speaker=12)) == 4


# ---------------------------------------------------------------- composites


def _short_clips(tmp_path: Path) -> tuple[list[Utterance], dict[str, float]]:
    rng = np.random.default_rng(0)
    utts, seconds = [], {}
    for speaker in ("s1", "s2"):
        for language in ("fr", "de"):
            for i in range(14):
                d = float(rng.uniform(0.3, 1.4)) if i else 3.5  # one clip long enough alone
                path = write_clip(tmp_path / speaker / language / f"{i}.wav", d, 8000, seed=i)
                u = Utterance(f"src:{speaker}-{language}-{i}", "src", speaker, language,
                              f"src:{speaker}-{language}-{i}", f"w{i}", str(path))  # fmt: skip
                utts.append(u)
                seconds[str(path)] = d
    return utts, seconds


def test_composites_stay_within_bounds_and_never_mix(tmp_path: Path) -> None:
    utts, seconds = _short_clips(tmp_path)
    by_path = {u.audio_path: u for u in utts}
    comps = S.composite_utterances(utts, seed=3, min_seconds=3.0, max_seconds=6.0)
    assert len({c.utterance_id for c in comps}) == len(comps)
    singles = [c for c in comps if not c.audio_parts]
    assert sorted(c.utterance_id for c in singles) == sorted(
        u.utterance_id for u in utts if u.text == "w0"
    )
    for c in comps:
        if not c.audio_parts:
            continue
        parts = [by_path[p] for p in c.audio_parts]
        assert 3.0 <= sum(seconds[p] for p in c.audio_parts) <= 6.0
        assert {(p.speaker, p.language) for p in parts} == {(c.speaker, c.language)}
        assert c.audio_path == c.audio_parts[0]
        assert c.text == ", ".join(p.text for p in parts)
        assert c.utterance_id == c.transcript_id == f"{parts[0].utterance_id}+{len(parts)}"
    used = [p for c in comps for p in (c.audio_parts or (c.audio_path,))]
    assert len(used) == len(set(used))  # a clip is used once
    # The left-overs are fewer than min_seconds' worth per group.
    for key in {(u.speaker, u.language) for u in utts}:
        left = [
            seconds[str(u.audio_path)]
            for u in utts
            if (u.speaker, u.language) == key and u.audio_path not in used
        ]
        assert sum(left) < 3.0 + 1.4


def test_composites_are_seeded(tmp_path: Path) -> None:
    utts, _ = _short_clips(tmp_path)
    a = S.composite_utterances(utts, seed=1)
    assert a == S.composite_utterances(list(reversed(utts)), seed=1)
    assert a != S.composite_utterances(utts, seed=2)
    with pytest.raises(ValueError, match="min_seconds"):
        S.composite_utterances(utts, seed=1, min_seconds=4.0, max_seconds=2.0)


def test_load_utterance_audio_joins_trimmed_parts_at_the_highest_rate(tmp_path: Path) -> None:
    def padded(path: Path, sr: int, speech: float) -> Path:
        silence = np.zeros(int(0.4 * sr), np.float32)
        sf.write(path, np.concatenate([silence, tone(speech, sr), silence]), sr)
        return path

    a = padded(tmp_path / "a.wav", 8000, 1.0)
    b = padded(tmp_path / "b.wav", 16000, 0.6)
    utt = Utterance("x:a+2", "x", "s", "fr", "x:a+2", "a, b", str(a), audio_parts=(str(a), str(b)))
    wave, sr = load_utterance_audio(utt)
    assert sr == 16000
    gap = int(PART_GAP_SECONDS * sr)
    # Each part is trimmed to its tone (to within a 10 ms analysis hop on each side).
    assert abs(len(wave) - (1.0 * sr + gap + 0.6 * sr)) <= 4 * sr // 100
    first = int(np.flatnonzero(np.abs(wave) > 0.05)[0])
    assert first <= 2 * sr // 100  # leading silence cut
    start = int(np.flatnonzero(np.abs(wave[int(0.9 * sr) :]) == 0)[0]) + int(0.9 * sr)
    assert np.all(wave[start : start + gap - 2 * sr // 100] == 0)  # the digital-silence gap
    single = Utterance("x:b", "x", "s", "fr", "x:b", "b", str(b))
    assert len(load_utterance_audio(single)[0]) == int(1.4 * 16000)  # single files untouched


# ---------------------------------------------------------------- installed packages


@pytest.mark.skipif(not S.KTUBERLING_DIR.is_dir(), reason="ktuberling-data is not installed")
def test_installed_packages_give_many_speakers_and_languages() -> None:
    utts = S.speaker_utterances(seed=0, per_speaker=12)
    sources: dict[str, set[str]] = defaultdict(set)
    for u in utts:
        sources[u.speaker].add(u.source)
    counts = speakers_of(utts)
    assert len(counts) >= 60
    assert len({u.language for u in utts}) >= 10
    assert all(len(s) == 1 for s in sources.values())
    assert min(counts.values()) >= 2 and max(counts.values()) <= 12
    assert len({u.utterance_id for u in utts}) == len(utts)
