"""Speech generators for the fake class, and the registry that names them.

A generator is either text-to-speech (``synthesize(text, language, voice) -> (wave, sr)``)
or a vocoder that copies a real recording (``vocode(wave, sr) -> (wave, sr)``). Every entry
of :data:`GENERATORS` is used by the main corpus: a TTS entry speaks the transcripts of the
languages its ``voices`` lists, a vocoder entry copies the real clips of every speaker. Adding
a generator is one entry here. The neural vocoders of :mod:`dfa_lib.data.corpus.neural` are
registered with their architecture family (``hifigan``, ``lpcnet``); everything else is
``classical``. The builder gives the neural ones a fixed share of each split (they are slow)
and the ``unseen-neural`` protocols hold one family out.

Every function is deterministic: the same input gives the same samples, so a rebuild with the
same seed gives the same manifest checksum.
"""

from __future__ import annotations

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

from dfa_lib.data.corpus.neural import NEURAL_GENERATORS

with warnings.catch_warnings():
    # pyworld imports the deprecated pkg_resources; the warning says nothing about us.
    warnings.simplefilter("ignore", UserWarning)
    import pyworld

# The family of every generator that is not a neural network, and of no real clip.
CLASSICAL = "classical"
# The family written for real clips (whose generator is ``"human"``).
HUMAN = "human"


class SynthesisError(RuntimeError):
    """Raised when a synthesiser is missing or fails on an input."""


@dataclass(frozen=True)
class Generator:
    """A registered fake-speech generator.

    ``kind`` is ``"tts"`` (needs ``synthesize`` and ``voices``: language -> voice names) or
    ``"vocoder"`` (needs ``vocode``; its voices are the real speakers it copies, named
    ``"<generator>:<speaker>"``). ``family`` groups generators for protocols:
    :data:`CLASSICAL` for rule-based, concatenative and signal-processing engines, otherwise
    the neural architecture family (``"hifigan"``, ``"lpcnet"``) that ``unseen-neural`` holds
    out.
    """

    name: str
    kind: str
    family: str = CLASSICAL
    voices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    synthesize: Callable[[str, str, str], tuple[np.ndarray, int]] | None = None
    vocode: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None

    def __post_init__(self) -> None:
        if self.kind == "tts" and (self.synthesize is None or not self.voices):
            raise ValueError(f"TTS generator {self.name!r} needs `synthesize` and `voices`")
        if self.kind == "vocoder" and self.vocode is None:
            raise ValueError(f"vocoder generator {self.name!r} needs `vocode`")
        if self.kind not in ("tts", "vocoder"):
            raise ValueError(f"generator kind must be 'tts' or 'vocoder', not {self.kind!r}")


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


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "espeak-ng",
            "tts",
            voices={
                "en": ("en+m3", "en-us+f4", "en+f2"),
                "es": ("es+m1", "es+f3"),
                "fr": ("fr+m4", "fr+f2"),
                "it": ("it+m2", "it+f4"),
                "ru": ("ru+m5", "ru+f1"),
            },
            synthesize=espeak_synthesize,
        ),
        Generator(
            "flite",
            "tts",
            voices={"en": ("awb", "rms", "slt", "kal16")},
            synthesize=flite_synthesize,
        ),
        Generator(
            "festival",
            "tts",
            voices={
                "en": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"),
                "it": ("lp_diphone", "pc_diphone"),
                "ru": ("msu_ru_nsh_clunits",),
            },
            synthesize=festival_synthesize,
        ),
        Generator(
            "pico",
            "tts",
            voices={"en": ("en-US", "en-GB"), "es": ("es-ES",), "fr": ("fr-FR",), "it": ("it-IT",)},
            synthesize=pico_synthesize,
        ),
        Generator("world", "vocoder", vocode=world_vocode),
        Generator("griffin-lim", "vocoder", vocode=griffin_lim_vocode),
        # Neural copy synthesis: pretrained vocoders whose weights install offline.
        *(
            Generator(g.name, "vocoder", g.family, vocode=g.callable)
            for g in NEURAL_GENERATORS.values()
        ),
    )
}


def is_neural(generator: str) -> bool:
    """Say whether a registered generator is a neural network (its family is not classical)."""
    gen = GENERATORS.get(generator)
    if gen is None:
        raise KeyError(f"unknown generator {generator!r}: register it in GENERATORS")
    return gen.family != CLASSICAL


def neural_families() -> tuple[str, ...]:
    """Return the neural families of the registered generators, sorted."""
    return tuple(sorted({g.family for g in GENERATORS.values()} - {CLASSICAL}))


# Voices of the cross-source set. None of them is a voice of GENERATORS except festival's
# Russian voice, which the main corpus keeps out of its training and validation splits.
CROSS_VOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "festival": {
        "cs": ("czech_dita", "czech_krb", "czech_machac", "czech_ph"),
        "ru": ("msu_ru_nsh_clunits",),
    },
    "espeak-ng": {"nl": ("nl+m6", "nl+f5")},
}
