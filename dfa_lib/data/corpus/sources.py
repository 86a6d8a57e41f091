"""Real recordings and sentence lists that install from Debian packages.

- ``asterisk-core-sounds-{en,es,fr,it,ru}-g722``: telephone prompts (16 kHz G.722), with their
  transcripts from ``asterisk-core-sounds-{lang}``. The English and Spanish prompts are spoken
  by the same woman, French by another woman, Italian by a man, Russian by a third woman. The
  files are read from the packages' own folders, not through the ``/etc/alternatives`` links,
  which can point at other prompt packages.
- ``fillets-ng-data-cs`` / ``fillets-ng-data-nl``: the spoken dialogue of the game Fish Fillets
  (22.05 kHz Ogg Vorbis, two main actors and a dozen minor voices per language); the lines'
  text, in every language, comes from ``fillets-ng-data`` (``script/*/dialogs_*.lua``).
- ``festvox-ru``: the 620 read sentences recorded for festival's Russian voice (16 kHz).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dfa_lib.data.corpus.channel import decode_g722_file, resample, trim_silence

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOCS = Path("/usr/share/doc")
FILLETS_DIR = Path("/usr/share/games/fillets-ng")
FESTVOX_RU_DIR = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")

# Language -> (folder owned by asterisk-core-sounds-LANG-g722, speaker id).
ASTERISK_VOICES: dict[str, tuple[str, str]] = {
    "en": ("en_US_f_Allison", "asterisk-allison"),
    "es": ("es_MX_f_Allison", "asterisk-allison"),
    "fr": ("fr_CA_f_June", "asterisk-june"),
    "it": ("it_IT_m_Carlo", "asterisk-carlo"),
    "ru": ("ru_RU_f_IvrvoiceRU", "asterisk-ivrvoiceru"),
}
# G.722 runs at 64 kbit/s, so a file's size gives its duration without decoding it.
G722_BYTES_PER_SECOND = 8000


class SourceNotFoundError(FileNotFoundError):
    """Raised when a Debian package that a corpus source needs is not installed."""


@dataclass(frozen=True)
class Utterance:
    """One sentence of a source: its text and, for recordings, where its audio is."""

    utterance_id: str  # unique, e.g. "asterisk-en:agent-pass"
    source: str  # e.g. "asterisk-en", "fillets-cs", "festvox-ru"
    speaker: str  # e.g. "asterisk-allison", "fillets-cs-m"
    language: str  # ISO 639-1
    transcript_id: str  # the same sentence has the same id in real and fake clips
    text: str
    audio_path: str | None = None  # None for a sentence without a recording
    audio_format: str | None = None  # ffmpeg input format when it cannot be guessed ("g722")
    # The recordings a composite utterance joins, in order (audio_path is then the first).
    audio_parts: tuple[str, ...] = ()


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise SourceNotFoundError(
            f"{path} not found: install the Debian package `{package}` (apt-get install {package})"
        )


def clean_text(text: str) -> str:
    """Return the text without bracketed or parenthesised stage directions, markup and repeated spaces."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", text)
    text = text.replace("+", "").replace('\\"', '"').replace("\\n", " ")
    return re.sub(r"\s+", " ", text).strip()


def read_asterisk_transcripts(language: str, docs_dir: Path = ASTERISK_DOCS) -> dict[str, str]:
    """Return prompt name -> transcript from ``asterisk-core-sounds-LANG``."""
    path = docs_dir / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"
    _require(path, f"asterisk-core-sounds-{language}")
    out: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = clean_text(text)
            if text and re.search(r"\w", text):
                out[name.strip()] = text
    return out


def asterisk_prompts(
    languages: tuple[str, ...] = tuple(ASTERISK_VOICES),
    min_seconds: float = 1.5,
    sounds_dir: Path = ASTERISK_SOUNDS,
    docs_dir: Path = ASTERISK_DOCS,
) -> list[Utterance]:
    """List the Asterisk prompts at least ``min_seconds`` long that have a transcript."""
    out: list[Utterance] = []
    for lang in languages:
        folder, speaker = ASTERISK_VOICES[lang]
        root = sounds_dir / folder
        _require(root, f"asterisk-core-sounds-{lang}-g722")
        for name, text in sorted(read_asterisk_transcripts(lang, docs_dir).items()):
            path = root / f"{name}.g722"
            if not path.is_file():
                continue
            if path.stat().st_size / G722_BYTES_PER_SECOND < min_seconds:
                continue
            source = f"asterisk-{lang}"
            out.append(
                Utterance(
                    utterance_id=f"{source}:{name}",
                    source=source,
                    speaker=speaker,
                    language=lang,
                    transcript_id=f"{source}:{name}",
                    text=text,
                    audio_path=str(path),
                    audio_format="g722",
                )
            )
    return out


_DIALOG_ID = re.compile(r'^\s*dialogId\("([^"]+)"')
_DIALOG_STR = re.compile(r'^\s*dialogStr\("(.*)"\)\s*$')


def read_fillets_dialogs(language: str, data_dir: Path = FILLETS_DIR) -> dict[str, tuple[str, str]]:
    """Return dialogue id -> (level, text) from ``script/*/dialogs_LANG.lua``."""
    scripts = data_dir / "script"
    _require(scripts, "fillets-ng-data")
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(scripts.glob(f"*/dialogs_{language}.lua")):
        current: str | None = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _DIALOG_ID.match(line)
            if m:
                current = m.group(1)
                continue
            m = _DIALOG_STR.match(line)
            if m and current is not None:
                text = clean_text(m.group(1))
                if text and re.search(r"\w", text):
                    out[current] = (path.parent.name, text)
                current = None
    return out


def fillets_speaker(dialog_id: str) -> str:
    """Return the character code of a dialogue id ("let-m-divna" -> "m", else "misc")."""
    parts = dialog_id.split("-")
    if len(parts) >= 3 and parts[1].isalpha():
        return parts[1]
    return "misc"


def fillets_lines(
    language: str, with_audio: bool = True, data_dir: Path = FILLETS_DIR
) -> list[Utterance]:
    """List the game's dialogue lines in one language, with their recordings if asked."""
    out: list[Utterance] = []
    source = f"fillets-{language}"
    for dialog_id, (level, text) in sorted(read_fillets_dialogs(language, data_dir).items()):
        audio: str | None = None
        if with_audio:
            path = data_dir / "sound" / level / language / f"{dialog_id}.ogg"
            if not path.is_file():
                continue
            audio = str(path)
        out.append(
            Utterance(
                utterance_id=f"{source}:{dialog_id}",
                source=source,
                speaker=f"{source}-{fillets_speaker(dialog_id)}",
                language=language,
                transcript_id=f"{source}:{dialog_id}",
                text=text,
                audio_path=audio,
            )
        )
    if with_audio and not out:
        raise SourceNotFoundError(
            f"no recorded {language} dialogue under {data_dir}/sound: install the Debian "
            f"package `fillets-ng-data-{language}`"
        )
    return out


def festvox_ru_recordings(voice_dir: Path = FESTVOX_RU_DIR) -> list[Utterance]:
    """List the festvox-ru speaker's recorded sentences with their transcripts."""
    txt = voice_dir / "etc" / "txt.done.data"
    _require(txt, "festvox-ru")
    out: list[Utterance] = []
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$', line)
        if not m:
            continue
        name, text = m.group(1), clean_text(m.group(2))
        path = voice_dir / "wav" / f"{name}.wav"
        if not path.is_file():
            continue
        out.append(
            Utterance(
                utterance_id=f"festvox-ru:{name}",
                source="festvox-ru",
                speaker="festvox-ru-nsh",
                language="ru",
                transcript_id=f"festvox-ru:{name}",
                text=text,
                audio_path=str(path),
            )
        )
    return out


def load_utterance_audio(utt: Utterance) -> tuple[np.ndarray, int]:
    """Return the recording of an utterance as float32 mono at its own sample rate."""
    if utt.audio_path is None:
        raise ValueError(f"{utt.utterance_id} has no recording")
    if utt.audio_format == "g722":
        return decode_g722_file(utt.audio_path), 16000
    if utt.audio_parts:
        return join_recordings(utt.audio_parts)
    wave, sr = sf.read(utt.audio_path, dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(sr)


PART_GAP_SECONDS = 0.25  # digital silence between the joined parts of a composite utterance
PART_TRIM_DB = 35.0  # a part's leading and trailing frames this far below its loudest are cut


def join_recordings(paths: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Return recordings joined in order, each trimmed of silence, with a short gap between.

    Each is mixed to mono, resampled to the highest rate among them and cut of its leading and
    trailing silence; :data:`PART_GAP_SECONDS` of digital silence separates them.
    """
    decoded = []
    for path in paths:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        decoded.append((wave.mean(axis=1), int(sr)))
    rate = max(sr for _, sr in decoded)
    gap = np.zeros(int(round(PART_GAP_SECONDS * rate)), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, (wave, sr) in enumerate(decoded):
        if i:
            pieces.append(gap)
        pieces.append(trim_silence(resample(wave, sr, rate), PART_TRIM_DB, rate))
    return np.concatenate(pieces).astype(np.float32), rate
