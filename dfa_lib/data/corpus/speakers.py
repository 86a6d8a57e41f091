"""Real speech of many speakers, in many languages, from Debian game and education packages.

The Asterisk prompts of :mod:`dfa_lib.data.corpus.sources` give four speakers; the packages
below add about eighty more. Their clips are mostly single words, letters or short phrases,
so :func:`composite_utterances` joins a speaker's short clips into utterances of a few seconds
(:func:`dfa_lib.data.corpus.sources.load_utterance_audio` decodes and joins the parts).

Each source (``source`` column of its utterances; Debian package; licence) and what its
speaker ids stand for:

- ``ktuberling-<lang>`` (ktuberling-data, GPL-2+): the clip's ARTIST tag (ca, da, el, lt, nn,
  wa), else one unnamed group per folder.
- ``tuxpaint-<lang>`` (tuxpaint-stamps-default, GPL-2): the ARTIST tag (lt, one da clip), else
  one unnamed group per language.
- ``klettres-<folder>`` (klettres-data, GPL-2+): the ARTIST tag (lt, ru), else one unnamed group
  per folder (en and en_GB are two).
- ``hedgewars`` (hedgewars-data, GFDL-1.3): the voice pack.
- ``kajongg`` (kajongg, GPL-2+): the voice folder, one person in English and German (its tags
  name Petra, Maria, Wolfgang, Klaus).
- ``gcin-voice`` (gcin-voice, GPL-3 / CC-BY-3.0): the file name, ``3.ogg`` Edward Der-Hua Liu and
  ``5.ogg`` Chu Lo (the package's copyright file).

What they hold on Debian 12: speakers, clips and minutes listed (after the de-duplication
below), then the speakers, utterances and minutes that ``speaker_utterances(per_speaker=12)``
keeps (a composite counts once):

==========  =======================================  ====  =====  =====  ====  =====  ====
source      languages                                spk.  clips  min.   kept  utts.  min.
==========  =======================================  ====  =====  =====  ====  =====  ====
ktuberling  ca da de el en es fi fr ga gl it lt nds  30    1804   31.1   29    220    12.8
            nl nn pt ro ru sl sr sv uk wa
tuxpaint    be bg ca da el en es fr lt ml nl ro ru   14    6453   157.2  13    136    8.7
klettres    ar cs da de en es fr he hu it lt ml nb   20    1825   51.1   20    235    14.8
            nds nl pt ru tn uk
hedgewars   en es pl ru uk                           13    547    11.4   13    143    9.0
kajongg     en de                                    4     335    4.8    4     48     2.8
gcin-voice  zh                                       2     2358   13.7   2     24     1.3
all         34 languages                             83    13322  269.3  81    806    49.3
==========  =======================================  ====  =====  =====  ====  =====  ====

Where a source names no speaker, a group may hold several people: the groups are
only ever kept together, so splits by speaker stay speaker-disjoint, but a group is not
known to be one voice. A tag naming a person identifies them across a source's languages
(one speaker id), and a first name alone in a folder where one tagged full name starts with it
is that person ("Bernat" and "Bernat Mas"). Tags that are not names (a copyright notice, an
address) are ignored.

Removed: files with byte-identical content within a speaker (tuxpaint reuses a description for
several stamps; hedgewars packs share files), a folder that is a byte-identical copy of
another of the same language (the four Serbian ktuberling folders: one kept), the hedgewars
Robot pack (a processed voice, :data:`HEDGEWARS_DROPPED_PACKS`) and non-verbal hedgewars clips
(laughs, coughs, grunts). No other hedgewars pack is a pitch-shifted or resampled copy of
another; its Classic pack shares recordings with Default and counts as the same voice.

Texts come from the packages: tuxpaint's ``<stamp>.txt`` (the description in each language),
klettres' ``sounds.xml`` (the letter or syllable), the ktuberling file name or its COMMENTS tag
(the word, accents lost in file names), gcin's folder name (a Bopomofo syllable, tone marks
restored). Some texts are English glosses, not the words said: ktuberling's de, el, en, gl,
lt, nn, ru, sl and uk folders (and parts of ca and da) name files after the English object, and
kajongg and hedgewars name their clips in English in every language.

Listing reads only the start and end of each Ogg file (tags, sample rate, last granule
position), so listing every source takes about a second; nothing is decoded.
"""

from __future__ import annotations

import filecmp
import hashlib
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import soundfile as sf

from dfa_lib.data.corpus.sources import SourceNotFoundError, Utterance, clean_text

KTUBERLING_DIR = Path("/usr/share/ktuberling/sounds")
TUXPAINT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
KLETTRES_DIR = Path("/usr/share/klettres")
HEDGEWARS_VOICES_DIR = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
KAJONGG_VOICES_DIR = Path("/usr/share/kajongg/voices")
GCIN_VOICE_DIR = Path("/usr/share/gcin-voice/ogg")

# Letters that Unicode does not decompose into an ASCII letter and a mark.
_NOT_DECOMPOSED = {
    "ø": "o",
    "Ø": "O",
    "æ": "ae",
    "Æ": "Ae",
    "ß": "ss",
    "đ": "d",
    "ł": "l",
    "Ł": "L",
}
UNNAMED = "unnamed"  # the speaker-id suffix of a group that no tag names
_MAX_NAME_CHARS = 60  # a longer ARTIST tag is a notice, not a name

# Hedgewars packs left out: Robot is a processed voice. No other pack is a pitch-shifted or
# resampled copy of another: for every pair of packs, the durations of the (not identical)
# clips both name vary freely (at most 15 % of them within 2 % of the pair's median duration
# ratio, where a copy would put nearly all), and their median F0s differ (255-425 Hz).
HEDGEWARS_DROPPED_PACKS = ("Robot",)
# Classic shares ten spoken clips byte for byte with Default (and re-recordings of the rest):
# treated as the same voice, so it cannot sit in another split than Default.
_HEDGEWARS_SAME_VOICE = {"Classic": "Default"}
# Pack-name suffixes that name the pack's language; a pack without one speaks English.
_HEDGEWARS_LANGUAGES = frozenset({"es", "pl", "ru", "uk"})
# Clip names (digits removed) that are not words: laughs, coughs, grunts, jump and punch cries.
_HEDGEWARS_NONVERBAL = frozenset(
    {"firepunch", "jump", "laugh", "ooff", "ow", "poisoncough", "poisonmoan", "hmm"}
)
# Clip name -> what is said (English; the other languages say its translation).
_HEDGEWARS_PHRASES = {
    "byebye": "bye bye",
    "comeonthen": "come on then",
    "cutitout": "cut it out",
    "enemydown": "enemy down",
    "firstblood": "first blood",
    "flyaway": "fly away",
    "gonnagetyou": "gonna get you",
    "illgetyou": "I'll get you",
    "justyouwait": "just you wait",
    "leavemealone": "leave me alone",
    "nooo": "no",
    "ohdear": "oh dear",
    "runaway": "run away",
    "sameteam": "same team",
    "solong": "so long",
    "takecover": "take cover",
    "thisoneismine": "this one is mine",
    "uh-oh": "uh oh",
    "watchit": "watch it",
    "watchthis": "watch this",
    "whatthe": "what the",
    "yessir": "yes sir",
    "youllregretthat": "you'll regret that",
}
# Kajongg clip name -> what is said (English gloss; the German voices say it in German).
_KAJONGG_SUITS = {"b": "bamboo", "c": "character", "s": "stone"}
_KAJONGG_WORDS = {
    "db": "white dragon",
    "dg": "green dragon",
    "dr": "red dragon",
    "we": "east wind",
    "ws": "south wind",
    "ww": "west wind",
    "wn": "north wind",
    "mahjongg": "mah jongg",
    "dangerousgame": "dangerous game",
    "nochoice": "no choice",
    "originalcall": "original call",
    "violatesoriginalcall": "violates original call",
}
# gcin-voice: file name -> speaker (debian/copyright of gcin-voice).
GCIN_SPEAKERS = {"3": "edward-der-hua-liu", "5": "chu-lo"}
# Bopomofo tone digits -> tone marks (the first tone is unmarked).
_BOPOMOFO_TONES = {"1": "", "2": "ˊ", "3": "ˇ", "4": "ˋ", "5": "˙"}


@dataclass(frozen=True)
class ClipInfo:
    """What listing needs from a recording: its duration and the person its tags name."""

    seconds: float
    artist: str  # PERFORMER or ARTIST tag, "" when none
    comment: str  # COMMENTS or COMMENT tag, "" when none


def _read_packets(head: bytes, count: int) -> list[bytes]:
    """Return the first ``count`` packets of an Ogg stream from the file's first bytes."""
    packets: list[bytes] = []
    current = b""
    pos = 0
    while pos + 27 <= len(head) and len(packets) < count:
        if head[pos : pos + 4] != b"OggS":
            raise ValueError("not an Ogg page")
        lacing = head[pos + 27 : pos + 27 + head[pos + 26]]
        pos += 27 + len(lacing)
        for size in lacing:
            current += head[pos : pos + size]
            pos += size
            if size < 255:
                packets.append(current)
                current = b""
    return packets


def _comments(packet: bytes, offset: int) -> dict[str, str]:
    """Return the Vorbis comments (upper-case key -> first value) of a comment packet."""
    tags: dict[str, str] = {}
    pos = offset + 4 + int.from_bytes(packet[offset : offset + 4], "little")
    count = int.from_bytes(packet[pos : pos + 4], "little")
    pos += 4
    for _ in range(count):
        if pos + 4 > len(packet):
            raise ValueError("comment packet ends early")
        size = int.from_bytes(packet[pos : pos + 4], "little")
        key, _, value = packet[pos + 4 : pos + 4 + size].decode("utf-8", "replace").partition("=")
        tags.setdefault(key.upper(), value.strip())
        pos += 4 + size
    return tags


def _ogg_info(path: Path) -> ClipInfo | None:
    """Read an Ogg Vorbis or Opus file's tags and length from its first and last pages."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        size = fh.seek(0, 2)
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read()
    try:
        packets = _read_packets(head, 2)
    except ValueError:
        return None
    if len(packets) < 2:
        return None
    if packets[0].startswith(b"\x01vorbis") and packets[1].startswith(b"\x03vorbis"):
        rate, pre_skip, offset = int.from_bytes(packets[0][12:16], "little"), 0, 7
    elif packets[0].startswith(b"OpusHead") and packets[1].startswith(b"OpusTags"):
        rate, pre_skip, offset = 48000, int.from_bytes(packets[0][10:12], "little"), 8
    else:
        return None
    end = len(tail)
    while True:  # the last page that ends a packet carries the stream's sample count
        end = tail.rfind(b"OggS", 0, end)
        if end < 0 or end + 14 > len(tail):
            return None
        granule = int.from_bytes(tail[end + 6 : end + 14], "little", signed=True)
        if granule >= 0:
            break
    try:
        tags = _comments(packets[1], offset)
    except ValueError:
        return None
    return ClipInfo(
        seconds=max(0, granule - pre_skip) / rate,
        artist=tags.get("PERFORMER") or tags.get("ARTIST", ""),
        comment=tags.get("COMMENTS") or tags.get("COMMENT", ""),
    )


def clip_info(path: str | Path) -> ClipInfo:
    """Return a recording's duration and tags without decoding it.

    Ogg files are read from their first and last 64 KiB (about 0.1 ms a file); anything else
    (WAV, FLAC) through libsndfile's header reader.
    """
    path = Path(path)
    info = _ogg_info(path) if path.suffix.lower() in (".ogg", ".opus", ".oga") else None
    if info is not None:
        return info
    try:
        with sf.SoundFile(str(path)) as snd:
            return ClipInfo(snd.frames / snd.samplerate, snd.artist.strip(), snd.comment.strip())
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"{path}: not a readable recording ({err})") from err


def _require_dir(path: Path, package: str) -> None:
    if not path.is_dir():
        raise SourceNotFoundError(
            f"{path} not found: install the Debian package `{package}` (apt-get install {package})"
        )


def _slug(text: str) -> str:
    """Return a lower-case ASCII id for a name or folder ("Øystein Å" -> "oystein-a")."""
    for letter, ascii_letters in _NOT_DECOMPOSED.items():
        text = text.replace(letter, ascii_letters)
    text = unicodedata.normalize("NFKD", text)
    text = text.encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "x"


def _language(folder: str) -> str:
    """Return the language code of a locale folder ("pt_BR" -> "pt", "sr@latin" -> "sr")."""
    return re.split(r"[@_]", folder)[0].lower()


def _person(tag: str) -> str:
    """Return the tag if it names a person, else "" (copyright notices, addresses)."""
    tag = " ".join(tag.split())
    if not tag or len(tag) > _MAX_NAME_CHARS or re.search(r"copyright|https?:|www\.|@", tag, re.I):
        return ""
    return tag


def _merge_first_names(names: Iterable[str]) -> dict[str, str]:
    """Map a lone first name to the one full name starting with it ("Bernat" -> "Bernat Mas")."""
    names = sorted(set(names))
    out = {n: n for n in names}
    for name in names:
        if " " in name:
            continue
        longer = [m for m in names if m != name and m.split()[0] == name]
        if len(longer) == 1:
            out[name] = longer[0]
    return out


def _same_files(a: Sequence[Path], b: Sequence[Path]) -> bool:
    """Whether two folders' recordings are the same files, byte for byte."""
    if sorted(p.name for p in a) != sorted(p.name for p in b):
        return False
    by_name = {p.name: p for p in b}
    return all(filecmp.cmp(p, by_name[p.name], shallow=False) for p in a)


def _drop_copied_folders(folders: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Drop a folder whose files copy those of an earlier folder of the same language."""
    kept: dict[str, list[Path]] = {}
    for name in sorted(folders):
        twins = [k for k in kept if _language(k) == _language(name)]
        if not any(_same_files(folders[name], kept[k]) for k in twins):
            kept[name] = folders[name]
    return kept


def _dedupe_content(utts: list[Utterance]) -> list[Utterance]:
    """Keep one of each set of byte-identical recordings of a speaker (first in list order)."""
    by_size: dict[tuple[str, int], list[Utterance]] = defaultdict(list)
    for u in utts:
        by_size[(u.speaker, Path(str(u.audio_path)).stat().st_size)].append(u)
    drop: set[str] = set()
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        seen: set[str] = set()
        for u in same_size:
            digest = hashlib.sha1(Path(str(u.audio_path)).read_bytes()).hexdigest()
            if digest in seen:
                drop.add(u.utterance_id)
            seen.add(digest)
    return [u for u in utts if u.utterance_id not in drop]


def _utterance(
    source: str, speaker: str, language: str, item: str, text: str, path: Path
) -> Utterance:
    return Utterance(
        utterance_id=f"{source}:{item}",
        source=source,
        speaker=speaker,
        language=language,
        transcript_id=f"{source}:{item}",
        text=text,
        audio_path=str(path),
    )


def _tagged_speakers(prefix: str, group: str, paths: Sequence[Path]) -> list[str]:
    """Return each path's speaker id: the person its tag names, else the folder's unnamed group."""
    tags = [_person(clip_info(p).artist) for p in paths]
    canonical = _merge_first_names(t for t in tags if t)
    return [f"{prefix}-{_slug(canonical[t])}" if t else f"{group}-{UNNAMED}" for t in tags]


def _readable_word(stem: str) -> str:
    """Return the word of a file name: its last ``_`` part, hyphens as spaces."""
    return stem.split("_")[-1].replace("-", " ").strip()


def ktuberling_words(root: Path = KTUBERLING_DIR) -> list[Utterance]:
    """List ktuberling's spoken words (one ``<lang>.soundtheme`` per language folder).

    Speaker: the clip's ARTIST tag, else one unnamed group per folder. Text: the Danish
    COMMENTS tag where there is one, else the file name's word (an English gloss where the
    file is named after the English object).
    """
    _require_dir(root, "ktuberling-data")
    folders: dict[str, list[Path]] = {}
    for theme in sorted(root.glob("*.soundtheme")):
        files = re.findall(r'<sound\s+name="[^"]*"\s+file="([^"]+)"', theme.read_text("utf-8"))
        paths = list(dict.fromkeys(root / f for f in files))
        folders[theme.stem] = [p for p in paths if p.is_file()]
    out: list[Utterance] = []
    for folder, paths in _drop_copied_folders(folders).items():
        if not paths:
            continue
        language, source = _language(folder), f"ktuberling-{_slug(folder)}"
        speakers = _tagged_speakers("ktuberling", source, paths)
        for path, speaker in zip(paths, speakers, strict=True):
            comment = clip_info(path).comment
            said = comment.split(":", 1)[1] if re.match(r"^[a-z]{2,3}:", comment) else ""
            text = said.strip() or _readable_word(path.stem)
            out.append(_utterance(source, speaker, language, path.stem, text, path))
    if not out:
        raise SourceNotFoundError(
            f"no ktuberling recordings under {root}: install `ktuberling-data`"
        )
    return _dedupe_content(out)


_TUXPAINT_DESC = re.compile(r"^(?P<stamp>.+)_desc(?:_(?P<lang>[a-z]{2,3}(?:_[A-Z]{2})?))?\.ogg$")


def _tidy(text: str) -> str:
    """Return cleaned text, without the space a removed parenthesis leaves before punctuation."""
    return re.sub(r"\s+([.,;:!?])", r"\1", clean_text(text))


def _tuxpaint_texts(txt: Path) -> dict[str, str]:
    """Return language -> description from a stamp's ``.txt`` (first line: English)."""
    out: dict[str, str] = {}
    if not txt.is_file():
        return out
    for i, line in enumerate(txt.read_text("utf-8", errors="replace").splitlines()):
        key, sep, value = line.partition("=")
        if i == 0 and not (sep and key.endswith(".utf8")):
            out["en"] = _tidy(line)
        elif sep and key.strip().endswith(".utf8"):
            out[key.strip()[: -len(".utf8")]] = _tidy(value)
    return out


def tuxpaint_descriptions(root: Path = TUXPAINT_STAMPS_DIR) -> list[Utterance]:
    """List tuxpaint's spoken stamp descriptions (``<stamp>_desc[_<lang>].ogg``).

    Text: the stamp's ``.txt`` line for the language (the stamp's name when it has none).
    Speaker: the clip's ARTIST tag, else one unnamed group per language.
    """
    _require_dir(root, "tuxpaint-stamps-default")
    by_lang: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    texts_of: dict[Path, dict[str, str]] = {}
    for path in sorted(root.rglob("*_desc*.ogg")):
        m = _TUXPAINT_DESC.match(path.name)
        if not m:
            continue
        lang = m.group("lang") or "en"
        txt = path.with_name(f"{m.group('stamp')}.txt")
        if txt not in texts_of:
            texts_of[txt] = _tuxpaint_texts(txt)
        text = texts_of[txt].get(lang) or m.group("stamp").replace("_", " ")
        by_lang[lang].append((path, text))
    out: list[Utterance] = []
    for lang, members in sorted(by_lang.items()):
        source = f"tuxpaint-{_slug(lang)}"
        speakers = _tagged_speakers("tuxpaint", source, [p for p, _ in members])
        for (path, text), speaker in zip(members, speakers, strict=True):
            item = str(path.relative_to(root).with_suffix(""))
            out.append(_utterance(source, speaker, _language(lang), item, text, path))
    if not out:
        raise SourceNotFoundError(
            f"no tuxpaint descriptions under {root}: install `tuxpaint-stamps-default`"
        )
    return _dedupe_content(out)


def klettres_sounds(root: Path = KLETTRES_DIR) -> list[Utterance]:
    """List klettres' spoken letters and syllables (``<lang>/sounds.xml`` names each file).

    Speaker: the clip's ARTIST tag, else one unnamed group per folder (en and en_GB are two).
    """
    _require_dir(root, "klettres-data")
    folders: dict[str, list[tuple[Path, str]]] = {}
    for xml in sorted(root.glob("*/sounds.xml")):
        members: list[tuple[Path, str]] = []
        try:
            sounds = list(ET.parse(xml).getroot().iter("sound"))
        except ET.ParseError as err:
            raise ValueError(f"{xml}: not valid XML ({err}); reinstall `klettres-data`") from err
        for sound in sounds:
            path = root / sound.get("file", "")
            name = (sound.get("name") or "").strip()
            if name and path.is_file():
                members.append((path, name.lower() if path.parent.name == "syllab" else name))
        if members:
            folders[xml.parent.name] = list(dict.fromkeys(members))
    out: list[Utterance] = []
    for folder, members in sorted(folders.items()):
        source = f"klettres-{_slug(folder)}"
        speakers = _tagged_speakers("klettres", source, [p for p, _ in members])
        for (path, text), speaker in zip(members, speakers, strict=True):
            item = f"{path.parent.name}/{path.stem}"
            out.append(_utterance(source, speaker, _language(folder), item, text, path))
    if not out:
        raise SourceNotFoundError(f"no klettres recordings under {root}: install `klettres-data`")
    return _dedupe_content(out)


def hedgewars_voices(root: Path = HEDGEWARS_VOICES_DIR) -> list[Utterance]:
    """List the spoken clips of hedgewars' voice packs (one pack = one speaker).

    Leaves out :data:`HEDGEWARS_DROPPED_PACKS` and non-verbal clips; a clip identical to one
    of an earlier pack (in name order) is left out too. Text: the clip name as a phrase.
    """
    _require_dir(root, "hedgewars-data")
    out: list[Utterance] = []
    for pack in sorted(p for p in root.iterdir() if p.is_dir()):
        if pack.name in HEDGEWARS_DROPPED_PACKS:
            continue
        suffix = pack.name.rsplit("_", 1)[-1] if "_" in pack.name else ""
        language = suffix if suffix in _HEDGEWARS_LANGUAGES else "en"
        for path in sorted(pack.glob("*.ogg")):
            key = re.sub(r"\d+$", "", path.stem).lower()
            if key in _HEDGEWARS_NONVERBAL:
                continue
            text = _HEDGEWARS_PHRASES.get(key, key)
            item = f"{pack.name}/{path.stem}"
            voice = _HEDGEWARS_SAME_VOICE.get(pack.name, pack.name)
            out.append(
                _utterance("hedgewars", f"hedgewars-{_slug(voice)}", language, item, text, path)
            )
    if not out:
        raise SourceNotFoundError(
            f"no hedgewars voice packs under {root}: install `hedgewars-data`"
        )
    seen: dict[tuple[int, str], str] = {}
    kept: list[Utterance] = []
    for u in out:  # packs copy clips of other packs; keep the first copy only
        data = Path(str(u.audio_path)).read_bytes()
        key = (len(data), hashlib.sha1(data).hexdigest())
        if key not in seen:
            seen[key] = u.utterance_id
            kept.append(u)
    return kept


def _kajongg_text(stem: str) -> str:
    m = re.fullmatch(r"([bcs])(\d)a?", stem)
    if m:
        return f"{_KAJONGG_SUITS[m.group(1)]} {m.group(2)}"
    return _KAJONGG_WORDS.get(stem, stem)


def kajongg_voices(root: Path = KAJONGG_VOICES_DIR) -> list[Utterance]:
    """List kajongg's spoken calls: English voices in ``<voice>/``, German in ``de/<voice>/``.

    A voice folder is one person in both languages (its clips' ARTIST tags name the same
    person), so it is one speaker id.
    """
    _require_dir(root, "kajongg")
    out: list[Utterance] = []
    for language, base in (("en", root), ("de", root / "de")):
        if not base.is_dir():
            continue
        for voice in sorted(p for p in base.iterdir() if p.is_dir() and p.name != "de"):
            for path in sorted(voice.glob("*.ogg")):
                item = f"{language}/{voice.name}/{path.stem}"
                speaker = f"kajongg-{_slug(voice.name)}"
                out.append(
                    _utterance("kajongg", speaker, language, item, _kajongg_text(path.stem), path)
                )
    if not out:
        raise SourceNotFoundError(f"no kajongg voices under {root}: install `kajongg`")
    return _dedupe_content(out)


def _bopomofo(syllable: str) -> str:
    """Return a gcin syllable with its tone digit as a tone mark ("ㄅㄚ3" -> "ㄅㄚˇ")."""
    if syllable and syllable[-1] in _BOPOMOFO_TONES:
        return syllable[:-1] + _BOPOMOFO_TONES[syllable[-1]]
    return syllable


def gcin_syllables(root: Path = GCIN_VOICE_DIR) -> list[Utterance]:
    """List gcin-voice's Mandarin syllables: ``<syllable>/<speaker>.ogg``, two speakers."""
    _require_dir(root, "gcin-voice")
    out: list[Utterance] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.ogg")):
            if path.stem not in GCIN_SPEAKERS:
                continue
            speaker = f"gcin-voice-{GCIN_SPEAKERS[path.stem]}"
            item = f"{folder.name}/{path.stem}"
            out.append(_utterance("gcin-voice", speaker, "zh", item, _bopomofo(folder.name), path))
    if not out:
        raise SourceNotFoundError(f"no gcin-voice syllables under {root}: install `gcin-voice`")
    return out


@dataclass(frozen=True)
class SpeakerSource:
    """One package of real speech: how to list it, where it comes from, who speaks."""

    list_utterances: Callable[[], list[Utterance]]
    package: str  # Debian package
    licence: str
    speaker_basis: str  # what a speaker id stands for


SPEAKER_SOURCES: dict[str, SpeakerSource] = {
    "ktuberling": SpeakerSource(
        ktuberling_words, "ktuberling-data", "GPL-2+", "ARTIST tag, else one group per folder"
    ),
    "tuxpaint": SpeakerSource(
        tuxpaint_descriptions,
        "tuxpaint-stamps-default",
        "GPL-2",
        "ARTIST tag, else one group per language",
    ),
    "klettres": SpeakerSource(
        klettres_sounds, "klettres-data", "GPL-2+", "ARTIST tag, else one group per folder"
    ),
    "hedgewars": SpeakerSource(hedgewars_voices, "hedgewars-data", "GFDL-1.3", "voice pack"),
    "kajongg": SpeakerSource(
        kajongg_voices, "kajongg", "GPL-2+", "voice folder (tags name the person)"
    ),
    "gcin-voice": SpeakerSource(
        gcin_syllables, "gcin-voice", "GPL-3 / CC-BY-3.0", "file name (copyright file names both)"
    ),
}


def _order(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def composite_utterances(
    utts: Sequence[Utterance],
    seed: int,
    min_seconds: float = 3.0,
    max_seconds: float = 6.0,
) -> list[Utterance]:
    """Join each speaker's short clips into utterances of ``min_seconds``..``max_seconds``.

    Clips of one source, speaker and language are taken in a seeded order; a clip at least
    ``min_seconds`` long stays single, shorter ones are gathered until their recordings last
    ``min_seconds`` (a clip that would pass ``max_seconds`` waits for a later utterance; what is
    left at the end, too short, is dropped). A composite's text joins its parts' texts with
    ", ", its id is ``<source>:<first item>+<number of parts>``, ``audio_parts`` lists its
    recordings in order. Durations come from the files' headers (:func:`clip_info`).
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    groups: dict[tuple[str, str, str], list[Utterance]] = defaultdict(list)
    for u in utts:
        if u.audio_path is None:
            raise ValueError(f"{u.utterance_id} has no recording to join")
        groups[(u.source, u.speaker, u.language)].append(u)
    out: list[Utterance] = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda u: _order(seed, u.utterance_id))
        seconds = {u.utterance_id: clip_info(str(u.audio_path)).seconds for u in members}
        queue = deque(u for u in members if seconds[u.utterance_id] < min_seconds)
        out += [u for u in members if seconds[u.utterance_id] >= min_seconds]
        parts: list[Utterance] = []
        total, waited = 0.0, 0
        while queue and waited <= len(queue):
            u = queue.popleft()
            if parts and total + seconds[u.utterance_id] > max_seconds:
                queue.append(u)
                waited += 1
                continue
            parts.append(u)
            total += seconds[u.utterance_id]
            waited = 0
            if total >= min_seconds:
                out.append(_join(parts))
                parts, total = [], 0.0
    return out


def _join(parts: list[Utterance]) -> Utterance:
    first = parts[0]
    if len(parts) == 1:
        return first
    ident = f"{first.utterance_id}+{len(parts)}"
    return replace(
        first,
        utterance_id=ident,
        transcript_id=ident,
        text=", ".join(p.text for p in parts),
        audio_parts=tuple(str(p.audio_path) for p in parts),
    )


def speaker_utterances(
    seed: int = 0, per_speaker: int = 12, sources: Iterable[str] | None = None
) -> list[Utterance]:
    """Return up to ``per_speaker`` utterances of every speaker of :data:`SPEAKER_SOURCES`.

    Short clips are joined first (:func:`composite_utterances`); a speaker with fewer than two
    utterances is dropped; the ``per_speaker`` kept are a seeded choice. ``sources`` picks
    registry names (all by default). A missing package raises
    :class:`~dfa_lib.data.corpus.sources.SourceNotFoundError`.
    """
    names = list(SPEAKER_SOURCES) if sources is None else list(sources)
    unknown = [n for n in names if n not in SPEAKER_SOURCES]
    if unknown:
        raise ValueError(
            f"unknown speaker sources {unknown}: choose from {sorted(SPEAKER_SOURCES)}"
        )
    clips: list[Utterance] = []
    for name in names:
        clips += SPEAKER_SOURCES[name].list_utterances()
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in composite_utterances(clips, seed):
        by_speaker[u.speaker].append(u)
    out: list[Utterance] = []
    for speaker in sorted(by_speaker):
        members = by_speaker[speaker]
        if len(members) < 2:
            continue
        members.sort(key=lambda u: _order(seed, u.utterance_id))
        out += members[:per_speaker]
    return out


# Sources whose texts are English glosses in these languages (see the module docstring).
_GLOSSED: dict[str, frozenset[str]] = {
    "ktuberling": frozenset({"ca", "da", "de", "el", "gl", "lt", "nn", "ru", "sl", "uk"}),
    "kajongg": frozenset({"de"}),
    "hedgewars": _HEDGEWARS_LANGUAGES,
}


def text_is_spoken(utt: Utterance) -> bool:
    """Say whether an utterance's text is what its recording says, not an English gloss.

    Only such texts may be read by a TTS voice of the utterance's language; the others are
    faked by vocoder copies of the recording.
    """
    family = utt.source.split("-", 1)[0]
    return utt.language not in _GLOSSED.get(family, frozenset())
