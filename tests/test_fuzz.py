"""Generated hostile input: every file gets a result or a clear error, never a crash or a lost row.

Hypothesis writes WAV files with random headers (format, bit depth, channels, sample rate,
size fields), samples and lengths, cut-short FLAC/Ogg/MP3 files, and file names with odd
characters or bytes that are not UTF-8, and checks the contracts:
:func:`~dfa_lib.data.audio.load_audio` returns finite 16 kHz samples or raises an
:class:`~dfa_lib.data.audio.AudioError`; ``dfa predict`` writes one row per input, each a
probability of fake in [0, 1] with its label or an error message; the CSV and folder loaders
return one manifest row per listed file or raise a :class:`~dfa_lib.data.datasets.DatasetError`
that says why.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_detector import make_detector_folder

from dfa_lib.cli import main
from dfa_lib.data.audio import AudioError, load_audio
from dfa_lib.data.datasets import AUDIO_EXTENSIONS, DatasetError, load_dataset

pytestmark = [
    pytest.mark.slow,
    # Generated files are often cut short on purpose; the loader's warning says so each time.
    pytest.mark.filterwarnings("ignore::dfa_lib.data.audio.TruncatedAudioWarning"),
]

SR = 16000
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Header rates: the usual ones and others a header may claim. Resampling cost grows with the
# rate ratio: a 12 KB file claiming 1,999,993 Hz takes 15 s, one claiming 1 Hz becomes 16,000
# samples per byte pair; such rates stay out until load_audio bounds them.
RATES = st.one_of(
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    st.integers(1_000, 50_000),
)
# (WAVE format tag, bits per sample, numpy sample type)
FORMATS = [(1, 8, "u1"), (1, 16, "<i2"), (1, 32, "<i4"), (3, 32, "<f4"), (3, 64, "<f8")]
# Peak levels of float samples, up to far past full scale (1e30 once gave a NaN score and a
# MetricError that stopped `dfa predict`; load_audio now refuses such samples).
FLOAT_LEVELS = [0.0, 1e-6, 0.01, 0.5, 1.0, 4.0, 1e5, 1e30, np.inf, np.nan]


@dataclass(frozen=True)
class Audio:
    """A generated file: its bytes and the extension its name gets."""

    data: bytes
    suffix: str


def _wav(fmt: tuple[int, int, str], channels: int, rate: int, payload: bytes, **lies) -> bytes:
    """A RIFF/WAVE file; ``lies`` overwrite header fields with wrong values."""
    tag, bits, _ = fmt
    align = lies.get("align", channels * bits // 8)
    fmt_chunk = struct.pack(
        "<HHIIHH", tag, channels, rate, lies.get("byte_rate", rate * align), align, bits
    )
    data_size = lies.get("data_size", len(payload))
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt_chunk
    body += b"data" + struct.pack("<I", data_size & 0xFFFFFFFF) + payload
    return b"RIFF" + struct.pack("<I", lies.get("riff_size", len(body)) & 0xFFFFFFFF) + body


@st.composite
def wav_files(draw) -> Audio:
    """A WAV file whose header may lie, whose samples may be anything, possibly cut short."""
    fmt = draw(st.sampled_from(FORMATS))
    channels = draw(st.integers(1, 6))
    rate = draw(RATES)
    frames = draw(st.integers(0, 6000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(fmt[2])
    if dtype.kind == "f":
        level = draw(st.sampled_from(FLOAT_LEVELS))
        samples = (level * rng.uniform(-1, 1, frames * channels)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        samples = rng.integers(info.min, info.max, frames * channels, endpoint=True, dtype=dtype)
    payload = samples.tobytes()
    lies = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "data_size": st.integers(0, 2**32 - 1),
                "riff_size": st.integers(0, 2**32 - 1),
                "align": st.integers(0, 64),
                "byte_rate": st.integers(0, 2**32 - 1),
            },
        )
    )
    data = _wav(fmt, channels, rate, payload, **lies)
    if draw(st.booleans()):  # cut short, as a download or a copy stopped midway leaves it
        data = data[: draw(st.integers(0, len(data)))]
    return Audio(data, draw(st.sampled_from([".wav", ".WAV", ".wav", ""])))


@st.composite
def compressed_files(draw) -> Audio:
    """A FLAC, Ogg Vorbis or MP3 encoding of noise or silence, possibly cut short."""
    fmt, suffix = draw(st.sampled_from([("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")]))
    rate = draw(st.sampled_from([8000, 16000, 22050, 44100, 48000]))
    channels = draw(st.integers(1, 2))
    frames = draw(st.integers(1, 8000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = draw(st.sampled_from([0.0, 0.01, 0.5]))
    wave = (level * rng.uniform(-1, 1, (frames, channels))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt)
    data = buffer.getvalue()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return Audio(data, draw(st.sampled_from([suffix, ".wav", ""])))


# Files that are not WAV at all, or that claim another format by their extension.
OTHER_FILES = st.builds(
    Audio,
    st.one_of(st.just(b""), st.binary(max_size=300), st.just(b"RIFF"), st.just(b"hello\n")),
    st.sampled_from([".wav", ".flac", ".mp3", ".g722", ".txt", ""]),
)
AUDIO_FILES = st.one_of(wav_files(), wav_files(), compressed_files(), OTHER_FILES)

# File names: any character a POSIX file name may hold, or raw bytes that are not UTF-8.
TEXT_NAMES = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=24,
)
BYTE_NAMES = st.lists(
    st.integers(1, 255).filter(lambda b: b != ord("/")), min_size=1, max_size=24
).map(bytes)
NAMES = st.one_of(TEXT_NAMES, BYTE_NAMES.map(os.fsdecode)).filter(lambda n: n not in {".", ".."})


def _file_name(name: str, audio: Audio) -> str:
    return name + audio.suffix


def _unique_names(entries: list) -> bool:
    names = [os.fsencode(_file_name(name, audio)) for name, audio, *_ in entries]
    return len(set(names)) == len(names)


def _write_files(folder: Path, entries: list) -> list[str]:
    paths = []
    for name, audio, *_ in entries:
        path = os.path.join(folder, _file_name(name, audio))
        with open(path, "wb") as f:
            f.write(audio.data)
        paths.append(path)
    return paths


def _written(text: str) -> str:
    """A path as dfa predict writes it: bytes that are not UTF-8 as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@settings(max_examples=100, **SETTINGS)
@given(audio=AUDIO_FILES, from_bytes=st.booleans())
def test_load_audio_gives_finite_16k_samples_or_an_audio_error(audio, from_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip{audio.suffix}"
        path.write_bytes(audio.data)
        try:
            wave, sr = load_audio(audio.data if from_bytes else path, target_sr=SR)
        except AudioError as error:
            event(f"refused: {type(error).__name__}")
            assert str(error)
            return
    event("decoded")
    assert sr == SR and wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
    assert np.isfinite(wave).all()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return make_detector_folder(tmp_path_factory.mktemp("model") / "lcnn", clip_seconds=0.5)


def _rows(out: Path, fmt: str) -> list[dict]:
    text = out.read_bytes().decode("utf-8")  # not read_text: it would turn \r into \n
    if fmt == "json":
        return json.loads(text)
    if fmt == "jsonl":
        return [json.loads(line) for line in text.split("\n")[:-1]]
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        for key in ("p_fake", "threshold"):
            row[key] = float(row[key]) if row[key] else None
        row["label"] = row["label"] or None
        row["error"] = row["error"] or None
    return rows


@settings(max_examples=15, **SETTINGS)
@given(
    entries=st.lists(st.tuples(NAMES, AUDIO_FILES), min_size=1, max_size=4).filter(_unique_names),
    fmt=st.sampled_from(["csv", "jsonl", "json"]),
)
def test_predict_writes_one_row_per_input_and_never_a_traceback(model_folder, entries, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / "in"
        files.mkdir()
        paths = _write_files(files, entries)
        out = Path(tmp) / f"rows.{fmt}"
        argv = ["predict", *paths, "--model", str(model_folder), "--format", fmt]
        status = main([*argv, "--output", str(out), "--min-speech", "off"])
        rows = _rows(out, fmt)
    assert [row["path"] for row in rows] == [_written(p) for p in paths]
    for row in rows:
        event("error row" if row["error"] else "scored row")
        if row["error"] is not None:
            assert row["p_fake"] is None and row["label"] is None
            continue
        assert 0.0 <= row["p_fake"] <= 1.0, row
        assert row["label"] == ("fake" if row["p_fake"] >= row["threshold"] else "real")
    assert status == (1 if any(row["error"] for row in rows) else 0)


VALID_LABELS = ["real", "fake", "bonafide", "spoof", "Real", " FAKE ", "bona fide", "human"]
INVALID_LABELS = ["", "maybe", "0", "1", "2", "real fake"]
LABELS = st.one_of(st.sampled_from(VALID_LABELS), st.sampled_from(VALID_LABELS + INVALID_LABELS))


@settings(max_examples=30, **SETTINGS)
@given(
    entries=st.lists(
        st.tuples(NAMES, AUDIO_FILES, LABELS),
        min_size=1,
        max_size=5,
    ).filter(_unique_names),
)
def test_the_csv_loader_lists_every_file_or_says_why(entries):
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_files(Path(tmp), entries)
        listing = io.StringIO()
        writer = csv.writer(listing)  # quotes fields that hold \r or \n
        writer.writerow(["path", "label"])
        writer.writerows(
            [os.path.basename(p), label] for p, (*_, label) in zip(paths, entries, strict=True)
        )
        csv_path = Path(tmp) / "list.csv"
        csv_path.write_bytes(listing.getvalue().encode("utf-8", "surrogateescape"))
        try:
            df, _ = load_dataset(str(csv_path), tmp, progress=False)
        except DatasetError as error:
            event(f"refused: {type(error).__name__}")
            assert str(error)
            names = [os.path.basename(p) for p in paths]
            plain = all(n == n.strip() and "\\" not in n and _written(n) == n for n in names)
            # With plain names and known labels nothing may be refused.
            assert not plain or any(label not in VALID_LABELS for *_, label in entries), error
            return
    event("listed")
    assert len(df) == len(entries)  # unreadable files are kept, for decoding to report
    assert set(df["label"]) <= {"real", "fake"}
    assert df["sha256"].map(lambda v: isinstance(v, str) and len(v) == 64).all()


@settings(max_examples=20, **SETTINGS)
@given(
    entries=st.lists(
        st.tuples(NAMES, AUDIO_FILES, st.sampled_from(["real", "fake"])), min_size=1, max_size=5
    ).filter(_unique_names),
)
def test_the_folder_loader_lists_every_audio_file_or_says_why(entries):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        for label in ("real", "fake"):
            (root / "testing" / label).mkdir(parents=True)
        paths = [
            _write_files(root / "testing" / label, [(name, audio)])[0]
            for name, audio, label in entries
        ]
        try:
            df, _ = load_dataset(str(root), tmp, progress=False)
            again, _ = load_dataset(str(root), tmp, progress=False)  # and a second load agrees
        except DatasetError as error:
            event(f"refused: {type(error).__name__}")
            collected = [p for p in paths if _collected(p)]
            if any(_written(p) != p for p in collected):
                assert "not UTF-8" in str(error) and "Rename them" in str(error)
            else:  # only when no name has an audio extension
                assert "no audio files" in str(error) and not collected
            return
    event("listed")
    expected = sorted(os.path.relpath(p, root) for p in paths if _collected(p))
    assert sorted(df["path"]) == [p.replace(os.sep, "/") for p in expected]
    assert df["sha256"].map(lambda v: isinstance(v, str) and len(v) == 64).all()
    assert again["sha256"].tolist() == df["sha256"].tolist()


def _collected(path: str) -> bool:
    """Whether the folder loader takes this file: a visible name with an audio extension."""
    name = os.path.basename(path)
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith(".")
