"""Any transformers audio-classification model as a detector: waveforms in, logits [real, fake] out.

:class:`HFAudioClassifier` wraps an ``AutoModelForAudioClassification`` and its feature
extractor. Its output columns follow the model's own labels, read by name (``real``,
``bonafide``, ``human`` ... and ``fake``, ``spoof``, ``synthetic``, as
:func:`dfa_lib.core.labels.label_to_index` reads them), so a checkpoint whose ``id2label`` is
``{0: "spoof", 1: "bonafide"}`` scores the same as one ordered ``{0: "real", 1: "fake"}``.
A checkpoint with other labels (AudioSet's 527 classes, ``LABEL_0``/``LABEL_1`` of a
pretraining checkpoint) or a number of labels other than two gets a new two-way head
(:func:`load_hf_classifier`): every module outside the base encoder is initialised afresh and
the labels become ``{0: "real", 1: "fake"}``.

A fine-tuned model lives in a detector folder as a transformers model in the ``hf/``
subfolder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``), beside
dfa's own ``config.json`` (model name :data:`HF_AUDIO_MODEL`). transformers loads the
subfolder (``AutoModelForAudioClassification.from_pretrained("<folder>/hf")``), dfa the
folder (:func:`load_hf_detector`). dfa's config records the SHA-256 of the files in ``hf/``,
so weights copied in from elsewhere are refused rather than used with this folder's threshold.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    Wav2Vec2FeatureExtractor,
)

from dfa_lib.core.labels import FAKE, LABELS, REAL, label_to_index
from dfa_lib.features.backbones import WAVEFORM_MODEL_TYPES

HF_AUDIO_MODEL = "hf_audio_classification"  # the model name in a detector folder's config.json
HF_SUBFOLDER = "hf"  # where the transformers model sits inside a detector folder
# dfa's config.json key for the SHA-256 of each file in hf/, checked when the folder loads.
HF_FILES_KEY = "hf_files_sha256"
# Files of the transformers model whose SHA-256 dfa's config records.
HF_CHECKED_SUFFIXES = (".safetensors", ".bin", ".json")
# Added to the variance by Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation.
_NORM_EPSILON = 1e-7
# A transformer block's index in a parameter name: `encoder.layers.3.` (wav2vec2, Whisper) or
# `encoder.layer.3.` (AST); `conv_layers.0.` (wav2vec2's convolutional front end) is not one.
_LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


class HFModelError(ValueError):
    """A transformers audio-classification model could not be loaded or used; says why."""


def label_order(id2label: dict[Any, str]) -> tuple[int, int] | None:
    """Return the output indices of (real, fake) in a model's ``id2label``, or None.

    None when the model does not have exactly two labels that read as real and fake.
    """
    if len(id2label) != 2:
        return None
    found: dict[int, int] = {}
    for index, name in id2label.items():
        try:
            found[label_to_index(str(name))] = int(index)
        except ValueError:
            return None
    if set(found) != {REAL, FAKE}:
        return None
    return found[REAL], found[FAKE]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def load_source_config(source: str) -> tuple[str, Any]:
    """Return ``(where, config)`` of a hub id or local model folder, or raise HFModelError.

    ``where`` is the folder's path (``~`` expanded) or the hub id. Only the config is read, so
    a wrong name fails in a moment, before any data is decoded.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        source = str(path)
    elif path.is_absolute() or source.startswith((".", "~")) or path.exists():
        raise HFModelError(
            f"{source}: no such model folder; give a folder written by save_pretrained or a "
            "Hugging Face hub id such as facebook/wav2vec2-base"
        )
    try:
        return source, AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        where = (
            "HF_HUB_OFFLINE is set, so only the local Hugging Face cache was searched; unset "
            "it where the hub is reachable, or download the model elsewhere and give its folder"
            if _offline()
            else "the Hugging Face hub could not be reached or has no such model, and it is not "
            "in the local cache; give a local folder written by save_pretrained instead"
        )
        raise HFModelError(f"could not load model {source!r}: {where} ({error})") from error


def _load_feature_extractor(source: str, config):
    try:
        return AutoFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError) as error:
        if config.model_type not in WAVEFORM_MODEL_TYPES:
            raise HFModelError(
                f"{source}: no feature extractor (preprocessor_config.json) for model type "
                f"{config.model_type!r}: save one with the model ({error})"
            ) from error
        warnings.warn(
            f"{source}: no preprocessor_config.json; using the standard {config.model_type} "
            "feature extractor (16 kHz, zero mean and unit variance per clip)",
            stacklevel=3,
        )
        return Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=16000,
            do_normalize=True,
            return_attention_mask=getattr(config, "feat_extract_norm", "group") == "layer",
        )


class HFAudioClassifier(nn.Module):
    """An ``AutoModelForAudioClassification`` mapping waveforms to logits ``[real, fake]``.

    Input: ``(batch, samples)`` at :attr:`sample_rate`, as every dfa network takes it. A
    wav2vec2-style feature extractor (raw samples, optional zero-mean unit-variance
    normalisation per clip) is applied in torch on the model's device; any other (AST's
    filter banks, Whisper's log-mel) runs as transformers runs it, on the CPU. ``head_note``
    says why the classification head is new, or is empty when it came with the model.
    """

    input_samples = None  # any window length

    def __init__(self, model: nn.Module, feature_extractor, head_note: str = "") -> None:
        super().__init__()
        order = label_order(model.config.id2label)
        if order is None:
            raise HFModelError(
                f"the model's labels {_labels(model.config)} are not one real and one fake "
                "label; load it with load_hf_classifier, which gives it a new two-way head"
            )
        self.model = model
        self.feature_extractor = feature_extractor
        self.order = order  # output index of real, then of fake
        self.head_note = head_note
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", 16000))
        self._raw_samples = (
            isinstance(feature_extractor, Wav2Vec2FeatureExtractor)
            and feature_extractor.model_input_names[0] == "input_values"
        )

    def model_inputs(self, waves: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return what the feature extractor makes of ``waves``, on the model's device."""
        device = next(self.model.parameters()).device
        if self._raw_samples:
            x = waves.to(device, torch.float32)
            if self.feature_extractor.do_normalize:
                mean = x.mean(dim=1, keepdim=True)
                var = x.var(dim=1, keepdim=True, unbiased=False)
                x = (x - mean) / torch.sqrt(var + _NORM_EPSILON)
            return {"input_values": x}
        clips = list(waves.detach().to("cpu", torch.float32).numpy().astype(np.float32))
        batch = self.feature_extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Return logits ``(batch, 2)`` ordered [real, fake] for waveforms ``(batch, samples)``."""
        if waves.dim() != 2:
            raise ValueError(f"expected waveforms (batch, samples), got shape {tuple(waves.shape)}")
        logits = self.model(**self.model_inputs(waves)).logits
        return logits[:, list(self.order)]

    def head_parameter_names(self) -> list[str]:
        """Names of the parameters outside the base encoder (the classification head)."""
        prefix = self.model.base_model_prefix + "."
        return [n for n, _ in self.model.named_parameters() if not n.startswith(prefix)]

    def freeze(self, feature_encoder: bool = True, layers: int = 0) -> int:
        """Choose what fine-tuning trains; return the number of trainable parameters.

        ``layers`` 0 trains the whole encoder, N > 0 only its transformer blocks from index N
        up (embeddings and lower blocks frozen), -1 none of it (the head alone).
        ``feature_encoder`` also freezes a wav2vec2-style convolutional front end (the usual
        choice for wav2vec2 fine-tuning); models without one are unaffected.
        """
        head = set(self.head_parameter_names())
        for name, param in self.model.named_parameters():
            if name in head:
                param.requires_grad_(True)
            elif layers < 0:
                param.requires_grad_(False)
            elif layers > 0:
                match = _LAYER_INDEX.search(name)
                param.requires_grad_(match is not None and int(match.group(1)) >= layers)
            else:
                param.requires_grad_(True)
        if feature_encoder and hasattr(self.model, "freeze_feature_encoder"):
            self.model.freeze_feature_encoder()
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the model and its feature extractor as transformers writes them."""
        self.model.save_pretrained(folder)
        self.feature_extractor.save_pretrained(folder)


def _labels(config) -> list[str]:
    return [str(config.id2label[k]) for k in sorted(config.id2label)]


def _reset_head(model: nn.Module) -> None:
    """Initialise every module outside the base encoder afresh (torch's default initialisation)."""
    children = dict(model.named_children())
    if model.base_model_prefix not in children:
        raise HFModelError(
            f"{type(model).__name__} has no base encoder named {model.base_model_prefix!r}; "
            "cannot tell its classification head from the encoder"
        )
    for name, child in children.items():
        if name == model.base_model_prefix:
            continue
        for module in child.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def load_hf_classifier(source: str) -> HFAudioClassifier:
    """Load an audio-classification model (hub id or local folder) for fine-tuning.

    Labels that read as one real and one fake keep the model's head; any others get a new
    two-way head labelled ``{0: "real", 1: "fake"}`` (with a warning; the reason is in
    ``head_note``). Raises :class:`HFModelError` when the model cannot be loaded (no such
    folder, hub unreachable, a model type with no audio-classification head).
    """
    source, config = load_source_config(source)
    note = ""
    kwargs: dict[str, Any] = {}
    if label_order(config.id2label) is None:
        note = (
            f"new two-way head: the labels of {source} ({_summary(_labels(config))}) are not "
            "one real and one fake label"
        )
        config.update(
            {
                "id2label": dict(enumerate(LABELS)),
                "label2id": {name: i for i, name in enumerate(LABELS)},
            }
        )
        kwargs = {"ignore_mismatched_sizes": True}
    try:
        model = AutoModelForAudioClassification.from_pretrained(source, config=config, **kwargs)
    except (OSError, ValueError) as error:
        raise HFModelError(
            f"could not load {source!r} as an audio-classification model "
            f"(model type {config.model_type!r}): {error}"
        ) from error
    if note:
        _reset_head(model)
        warnings.warn(note, stacklevel=2)
    return HFAudioClassifier(model, _load_feature_extractor(source, config), head_note=note)


def _summary(labels: list[str], shown: int = 4) -> str:
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return f"{len(labels)} labels: " + ", ".join(labels[:shown]) + more


def hf_file_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """SHA-256 (hex) of the model, config and feature-extractor files in a transformers folder."""
    checksums = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in HF_CHECKED_SUFFIXES:
            with path.open("rb") as handle:
                checksums[path.name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return checksums


def load_hf_detector(folder: str | os.PathLike) -> HFAudioClassifier:
    """Load the transformers model of a detector folder (``<folder>/hf``) as a detector model.

    Raises :class:`HFModelError` when ``hf/`` is missing, its files are not the ones the
    folder's config recorded, it holds no ``model.safetensors`` (weights are never unpickled),
    or its labels are not one real and one fake.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    kwargs = config["model"]["kwargs"]
    name = kwargs.get("subfolder", HF_SUBFOLDER)
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise HFModelError(f"{folder}: model.kwargs.subfolder must be a folder name, got {name!r}")
    sub = folder / name
    if not sub.is_dir():
        raise HFModelError(
            f"{folder}: missing the transformers model folder {sub.name}/; the detector folder "
            "is incomplete: copy the whole folder"
        )
    recorded = config.get(HF_FILES_KEY)
    if isinstance(recorded, dict):
        found = hf_file_checksums(sub)
        changed = sorted(n for n, digest in recorded.items() if found.get(n) != digest)
        if changed:
            raise HFModelError(
                f"{sub}: {', '.join(changed)} differ from the files this detector was written "
                "with (SHA-256), so its threshold and calibration do not apply to them; copy "
                "the whole detector folder, or fine-tune again"
            )
    try:
        # Weights from safetensors only: a detector folder never unpickles anything.
        model = AutoModelForAudioClassification.from_pretrained(sub, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise HFModelError(
            f"{sub}: not a loadable audio-classification model with safetensors weights ({error})"
        ) from error
    if label_order(model.config.id2label) is None:
        raise HFModelError(
            f"{sub}: the model's labels ({_summary(_labels(model.config))}) are not one real and "
            "one fake label, so its outputs cannot be read as a verdict; fine-tune it with "
            "dfa_lib.training.hf_finetune, which gives it a real/fake head"
        )
    feature_extractor = _load_feature_extractor(str(sub), model.config)
    classifier = HFAudioClassifier(model, feature_extractor, kwargs.get("head_note", ""))
    return classifier.eval()
