"""ONNX export, int8 quantisation and ONNX Runtime scoring of neural detector folders.

A neural detector folder (a network of :data:`~dfa_lib.models.registry.MODEL_NAMES`, a
fine-tuned encoder or an encoder head *with its encoder*) exports to ``model.onnx`` (float32)
and ``model.int8.onnx`` (int8 weights) beside its weights, plus ``onnx.json``, which records
for each file its SHA-256, the checksums of the weights it was exported from, the opset, the
torch / onnx / onnxruntime versions, the quantisation (mode, per-channel, the operators that
became integer ones, the calibration clips' checksum) and the float32 parity measured at export
(the largest difference between the torch and ONNX bona fide scores of a few test windows).
:class:`OnnxModel` scores through onnxruntime with the same ``score(batch)`` and
``input_samples`` a :class:`~dfa_lib.detector.scorer.Detector` asks of any model, so windowing,
silence, calibration and thresholds stay exactly those of the torch detector.

How the graph is made exportable
    ``torch.onnx.export`` (the TorchScript tracer, ``dynamo=False``, opset 17) with a dynamic
    batch axis and, for variable-length models, a dynamic time axis. torch 2.9's default
    exporter (``dynamo=True``, ``torch.export``) fails on every spectral model here: the
    complex STFT, and shape guards on the time axis from the ceil-mode pooling. ONNX has no
    complex type, so the front ends' complex ``torch.stft`` (and, for the ``ifd`` front end,
    ``torch.angle``) cannot be exported as written: for export each front end is replaced by an
    equivalent that pads the clip as ``center=True`` does and calls the real-valued STFT
    (ONNX's STFT operator, opset 17, an FFT for power-of-two frames) with the window centred in
    the frame, and takes the phase with ``atan2`` (a silent bin's phase pinned to 0, as
    ``torch.angle`` gives). The rest of the front end (filterbank, log, normalisation) is its
    own code; LFCC deltas use a fixed-size kernel (torchaudio sizes its kernel from the input,
    which the tracer cannot export). A strided convolution with a DFT basis was tried first:
    as fast, but it stores the basis (1 MB for a 512-point FFT, four times the LCNN's weights)
    in the file. ``AdaptiveAvgPool2d((1, None))`` (the ResNet's) becomes a mean over frequency.
    Pretrained encoders take their input from transformers' feature extractors, which run in
    numpy: for export the Whisper log-mel (reflect padding, Hann window, Slaney mel filters,
    log10, the per-clip 8-decade floor; its 400-point DFT as a convolution) and wav2vec2's
    per-clip standardisation are written in torch, and the encoder-head pooling is written for
    a batch of equal-length windows (what a detector scores).

Quantisation
    :func:`quantize` with onnxruntime.quantization: ``"dynamic"`` (int8 weights, activations
    quantised on the fly: Conv becomes ConvInteger, MatMul/Gemm MatMulInteger) or ``"static"``
    (QDQ format, activations uint8 with ranges calibrated on training clips, weights int8). Both
    are per-channel by default and leave the front end (the STFT, the log and the
    normalisation) in float32: its inputs span many orders of magnitude, which eight bits cannot
    hold.

Stale files are never used: a file whose recorded weights checksums differ from the folder's
weights, or whose own SHA-256 differs from the record, is refused with a
:class:`DetectorFormatError` naming the command that rewrites it::

    python -m dfa_lib.detector.onnx_runtime export runs/default/offline/in-domain/lcnn --int8 static \\
        --calibration offline/in-domain
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from dfa_lib.core.atomic import atomic_path
from dfa_lib.core.labels import FAKE, REAL
from dfa_lib.core.provenance import write_json
from dfa_lib.data.audio import AudioError, load_audio, pad_or_crop
from dfa_lib.data.protocol_data import load_protocol_frames
from dfa_lib.detector.folder import (
    CLASSICAL_MODELS,
    WEIGHTS_FILE,
    DetectorFormatError,
    Preprocessing,
    check_weights,
    read_detector_config,
    weights_checksums,
)
from dfa_lib.detector.fusion import FUSION_MODEL
from dfa_lib.features.backbones import Backbone, whisper_encoder_hidden_states
from dfa_lib.features.frontends import (
    IFDFrontend,
    LFCCFrontend,
    LogMelFrontend,
    _Frontend,
    _preemphasis,
    _utterance_normalize,
)
from dfa_lib.features.ssl_features import pool_mean_std
from dfa_lib.models.heads import FRAME_HEADS, BackboneWithHead
from dfa_lib.models.hf_audio import HF_AUDIO_MODEL, load_hf_detector
from dfa_lib.models.registry import build_model
from dfa_lib.models.ssl import SSL_HEAD_MODEL, SSLClassifier, load_head_detector

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ONNX_RECORD_FILE = "onnx.json"
RECORD_FORMAT = "dfa-onnx"
OPSET = 17
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
QUANTIZATION_MODES: tuple[str, ...] = ("dynamic", "static")
# Static quantisation touches only the operators that carry the weights: with every type
# quantised (activations of layer norms, softmax and residual sums too), a Whisper encoder's
# outliers made the int8 scores useless (EER 40-50 %), while the CNNs lose nothing.
STATIC_OPERATORS: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}
EXPORTER = "torch.onnx.export (TorchScript tracer, dynamo=False)"
# Node names under these module paths are the front end: never quantised (see the module doc).
FRONTEND_SCOPES: tuple[str, ...] = ("/frontend/",)
_INPUT, _OUTPUT = "waves", "logits"
_PARITY_CLIPS = 4  # test windows whose scores are compared at export
# Largest score difference at a length other than the traced one for a dynamic time axis.
LENGTH_TOLERANCE = 1e-3


def export_command(folder: str | os.PathLike, int8: str | None = None) -> str:
    """The shell command that (re)writes a folder's ONNX files, for error messages."""
    command = f"python -m dfa_lib.detector.onnx_runtime export {folder}"
    if int8 == "static":
        return command + " --int8 static --calibration <dataset/protocol or a folder of clips>"
    return command + (f" --int8 {int8}" if int8 else "")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def neural_check(folder: Path, config: dict[str, Any]) -> None:
    """Raise DetectorFormatError when the folder's model is not a network ONNX can carry."""
    name = config["model"]["name"]
    if name in CLASSICAL_MODELS or name == FUSION_MODEL:
        kind = "a fusion of other detectors" if name == FUSION_MODEL else "a classical model"
        raise DetectorFormatError(
            f"{folder}: model {name!r} is {kind}, scored in numpy and scikit-learn, not a "
            "neural network: it has no ONNX export; use runtime 'torch' (--runtime torch)"
        )


def _torch_model(folder: Path, config: dict[str, Any]) -> nn.Module:
    """Rebuild a neural folder's torch model (load_detector reports the finer errors)."""
    name = config["model"]["name"]
    try:
        if name == SSL_HEAD_MODEL:
            model = load_head_detector(folder)
        elif name == HF_AUDIO_MODEL:
            model = load_hf_detector(folder)
        else:
            model = build_model(name, **config["model"].get("kwargs", {}))
            model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
    except (ValueError, OSError, RuntimeError, KeyError) as error:
        raise DetectorFormatError(
            f"{folder}: cannot rebuild model {name!r} for export ({error}); "
            "dfa_lib.detector.loading.load_detector says more"
        ) from error
    check_weights(folder, config)
    return model.eval()


# --- exportable graphs ------------------------------------------------------------------


def _dft_basis(n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """Conv1d weights ``(2 * bins, 1, n_fft)``: windowed cosines then minus sines (onesided)."""
    padded = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - window.numel()) // 2  # torch.stft centres a shorter window in the frame
    padded[left : left + window.numel()] = window.double()
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * k * n / n_fft
    basis = torch.cat([torch.cos(angle) * padded, -torch.sin(angle) * padded])
    return basis[:, None, :].float()


class _ExportableFrontend(nn.Module):
    """A spectral front end whose STFT exports as ONNX's real-valued STFT, phase from atan2."""

    def __init__(self, frontend: _Frontend) -> None:
        super().__init__()
        self.inner = frontend
        spec = frontend.spectrogram
        self.n_fft, self.hop = spec.n_fft, spec.hop_length
        # torch.stft centres a window shorter than the frame; the ONNX STFT takes a full frame.
        window = torch.zeros(spec.n_fft)
        left = (spec.n_fft - spec.win_length) // 2
        window[left : left + spec.win_length] = spec.window.cpu()
        self.register_buffer("window", window, persistent=False)
        # Filterbank rows past the last non-zero one (bins above f_max) add nothing: the bins
        # they weigh are dropped before the product, which gives the same sums and keeps
        # the file and the matrix product small (half of them for a 4 kHz band).
        self.top = None
        if isinstance(frontend, LogMelFrontend | LFCCFrontend):
            rows = torch.nonzero(frontend.filterbank.abs().sum(dim=1)).flatten()
            self.top = int(rows.max()) + 1 if rows.numel() else 1
            self.register_buffer("filterbank", frontend.filterbank[: self.top], persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to the front end's image, as the original computes it."""
        inner, cfg = self.inner, self.inner.config
        waves = _preemphasis(waves.float(), cfg.preemphasis)
        # center=True with constant padding, written out: the exported STFT does not centre.
        padded = F.pad(waves, (self.n_fft // 2, self.n_fft // 2))
        spec = torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.n_fft,
            window=self.window,
            center=False,
            onesided=True,
            return_complex=False,
        )  # (batch, bins, frames, 2)
        real, imag = spec[..., 0], spec[..., 1]
        power = real * real + imag * imag
        if isinstance(inner, LFCCFrontend):
            feats = self._lfcc(power)
        elif isinstance(inner, LogMelFrontend):
            mel = torch.matmul(power[:, : self.top].transpose(1, 2), self.filterbank)
            feats = torch.log(mel.transpose(1, 2) + cfg.log_floor)
        else:
            feats = inner._from_power(power)
        if inner.normalize:
            feats = _utterance_normalize(feats)
        if not isinstance(inner, IFDFrontend):
            return feats.unsqueeze(1)
        low, high = cfg.bins()
        real, imag = real[:, low:high], imag[:, low:high]
        # torch.angle of the bins; the exported atan2 divides imag by real, so 0/0 (a silent
        # bin) is pinned to torch's angle of zero, 0, instead of NaN.
        silent = (real == 0) & (imag == 0)
        phase = torch.where(silent, torch.zeros_like(real), torch.atan2(imag, real))
        k = torch.arange(low, high, dtype=phase.dtype)[:, None]
        advance = phase[..., 1:] - phase[..., :-1] - (2 * math.pi * cfg.hop_length / cfg.n_fft) * k
        deviation = torch.remainder(advance + math.pi, 2 * math.pi) - math.pi
        deviation = torch.cat([deviation[..., :1], deviation], dim=-1)
        return torch.stack([feats, torch.cos(deviation), torch.sin(deviation)], dim=1)

    def _lfcc(self, power: torch.Tensor) -> torch.Tensor:
        """LFCCFrontend's features, with deltas from a fixed-size kernel.

        torchaudio's ``compute_deltas`` sizes its kernel from the input's shape, which the
        tracer cannot export; the regression here is the same (replicate padding, weights
        ``-n..n`` over ``n (n + 1) (2n + 1) / 3``).
        """
        inner, cfg = self.inner, self.inner.config
        energies = torch.matmul(power[:, : self.top].transpose(1, 2), self.filterbank)
        cepstra = torch.matmul(torch.log(energies + cfg.log_floor), inner.dct).transpose(1, 2)
        if not cfg.with_deltas:
            return cepstra
        n = (cfg.delta_win - 1) // 2
        kernel = torch.arange(-n, n + 1, dtype=cepstra.dtype).reshape(1, 1, -1)
        kernel = kernel / (n * (n + 1) * (2 * n + 1) / 3)

        def deltas(x: torch.Tensor) -> torch.Tensor:
            flat = F.pad(x.reshape(-1, 1, x.shape[-1]), (n, n), mode="replicate")
            return F.conv1d(flat, kernel).reshape(x.shape)

        delta = deltas(cepstra)
        return torch.cat([cepstra, delta, deltas(delta)], dim=1)


class _WhisperLogMel(nn.Module):
    """transformers' Whisper log-mel features in torch (what its extractor computes in numpy)."""

    def __init__(self, extractor: Any) -> None:
        super().__init__()
        self.n_fft, self.hop = int(extractor.n_fft), int(extractor.hop_length)
        window = torch.hann_window(self.n_fft, dtype=torch.float64)
        self.register_buffer("basis", _dft_basis(self.n_fft, window), persistent=False)
        mel = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32)).T
        self.register_buffer("mel", mel.contiguous(), persistent=False)  # (n_mels, bins)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to ``(batch, n_mels, samples // hop)``."""
        padded = F.pad(waves[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spec = F.conv1d(padded, self.basis, stride=self.hop)
        bins = self.n_fft // 2 + 1
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        power = power[..., :-1]  # the extractor drops the last frame
        log = torch.log10(torch.clamp(torch.matmul(self.mel, power), min=1e-10))
        top = log.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log, top - 8.0) + 4.0) / 4.0


class _WaveformStandardize(nn.Module):
    """wav2vec2's per-clip zero mean, unit variance (identity when the extractor skips it)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Standardise each clip of ``(batch, samples)``."""
        if not self.enabled:
            return waves
        mean = waves.mean(dim=1, keepdim=True)
        var = ((waves - mean) ** 2).mean(dim=1, keepdim=True)
        return (waves - mean) / torch.sqrt(var + 1e-7)


class _ExportableEncoder(nn.Module):
    """A :class:`Backbone` whose feature extraction runs in torch; returns every hidden state."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.is_whisper = backbone.is_whisper
        self.encoder = backbone.encoder
        extractor = backbone.feature_extractor
        self.frontend: nn.Module = (
            _WhisperLogMel(extractor)
            if self.is_whisper
            else _WaveformStandardize(bool(getattr(extractor, "do_normalize", True)))
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to hidden states ``(layers + 1, batch, frames, hidden)``."""
        features = self.frontend(waves.float())
        if self.is_whisper:
            states = whisper_encoder_hidden_states(self.encoder, features)
        else:
            states = self.encoder(features, output_hidden_states=True).hidden_states
        return torch.stack(tuple(states), dim=0).float()


def _full_lengths(states: torch.Tensor) -> torch.Tensor:
    """Every clip of an equal-length batch is valid to its last frame: ``(batch,)``."""
    return torch.ones_like(states[0, :, 0, 0]) * states.shape[2]


class _ExportableHeadDetector(nn.Module):
    """:class:`BackboneWithHead` for a batch of equal-length windows, traceable end to end."""

    def __init__(self, model: BackboneWithHead) -> None:
        super().__init__()
        self.backbone = _ExportableEncoder(model.backbone)
        self.head = model.head
        self.config = model.config
        self.frame_stride = int(model.frame_stride)
        self.frame_layers = model.frame_layers
        self.hidden = int(model.backbone.hidden_size)  # a constant for the traced layer norm

    def _frames(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A frame head's input: strided means of frames, rounded and normalised."""
        if self.frame_layers is not None:
            states = states[list(self.frame_layers)]
        layers, batch, frames, hidden = states.shape
        stride = self.frame_stride
        if stride > 1:  # avg_pool1d with ceil_mode: a last short block is the mean of what it has
            blocks = (frames + stride - 1) // stride
            padded = F.pad(states, (0, 0, 0, blocks * stride - frames))
            sums = padded.reshape(layers, batch, blocks, stride, hidden).sum(dim=3)
            counts = torch.clamp(
                frames - torch.arange(blocks, dtype=states.dtype) * stride, max=float(stride)
            )
            states = sums / counts[None, None, :, None]
        states = states.half().float()  # the feature cache holds float16
        normalised = F.layer_norm(states, (self.hidden,)).half()
        frames_first = normalised.permute(1, 0, 2, 3)  # (batch, layers, time, hidden)
        return frames_first, _full_lengths(states)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to logits ``(batch, 2)``."""
        states = self.backbone(waves)
        if self.config.head in FRAME_HEADS:
            frames, lengths = self._frames(states)
            return self.head(frames, lengths)
        pooled = pool_mean_std(states, _full_lengths(states)).permute(1, 0, 2)
        if self.config.head == "original":
            hidden = pooled.shape[-1] // 2
            row = pooled[:, self.config.layer]
            pooled = {"mean": row[:, :hidden], "std": row[:, hidden:], "mean+std": row}[
                self.config.stats
            ]
        return self.head(pooled)


class _ExportableSSLClassifier(nn.Module):
    """:class:`SSLClassifier` with its feature extraction in torch."""

    def __init__(self, model: SSLClassifier) -> None:
        super().__init__()
        self.backbone = _ExportableEncoder(model.backbone)
        self.layer_logits = model.layer_logits
        self.classifier = model.classifier

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(batch, samples)`` to logits ``(batch, 2)``."""
        states = self.backbone(waves)
        weights = torch.softmax(self.layer_logits, dim=0)
        mixed = (weights[:, None, None, None] * states).sum(dim=0, keepdim=True)
        return self.classifier(pool_mean_std(mixed, _full_lengths(states))[0])


class _MeanOverFrequency(nn.Module):
    """``AdaptiveAvgPool2d((1, None))``: the tracer exports adaptive pooling of fixed sizes only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average ``(batch, channels, freq, time)`` over frequency, keeping the axis."""
        return x.mean(dim=2, keepdim=True)


def _swap_unexportable(module: nn.Module) -> None:
    """Replace the layers below ``module`` that do not export by exportable equivalents."""
    for name, child in list(module.named_children()):
        if isinstance(child, _Frontend):
            setattr(module, name, _ExportableFrontend(child))
        elif isinstance(child, nn.AdaptiveAvgPool2d) and tuple(child.output_size) == (1, None):
            setattr(module, name, _MeanOverFrequency())
        else:
            _swap_unexportable(child)


def exportable(model: nn.Module) -> nn.Module:
    """Return a module computing the same logits as ``model`` with only exportable operators.

    The copy shares no state with ``model``; networks keep their layers and get exportable
    front ends, encoder models get their feature extraction in torch (see the module doc).
    """
    if isinstance(model, BackboneWithHead):
        graph: nn.Module = _ExportableHeadDetector(model)
    elif isinstance(model, SSLClassifier):
        graph = _ExportableSSLClassifier(model)
    else:
        graph = copy.deepcopy(model)
        _swap_unexportable(graph)
    return graph.eval()


# --- the record -------------------------------------------------------------------------


def _read_record(directory: Path) -> dict[str, Any]:
    path = directory / ONNX_RECORD_FILE
    if not path.is_file():
        return {"format": RECORD_FORMAT, "files": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DetectorFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise DetectorFormatError(f"{path}: not an ONNX record (no 'files' object)")
    return record


def read_onnx_record(directory: str | os.PathLike) -> dict[str, Any]:
    """Return ``onnx.json`` of a folder (``{"files": {}}`` when it has none)."""
    return _read_record(Path(directory))


def _write_entry(directory: Path, file_name: str, entry: dict[str, Any]) -> None:
    record = _read_record(directory)
    record["files"][file_name] = entry
    write_json(directory / ONNX_RECORD_FILE, record)


def _source_identity(folder: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What an ONNX file must have been exported from: the weights' checksums (and encoder)."""
    kwargs = config["model"].get("kwargs", {})
    identity: dict[str, Any] = {"weights_sha256": weights_checksums(folder)}
    if kwargs.get("backbone_identity"):
        identity["backbone_identity"] = kwargs["backbone_identity"]
    return identity


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}


# --- export -----------------------------------------------------------------------------


def _window_samples(config: dict[str, Any], model: nn.Module) -> int:
    prep = Preprocessing.from_dict(config.get("preprocessing", {}))
    fixed = getattr(model, "input_samples", None)
    return int(fixed) if fixed else round(prep.clip_seconds * prep.sample_rate)


def parity_waves(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """Test windows ``(n, samples)``: tones with harmonics in noise, at speech-like levels."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    out = np.empty((n, samples), dtype=np.float32)
    for i in range(n):
        f0 = rng.uniform(90, 260)
        voice = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 8))
        out[i] = 0.05 * voice + 0.01 * (i + 1) * rng.standard_normal(samples)
    return out


def torch_scores(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Bona fide scores (``logit_real - logit_fake``) of a torch model on a batch, float64."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float()
    return (logits[:, REAL] - logits[:, FAKE]).double().numpy()


def export_onnx(
    folder: str | os.PathLike,
    model: nn.Module | None = None,
    destination: str | os.PathLike | None = None,
    opset: int = OPSET,
) -> Path:
    """Export a neural detector folder to ``model.onnx`` and record it in ``onnx.json``.

    ``model`` is the folder's torch model when the caller has loaded it (rebuilt from the
    folder otherwise); ``destination`` is where the files go (default: the folder itself).
    The batch axis is dynamic, and the time axis too for variable-length models. The float32
    parity (largest absolute difference of the bona fide scores of :data:`_PARITY_CLIPS` test
    windows, torch against onnxruntime) is measured and recorded. Returns the ONNX file.
    Raises :class:`DetectorFormatError` for a folder that is not a neural detector.
    """
    folder = Path(folder)
    config = read_detector_config(folder)
    neural_check(folder, config)
    model = (model if model is not None else _torch_model(folder, config)).eval()
    directory = Path(destination) if destination is not None else folder
    directory.mkdir(parents=True, exist_ok=True)
    graph = exportable(model)
    samples = _window_samples(config, model)
    fixed = getattr(model, "input_samples", None)
    path = directory / ONNX_FILE
    _trace(graph, samples, path, fixed is not None, opset)
    test = parity_waves(_PARITY_CLIPS, samples, seed=2)
    difference = np.abs(torch_scores(model, test) - OnnxModel(path, fixed).score(test))
    time_axis = "fixed" if fixed else "dynamic"
    if not fixed:
        # A graph can freeze a length the tracer saw (a top-k size computed from the frame
        # count, say); scored at another length it would be wrong. Such a graph is exported
        # again for the window length alone, which the detector then insists on.
        other = parity_waves(2, samples + samples // 2 + 7, seed=3)
        drift = np.abs(torch_scores(model, other) - OnnxModel(path).score(other)).max()
        # Float32 rounding grows with depth (Whisper base: ~1e-2), so the bar is the larger
        # of the tolerance and a few times the difference at the traced length.
        if not drift <= max(LENGTH_TOLERANCE, 4 * float(difference.max())):
            _trace(graph, samples, path, True, opset)
            fixed, time_axis = samples, f"fixed at the window ({drift:.2g} off at another length)"
    _write_entry(
        directory,
        ONNX_FILE,
        {
            **_source_identity(folder, config),
            "sha256": _sha256(path),
            "model": config["model"]["name"],
            "opset": opset,
            "exporter": EXPORTER,
            **_versions(),
            "input_samples": fixed,
            "time_axis": time_axis,
            "parity_max_abs_score_difference": float(difference.max()),
            "parity_windows": _PARITY_CLIPS,
            "parity_window_samples": samples,
            "quantization": None,
        },
    )
    return path


def _trace(graph: nn.Module, samples: int, path: Path, fixed: bool, opset: int) -> None:
    """Export ``graph`` to ``path`` with a dynamic batch axis (and time axis unless ``fixed``)."""
    axes = {_INPUT: {0: "batch"} if fixed else {0: "batch", 1: "samples"}, _OUTPUT: {0: "batch"}}
    example = torch.from_numpy(parity_waves(2, samples, seed=1))
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # The tracer warns about every Python value it freezes (shapes of the fixed layers).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(temporary),
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


# --- onnxruntime ------------------------------------------------------------------------


class OnnxModel:
    """An ONNX detector graph in an onnxruntime session, scored like a torch detector.

    ``score(batch)`` maps windows ``(n, samples)`` float32 to bona fide scores
    (``logit_real - logit_fake``); ``input_samples`` is the fixed input length or None.
    ``threads`` sets onnxruntime's intra-op threads (None: its default, every core).
    """

    def __init__(
        self, path: str | os.PathLike, input_samples: int | None = None, threads: int | None = None
    ) -> None:
        self.path = Path(path)
        self.input_samples = input_samples
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DetectorFormatError(
                f"{self.path}: onnxruntime cannot load it ({type(error).__name__}: {error}); "
                f"rewrite it with `{export_command(self.path.parent)}`"
            ) from error

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``(n, 2)`` [real, fake] of a batch of windows."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([_OUTPUT], {_INPUT: x})[0]

    def score(self, batch: np.ndarray) -> np.ndarray:
        """Bona fide scores (float64) of a batch of windows ``(n, samples)``."""
        logits = self.logits(batch).astype(np.float64)
        return logits[:, REAL] - logits[:, FAKE]


# --- quantisation -----------------------------------------------------------------------


def calibration_windows(
    waves: Sequence[np.ndarray], config: dict[str, Any], input_samples: int | None = None
) -> np.ndarray:
    """Model inputs ``(n, window)`` of calibration clips, prepared as the detector prepares them.

    Each clip (mono, at the folder's rate) is cut to its first window or padded the way
    training padded clips, then level-normalised as the folder says.
    """
    prep = Preprocessing.from_dict(config.get("preprocessing", {}))
    window = input_samples or round(prep.clip_seconds * prep.sample_rate)
    rows = [
        prep.normalize(pad_or_crop(np.asarray(w, np.float32), window, "start", prep.pad_mode))
        for w in waves
    ]
    if not rows:
        raise ValueError("no calibration clips: static quantisation needs some training clips")
    return np.stack(rows).astype(np.float32)


class _WindowReader(CalibrationDataReader):
    """Feeds calibration windows to onnxruntime's calibrator, a few at a time."""

    def __init__(self, windows: np.ndarray, batch: int = 8) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [windows[i : i + batch] for i in range(0, len(windows), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when all have been read."""
        batch = next(self._batches, None)
        return None if batch is None else {_INPUT: batch}


def quantized_operators(path: str | os.PathLike) -> dict[str, int]:
    """Count the operators of a quantised graph that compute in integers (by type)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    integer_ops = {
        n.op_type for n in graph.node if "Integer" in n.op_type or "QLinear" in n.op_type
    }
    counts = Counter(n.op_type for n in graph.node if n.op_type in integer_ops)
    # QDQ format: an operator between DequantizeLinear inputs and a QuantizeLinear output
    # computes on integers once onnxruntime fuses the pattern.
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    requantized = {i for n in graph.node if n.op_type == "QuantizeLinear" for i in n.input}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(i in dequantized for i in node.input) and any(o in requantized for o in node.output):
            counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def _frontend_nodes(path: Path) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if any(scope in n.name for scope in FRONTEND_SCOPES)]


def quantize(
    folder: str | os.PathLike,
    mode: str = "dynamic",
    calibration_waves: Sequence[np.ndarray] | None = None,
    destination: str | os.PathLike | None = None,
    output_name: str = INT8_FILE,
    per_channel: bool = True,
    quantize_frontend: bool = False,
    operators: Sequence[str] | None = None,
    calibration_method: str = "minmax",
) -> Path:
    """Quantise a folder's ``model.onnx`` to int8 and record it in ``onnx.json``.

    ``mode`` is ``"dynamic"`` or ``"static"``; static needs ``calibration_waves`` (training
    clips, mono at the folder's rate). ``destination`` holds ``model.onnx`` and receives the
    result (default: the folder; ``model.onnx`` is exported there first when missing);
    ``output_name`` is the file written. The front end stays float32 unless
    ``quantize_frontend``. ``operators`` limits quantisation to these ONNX operator types
    (None: :data:`STATIC_OPERATORS` for static, every type onnxruntime quantises for
    dynamic); ``calibration_method`` (static) is ``"minmax"``
    or ``"percentile"`` (99.999th percentile of the absolute activations). Returns the
    int8 file.
    """
    folder = Path(folder)
    if mode not in QUANTIZATION_MODES:
        raise ValueError(
            f"quantisation mode must be one of {list(QUANTIZATION_MODES)}, got {mode!r}"
        )
    if mode == "static" and not calibration_waves:
        raise ValueError("static quantisation needs calibration_waves (a few training clips)")
    config = read_detector_config(folder)
    neural_check(folder, config)
    if operators is None and mode == "static":
        operators = STATIC_OPERATORS
    directory = Path(destination) if destination is not None else folder
    source = directory / ONNX_FILE
    entry = _read_record(directory)["files"].get(ONNX_FILE)
    if entry is None or not source.is_file():
        export_onnx(folder, destination=directory)
        entry = _read_record(directory)["files"][ONNX_FILE]
    _check_entry(folder, config, directory, ONNX_FILE, entry, None)
    fixed = entry.get("input_samples")
    target = directory / output_name
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # onnxruntime's symbolic shape inference fails on the dynamic time axis and then
        # writes its partial model into the working directory; ONNX's own inference suffices.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        excluded = [] if quantize_frontend else _frontend_nodes(prepared)
        calibration: dict[str, Any] | None = None
        with atomic_path(target) as temporary:
            if mode == "dynamic":
                quantize_dynamic(
                    str(prepared),
                    str(temporary),
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                    nodes_to_exclude=excluded,
                    op_types_to_quantize=list(operators) if operators else None,
                )
            else:
                windows = calibration_windows(calibration_waves or [], config, fixed)
                calibration = {
                    "clips": int(len(windows)),
                    "windows_sha256": hashlib.sha256(windows.tobytes()).hexdigest(),
                    "method": calibration_method,
                }
                quantize_static(
                    str(prepared),
                    str(temporary),
                    _WindowReader(windows),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                    nodes_to_exclude=excluded,
                    op_types_to_quantize=list(operators) if operators else None,
                    calibrate_method=CALIBRATION_METHODS[calibration_method],
                )
    _write_entry(
        directory,
        output_name,
        {
            **_source_identity(folder, config),
            "sha256": _sha256(target),
            "source": ONNX_FILE,
            "source_sha256": entry["sha256"],
            "model": config["model"]["name"],
            "opset": entry.get("opset"),
            **_versions(),
            "input_samples": fixed,
            "quantization": {
                "mode": mode,
                "per_channel": per_channel,
                "weights": "int8",
                "activations": "uint8, calibrated" if mode == "static" else "uint8, per batch",
                "frontend_float32": not quantize_frontend,
                "excluded_nodes": len(excluded),
                "operator_types": list(operators) if operators else "all",
                "quantized_operators": quantized_operators(target),
                "calibration": calibration,
            },
        },
    )
    return target


# --- checks and the runtime choice ------------------------------------------------------


def _check_entry(
    folder: Path,
    config: dict[str, Any],
    directory: Path,
    file_name: str,
    entry: dict[str, Any] | None,
    int8: str | None,
) -> None:
    """Refuse a file that is not recorded, was changed, or was made from other weights."""
    path = directory / file_name
    command = export_command(folder, int8)
    if entry is None:
        raise DetectorFormatError(
            f"{path}: not recorded in {ONNX_RECORD_FILE}, so nothing says which weights it was "
            f"made from; rewrite it with `{command}`"
        )
    if _sha256(path) != entry.get("sha256"):
        raise DetectorFormatError(
            f"{path}: its SHA-256 differs from the one {ONNX_RECORD_FILE} recorded (the file "
            f"was changed or is damaged); rewrite it with `{command}`"
        )
    now = _source_identity(folder, config)
    for key, value in now.items():
        if entry.get(key) != value:
            raise DetectorFormatError(
                f"{path}: stale, made from other weights than the folder's ({key} differs); "
                f"rewrite it with `{command}`"
            )
    if int8 is not None:
        source = _read_record(directory)["files"].get(entry.get("source", ONNX_FILE), {})
        if source.get("sha256") != entry.get("source_sha256"):
            raise DetectorFormatError(
                f"{path}: quantised from another {ONNX_FILE} than the folder's; rewrite it "
                f"with `{command}`"
            )


def _writable(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK)


def load_runtime_model(
    folder: str | os.PathLike,
    config: dict[str, Any],
    runtime: str,
    model: nn.Module | None = None,
    threads: int | None = None,
) -> OnnxModel:
    """The folder's ONNX graph for ``runtime`` (``"onnx"`` or ``"onnx-int8"``), checked.

    A missing file is exported (int8: quantised dynamically, which needs no data) into the
    folder, from ``model`` when given; a read-only folder raises a DetectorFormatError naming
    the command that writes it. A stale, changed or unrecorded file is refused, never used.
    """
    folder = Path(folder)
    if runtime not in RUNTIMES or runtime == "torch":
        raise ValueError(f"runtime must be 'onnx' or 'onnx-int8' here, got {runtime!r}")
    neural_check(folder, config)
    file_name = ONNX_FILE if runtime == "onnx" else INT8_FILE
    int8 = None if runtime == "onnx" else "dynamic"
    path = folder / file_name
    if not path.is_file():
        if not _writable(folder):
            raise DetectorFormatError(
                f"{folder}: no {file_name}, and the folder is read-only so it cannot be "
                f"exported here; create it with `{export_command(folder, int8)}` where the "
                "folder is writable"
            )
        if not (folder / ONNX_FILE).is_file():
            export_onnx(folder, model)
        if int8:
            quantize(folder, mode=int8)
    entry = _read_record(folder)["files"].get(file_name)
    recorded_mode = ((entry or {}).get("quantization") or {}).get("mode", int8)
    _check_entry(folder, config, folder, file_name, entry, recorded_mode if int8 else None)
    return OnnxModel(path, (entry or {}).get("input_samples"), threads=threads)


# --- command line -----------------------------------------------------------------------


def _clip_files(source: Path) -> list[Path]:
    extensions = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"}
    return sorted(p for p in source.rglob("*") if p.suffix.lower() in extensions)


def calibration_clips(
    source: str, data_dir: str | os.PathLike, sample_rate: int, n: int = 64, seed: int = 0
) -> list[np.ndarray]:
    """Decode ``n`` calibration clips: from a folder of audio files, or ``dataset/protocol``'s
    training split (half real, half fake where it can), at ``sample_rate``."""
    folder = Path(source)
    if folder.is_dir():
        files = _clip_files(folder)
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.permutation(len(files))[:n])]
    else:
        dataset, _, protocol = source.partition("/")
        if not protocol:
            raise ValueError(
                f"--calibration {source!r} is neither a folder of clips nor dataset/protocol "
                "(e.g. offline/in-domain)"
            )
        root, rows = load_protocol_frames(dataset, protocol, data_dir, seed=seed)
        train = rows[rows["split"] == "training"]
        picked = [
            part.sample(n=min(len(part), n // 2), random_state=seed)
            for _, part in train.groupby("label")
        ]
        files = [root / p for part in picked for p in part["path"]]
    if not files:
        raise ValueError(f"--calibration {source}: no audio clips found")
    waves = []
    for path in files:
        try:
            waves.append(load_audio(path, target_sr=sample_rate)[0])
        except AudioError as error:
            print(f"calibration: skipping {path}: {error}", file=sys.stderr)
    return waves


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dfa_lib.detector.onnx_runtime export FOLDER [--int8 MODE] [--calibration ..]``."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.detector.onnx_runtime",
        description="Export a neural detector folder to ONNX (float32, and int8 if asked).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write model.onnx (and model.int8.onnx)")
    export.add_argument("folder", type=Path, help="a neural detector folder")
    export.add_argument("--int8", choices=QUANTIZATION_MODES, help="also quantise to int8")
    export.add_argument(
        "--calibration",
        metavar="SOURCE",
        help="static int8: dataset/protocol (its training clips) or a folder of clips",
    )
    export.add_argument("--calibration-clips", type=int, default=64, metavar="N")
    export.add_argument("--data-dir", default="data", help="where datasets live (default data)")
    export.add_argument(
        "--quantize-frontend", action="store_true", help="quantise the front end too"
    )
    args = parser.parse_args(argv)
    if args.int8 == "static" and not args.calibration:
        parser.error("--int8 static needs --calibration (dataset/protocol or a folder of clips)")
    try:
        path = export_onnx(args.folder)
        entry = _read_record(args.folder)["files"][ONNX_FILE]
        print(
            f"wrote {path} (score difference to torch {entry['parity_max_abs_score_difference']:.2e})"
        )
        if args.int8:
            config = read_detector_config(args.folder)
            rate = Preprocessing.from_dict(config.get("preprocessing", {})).sample_rate
            waves = (
                calibration_clips(args.calibration, args.data_dir, rate, args.calibration_clips)
                if args.int8 == "static"
                else None
            )
            path = quantize(
                args.folder,
                args.int8,
                waves,
                quantize_frontend=args.quantize_frontend,
            )
            ops = _read_record(args.folder)["files"][INT8_FILE]["quantization"]
            print(f"wrote {path} ({args.int8}; integer operators {ops['quantized_operators']})")
    except (DetectorFormatError, ValueError, OSError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
