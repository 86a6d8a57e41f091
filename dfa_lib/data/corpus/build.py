"""Build the offline corpora: ``offline-main`` and the cross-source set ``offline-cross``.

``offline-main`` holds real speech from many speakers (the Asterisk prompts, capped per speaker,
and the game and education recordings of :mod:`dfa_lib.data.corpus.speakers`) and, for every
real utterance, fakes of the same length. Its ``split`` column is the ``in-domain`` protocol,
decided here:

- every real speaker goes to one split (:func:`assign_speaker_splits`; languages with three or
  more speakers are heard in every split), so no protocol tests on a speaker it trained on;
- every TTS voice goes to one split among those where its language has real speech
  (:func:`assign_voice_splits`), and speaks only the texts of that split; festival's Russian
  voice is the festvox-ru speaker of the cross-source set and hibari's only voice is the only
  neural TTS, so both are pinned to ``testing`` (:data:`PINNED_VOICE_SPLITS`);
- every real speaker has vocoder copies of their own voice: their first utterances take every
  vocoder in turn (classical and neural), later ones every ``vocoder_every``-th; a copy makes
  ``copy_share`` of the utterance's fake segments (a neural copy at most
  ``neural_max_segments``: they are the slow part of the build), the TTS voices of the
  utterance's language and split the rest, in rotation, and the classical vocoders finish what
  is left (a language no TTS voice speaks is faked by copies only).

Both manifests carry a ``family`` column beside ``generator``: ``human`` for real clips, else the
generator family of :data:`dfa_lib.data.corpus.synthesis.FAMILIES`, which the
``leave-one-family-out`` protocols hold out in turn.

``offline-cross`` (all ``testing``) holds the Czech and Dutch game dialogue of Fish Fillets with
the same lines from festival's Czech voices and espeak-ng's Dutch, the festvox-ru recordings
with festival's Russian voice speaking the game's Russian lines (not the sentences he recorded,
which its unit selection would copy back), and Japanese sentences read by open-jtalk (no
Japanese recording is installed, so this generator is only ever tested). It takes a seeded
sample of ``cross_max_per_source`` lines per game language and a quarter as many read sentences
(a sentence gives several clips).

Every clip passes the channel of :mod:`dfa_lib.data.corpus.channel`. The build runs one task per
utterance on a process pool; a task writes its clips atomically, then a small JSON record of
its rows and each clip's size, so a killed build resumes where it stopped, and a finished one
(marker file with the configuration, the manifest checksum and each clip's size) returns at
once. Ctrl-C cancels the queued tasks and ends the workers at once; the next build resumes.

What counts as built: a clip whose size is the one recorded when it was written (a clip
truncated or emptied since is rebuilt, by re-running its task); with ``verify=True``
(``--verify``) also one whose SHA-256 is the manifest's, which reads every clip. A marker
that cannot be read is no marker: the build checks the clips and resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from dfa_lib.core.atomic import write_json_atomically
from dfa_lib.core.labels import SPLITS
from dfa_lib.data.audio import save_audio
from dfa_lib.data.corpus import sources
from dfa_lib.data.corpus.channel import ChannelConfig, codec_many, prepare, segment, trim_silence
from dfa_lib.data.corpus.neural import NEURAL_GENERATORS
from dfa_lib.data.corpus.sources import Utterance
from dfa_lib.data.corpus.speakers import speaker_utterances, text_is_spoken
from dfa_lib.data.corpus.synthesis import (
    CROSS_VOICES,
    GENERATORS,
    HUMAN,
    SynthesisError,
    festival_synthesize_many,
    is_neural,
    japanese_sentences,
    voice_id,
)
from dfa_lib.data.manifest import file_sha256, manifest_checksum, write_manifest

MAIN = "offline-main"
CROSS = "offline-cross"
# Bump a corpus's version when the code changes what an unchanged configuration produces.
BUILD_VERSIONS: dict[str, int] = {"offline-main": 8, "offline-cross": 3}

# The festvox-ru speaker recorded the units festival's Russian voice concatenates, and his
# recordings are in the cross-source set: keep that voice out of main training/validation.
# hibari has one voice, the only neural TTS voice installed: it is held for testing.
PINNED_VOICE_SPLITS: dict[str, str] = {
    voice_id("festival", "msu_ru_nsh_clunits"): "testing",
    voice_id("hibari", "af_heart"): "testing",
}


# Training, validation and test shares of the real utterances (and of each language's voices).
SPLIT_FRACTIONS: tuple[float, float, float] = (0.65, 0.15, 0.20)


class CorpusBuildError(RuntimeError):
    """Raised when a corpus cannot be built as configured."""


@dataclass(frozen=True)
class BuildConfig:
    """What to build; two builds with equal configs give the same manifests."""

    seed: int = 0
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    split_fractions: tuple[float, float, float] = SPLIT_FRACTIONS  # of real utterances
    per_speaker: int = 10  # utterances per speaker of the many-speaker sources
    asterisk_per_speaker: int = 60  # prompts per Asterisk speaker
    max_speakers: int | None = None  # a seeded subset of speakers (smoke builds)
    cross_max_per_source: int | None = 400  # utterances per real source of offline-cross
    voices_per_transcript: int = 6  # TTS voices tried in turn until the real segments are matched
    festival_batch: int = 12  # sentences per festival process for the text-only tasks
    vocoder_every: int = 3  # after a speaker's first utterances, every n-th one is also copied
    copy_share: float = 0.5  # share of an utterance's fake segments its vocoder copy makes
    neural_max_segments: int | None = 2  # clips a neural generator makes of one utterance

    def __post_init__(self) -> None:
        if not 0.0 < self.copy_share <= 1.0:
            raise ValueError(f"copy_share must be in (0, 1], got {self.copy_share}")
        if self.vocoder_every < 1 or self.per_speaker < 1 or self.asterisk_per_speaker < 1:
            raise ValueError(
                "vocoder_every, per_speaker and asterisk_per_speaker must be at least 1"
            )
        if self.neural_max_segments is not None and self.neural_max_segments < 1:
            raise ValueError(
                f"neural_max_segments must be at least 1 or None, got {self.neural_max_segments}"
            )

    def fingerprint(self, corpus: str = "offline-main") -> str:
        """Return a short hash of the configuration, the generator registry and the code version."""
        data = asdict(self)
        data["channel"] = self.channel.describe()
        data["generators"] = {
            n: {
                "kind": g.kind,
                "family": g.family,
                "voice_families": dict(sorted(g.voice_families.items())),
                "voices": {k: list(v) for k, v in g.voices.items()},
            }
            for n, g in sorted(GENERATORS.items())
        }
        # The neural vocoders' code or build (FARGAN's build id among them) makes their clips.
        data["neural_packages"] = {n: g.package for n, g in sorted(NEURAL_GENERATORS.items())}
        data["cross_voices"] = CROSS_VOICES
        data["corpus"] = corpus
        data["version"] = BUILD_VERSIONS.get(corpus, 1)
        text = json.dumps(data, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Task:
    """One unit of work: an utterance's real segments and the fakes that match them."""

    task_id: str
    corpus: str
    split: str
    utterances: tuple[Utterance, ...]  # one recording, or sentences to synthesise only
    voices: tuple[tuple[str, str], ...]  # (generator, voice), tried in order
    write_real: bool = True
    fake_target: int | None = None  # fake segments wanted; None: as many as real ones
    neural_segments: int | None = None  # at most this many fake segments per neural voice
    copy_share: float = 1.0  # share of the fake segments a leading vocoder copy makes


def _unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def _slug(text: str) -> str:
    """Return a file-name-safe form of an id; ids with non-ASCII characters (which the safe
    form drops) get a hash of the id appended, so two such ids never share a file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    if text.isascii():
        return slug
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def assign_speaker_splits(
    utterances: Iterable[Utterance], seed: int, fractions: tuple[float, float, float]
) -> dict[str, str]:
    """Give every real speaker one split, so no speaker is heard in two splits.

    Speakers are taken largest first (ties in a seeded order). Each goes to the split that
    first gives a language of it a speaker it lacks there (only for languages with at least
    three speakers, so they are heard in every split), then keeps the splits' shares of
    utterances closest to ``fractions``.
    """
    share = dict(zip(SPLITS, fractions, strict=True))
    size: dict[str, int] = defaultdict(int)
    langs_of: dict[str, set[str]] = defaultdict(set)
    for u in utterances:
        size[u.speaker] += 1
        langs_of[u.speaker].add(u.language)
    speakers_of_lang: dict[str, int] = defaultdict(int)
    for langs in langs_of.values():
        for lang in langs:
            speakers_of_lang[lang] += 1
    load = {s: 0 for s in SPLITS}
    present: dict[str, set[str]] = defaultdict(set)  # split -> languages with a speaker there
    out: dict[str, str] = {}
    for spk in sorted(size, key=lambda k: (-size[k], _unit(seed, k))):

        def cost(split: str, spk: str = spk) -> tuple[int, float, int]:
            missing = sum(
                lang not in present[split]
                for lang in langs_of[spk]
                if speakers_of_lang[lang] >= len(SPLITS)
            )
            return (-missing, (load[split] + size[spk]) / share[split], SPLITS.index(split))

        split = min(SPLITS, key=cost)
        out[spk] = split
        load[split] += size[spk]
        present[split] |= langs_of[spk]
    return out


def tts_voices(languages: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Return language -> (generator, voice) of every TTS voice that speaks it."""
    out: dict[str, list[tuple[str, str]]] = {}
    for lang in sorted(set(languages)):
        out[lang] = [
            (name, v)
            for name, gen in GENERATORS.items()
            if gen.kind == "tts"
            for v in gen.voices.get(lang, ())
        ]
    return out


def assign_voice_splits(
    voices: dict[str, list[tuple[str, str]]],
    splits_of_lang: dict[str, set[str]],
    seed: int,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
) -> dict[str, str]:
    """Give every TTS voice one split, among the splits where its language has real speech.

    Voices are taken in a seeded order; each goes to the split that first gives a language
    of it a voice of the voice's family that it lacks there (so a language spoken in every
    split hears each of its families in every split, where the family has enough voices),
    then a voice of any family it lacks, then keeps each language's voices closest to the
    split shares (``fractions``). Pinned voices (:data:`PINNED_VOICE_SPLITS`) keep their split.
    """
    langs_of: dict[str, set[str]] = defaultdict(set)
    family_of: dict[str, str] = {}
    for lang, members in voices.items():
        for gen, voice in members:
            vid = voice_id(gen, voice)
            langs_of[vid].add(lang)
            family_of[vid] = GENERATORS[gen].family_of(voice)
    share = dict(zip(SPLITS, fractions, strict=True))
    count: dict[tuple[str, str], int] = defaultdict(int)  # (language, split)
    by_family: dict[tuple[str, str, str], int] = defaultdict(int)  # (language, family, split)
    out: dict[str, str] = {}

    def place(vid: str, split: str) -> None:
        out[vid] = split
        for lang in langs_of[vid]:
            count[(lang, split)] += 1
            by_family[(lang, family_of[vid], split)] += 1

    for vid, split in PINNED_VOICE_SPLITS.items():
        if vid in langs_of:
            place(vid, split)
    for vid in sorted(set(langs_of) - set(out), key=lambda k: _unit(seed, k)):
        allowed = [s for s in SPLITS if any(s in splits_of_lang.get(g, ()) for g in langs_of[vid])]
        if not allowed:
            continue  # no real speech in its language: the voice speaks nothing

        def cost(split: str, vid: str = vid) -> tuple[int, int, float, int]:
            langs = [g for g in langs_of[vid] if split in splits_of_lang.get(g, ())]
            family_missing = sum(by_family[(g, family_of[vid], split)] == 0 for g in langs)
            missing = sum(count[(g, split)] == 0 for g in langs)
            load = max((count[(g, split)] + 1) / share[split] for g in langs)
            return (-family_missing, -missing, load, SPLITS.index(split))

        place(vid, min(allowed, key=cost))
    return out


def vocoders() -> list[str]:
    """Return the vocoder generators, classical first: every real speaker gets copies of each."""
    names = [n for n, g in GENERATORS.items() if g.kind == "vocoder"]
    return sorted(names, key=lambda n: (is_neural(n), n))


def corpus_utterances(config: BuildConfig) -> list[Utterance]:
    """Return the real utterances of the main corpus: capped per speaker, seeded."""
    prompts = sources.asterisk_prompts()
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in prompts:
        by_speaker[u.speaker].append(u)
    utts: list[Utterance] = []
    for members in by_speaker.values():
        members.sort(key=lambda u: _unit(config.seed, u.utterance_id))
        utts += members[: config.asterisk_per_speaker]
    utts += speaker_utterances(seed=config.seed, per_speaker=config.per_speaker)
    if config.max_speakers is not None:
        # Smoke builds: a seeded handful of speakers, the Asterisk ones (every language of
        # the prompts) first, then speakers whose texts a TTS voice can read, so that a small
        # test split still has TTS fakes.
        spoken = tts_voices({u.language for u in utts})
        readable = {u.speaker for u in utts if text_is_spoken(u) and spoken.get(u.language)}
        names = sorted(
            {u.speaker for u in utts},
            key=lambda s: (
                not s.startswith("asterisk"),
                s not in readable,
                _unit(config.seed, s),
            ),
        )
        keep = set(names[: config.max_speakers])
        utts = [u for u in utts if u.speaker in keep]
    return utts


def plan_main(config: BuildConfig) -> list[Task]:
    """Plan the tasks of the main corpus: one per real utterance, speaker-disjoint splits.

    A task's fake voices, in order: a vocoder copy of the utterance (the speaker's first
    utterances take every vocoder in turn, later ones every ``vocoder_every``-th), then the
    TTS voices of its language and split in rotation, then the classical vocoders, which
    finish what the others leave unmatched (a language without a TTS voice is faked by
    vocoder copies only).
    """
    utts = corpus_utterances(config)
    split_of_speaker = assign_speaker_splits(utts, config.seed, config.split_fractions)
    splits_of_lang: dict[str, set[str]] = defaultdict(set)
    for u in utts:
        splits_of_lang[u.language].add(split_of_speaker[u.speaker])
    voices = tts_voices(splits_of_lang)
    split_of_voice = assign_voice_splits(
        voices, splits_of_lang, config.seed, config.split_fractions
    )
    pools: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lang, members in voices.items():
        for split in SPLITS:
            pool = [gv for gv in members if split_of_voice.get(voice_id(*gv)) == split]
            pools[(lang, split)] = sorted(pool, key=lambda gv: _unit(config.seed, voice_id(*gv)))
    copiers = vocoders()
    classical_copiers = [v for v in copiers if not is_neural(v)]
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        by_speaker[u.speaker].append(u)
    tasks: list[Task] = []
    turn: dict[tuple[str, str], int] = defaultdict(int)
    for spk in sorted(by_speaker):
        split = split_of_speaker[spk]
        members = sorted(by_speaker[spk], key=lambda u: _unit(config.seed, u.utterance_id))
        offset = int(_unit(config.seed, f"vocoder:{spk}") * len(copiers))
        for i, u in enumerate(members):
            order: list[tuple[str, str]] = []
            if i < len(copiers) or i % config.vocoder_every == 0:
                order.append((copiers[(offset + i) % len(copiers)], spk))
            # A text that is an English gloss of the recording is not read by a TTS voice.
            pool = pools.get((u.language, split), []) if text_is_spoken(u) else []
            k = min(config.voices_per_transcript, len(pool))
            start = turn[(u.language, split)]
            order += [pool[(start + j) % len(pool)] for j in range(k)]
            turn[(u.language, split)] += 1
            order += [(v, spk) for v in classical_copiers if (v, spk) not in order]
            tasks.append(
                Task(
                    _slug(u.utterance_id),
                    MAIN,
                    split,
                    (u,),
                    tuple(order),
                    neural_segments=config.neural_max_segments,
                    copy_share=config.copy_share,
                )
            )
    return tasks


def plan_cross(config: BuildConfig) -> list[Task]:
    """Plan the tasks of the cross-source set (everything in ``testing``)."""
    tasks: list[Task] = []
    limit = config.cross_max_per_source

    def sample(utts: list[Utterance]) -> list[Utterance]:
        utts = sorted(utts, key=lambda u: _unit(config.seed, u.utterance_id))
        return utts if limit is None else utts[:limit]

    for lang, gen in (("cs", "festival"), ("nl", "espeak-ng")):
        pool = [(gen, v) for v in CROSS_VOICES[gen][lang]]
        for i, u in enumerate(sample(sources.fillets_lines(lang))):
            order = tuple(pool[(i + j) % len(pool)] for j in range(len(pool)))
            tasks.append(Task(_slug(u.utterance_id), CROSS, "testing", (u,), order))
    # A read sentence (3.8-18 s) gives several segments, a game line one or two: take fewer.
    recordings = sample(sources.festvox_ru_recordings())
    if limit is not None:
        recordings = recordings[: max(1, limit // 4)]
    for u in recordings:
        tasks.append(Task(_slug(u.utterance_id), CROSS, "testing", (u,), ()))
    # The Russian fakes: as many sentences as the recordings above give segments, roughly
    # (a recording gives up to max_segments, a short game line one or two).
    lines = sorted(
        sources.fillets_lines("ru", with_audio=False),
        key=lambda u: _unit(config.seed, u.utterance_id),
    )
    wanted = len(recordings) * config.channel.max_segments // 2
    ru_voice = ("festival", CROSS_VOICES["festival"]["ru"][0])
    per_batch = config.festival_batch
    for b in range(0, min(len(lines), wanted), per_batch):
        batch = tuple(lines[b : b + per_batch])
        tasks.append(
            Task(
                f"fillets-ru-batch-{b // per_batch:04d}",
                CROSS,
                "testing",
                batch,
                (ru_voice,),
                write_real=False,
                fake_target=None,
            )
        )
    # Japanese read by open-jtalk: the HMM voice no training split has (no Japanese recording
    # is installed to pair it with), as many sentences as a game language's sample.
    sentences = sorted(japanese_sentences(), key=lambda it: _unit(config.seed, it[0]))
    if limit is not None:
        sentences = sentences[: max(1, limit // 2)]
    ja_voice = ("open-jtalk", GENERATORS["open-jtalk"].voices["ja"][0])
    ja = [
        Utterance(f"ja:{sid}", "ja-texts", "", "ja", f"ja:{sid}", text) for sid, text in sentences
    ]
    for b in range(0, len(ja), per_batch):
        tasks.append(
            Task(
                f"open-jtalk-ja-batch-{b // per_batch:04d}",
                CROSS,
                "testing",
                tuple(ja[b : b + per_batch]),
                (ja_voice,),
                write_real=False,
            )
        )
    return tasks


def _clip_row(
    corpus_dir: Path,
    task: Task,
    wave: np.ndarray,
    label: str,
    utt: Utterance,
    generator: str,
    speaker: str,
    source: str,
    index: int,
    sample_rate: int,
) -> dict[str, object]:
    stem = _slug(
        f"{utt.utterance_id}_{index}"
        if label == "real"
        else f"{speaker}_{utt.utterance_id}_{index}"
    )
    rel = f"{task.split}/{label}/{stem}.wav"
    path = corpus_dir / rel
    save_audio(path, wave, sample_rate)
    return {
        "path": rel,
        "label": label,
        "split": task.split,
        "source": source,
        "speaker": speaker,
        "generator": generator,
        "family": HUMAN
        if label == "real"
        else GENERATORS[generator].family_of(speaker.split(":", 1)[-1]),
        "language": utt.language,
        "transcript_id": utt.transcript_id,
        "duration": round(len(wave) / sample_rate, 6),
        "sample_rate": sample_rate,
        "sha256": file_sha256(path),
        "corpus": task.corpus,
    }


def _synthesise(
    gen_name: str, voice: str, utt: Utterance, recording: tuple[np.ndarray, int]
) -> tuple[np.ndarray, int]:
    """Return the fake of one utterance by one voice (a vocoder copies the recording)."""
    gen = GENERATORS.get(gen_name)
    if gen is None:
        raise CorpusBuildError(f"unknown generator {gen_name!r}: register it in GENERATORS")
    if gen.kind == "vocoder":
        return gen.vocode(*recording)
    return gen.synthesize(utt.text, utt.language, voice)


def run_task(task: Task, corpus_dir: str, config: ChannelConfig) -> list[dict[str, object]]:
    """Make, channel and write the clips of one task; return their manifest rows."""
    corpus_path = Path(corpus_dir)
    sr = config.sample_rate
    rows: list[dict[str, object]] = []
    if not task.write_real:
        # Text-only sentences: one festival process speaks the whole batch.
        gen_name, voice = task.voices[0]
        utts = list(task.utterances)
        try:
            if gen_name != "festival":
                raise SynthesisError("one sentence at a time")
            waves = festival_synthesize_many([u.text for u in utts], voice)
        except SynthesisError:
            # One sentence festival cannot read spoils its batch: retry them one by one.
            waves, kept = [], []
            for u in utts:
                try:
                    waves.append(_synthesise(gen_name, voice, u, (np.zeros(0), 0)))
                    kept.append(u)
                except SynthesisError:
                    continue
            utts = kept
        prepared = [
            prepare(w, wsr, config, f"{task.task_id}:{u.utterance_id}:{voice}")
            for u, (w, wsr) in zip(utts, waves, strict=True)
        ]
        for u, coded in zip(utts, codec_many(prepared, config), strict=True):
            for i, clip in enumerate(segment(coded, config, f"{task.task_id}:{u.utterance_id}")):
                rows.append(
                    _clip_row(
                        corpus_path,
                        task,
                        clip,
                        "fake",
                        u,
                        gen_name,
                        voice_id(gen_name, voice),
                        gen_name,
                        i,
                        sr,
                    )
                )
        return rows
    utt = task.utterances[0]
    wave, wave_sr = sources.load_utterance_audio(utt)
    # Vocoders copy only what the channel can keep: the trimmed speech, up to the longest
    # clip run the length policy cuts (plus a margin for the channel's own trimming).
    keep = int(wave_sr * (config.max_segments * config.segment_seconds + 0.5))
    raw = (trim_silence(wave, config.trim_top_db, wave_sr)[:keep], wave_sr)
    real = prepare(raw[0], raw[1], config, f"{task.task_id}:real")
    n_real = len(real) // config.segment_samples
    if n_real == 0:
        return rows
    target = n_real if task.fake_target is None else task.fake_target
    fakes: list[tuple[str, str, np.ndarray]] = []
    have = 0
    for position, (gen_name, voice) in enumerate(task.voices):
        if have >= target:
            break
        wanted, source = target - have, raw
        if position == 0 and len(task.voices) > 1 and GENERATORS[gen_name].kind == "vocoder":
            # The leading copy makes its share; the voices after it speak the rest.
            wanted = min(wanted, max(1, round(task.copy_share * target)))
        if task.neural_segments is not None and is_neural(gen_name):
            wanted = min(wanted, task.neural_segments)
            # Neural vocoders are slow: copy only what the capped clips need, with room for
            # the pauses the channel shortens.
            need = 1.25 * wanted * config.segment_seconds + 0.5
            source = (raw[0][: int(raw[1] * need)], raw[1])
        try:
            wave, wsr = _synthesise(gen_name, voice, utt, source)
        except SynthesisError:
            continue  # deterministic: the same input fails the same way on every build
        prepared = prepare(wave, wsr, config, f"{task.task_id}:{gen_name}:{voice}")
        take = min(wanted, len(prepared) // config.segment_samples)
        if take:
            fakes.append((gen_name, voice, prepared[: take * config.segment_samples]))
            have += take
    coded = codec_many([real] + [w for _, _, w in fakes], config)
    for i, clip in enumerate(segment(coded[0], config, f"{task.task_id}:real")):
        rows.append(
            _clip_row(corpus_path, task, clip, "real", utt, "human", utt.speaker, utt.source, i, sr)
        )
    for (gen_name, voice, _), wave in zip(fakes, coded[1:], strict=True):
        for i, clip in enumerate(segment(wave, config, f"{task.task_id}:{gen_name}:{voice}")):
            rows.append(
                _clip_row(
                    corpus_path,
                    task,
                    clip,
                    "fake",
                    utt,
                    gen_name,
                    voice_id(gen_name, voice),
                    gen_name,
                    i,
                    sr,
                )
            )
    return rows


def _record_path(corpus_dir: Path, fingerprint: str, task: Task) -> Path:
    return corpus_dir / ".build" / fingerprint / f"{task.task_id}.json"


def _clip_intact(path: Path, size: object, sha256: object, verify: bool) -> bool:
    """Say whether a clip is as written: present, of its recorded size, and (``verify``) hash."""
    try:
        if not path.is_file():
            return False
        if isinstance(size, int) and path.stat().st_size != size:
            return False
        return not (verify and isinstance(sha256, str) and file_sha256(path) != sha256)
    except OSError:
        return False


def _task_done(corpus_dir: Path, record: Path, verify: bool = False) -> bool:
    if not record.is_file():
        return False
    try:
        rows = json.loads(record.read_text())
        return isinstance(rows, list) and all(
            _clip_intact(corpus_dir / r["path"], r.get("bytes"), r.get("sha256"), verify)
            for r in rows
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False  # a damaged record: run the task again


def _read_marker(marker: Path) -> dict | None:
    """Return the completion marker's content, or None when it is missing or damaged."""
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):  # ValueError covers bad JSON and bytes that are not UTF-8
        return None
    return info if isinstance(info, dict) else None


def _corpus_intact(corpus_dir: Path, manifest_path: Path, info: dict, verify: bool) -> bool:
    """Say whether every clip of a finished build is as the marker and the manifest describe."""
    try:
        done = pd.read_csv(manifest_path, usecols=["path", "sha256"], dtype=str)
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    sizes = info.get("clip_bytes")
    sizes = sizes if isinstance(sizes, dict) else {}  # markers of older builds have none
    return all(
        _clip_intact(corpus_dir / p, sizes.get(p), h, verify)
        for p, h in zip(done["path"], done["sha256"], strict=True)
    )


@contextlib.contextmanager
def _torch_threads(task: Task) -> Iterator[None]:
    """Run a task with a neural voice on one torch thread (threadpoolctl does not reach torch)."""
    if not any(is_neural(gen) for gen, _ in task.voices):
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_and_record(task: Task, corpus_dir: str, config: ChannelConfig, record: str) -> int:
    # One thread per worker: the pool already uses every core.

    with threadpool_limits(1), _torch_threads(task):
        rows = run_task(task, corpus_dir, config)
    # The size each clip had when written: the cheap check that it is still the same clip.
    sized = [{**r, "bytes": (Path(corpus_dir) / str(r["path"])).stat().st_size} for r in rows]
    write_json_atomically(record, sized, indent=None)
    return len(rows)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks and end the workers now, without waiting for running tasks."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the executor offers no way to stop a running task: end its processes.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()
    for process in workers:
        process.join(timeout=5)


def _remove_strays(corpus_dir: Path, keep: set[str]) -> None:
    """Delete temporary files of killed builds and clips no longer in the manifest."""
    for split in SPLITS:
        for label in ("real", "fake"):
            folder = corpus_dir / split / label
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                rel = f"{split}/{label}/{path.name}"
                if path.name.startswith(".") or (path.suffix == ".wav" and rel not in keep):
                    path.unlink()


def _build_one(
    corpus: str,
    tasks: list[Task],
    root: Path,
    config: BuildConfig,
    workers: int,
    progress: bool,
    verify: bool = False,
) -> Path:
    corpus_dir = root / corpus
    manifest_path = corpus_dir / "manifest.csv"
    marker = corpus_dir / ".complete.json"
    fingerprint = config.fingerprint(corpus)
    if marker.exists() or marker.is_symlink():
        info = _read_marker(marker)
        if (
            info is not None
            and info.get("fingerprint") == fingerprint
            and manifest_path.is_file()
            and _corpus_intact(corpus_dir, manifest_path, info, verify)
        ):
            return manifest_path
        marker.unlink()  # stale, damaged, or clips changed: resume below, keeping what is intact
    (corpus_dir / ".build" / fingerprint).mkdir(parents=True, exist_ok=True)
    todo = [
        t
        for t in tasks
        if not _task_done(corpus_dir, _record_path(corpus_dir, fingerprint, t), verify)
    ]
    start = time.perf_counter()
    if todo:
        bar = tqdm(total=len(todo), desc=f"building {corpus}", unit="utt", disable=not progress)
        if workers == 1:
            for t in todo:
                _run_and_record(
                    t,
                    str(corpus_dir),
                    config.channel,
                    str(_record_path(corpus_dir, fingerprint, t)),
                )
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                try:
                    futures = [
                        pool.submit(
                            _run_and_record,
                            t,
                            str(corpus_dir),
                            config.channel,
                            str(_record_path(corpus_dir, fingerprint, t)),
                        )
                        for t in todo
                    ]
                    for fut in as_completed(futures):
                        fut.result()
                        bar.update()
                except KeyboardInterrupt:
                    # Leaving the block would wait for every queued task: stop them first.
                    # Finished tasks keep their records, so the next build resumes.
                    _stop_pool(pool)
                    bar.close()
                    raise
        bar.close()
    rows: list[dict[str, object]] = []
    for t in tasks:
        rows += json.loads(_record_path(corpus_dir, fingerprint, t).read_text())
    if not rows:
        raise CorpusBuildError(f"{corpus}: no clip was produced; check the sources are installed")
    df = pd.DataFrame(rows)
    sizes = {str(p): (corpus_dir / str(p)).stat().st_size for p in df["path"]}
    df = df.drop(columns="bytes", errors="ignore")
    _remove_strays(corpus_dir, set(df["path"]))
    for old in (corpus_dir / ".build").iterdir():
        if old.is_dir() and old.name != fingerprint:
            shutil.rmtree(old)  # task records of another configuration
    write_manifest(df, manifest_path)
    info = {
        "fingerprint": fingerprint,
        "manifest_sha256": manifest_checksum(df),
        "clips": len(df),
        "seed": config.seed,
        "channel": config.channel.describe(),
        "seconds": round(time.perf_counter() - start, 1),
        "clip_bytes": dict(sorted(sizes.items())),
    }
    write_json_atomically(marker, info, indent=None)
    return manifest_path


SMOKE_SPEAKERS = 16  # speakers of a smoke build (the four Asterisk ones among them)
SMOKE_PER_SPEAKER = 3  # utterances per speaker in a smoke build
SMOKE_CROSS = 4  # utterances per real source of the cross-source set in a smoke build
SMOKE_NEURAL_SEGMENTS = 1  # clips per neural copy in a smoke build (each costs ~1-2 s of CPU)


def build_offline_corpus(
    root: str | os.PathLike,
    seed: int = 0,
    workers: int | None = None,
    per_speaker: int | None = None,
    max_speakers: int | None = None,
    cross_max_per_source: int | None = 400,
    include_cross: bool = True,
    channel: ChannelConfig | None = None,
    progress: bool = True,
    smoke: bool = False,
    neural_max_segments: int | None = None,
    verify: bool = False,
) -> Path:
    """Build ``<root>/offline-main`` (and ``<root>/offline-cross``) and return the main manifest.

    Idempotent (a finished build returns at once), resumable (finished utterances are
    skipped) and deterministic (same seed, same manifest checksum). ``per_speaker`` caps the
    utterances of each speaker (the Asterisk ones too, in smoke builds) and ``max_speakers``
    takes a seeded subset of speakers; ``smoke`` sets both to a corpus of a few hundred clips
    that builds in about a minute, with one clip per neural copy. ``neural_max_segments``
    overrides :class:`BuildConfig`'s. ``workers`` defaults to all cores. A root holds one
    configuration: building another one there replaces its clips. A clip whose size changed
    since it was written is rebuilt; ``verify`` also checks every clip's SHA-256 against the
    manifest (it reads the whole corpus) and rebuilds what differs.
    """
    root = Path(root)
    defaults = BuildConfig()
    asterisk = defaults.asterisk_per_speaker
    if smoke:
        per_speaker = per_speaker or SMOKE_PER_SPEAKER
        max_speakers = max_speakers or SMOKE_SPEAKERS
        cross_max_per_source = SMOKE_CROSS
        neural_max_segments = neural_max_segments or SMOKE_NEURAL_SEGMENTS
        asterisk = per_speaker
    config = BuildConfig(
        seed=seed,
        channel=channel or ChannelConfig(),
        per_speaker=per_speaker or defaults.per_speaker,
        asterisk_per_speaker=asterisk,
        max_speakers=max_speakers,
        cross_max_per_source=cross_max_per_source,
        neural_max_segments=neural_max_segments or defaults.neural_max_segments,
    )
    workers = workers or os.cpu_count() or 1
    main_manifest = _build_one(MAIN, plan_main(config), root, config, workers, progress, verify)
    if include_cross:
        _build_one(CROSS, plan_cross(config), root, config, workers, progress, verify)
    return main_manifest
