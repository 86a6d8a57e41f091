"""Build the offline corpora: ``offline-main`` and the cross-source set ``offline-cross``.

``offline-main`` pairs the Asterisk prompts (real) with the same transcripts spoken by the
generators of :data:`dfa_lib.data.corpus.synthesis.GENERATORS` (fake). Its ``split`` column is the
``in-domain`` protocol, decided here because a fake voice may only speak the transcripts of
its own split:

- every transcript goes to one split (seeded hash, 70/15/15 per language);
- every fake voice goes to one split (each language has fake voices in every split, each
  generator has voices in training and in testing);
- festival's Russian voice is the festvox-ru speaker of the cross-source set, so it is
  pinned to ``testing``: no protocol trains or validates on it;
- a transcript's real segments are matched by as many fake segments, spoken by the voices of
  its split in rotation, so both classes have the same sentences, languages and lengths;
- the neural vocoders (families other than ``classical``) copy a fixed share of each split's
  prompts (``neural_share``, at most ``neural_max_segments`` clips of each: they are the slow
  part of the build), shared equally between the families (:func:`neural_picks`); the
  prompt's other fake segments, and every other prompt, come from the classical voices.
  Classical and neural voices get their splits separately (:func:`assign_voice_splits`).

Both manifests carry a ``family`` column beside ``generator``: ``human`` for real clips,
``classical`` or the neural family for fakes (what the ``unseen-neural`` protocols hold out).

``offline-cross`` (all ``testing``) holds the Czech and Dutch game dialogue of Fish Fillets with
the same lines from festival's Czech voices and espeak-ng's Dutch, and the festvox-ru
recordings with festival's Russian voice speaking the game's Russian lines (not the sentences
he recorded, which its unit selection would copy back). It takes a seeded sample of
``cross_max_per_source`` lines per game language and a quarter as many read sentences (a
sentence gives several clips).

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
from dfa_lib.data.corpus.synthesis import (
    CLASSICAL,
    CROSS_VOICES,
    GENERATORS,
    HUMAN,
    SynthesisError,
    festival_synthesize_many,
    voice_id,
)
from dfa_lib.data.manifest import file_sha256, manifest_checksum, write_manifest

MAIN = "offline-main"
CROSS = "offline-cross"
# Bump a corpus's version when the code changes what an unchanged configuration produces.
BUILD_VERSIONS: dict[str, int] = {"offline-main": 6, "offline-cross": 2}

# The festvox-ru speaker recorded the units festival's Russian voice concatenates, and his
# recordings are in the cross-source set: keep that voice out of main training/validation.
PINNED_VOICE_SPLITS: dict[str, str] = {voice_id("festival", "msu_ru_nsh_clunits"): "testing"}


class CorpusBuildError(RuntimeError):
    """Raised when a corpus cannot be built as configured."""


@dataclass(frozen=True)
class BuildConfig:
    """What to build; two builds with equal configs give the same manifests."""

    seed: int = 0
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    max_transcripts: int | None = None  # per language and split of offline-main (smoke builds)
    cross_max_per_source: int | None = 400  # utterances per real source of offline-cross
    voices_per_transcript: int = 6  # voices tried in turn until the real segments are matched
    festival_batch: int = 12  # sentences per festival process for the text-only tasks
    neural_share: float = 0.45  # share of each split's prompts copied by a neural vocoder
    neural_max_segments: int | None = 2  # clips a neural vocoder makes of one prompt (None: all)

    def __post_init__(self) -> None:
        if not 0.0 <= self.neural_share <= 1.0:
            raise ValueError(f"neural_share must be in [0, 1], got {self.neural_share}")
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


def _unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _is_neural(gen_name: str) -> bool:
    gen = GENERATORS.get(gen_name)
    return gen is not None and gen.family != CLASSICAL


def assign_split(seed: int, key: str, fractions: tuple[float, float, float]) -> str:
    """Return the split of a group key (a transcript id), a seeded hash of it."""
    u = _unit(seed, key)
    if u < fractions[0]:
        return SPLITS[0]
    return SPLITS[1] if u < fractions[0] + fractions[1] else SPLITS[2]


def main_voices(utterances: Iterable[Utterance]) -> dict[str, list[tuple[str, str]]]:
    """Return language -> (generator, voice) of every fake voice of the main corpus."""
    speakers: dict[str, set[str]] = defaultdict(set)
    for u in utterances:
        speakers[u.language].add(u.speaker)
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, gen in GENERATORS.items():
        for lang in sorted(speakers):
            if gen.kind == "tts":
                out[lang] += [(name, v) for v in gen.voices.get(lang, ())]
            else:
                out[lang] += [(name, s) for s in sorted(speakers[lang])]
    return dict(out)


def assign_voice_splits(voices: dict[str, list[tuple[str, str]]], seed: int) -> dict[str, str]:
    """Give every fake voice one split, spreading each language and each generator.

    Voices are taken in a seeded order. Each goes to the split that first gives a language
    of it a fake voice it lacks there, then gives its generator a voice in training or
    testing if it has none there, then keeps its generator's and its language's voices
    closest to a 60/20/20 share. Every language thus has fake voices in every split,
    and a generator with several voices has some in testing, which ``unseen-generator``
    needs. Pinned voices (:data:`PINNED_VOICE_SPLITS`) keep their split.

    Classical and neural voices are spread separately, so each language has classical
    voices in every split (they speak most prompts) and, where there are enough neural
    voices, neural ones too; adding neural generators leaves the classical voices' splits
    as they were.
    """
    neural = {lang: [gv for gv in m if _is_neural(gv[0])] for lang, m in voices.items()}
    classical = {lang: [gv for gv in m if not _is_neural(gv[0])] for lang, m in voices.items()}
    assigned = _spread_voices(classical, seed, PINNED_VOICE_SPLITS)
    assigned.update(_spread_voices({k: v for k, v in neural.items() if v}, seed, {}))
    return assigned


def _spread_voices(
    voices: dict[str, list[tuple[str, str]]], seed: int, pinned: dict[str, str]
) -> dict[str, str]:
    """Assign splits to one group of voices (the rule of :func:`assign_voice_splits`)."""
    share = dict(zip(SPLITS, (0.6, 0.2, 0.2), strict=True))
    langs_of: dict[str, set[str]] = defaultdict(set)
    generator_of: dict[str, str] = {}
    for lang, members in voices.items():
        for gen, voice in members:
            vid = voice_id(gen, voice)
            langs_of[vid].add(lang)
            generator_of[vid] = gen
    assigned = {v: s for v, s in pinned.items() if v in langs_of}
    by_lang = {lang: {s: 0 for s in SPLITS} for lang in voices}
    by_gen = {g: {s: 0 for s in SPLITS} for g in generator_of.values()}

    def count(vid: str, split: str) -> None:
        for lang in langs_of[vid]:
            by_lang[lang][split] += 1
        by_gen[generator_of[vid]][split] += 1

    for vid, split in assigned.items():
        count(vid, split)
    for vid in sorted(set(langs_of) - set(assigned), key=lambda k: _unit(seed, k)):

        def cost(split: str, vid: str = vid) -> tuple[int, int, float, int]:
            missing = sum(by_lang[lang][split] == 0 for lang in langs_of[vid])
            gen_counts = by_gen[generator_of[vid]]
            gen_missing = int(split != "validation" and gen_counts[split] == 0)
            gen_load = (gen_counts[split] + 1) / share[split]
            lang_load = max((by_lang[lang][split] + 1) / share[split] for lang in langs_of[vid])
            return (-missing, -gen_missing, gen_load + lang_load, SPLITS.index(split))

        assigned[vid] = min(SPLITS, key=cost)
        count(vid, assigned[vid])
    return assigned


def neural_picks(
    cells: dict[str, tuple[list[Utterance], list[tuple[str, str]]]], share: float
) -> dict[str, tuple[str, str]]:
    """Choose the prompts of one split that neural vocoders copy, and the voice of each.

    ``cells`` maps a language to its prompts in this split (in their seeded order) and the
    fake voices there. Every neural family with a voice in the split copies
    ``round(share * prompts / families)`` prompts (at least one, so small builds have every
    family), picked evenly through the prompts of the languages where it has a voice; the
    family with the fewest such prompts picks first, and a family's voices in a language
    take its prompts in turn. A family with a voice in only a few languages thus keeps its
    share of the split. Returns utterance id -> (generator, voice).
    """
    voices_of: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for lang, (_, pool) in sorted(cells.items()):
        for gv in pool:
            if _is_neural(gv[0]):
                voices_of[GENERATORS[gv[0]].family][lang].append(gv)
    total = sum(len(members) for members, _ in cells.values())
    if not voices_of or share == 0.0:
        return {}
    target = max(1, round(share * total / len(voices_of)))
    eligible = {
        fam: [(lang, u) for lang in sorted(by_lang) for u in cells[lang][0]]
        for fam, by_lang in voices_of.items()
    }
    picks: dict[str, tuple[str, str]] = {}
    for fam in sorted(eligible, key=lambda f: (len(eligible[f]), f)):
        free = [(lang, u) for lang, u in eligible[fam] if u.utterance_id not in picks]
        n = min(target, len(free))
        turn: dict[str, int] = defaultdict(int)
        for j in range(n):
            lang, u = free[j * len(free) // n]
            voices = voices_of[fam][lang]
            picks[u.utterance_id] = voices[turn[lang] % len(voices)]
            turn[lang] += 1
    return picks


def plan_main(config: BuildConfig) -> list[Task]:
    """Plan the tasks of the main corpus (one per Asterisk prompt)."""
    utts = sources.asterisk_prompts()
    voices = main_voices(utts)
    split_of_voice = assign_voice_splits(voices, config.seed)
    groups: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for u in utts:
        groups[
            (u.language, assign_split(config.seed, u.transcript_id, config.split_fractions))
        ].append(u)
    cells: dict[str, dict[str, tuple[list[Utterance], list[tuple[str, str]]]]] = defaultdict(dict)
    for (lang, split), members in sorted(groups.items()):
        members.sort(key=lambda u: _unit(config.seed, u.utterance_id))
        if config.max_transcripts is not None:
            members = members[: config.max_transcripts]
        pool = [gv for gv in voices[lang] if split_of_voice[voice_id(*gv)] == split]
        pool.sort(key=lambda gv: _unit(config.seed, voice_id(*gv)))
        cells[split][lang] = (members, pool)
    tasks: list[Task] = []
    for split in SPLITS:
        picks = neural_picks(cells[split], config.neural_share)
        for lang, (members, pool) in sorted(cells[split].items()):
            # Neural voices speak only the prompts picked for them; classical voices take the
            # others in rotation and finish a prompt a capped neural copy leaves unmatched.
            classical = [gv for gv in pool if not _is_neural(gv[0])]
            if not classical:
                raise CorpusBuildError(
                    f"no fake voice for {lang}/{split}: add voices to GENERATORS"
                )
            k = min(config.voices_per_transcript, len(classical))
            for i, u in enumerate(members):
                order = tuple(classical[(i + j) % len(classical)] for j in range(k))
                if u.utterance_id in picks:
                    order = (picks[u.utterance_id], *order[: k - 1])
                tasks.append(
                    Task(
                        _slug(u.utterance_id),
                        MAIN,
                        split,
                        (u,),
                        order,
                        neural_segments=config.neural_max_segments,
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
        "family": HUMAN if label == "real" else GENERATORS[generator].family,
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
            waves = festival_synthesize_many([u.text for u in utts], voice)
        except SynthesisError:
            # One sentence festival cannot read spoils its batch: retry them one by one.
            waves, kept = [], []
            for u in utts:
                try:
                    waves += festival_synthesize_many([u.text], voice)
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
    for gen_name, voice in task.voices:
        if have >= target:
            break
        wanted, source = target - have, raw
        if task.neural_segments is not None and _is_neural(gen_name):
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
    if not any(_is_neural(gen) for gen, _ in task.voices):
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


SMOKE_TRANSCRIPTS = 2  # prompts per language and split in a smoke build
SMOKE_CROSS = 4  # utterances per real source of the cross-source set in a smoke build
SMOKE_NEURAL_SHARE = 0.1  # gives one prompt per neural family and split in a smoke build
SMOKE_NEURAL_SEGMENTS = 1  # clips per neural copy in a smoke build (each costs ~1-2 s of CPU)


def build_offline_corpus(
    root: str | os.PathLike,
    seed: int = 0,
    workers: int | None = None,
    max_transcripts: int | None = None,
    cross_max_per_source: int | None = 400,
    include_cross: bool = True,
    channel: ChannelConfig | None = None,
    progress: bool = True,
    smoke: bool = False,
    neural_share: float | None = None,
    neural_max_segments: int | None = None,
    verify: bool = False,
) -> Path:
    """Build ``<root>/offline-main`` (and ``<root>/offline-cross``) and return the main manifest.

    Idempotent (a finished build returns at once), resumable (finished utterances are
    skipped) and deterministic (same seed, same manifest checksum). ``max_transcripts`` caps
    the prompts per language and split for quick builds; ``smoke`` sets both caps to a corpus
    of about 200 clips that builds in seconds, with one clip per neural copy.
    ``neural_share`` and ``neural_max_segments`` override :class:`BuildConfig`'s (how many
    prompts neural vocoders copy, and how many clips of each). ``workers`` defaults to all
    cores. A root holds one configuration: building another one there replaces its clips.
    A clip whose size changed since it was written is rebuilt; ``verify`` also checks every
    clip's SHA-256 against the manifest (it reads the whole corpus) and rebuilds what differs.
    """
    root = Path(root)
    defaults = BuildConfig()
    if smoke:
        max_transcripts, cross_max_per_source = SMOKE_TRANSCRIPTS, SMOKE_CROSS
        neural_max_segments = neural_max_segments or SMOKE_NEURAL_SEGMENTS
        neural_share = SMOKE_NEURAL_SHARE if neural_share is None else neural_share
    config = BuildConfig(
        seed=seed,
        channel=channel or ChannelConfig(),
        max_transcripts=max_transcripts,
        cross_max_per_source=cross_max_per_source,
        neural_share=defaults.neural_share if neural_share is None else neural_share,
        neural_max_segments=neural_max_segments or defaults.neural_max_segments,
    )
    workers = workers or os.cpu_count() or 1
    main_manifest = _build_one(MAIN, plan_main(config), root, config, workers, progress, verify)
    if include_cross:
        _build_one(CROSS, plan_cross(config), root, config, workers, progress, verify)
    return main_manifest
