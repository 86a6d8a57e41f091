"""Tests of the offline corpus: channel, sources, generators, and a smoke build."""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dfa_lib.core.labels import SPLITS
from dfa_lib.data.corpus import build as corpus_build
from dfa_lib.data.corpus import channel, sources, synthesis
from dfa_lib.data.corpus.build import (
    BuildConfig,
    Task,
    build_offline_corpus,
    plan_main,
    run_task,
)
from dfa_lib.data.corpus.neural import NEURAL_GENERATORS
from dfa_lib.data.manifest import MANIFEST_COLUMNS, file_sha256, manifest_checksum, read_manifest
from dfa_lib.data.protocols import apply_protocol, lofo_family, lofo_rotations, split_leaks

SR = channel.SAMPLE_RATE
HAVE_SOURCES = (
    shutil.which("ffmpeg") is not None
    and shutil.which("espeak-ng") is not None
    and shutil.which("festival") is not None
    and (sources.ASTERISK_SOUNDS / "en_US_f_Allison").is_dir()
    and (sources.FILLETS_DIR / "script").is_dir()
    and sources.FESTVOX_RU_DIR.is_dir()
)
needs_sources = pytest.mark.skipif(
    not HAVE_SOURCES, reason="needs the Debian corpus packages (make setup installs them)"
)
HAVE_NEURAL = all(g.is_available() for g in NEURAL_GENERATORS.values())
HAVE_PROMPTS = (sources.ASTERISK_SOUNDS / "en_US_f_Allison").is_dir()
CLASSICAL_GENERATORS = ("espeak-ng", "flite", "festival", "pico", "world", "griffin-lim")


def _speech_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Harmonic bursts with pauses: enough structure for trimming and the codec."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 0.5 * t)
    wave = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 30))
    envelope = (np.sin(2 * np.pi * 2.0 * t) > -0.3).astype(float)
    wave = wave * envelope + 0.001 * rng.standard_normal(len(t))
    return (0.2 * wave / np.max(np.abs(wave))).astype(np.float32)


# --- channel -------------------------------------------------------------------------------


def test_channel_equalises_rate_length_level_and_band():
    cfg = channel.ChannelConfig()
    silence = np.zeros(int(0.7 * 22050), dtype=np.float32)
    wave = np.concatenate([silence, _speech_like(5.3, 22050), silence])
    segs = channel.apply_channel(wave, 22050, cfg, key="x")
    assert len(segs) == 3  # 5.3 s of speech -> three whole 1.5 s segments
    for seg in segs:
        assert seg.dtype == np.float32 and len(seg) == cfg.segment_samples
        rms_db = 20 * np.log10(np.sqrt(np.mean(seg.astype(float) ** 2)))
        # The last limiting pass may leave a peaky clip a little under its drawn level.
        assert cfg.output_dbfs[0] - 3.0 <= rms_db <= cfg.output_dbfs[1] + 0.1
        crest = 20 * np.log10(np.max(np.abs(seg))) - rms_db
        assert crest <= cfg.crest_db[1] + 3.0
        spectrum = np.abs(np.fft.rfft(seg)) ** 2
        freqs = np.fft.rfftfreq(len(seg), 1 / SR)
        assert spectrum[freqs > 4000].sum() / spectrum.sum() < 1e-4
    # The first segment starts at the speech onset: the leading silence is gone.
    head = segs[0][: SR // 10].astype(float)
    assert np.sqrt(np.mean(head**2)) > 0.1 * np.sqrt(np.mean(segs[0].astype(float) ** 2))


def test_equaliser_removes_spectral_tilt():
    cfg = channel.ChannelConfig()
    bright = np.diff(_speech_like(3.0, SR), prepend=0.0).astype(np.float32)  # +6 dB/octave tilt
    dull = _speech_like(3.0, SR)
    freqs = np.fft.rfftfreq(512, 1 / SR)
    band = (freqs > 300) & (freqs < 3400)

    def tilt(wave):
        ltas = channel.long_term_spectrum_db(wave)
        return np.polyfit(np.log2(freqs[band]), ltas[band], 1)[0]

    assert abs(tilt(bright) - tilt(dull)) > 4.0
    shaped = [channel.shape_spectrum(w, cfg) for w in (bright, dull)]
    assert abs(tilt(shaped[0]) - tilt(shaped[1])) < 1.5


def test_channel_is_deterministic_and_drops_short_clips():
    cfg = channel.ChannelConfig()
    wave = _speech_like(3.5, 16000)
    a = channel.apply_channel(wave, 16000, cfg, key="k")
    b = channel.apply_channel(wave, 16000, cfg, key="k")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert channel.apply_channel(_speech_like(1.2, 16000), 16000, cfg, key="k") == []
    assert channel.apply_channel(wave, 16000, cfg, key="other")[0].tolist() != a[0].tolist()


def test_g722_roundtrip_keeps_length_and_shape():
    wave = _speech_like(1.0, SR) * 2
    out = channel.g722_roundtrip(wave)
    assert len(out) == len(wave)
    # G.722's filter bank delays the signal by a few dozen samples.
    best = max(
        np.corrcoef(out[200 + lag :], wave[200 : len(wave) - lag])[0, 1] for lag in range(64)
    )
    assert best > 0.9


def test_codec_many_matches_single_roundtrips_closely():
    cfg = channel.ChannelConfig()
    waves = [_speech_like(2.0, SR, seed=i) for i in range(3)]
    joined = channel.codec_many(waves, cfg)
    assert [len(w) for w in joined] == [len(w) for w in waves]
    single = channel.g722_roundtrip(waves[1])
    # ADPCM state carries a little across the gap; the clips stay close to separate coding.
    error = np.sqrt(np.mean((joined[1] - single) ** 2)) / np.sqrt(np.mean(single**2))
    assert error < 0.1


def test_long_pauses_are_shortened():
    word = _speech_like(0.5, SR)
    pause = np.zeros(SR, dtype=np.float32)
    wave = np.concatenate([word, pause, word, pause[:1000], word])
    out = channel.shorten_pauses(wave, 35.0, 0.2)
    # The 1 s pause shrinks to about 0.2 s; the 62 ms one stays.
    assert len(wave) - len(out) == pytest.approx(0.8 * SR, abs=0.03 * SR)
    assert channel.shorten_pauses(word, 35.0, 0.2) is word


def test_trim_silence_removes_edges():
    wave = np.concatenate([np.zeros(8000), _speech_like(1.0, SR), np.zeros(4000)]).astype(
        np.float32
    )
    trimmed = channel.trim_silence(wave, 35.0)
    assert 15000 < len(trimmed) < 16800


# --- sources -------------------------------------------------------------------------------


def test_clean_text_drops_stage_directions():
    assert sources.clean_text("Hello [beep] world (pause)  now") == "Hello world now"
    assert sources.clean_text("вол+ос") == "волос"


def test_fillets_dialogs_and_speakers(tmp_path):
    level = tmp_path / "script" / "boat"
    level.mkdir(parents=True)
    (level / "dialogs_nl.lua").write_text(
        'dialogId("bot-m-hello", "font_small", "Hello.")\ndialogStr("Hallo daar.")\n\n'
        'dialogId("bot-v-bye", "font_big", "Bye.")\ndialogStr("[zucht]")\n',
        encoding="utf-8",
    )
    (tmp_path / "sound" / "boat" / "nl").mkdir(parents=True)
    sf.write(
        tmp_path / "sound" / "boat" / "nl" / "bot-m-hello.ogg", _speech_like(1.0, 22050), 22050
    )
    assert sources.read_fillets_dialogs("nl", tmp_path) == {"bot-m-hello": ("boat", "Hallo daar.")}
    lines = sources.fillets_lines("nl", data_dir=tmp_path)
    assert [(u.speaker, u.transcript_id) for u in lines] == [
        ("fillets-nl-m", "fillets-nl:bot-m-hello")
    ]
    assert sources.fillets_speaker("x-1") == "misc"
    with pytest.raises(sources.SourceNotFoundError, match="fillets-ng-data-cs"):
        sources.fillets_lines("cs", data_dir=tmp_path)


def test_festvox_transcripts(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "wav").mkdir()
    (tmp_path / "etc" / "txt.done.data").write_text('( ru_0001 "Она п+ошла." )\n', encoding="utf-8")
    sf.write(tmp_path / "wav" / "ru_0001.wav", _speech_like(1.0, 16000), 16000)
    (utt,) = sources.festvox_ru_recordings(tmp_path)
    assert utt.text == "Она пошла." and utt.speaker == "festvox-ru-nsh"
    wave, sr = sources.load_utterance_audio(utt)
    assert sr == 16000 and len(wave) == 16000


def test_missing_package_error_names_it(tmp_path):
    with pytest.raises(sources.SourceNotFoundError, match="apt-get install festvox-ru"):
        sources.festvox_ru_recordings(tmp_path)


# --- generators and planning ---------------------------------------------------------------


def test_vocoders_are_deterministic():
    wave = _speech_like(1.5, SR)
    for gen in ("world", "griffin-lim"):
        a, sr_a = synthesis.GENERATORS[gen].vocode(wave, SR)
        b, _ = synthesis.GENERATORS[gen].vocode(wave, SR)
        assert sr_a == SR and len(a) == len(wave) and np.array_equal(a, b)
        assert np.std(a) > 0.01


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_espeak_is_deterministic():
    a, sr = synthesis.espeak_synthesize("Please hold the line.", "en", "en+m3")
    b, _ = synthesis.espeak_synthesize("Please hold the line.", "en", "en+m3")
    assert sr == 22050 and len(a) > sr // 2 and np.array_equal(a, b)


def _utts(speakers: dict[str, tuple[str, int]]) -> list[sources.Utterance]:
    """Utterances of made-up speakers: speaker -> (language, number of utterances)."""
    return [
        sources.Utterance(f"{spk}:{i}", f"src-{spk}", spk, lang, f"{spk}:{i}", f"words {i}")
        for spk, (lang, n) in speakers.items()
        for i in range(n)
    ]


def test_speakers_get_one_split_each_and_languages_span_the_splits():
    speakers = {f"en-{i}": ("en", 10) for i in range(12)}
    speakers |= {f"fr-{i}": ("fr", 10) for i in range(4)}
    speakers |= {"it-0": ("it", 10), "big": ("es", 60)}
    utts = _utts(speakers)
    for seed in (0, 1):
        split_of = corpus_build.assign_speaker_splits(utts, seed, (0.7, 0.15, 0.15))
        assert set(split_of) == set(speakers)
        for lang in ("en", "fr"):
            assert {s for k, s in split_of.items() if k.startswith(lang)} == set(SPLITS), lang
        load = {s: sum(speakers[k][1] for k, v in split_of.items() if v == s) for s in SPLITS}
        total = sum(load.values())
        assert load["training"] / total == pytest.approx(0.7, abs=0.1)
        assert load["testing"] / total == pytest.approx(0.15, abs=0.07)
    assert corpus_build.assign_speaker_splits(utts, 0, (0.7, 0.15, 0.15)) == (
        corpus_build.assign_speaker_splits(utts, 0, (0.7, 0.15, 0.15))
    )


def test_tts_voices_go_only_where_their_language_is_heard():
    voices = corpus_build.tts_voices(["en", "it", "ru"])
    assert ("hibari", "af_heart") in voices["en"] and (
        "open-jtalk",
        "nitech-jp-atr503-m001",
    ) not in [gv for members in voices.values() for gv in members]
    heard = {"en": set(SPLITS), "it": {"training"}, "ru": {"training", "validation"}}
    for seed in (0, 1, 2):
        split_of = corpus_build.assign_voice_splits(voices, heard, seed)
        assert split_of["hibari:af_heart"] == "testing"
        assert split_of["festival:msu_ru_nsh_clunits"] == "testing"
        for lang, members in voices.items():
            splits = {split_of[synthesis.voice_id(*gv)] for gv in members}
            if lang == "it":
                assert splits == {"training"}
            if lang == "en":
                assert splits == set(SPLITS)
        # A family with a voice per split is heard in every split of a language heard in all.
        espeak_en = {split_of[synthesis.voice_id("espeak-ng", v)] for v in ("en+m3", "en+f2")}
        espeak_en.add(split_of[synthesis.voice_id("espeak-ng", "en-us+f4")])
        assert espeak_en == set(SPLITS)


def _plan(monkeypatch, speakers, **config) -> tuple[list[Task], dict[str, str]]:
    utts = _utts(speakers)
    monkeypatch.setattr(corpus_build.sources, "asterisk_prompts", lambda: [])
    monkeypatch.setattr(corpus_build, "speaker_utterances", lambda seed, per_speaker: utts)
    cfg = BuildConfig(**config)
    split_of = corpus_build.assign_speaker_splits(utts, cfg.seed, cfg.split_fractions)
    return plan_main(cfg), split_of


def test_plan_copies_every_speaker_with_every_vocoder_in_their_own_split(monkeypatch):
    speakers = {f"en-{i}": ("en", 9) for i in range(6)} | {f"wa-{i}": ("wa", 9) for i in range(3)}
    tasks, split_of = _plan(monkeypatch, speakers)
    copiers = corpus_build.vocoders()
    assert {"world", "griffin-lim", "hifigan", "lpcnet", "fargan"} <= set(copiers)
    for spk in speakers:
        mine = [t for t in tasks if t.utterances[0].speaker == spk]
        assert {t.split for t in mine} == {split_of[spk]}
        leading = {t.voices[0][0] for t in mine if t.voices[0][1] == spk}
        assert leading == set(copiers), spk  # nine utterances: every vocoder copies this speaker
        for t in mine:
            for gen, voice in t.voices:
                if synthesis.GENERATORS[gen].kind == "vocoder":
                    assert voice == spk  # a copy is always of the task's own speaker
    # English has TTS voices after the copy; Walloon (no TTS voice here) only copies.
    en = [t for t in tasks if t.utterances[0].language == "en"]
    assert any(synthesis.GENERATORS[g].kind == "tts" for t in en for g, _ in t.voices)
    wa = [t for t in tasks if t.utterances[0].language == "wa"]
    assert all(synthesis.GENERATORS[g].kind == "vocoder" for t in wa for g, _ in t.voices)
    # TTS voices speak only in their split.
    voices = corpus_build.tts_voices(["en", "wa"])
    heard = {"en": {split_of[s] for s in speakers if s.startswith("en")}}
    split_of_voice = corpus_build.assign_voice_splits(voices, heard, 0)
    for t in en:
        for gen, voice in t.voices:
            if synthesis.GENERATORS[gen].kind == "tts":
                assert split_of_voice[synthesis.voice_id(gen, voice)] == t.split


def test_smoke_plan_keeps_the_asterisk_speakers(monkeypatch):
    prompts = _utts({"asterisk-a": ("en", 5), "asterisk-b": ("fr", 5)})
    others = _utts({f"x-{i}": ("de", 4) for i in range(20)})
    monkeypatch.setattr(corpus_build.sources, "asterisk_prompts", lambda: prompts)
    monkeypatch.setattr(corpus_build, "speaker_utterances", lambda seed, per_speaker: others)
    utts = corpus_build.corpus_utterances(BuildConfig(max_speakers=6, asterisk_per_speaker=3))
    speakers = {u.speaker for u in utts}
    assert len(speakers) == 6 and {"asterisk-a", "asterisk-b"} <= speakers
    assert sum(u.speaker == "asterisk-a" for u in utts) == 3


@pytest.mark.skipif(
    not (HAVE_PROMPTS and Path("/usr/share/ktuberling").is_dir()),
    reason="needs the Debian speech packages (make setup installs them)",
)
def test_default_plan_has_many_speakers_each_copied_by_vocoders():
    config = BuildConfig()
    tasks = plan_main(config)
    speakers = {t.utterances[0].speaker for t in tasks}
    languages = {t.utterances[0].language for t in tasks}
    assert len(speakers) >= 60 and len(languages) >= 10
    split_of: dict[str, set[str]] = {}
    copied: dict[str, set[str]] = {}
    for t in tasks:
        spk = t.utterances[0].speaker
        split_of.setdefault(spk, set()).add(t.split)
        if synthesis.GENERATORS[t.voices[0][0]].kind == "vocoder":
            copied.setdefault(spk, set()).add(t.voices[0][0])
    assert all(len(s) == 1 for s in split_of.values())  # speaker-disjoint
    assert set(copied) == speakers  # every real speaker has vocoder copies of their own voice
    for split in SPLITS:
        leading = {t.voices[0][0] for t in tasks if t.split == split}
        assert set(corpus_build.vocoders()) <= leading, split


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_neural_copy_is_capped_and_classical_voices_fill_the_rest(monkeypatch, tmp_path):
    registry = dict(synthesis.GENERATORS)
    # A stand-in for a slow neural vocoder: what is tested is the cap, not the network.
    calls: list[int] = []

    def quiet_copy(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        calls.append(len(wave))
        return (0.5 * wave).astype(np.float32), sr

    registry["toy-neural"] = synthesis.Generator(
        "toy-neural", "vocoder", "gan-vocoder", vocode=quiet_copy
    )
    monkeypatch.setattr(corpus_build, "GENERATORS", registry)
    monkeypatch.setattr(synthesis, "GENERATORS", registry)
    audio = tmp_path / "prompt.wav"
    sf.write(audio, _speech_like(7.0, SR), SR)
    utt = sources.Utterance("t:1", "asterisk-en", "spk", "en", "t:1", "x", str(audio))
    task = Task(
        "t-1", "offline-main", "training", (utt,), (("toy-neural", "spk"), ("world", "spk"))
    )
    cfg = channel.ChannelConfig()
    capped = pd.DataFrame(run_task(Task(**{**task.__dict__, "neural_segments": 1}), tmp_path, cfg))
    real = capped[capped.label == "real"]
    fake = capped[capped.label == "fake"]
    assert len(real) >= 3 and len(fake) == len(real)
    assert (fake.generator == "toy-neural").sum() == 1
    assert set(fake.generator) == {"toy-neural", "world"}
    assert set(real.family) == {"human"}
    assert set(fake.family) == {"gan-vocoder", "dsp-vocoder"}
    # The copy got only what one clip needs, not the whole prompt.
    assert calls[-1] < 3.0 * SR
    whole = pd.DataFrame(run_task(task, tmp_path / "whole", cfg))
    assert set(whole.loc[whole.label == "fake", "generator"]) == {"toy-neural"}
    # A leading copy with a share makes that share; the next voice speaks the rest.
    half = pd.DataFrame(
        run_task(Task(**{**task.__dict__, "copy_share": 0.5}), tmp_path / "half", cfg)
    )
    n_real = (half.label == "real").sum()
    assert (half.generator == "toy-neural").sum() == max(1, round(0.5 * n_real))
    assert (half.label == "fake").sum() == n_real


# --- smoke build ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    if not HAVE_SOURCES or not HAVE_NEURAL:
        pytest.skip("needs the Debian corpus packages and the neural vocoders (make setup)")
    root = tmp_path_factory.mktemp("corpus")
    build_offline_corpus(root, progress=False, **SMOKE_KWARGS)
    return root


# Ten speakers, two utterances each; one clip per neural copy.
SMOKE_KWARGS = dict(
    seed=0,
    workers=2,
    per_speaker=2,
    max_speakers=10,
    cross_max_per_source=4,  # as the smoke profile: two Japanese sentences, one open-jtalk clip
    neural_max_segments=1,
)


@needs_sources
@pytest.mark.slow
def test_smoke_manifest_columns_values_and_files(smoke_root):
    for corpus in ("offline-main", "offline-cross"):
        df = read_manifest(smoke_root / corpus / "manifest.csv")
        assert list(df.columns) == [*MANIFEST_COLUMNS, "family"]
        families = df.drop_duplicates("generator").set_index("generator")["family"]
        assert families.pop("human") == "human"
        fakes = df[df.label == "fake"].drop_duplicates("speaker")
        for row in fakes.itertuples():
            voice = row.speaker.split(":", 1)[1]
            assert synthesis.GENERATORS[row.generator].family_of(voice) == row.family
        assert set(df["family"]) <= {"human", *synthesis.FAMILIES}
        assert set(df["label"]) == {"real", "fake"}
        assert (df["sample_rate"] == SR).all() and np.allclose(df["duration"], 1.5)
        assert set(df.loc[df["label"] == "real", "generator"]) == {"human"}
        assert not df["sha256"].duplicated().any()
        for row in df.itertuples():
            assert row.path == f"{row.split}/{row.label}/{Path(row.path).name}"
            info = sf.info(str(smoke_root / corpus / row.path))
            assert (info.samplerate, info.channels, info.frames) == (SR, 1, int(1.5 * SR))
        if corpus == "offline-main":
            assert set(df["split"]) == set(SPLITS)
            assert {"human", "dsp-vocoder", "gan-vocoder", "formant"} <= set(df["family"])
            real = df[df.label == "real"]
            assert real.groupby("speaker")["split"].nunique().max() == 1  # speaker-disjoint
            # Every real speaker has vocoder copies of their own voice.
            copied = {s.split(":", 1)[1] for s in df.loc[df.label == "fake", "speaker"]}
            assert set(real["speaker"]) <= copied
            # Same sentences on both sides: every fake transcript also has real clips.
            assert set(df.loc[df.label == "fake", "transcript_id"]) <= set(
                df.loc[df.label == "real", "transcript_id"]
            )
        else:
            assert set(df["split"]) == {"testing"}
            assert {"fillets-cs", "fillets-nl", "festvox-ru", "open-jtalk"} <= set(df["source"])


@needs_sources
@pytest.mark.slow
def test_smoke_protocols_are_leak_free(smoke_root):
    main = read_manifest(smoke_root / "offline-main" / "manifest.csv")
    cross = read_manifest(smoke_root / "offline-cross" / "manifest.csv")
    held = sorted(set(main.loc[(main.split == "testing") & (main.label == "fake"), "generator"]))[
        :1
    ]
    rotations = lofo_rotations(main)
    assert rotations
    runs = {
        "in-domain": apply_protocol(main, "in-domain"),
        "unseen-generator": apply_protocol(main, "unseen-generator", held_out_generators=held),
        "cross-source": apply_protocol(main, "cross-source", cross=cross),
        **{name: apply_protocol(main, name) for name in rotations},
    }
    for name, df in runs.items():
        assert not any(split_leaks(df).values()), name
        real = df[df.label == "real"]
        assert real.groupby("speaker")["split"].nunique().max() == 1, name
    for name in rotations:
        df = runs[name]
        family = lofo_family(name)
        assert family in set(df.query("split == 'testing' and label == 'fake'")["family"])
        assert family not in set(df.loc[df.split != "testing", "family"])
    test_fakes = runs["unseen-generator"].query("split == 'testing' and label == 'fake'")
    assert set(test_fakes["generator"]) == set(held)
    cross_run = runs["cross-source"]
    train_speakers = set(cross_run.loc[cross_run.split != "testing", "speaker"])
    assert not train_speakers & set(cross_run.loc[cross_run.split == "testing", "speaker"])


@needs_sources
@pytest.mark.slow
def test_smoke_build_is_idempotent_resumable_and_deterministic(smoke_root, tmp_path):
    main_dir = smoke_root / "offline-main"
    manifest = main_dir / "manifest.csv"
    checksum = manifest_checksum(read_manifest(manifest))
    stamp = manifest.stat().st_mtime_ns
    kwargs = dict(SMOKE_KWARGS, progress=False)
    # A second build finds the marker and every file: it writes nothing.
    build_offline_corpus(smoke_root, **kwargs)
    assert manifest.stat().st_mtime_ns == stamp

    # A copy with the marker gone (a killed build), clips missing and a temporary file left.
    copy = tmp_path / "copy"
    shutil.copytree(smoke_root, copy)
    cdir = copy / "offline-main"
    (cdir / ".complete.json").unlink()
    df = pd.read_csv(cdir / "manifest.csv")
    for rel in df["path"].iloc[::3]:
        (cdir / rel).unlink()
    (cdir / "training" / "fake" / ".partial.tmp.wav").write_bytes(b"RIFF")
    build_offline_corpus(copy, include_cross=False, **kwargs)
    assert manifest_checksum(read_manifest(cdir / "manifest.csv")) == checksum
    assert not (cdir / "training" / "fake" / ".partial.tmp.wav").exists()
    assert json.loads((cdir / ".complete.json").read_text())["manifest_sha256"] == checksum

    # A fresh build with the same seed gives the same checksum.
    fresh = tmp_path / "fresh"
    build_offline_corpus(fresh, include_cross=False, **kwargs)
    assert manifest_checksum(read_manifest(fresh / "offline-main" / "manifest.csv")) == checksum


# --- neural generators ---------------------------------------------------------------------


def test_neural_vocoders_are_registered_with_their_family():
    for name in ("hifigan", "hifigan-16k", "lpcnet", "fargan"):
        gen = synthesis.GENERATORS[name]
        assert gen.kind == "vocoder" and gen.vocode is NEURAL_GENERATORS[name].callable
        assert gen.family == NEURAL_GENERATORS[name].family
        assert synthesis.is_neural(name)
    assert {synthesis.GENERATORS[n].family for n in ("hifigan", "fargan")} == {"gan-vocoder"}
    assert synthesis.GENERATORS["lpcnet"].family == "codec-vocoder"
    assert not any(synthesis.is_neural(g) for g in CLASSICAL_GENERATORS)


def test_build_config_fingerprint_tracks_settings():
    a = BuildConfig(seed=0).fingerprint()
    assert a == BuildConfig(seed=0).fingerprint()
    assert a != BuildConfig(seed=1).fingerprint()
    assert a != BuildConfig(channel=channel.ChannelConfig(segment_seconds=3.0)).fingerprint()
    assert a != BuildConfig(per_speaker=5).fingerprint()
    with pytest.raises(ValueError, match="copy_share"):
        BuildConfig(copy_share=1.5)


# --- interrupted and damaged builds (toy tasks: what is tested is the bookkeeping) -------


def _toy_tasks(n: int) -> list[Task]:
    tasks = []
    for i in range(n):
        utt = sources.Utterance(f"toy:{i}", "toy", "spk", "en", f"toy:{i}", "words")
        tasks.append(Task(f"toy-{i}", "toy", "training", (utt,), ()))
    return tasks


def _toy_run_task(task: Task, corpus_dir: str, config: channel.ChannelConfig) -> list[dict]:
    """Write two short clips per task, the way run_task writes its clips."""
    seed = int(task.task_id.rsplit("-", 1)[1])
    wave = 0.1 * np.random.default_rng(seed).standard_normal(SR // 10).astype(np.float32)
    utt = task.utterances[0]
    return [
        corpus_build._clip_row(
            Path(corpus_dir), task, wave * (k + 1), "real", utt, "human", "spk", "toy", k, SR
        )
        for k in range(2)
    ]


def _slow_run_task(task: Task, corpus_dir: str, config: channel.ChannelConfig) -> list[dict]:
    time.sleep(8.0)
    return []


def _toy_build(root: Path, **kwargs) -> Path:
    args = dict(workers=1, progress=False) | kwargs
    return corpus_build._build_one("toy", _toy_tasks(3), root, BuildConfig(), **args)


def test_ctrl_c_stops_a_multi_worker_build_at_once(monkeypatch, tmp_path):
    # The pool forks after the patch, so its workers run the slow task too.
    monkeypatch.setattr(corpus_build, "run_task", _slow_run_task)
    # A real SIGINT to the main thread, as Ctrl-C sends: it interrupts the wait for results.
    main_thread = threading.main_thread().ident
    ctrl_c = threading.Timer(1.0, signal.pthread_kill, (main_thread, signal.SIGINT))
    # A process started in the background ignores SIGINT: make it raise, as in a terminal.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.monotonic()
    ctrl_c.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            corpus_build._build_one(
                "toy", _toy_tasks(4), tmp_path, BuildConfig(), workers=2, progress=False
            )
    finally:
        ctrl_c.cancel()
        signal.signal(signal.SIGINT, handler)
    # Draining the queue would take 16 s (four 8-s tasks on two workers).
    assert time.monotonic() - start < 4.0
    assert not (tmp_path / "toy" / ".complete.json").exists()
    # The workers are gone, not left running: a stopped worker may take a moment to be reaped
    # on a busy machine, but one left to finish its task would live until 8 s after the start.
    while multiprocessing.active_children() and time.monotonic() - start < 7.0:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []
    assert time.monotonic() - start < 7.5


@pytest.mark.parametrize("damage", [b'{"fingerprint": ', b"\xff\xfe\x00", b"[1, 2]", b""])
def test_a_damaged_completion_marker_means_not_built(monkeypatch, tmp_path, damage):
    monkeypatch.setattr(corpus_build, "run_task", _toy_run_task)
    manifest = _toy_build(tmp_path)
    checksum = manifest_checksum(read_manifest(manifest))
    marker = tmp_path / "toy" / ".complete.json"
    marker.write_bytes(damage)
    assert _toy_build(tmp_path) == manifest
    info = json.loads(marker.read_text())
    assert info["manifest_sha256"] == checksum and info["clips"] == 6


def test_a_clip_changed_after_the_build_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus_build, "run_task", _toy_run_task)
    manifest = _toy_build(tmp_path)
    df = read_manifest(manifest)
    paths = [tmp_path / "toy" / p for p in df["path"]]
    sizes = [p.stat().st_size for p in paths]
    paths[0].write_bytes(b"")  # emptied
    with paths[1].open("r+b") as f:  # cut short
        f.truncate(sizes[1] // 2)
    with paths[2].open("r+b") as f:  # overwritten with zeros, same size
        f.write(bytes(sizes[2]))
    _toy_build(tmp_path)
    assert [p.stat().st_size for p in paths[:2]] == sizes[:2]
    assert [file_sha256(p) for p in paths[:2]] == list(df["sha256"][:2])
    # Same size: only a check of the content finds it, and only when asked (it reads it all).
    assert file_sha256(paths[2]) != df["sha256"][2]
    _toy_build(tmp_path, verify=True)
    assert [file_sha256(p) for p in paths] == list(df["sha256"])
    assert manifest_checksum(read_manifest(manifest)) == manifest_checksum(df)


@needs_sources
@pytest.mark.slow
def test_smoke_clips_truncated_or_zeroed_after_the_build_are_rebuilt(smoke_root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(smoke_root / "offline-main", copy / "offline-main")
    cdir = copy / "offline-main"
    df = read_manifest(cdir / "manifest.csv")
    cut, zeroed = cdir / df["path"].iloc[0], cdir / df["path"].iloc[-1]
    with cut.open("r+b") as f:
        f.truncate(1000)
    zeroed.write_bytes(bytes(zeroed.stat().st_size))
    kwargs = dict(SMOKE_KWARGS, progress=False, include_cross=False)
    build_offline_corpus(copy, **kwargs)
    assert file_sha256(cut) == df["sha256"].iloc[0]
    assert file_sha256(zeroed) != df["sha256"].iloc[-1]  # same size: found only by --verify
    build_offline_corpus(copy, verify=True, **kwargs)
    assert file_sha256(zeroed) == df["sha256"].iloc[-1]
    assert manifest_checksum(read_manifest(cdir / "manifest.csv")) == manifest_checksum(df)


def test_ids_that_differ_only_in_non_ascii_characters_get_different_file_names():
    ids = ["gcin-voice-3:ㄅ+5", "gcin-voice-3:ㄆ+5", "klettres-he:א", "klettres-he:ב"]
    names = [corpus_build._slug(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    assert corpus_build._slug("asterisk-en:agent-pass") == "asterisk-en-agent-pass"
