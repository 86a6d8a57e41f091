"""Speech generators for the fake class, and the registry that names them.

A generator is either text-to-speech (``synthesize(text, language, voice) -> (wave, sr)``)
or a vocoder that copies a real recording (``vocode(wave, sr) -> (wave, sr)``). Every entry
of :data:`GENERATORS` is used by the corpus: a TTS entry speaks the transcripts of the
languages its ``voices`` lists, a vocoder entry copies the real clips of every speaker. Adding
a generator is one entry here (the neural ones come from :mod:`dfa_lib.data.corpus.neural`).

Each generator, and where needed each voice, belongs to one of the :data:`FAMILIES`: the way
the waveform is made (concatenated units, formant rules, a statistical parametric model,
signal-processing resynthesis, a neural vocoder, a neural TTS). The protocols hold a family
out of training to test generalisation to an unseen technique, and the builder gives the slow
neural families (:data:`NEURAL_FAMILIES`) a fixed share of each split.

Every function is deterministic: the same input gives the same samples, so a rebuild with the
same seed gives the same manifest checksum.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from dfa_lib.data.corpus.neural import NEURAL_GENERATORS, NeuralGenerator

with warnings.catch_warnings():
    # pyworld imports the deprecated pkg_resources; the warning says nothing about us.
    warnings.simplefilter("ignore", UserWarning)
    import pyworld

# The generator families, the unit a leave-one-family-out protocol holds out: id -> what it is.
FAMILIES: dict[str, str] = {
    "concatenative": "joins recorded units: diphones (festival kal, ked, Italian lp and pc, "
    "Czech; flite kal16) and unit selection (festival's Russian clunits voice)",
    "formant": "rule-based formant synthesis (espeak-ng)",
    "statistical": "statistical parametric synthesis from HMM or clustered models (SVOX Pico, "
    "festival's HTS voice, flite's clustergen voices, open-jtalk)",
    "dsp-vocoder": "signal-processing resynthesis of a real clip (WORLD source-filter "
    "vocoder, Griffin-Lim phase reconstruction)",
    "gan-vocoder": "neural GAN vocoders copying a real clip from its features (HiFi-GAN, FARGAN)",
    "codec-vocoder": "a neural vocoder behind a speech codec's quantiser (LPCNet at 1.7 kbit/s)",
    "neural-tts": "end-to-end neural text-to-speech (hibari, distilled from Kokoro)",
}
# The families of neural networks: slow to run, so the builder caps their share.
NEURAL_FAMILIES: tuple[str, ...] = ("gan-vocoder", "codec-vocoder", "neural-tts")
# The family written for real clips (whose generator is ``"human"``).
HUMAN = "human"


class SynthesisError(RuntimeError):
    """Raised when a synthesiser is missing or fails on an input."""


@dataclass(frozen=True)
class Generator:
    """A registered fake-speech generator.

    ``kind`` is ``"tts"`` (needs ``synthesize`` and ``voices``: language -> voice names) or
    ``"vocoder"`` (needs ``vocode``; its voices are the real speakers it copies, named
    ``"<generator>:<speaker>"``). ``family`` is the generator's family, one of
    :data:`FAMILIES`; ``voice_families`` overrides it for voices made another way (a festival
    HTS voice among diphone voices).
    """

    name: str
    kind: str
    family: str = ""
    voices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    synthesize: Callable[[str, str, str], tuple[np.ndarray, int]] | None = None
    vocode: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None
    voice_families: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "tts" and (self.synthesize is None or not self.voices):
            raise ValueError(f"TTS generator {self.name!r} needs `synthesize` and `voices`")
        if self.kind == "vocoder" and self.vocode is None:
            raise ValueError(f"vocoder generator {self.name!r} needs `vocode`")
        if self.kind not in ("tts", "vocoder"):
            raise ValueError(f"generator kind must be 'tts' or 'vocoder', not {self.kind!r}")
        for family in self.families:
            if family not in FAMILIES:
                raise ValueError(
                    f"generator {self.name!r} has family {family!r}; "
                    f"choose one of {list(FAMILIES)} (add a new one to FAMILIES)"
                )
        known = {v for names in self.voices.values() for v in names}
        unknown = sorted(set(self.voice_families) - known)
        if self.kind == "tts" and unknown:
            raise ValueError(
                f"generator {self.name!r} gives a family to voices it does not have: {unknown}"
            )

    @property
    def families(self) -> tuple[str, ...]:
        """Return every family this generator's voices belong to, its own first."""
        return tuple(dict.fromkeys((self.family, *self.voice_families.values())))

    def family_of(self, voice: str) -> str:
        """Return the family of one of this generator's voices.

        ``voice`` is the voice name (``"cmu_us_slt_arctic_hts"``) or its global id
        (``"festival:cmu_us_slt_arctic_hts"``, see :func:`voice_id`).
        """
        prefix = f"{self.name}:"
        if voice.startswith(prefix):
            voice = voice[len(prefix) :]
        return self.voice_families.get(voice, self.family)


def voice_id(generator: str, voice: str) -> str:
    """Return the global id of a fake voice, e.g. ``"espeak-ng:en+m3"``."""
    return f"{generator}:{voice}"


def _which(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SynthesisError(f"`{program}` not found: install the Debian package `{package}`")
    return path


def _run(cmd: list[str], what: str, stdin: bytes | None = None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SynthesisError(f"{what} failed: {proc.stderr.decode(errors='replace')[-400:]}")


def _read(path: Path, what: str) -> tuple[np.ndarray, int]:
    if not path.is_file() or path.stat().st_size <= 44:
        raise SynthesisError(f"{what} produced no audio")
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(sr)


def espeak_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with espeak-ng; ``voice`` is an espeak-ng voice+variant, e.g. ``en+m3``."""
    exe = _which("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        _run([exe, "-v", voice, "-w", str(out), "--stdin"], f"espeak-ng {voice}", text.encode())
        return _read(out, f"espeak-ng {voice}")


def flite_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak English ``text`` with a flite voice (``awb``, ``rms``, ``slt``, ``kal16``)."""
    if language != "en":
        raise SynthesisError(f"flite speaks English only, not {language!r}")
    exe = _which("flite", "flite")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        src.write_text(text, encoding="utf-8")
        _run([exe, "-voice", voice, "-f", str(src), "-o", str(out)], f"flite {voice}")
        return _read(out, f"flite {voice}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_text(text: str) -> str:
    """Return the text with only letters, digits and plain punctuation (festival's rules
    for some languages stop on other symbols such as dashes and quotes)."""
    text = re.sub(r"[^\w\s.,!?'-]", " ", text).replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


def festival_synthesize_many(texts: list[str], voice: str) -> list[tuple[np.ndarray, int]]:
    """Speak several sentences with one festival process (its start-up dominates the cost)."""
    exe = _which("festival", "festival")
    texts = [festival_text(t) for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f"(voice_{voice})"]
        outs = [Path(tmp) / f"{i}.wav" for i in range(len(texts))]
        for text, out in zip(texts, outs, strict=True):
            lines.append(
                f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(out))}"
                " 'riff)"
            )
        script = Path(tmp) / "run.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run([exe, "-b", str(script)], f"festival {voice}")
        return [_read(out, f"festival {voice}") for out in outs]


def festival_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with a festival voice, e.g. ``kal_diphone``, ``czech_dita``."""
    return festival_synthesize_many([text], voice)[0]


def pico_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with SVOX Pico (``ttspico``); ``voice`` is a locale such as ``en-GB``."""
    try:
        import ttspico
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SynthesisError("SVOX Pico needs the PyPI package `ttspico`") from exc
    # A fresh engine per sentence: a reused engine carries state that changes its output.
    engine = ttspico.TtsEngine(voice)
    pcm = engine.speak(text)
    if not pcm:
        raise SynthesisError(f"pico {voice} produced no audio")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, 16000


OPEN_JTALK_DICTIONARY = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
HTS_VOICES = Path("/usr/share/hts-voice")
# open-jtalk and its voice are in Debian contrib (see the Makefile's Debian target).
_OPEN_JTALK_HINT = "(Debian contrib; `make setup` enables it)"


def _hts_voice(voice: str) -> Path:
    """Find the ``.htsvoice`` file of an installed HTS voice package."""
    found = sorted((HTS_VOICES / voice).glob("*.htsvoice"))
    if not found:
        raise SynthesisError(
            f"HTS voice {voice!r} not found under {HTS_VOICES}: install the Debian package "
            f"`hts-voice-{voice}` {_OPEN_JTALK_HINT}"
        )
    return found[0]


def open_jtalk_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak Japanese ``text`` with open-jtalk and an HTS voice, e.g. ``nitech-jp-atr503-m001``."""
    if language != "ja":
        raise SynthesisError(f"open-jtalk speaks Japanese only, not {language!r}")
    exe = shutil.which("open_jtalk")
    if exe is None:
        raise SynthesisError(
            f"`open_jtalk` not found: install the Debian package `open-jtalk` {_OPEN_JTALK_HINT}"
        )
    if not (OPEN_JTALK_DICTIONARY / "sys.dic").is_file():
        raise SynthesisError(
            f"no open-jtalk dictionary in {OPEN_JTALK_DICTIONARY}: install the Debian package "
            "`open-jtalk-mecab-naist-jdic`"
        )
    model = _hts_voice(voice)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        # open_jtalk speaks only the first line of its input.
        src.write_text(" ".join(text.split()), encoding="utf-8")
        cmd = [exe, "-x", str(OPEN_JTALK_DICTIONARY), "-m", str(model), "-ow", str(out), str(src)]
        _run(cmd, f"open-jtalk {voice}")
        return _read(out, f"open-jtalk {voice}")


TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
_JAPANESE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")


def japanese_sentences(root: Path = TUXPAINT_STAMPS) -> list[tuple[str, str]]:
    """Return Japanese sentences for open-jtalk to read, as ``(id, text)`` pairs.

    The text comes from the Japanese descriptions (``ja.utf8=`` lines) of Tux Paint's stamps
    (Debian package ``tuxpaint-stamps-default``, GPL-2); the id names the stamp's file,
    ``"tuxpaint-stamps:<path under root, no .txt>"``. Only texts of four or more characters
    with kana or kanji are kept, each once (its first file in path order), in path order.
    """
    files = sorted(root.rglob("*.txt")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no Tux Paint stamp descriptions under {root}: install the Debian package "
            "`tuxpaint-stamps-default`"
        )
    sentences: dict[str, str] = {}
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("ja.utf8="):
                continue
            text = " ".join(line.removeprefix("ja.utf8=").split())
            if len(text) >= 4 and _JAPANESE_SCRIPT.search(text) and text not in sentences:
                sentences[text] = f"tuxpaint-stamps:{path.relative_to(root).with_suffix('')}"
    return [(sentence_id, text) for text, sentence_id in sentences.items()]


def _neural_tts(
    synthesize: Callable[[str, str, str], tuple[np.ndarray, int]],
    name: str,
    text: str,
    language: str,
    voice: str,
) -> tuple[np.ndarray, int]:
    """Call a neural TTS and refuse an empty result the way the other synthesisers do."""
    wave, sr = synthesize(text, language, voice)
    if len(wave) == 0:
        raise SynthesisError(f"{name} {voice} produced no audio for {text!r}")
    return wave, sr


def _registered(generator: NeuralGenerator) -> Generator:
    """Return the :class:`Generator` entry of a neural generator."""
    if generator.kind == "vocoder":
        return Generator(generator.name, "vocoder", generator.family, vocode=generator.callable)
    return Generator(
        generator.name,
        "tts",
        generator.family,
        voices={language: generator.voices for language in generator.languages},
        synthesize=functools.partial(_neural_tts, generator.callable, generator.name),
    )


def world_vocode(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resynthesise a recording with the WORLD vocoder (DIO + StoneMask, CheapTrick, D4C)."""
    x = np.ascontiguousarray(wave, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, t, sr)
    sp = pyworld.cheaptrick(x, f0, t, sr)
    ap = pyworld.d4c(x, f0, t, sr)
    y = pyworld.synthesize(f0, sp, ap, sr, frame_period=5.0)
    return y[: len(wave)].astype(np.float32), sr


def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Return a (n_mels, n_fft // 2 + 1) triangular mel filterbank (HTK mel scale)."""
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    edges = 700.0 * (10.0 ** (np.linspace(mel(0.0), mel(sr / 2.0), n_mels + 2) / 2595.0) - 1.0)
    bank = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        bank[i] = np.maximum(0.0, np.minimum(rising, falling))
    return bank


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    # Overlap-add block by block: n_fft is a multiple of hop, so frame i covers hop-sized
    # blocks i .. i + n_fft / hop - 1.
    parts = n_fft // hop
    frames = (np.fft.irfft(spec, n=n_fft, axis=1) * window).reshape(len(spec), parts, hop)
    weights = np.broadcast_to((window**2).reshape(parts, hop), frames.shape)
    blocks = np.zeros((len(spec) + parts - 1, hop))
    norm = np.zeros_like(blocks)
    for k in range(parts):
        blocks[k : k + len(spec)] += frames[:, k]
        norm[k : k + len(spec)] += weights[:, k]
    out = (blocks / np.maximum(norm, 1e-8)).reshape(-1)[:length]
    return np.pad(out, (0, max(0, length - len(out))))


def griffin_lim_vocode(
    wave: np.ndarray, sr: int, n_mels: int = 80, n_fft: int = 1024, n_iter: int = 32
) -> tuple[np.ndarray, int]:
    """Rebuild a recording from its 80-band mel spectrogram with Griffin-Lim phase recovery."""
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1]
    length = len(wave)
    x = np.pad(np.asarray(wave, dtype=np.float64), (n_fft, n_fft))
    spec = _stft(x, n_fft, hop, window)
    bank = mel_filterbank(sr, n_fft, n_mels)
    mel_power = (np.abs(spec) ** 2) @ bank.T
    # Least-squares inversion of the filterbank: the detail the mel bands lost stays lost,
    # which is what a mel-domain vocoder copy is.
    magnitude = np.sqrt(np.maximum(mel_power @ np.linalg.pinv(bank).T, 0.0))
    # A fixed generator makes the random initial phase, hence the output, reproducible.
    phase = np.exp(2j * np.pi * np.random.default_rng(0).random(magnitude.shape))
    for _ in range(n_iter):
        y = _istft(magnitude * phase, n_fft, hop, window, len(x))
        rebuilt = _stft(y, n_fft, hop, window)
        phase = rebuilt / np.maximum(np.abs(rebuilt), 1e-12)
    y = _istft(magnitude * phase, n_fft, hop, window, len(x))[n_fft : n_fft + length]
    return y.astype(np.float32), sr


# espeak-ng voice (language code) for each corpus language, where it is not the same code.
_ESPEAK_LANGUAGE = {
    "nn": "nb",  # no Nynorsk voice: the Bokmål one reads the close written standard
    # "cmn" reads the tone digits of its own pinyin transcription in English (espeak-ng 1.51).
    "zh": "cmn-latn-pinyin",
}
# Three variants (+mN male, +fN female) per language, rotated so the languages do not all
# share the same three; the voices are split between training, validation and test.
_ESPEAK_VARIANTS = (
    ("m1", "f2", "m5"),
    ("m2", "f3", "m6"),
    ("m3", "f4", "m7"),
    ("m4", "f5", "m1"),
    ("m5", "f1", "m2"),
    ("m6", "f2", "m3"),
    ("m7", "f3", "m4"),
)
# Languages of the real speakers: espeak-ng 1.51 has no Galician (gl) or Low German (nds).
_ESPEAK_NEW_LANGUAGES = (
    "be", "bg", "ca", "cs", "da", "de", "el", "fi", "ga", "hu", "id", "lt", "ml", "nl", "nn",
    "pt", "ro", "sl", "sr", "sv", "uk", "zh",
)  # fmt: skip


def _espeak_voices() -> dict[str, tuple[str, ...]]:
    """Return the espeak-ng voices of every corpus language (language -> voice+variant)."""
    voices = {
        "en": ("en+m3", "en-us+f4", "en+f2"),
        "es": ("es+m1", "es+f3", "es+m6"),
        "fr": ("fr+m4", "fr+f2", "fr+m7"),
        "it": ("it+m2", "it+f4", "it+m5"),
        "ru": ("ru+m5", "ru+f1", "ru+m2"),
    }
    for i, language in enumerate(_ESPEAK_NEW_LANGUAGES):
        code = _ESPEAK_LANGUAGE.get(language, language)
        variants = _ESPEAK_VARIANTS[i % len(_ESPEAK_VARIANTS)]
        if language == "nl":
            # nl+m6 and nl+f5 are voices of the cross-source set.
            variants = ("m1", "f2", "m3")
        voices[language] = tuple(f"{code}+{v}" for v in variants)
    return voices


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "espeak-ng", "tts", "formant", voices=_espeak_voices(), synthesize=espeak_synthesize
        ),
        Generator(
            "flite",
            "tts",
            # awb, rms and slt are clustergen voices (statistical parametric); kal16 joins
            # diphones (the voices' libraries name their cg_db and diphone_db databases).
            "statistical",
            voices={"en": ("awb", "rms", "slt", "kal16")},
            synthesize=flite_synthesize,
            voice_families={"kal16": "concatenative"},
        ),
        Generator(
            "festival",
            "tts",
            # The voices' festvox files: kal, ked, lp and pc run UniSyn on diphone databases,
            # the Russian voice selects clunits, the slt voice sets Synth_Method to HTS.
            "concatenative",
            voices={
                "en": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"),
                "it": ("lp_diphone", "pc_diphone"),
                "ru": ("msu_ru_nsh_clunits",),
            },
            synthesize=festival_synthesize,
            voice_families={"cmu_us_slt_arctic_hts": "statistical"},
        ),
        Generator(
            "pico",
            "tts",
            "statistical",  # SVOX Pico is an HMM-based synthesiser
            voices={"en": ("en-US", "en-GB"), "es": ("es-ES",), "fr": ("fr-FR",), "it": ("it-IT",)},
            synthesize=pico_synthesize,
        ),
        Generator(
            "open-jtalk",
            "tts",
            "statistical",  # HMM voices run by hts_engine
            voices={"ja": ("nitech-jp-atr503-m001",)},
            synthesize=open_jtalk_synthesize,
        ),
        Generator("world", "vocoder", "dsp-vocoder", vocode=world_vocode),
        Generator("griffin-lim", "vocoder", "dsp-vocoder", vocode=griffin_lim_vocode),
        # Neural copy synthesis and neural TTS whose weights install offline.
        *(_registered(g) for g in NEURAL_GENERATORS.values()),
    )
}


def is_neural(generator: str) -> bool:
    """Say whether a registered generator is a neural network (any of its voices' families is
    in :data:`NEURAL_FAMILIES`); the builder caps these slow generators."""
    gen = GENERATORS.get(generator)
    if gen is None:
        raise KeyError(f"unknown generator {generator!r}: register it in GENERATORS")
    return any(family in NEURAL_FAMILIES for family in gen.families)


# Voices of the cross-source set. None of them is a voice of GENERATORS except festival's
# Russian voice, which the main corpus keeps out of its training and validation splits.
CROSS_VOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "festival": {
        "cs": ("czech_dita", "czech_krb", "czech_machac", "czech_ph"),
        "ru": ("msu_ru_nsh_clunits",),
    },
    "espeak-ng": {"nl": ("nl+m6", "nl+f5")},
}
