"""Loading a detector folder into a :class:`~dfa_lib.detector.scorer.Detector`.

Networks are rebuilt from ``config.json`` and their safetensors weights; classical models,
encoder-head runs and fusions are rebuilt by their own loaders, all named here. Weights whose
checksum differs from the one the config recorded are refused, and so is a fusion that
contains itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from dfa_lib.data.audio import SILENCE_FLOOR_DBFS
from dfa_lib.detector.folder import (
    CLASSICAL_MODELS,
    MODEL_CARD_FILE,
    WEIGHTS_FILE,
    DetectorFormatError,
    _read_config,
    check_weights,
    read_metrics,
)
from dfa_lib.detector.fusion import (
    FUSION_MODEL,
    FusedScorer,
    FusionParameters,
    _config,
    member_cycle,
    member_folders,
)
from dfa_lib.detector.onnx_runtime import RUNTIMES, load_runtime_model, neural_check
from dfa_lib.detector.scorer import DEFAULT_BATCH_SIZE, MAX_DECODE_SECONDS, Detector
from dfa_lib.features.vad import MIN_SPEECH_SECONDS
from dfa_lib.models.classical import load_classical
from dfa_lib.models.hf_audio import HF_AUDIO_MODEL, load_hf_detector
from dfa_lib.models.networks import ModelConfigError
from dfa_lib.models.registry import build_model
from dfa_lib.models.ssl import SSL_HEAD_MODEL, load_head_detector

# Models whose folder is not one build_model state dict: each has its own loader, called as
# loader(folder). A loader returns either a torch module mapping waveforms (batch, samples) to
# logits [real, fake], or an object whose ``score(waves)`` returns bona fide scores
# (higher = real).
FOLDER_LOADERS: dict[str, Callable[[Path], Any]] = {
    **{name: load_classical for name in CLASSICAL_MODELS},
    SSL_HEAD_MODEL: load_head_detector,
    HF_AUDIO_MODEL: load_hf_detector,  # a transformers model in the folder's hf/ subfolder
    FUSION_MODEL: lambda folder: load_fusion(folder),
}


def _load_torch_model(folder: Path, config: dict[str, Any]) -> Any:

    name = config["model"]["name"]
    kwargs = config["model"].get("kwargs", {})
    try:
        model = build_model(name, **kwargs)
    except ModelConfigError as error:
        raise DetectorFormatError(f"{folder}: cannot rebuild the model: {error}") from error
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise DetectorFormatError(
            f"{folder}: missing {WEIGHTS_FILE} (the weights); the folder is incomplete"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise DetectorFormatError(
            f"{weights}: not a readable safetensors file ({error})"
        ) from error
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} with another shape ({few(wrong_shape)})")
        raise DetectorFormatError(
            f"{folder}: the weights in {WEIGHTS_FILE} do not fit model {name!r} with kwargs "
            f"{kwargs}: {'; '.join(parts)}. The config names a different model type or size "
            "than the one that was trained; re-export the folder from its training run"
        )
    model.load_state_dict(state, strict=True)
    return model


def _load_with_folder_loader(folder: Path, config: dict[str, Any]) -> Any:
    name = config["model"]["name"]
    loader = FOLDER_LOADERS[name]
    try:
        model = loader(folder)
    except (ValueError, OSError, KeyError) as error:  # ClassicalModelError is a ValueError
        raise DetectorFormatError(f"{folder}: cannot load model {name!r}: {error}") from error
    found = getattr(model, "model_type", name)
    if found != name:
        raise DetectorFormatError(
            f"{folder}: config.json names model {name!r} but the saved classifier is {found!r}; "
            "re-export the folder from its training run"
        )
    return model


def load_detector(
    folder: str | os.PathLike,
    device: str = "auto",
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    silence_dbfs: float | None = SILENCE_FLOOR_DBFS,
    min_speech_seconds: float | None = MIN_SPEECH_SECONDS,
    max_seconds: float | None = MAX_DECODE_SECONDS,
    runtime: str = "torch",
    threads: int | None = None,
) -> Detector:
    """Load a detector folder (a run folder or an exported detector) and return a Detector.

    Raises :class:`DetectorFormatError` for a missing or non-detector folder, another format
    version, a setting of the wrong type or out of range, weights that do not fit the
    configured model or are not the ones the config was written with, a fusion that contains
    itself, or missing files. Weights are read with safetensors only, never by unpickling.
    ``threshold`` (probability of fake) overrides the folder's validation-EER threshold;
    ``silence_dbfs`` is the silence floor (None: off); ``min_speech_seconds`` is the least
    speech a file needs to go unflagged (None: no check); ``max_seconds`` is the longest file
    it decodes (None: no cap). ``runtime`` is one of :data:`RUNTIMES`: ``"onnx"`` and
    ``"onnx-int8"`` score a neural detector through onnxruntime (with ``threads`` intra-op
    threads; None: all cores) from the folder's ONNX file, exported on the fly when missing
    (:func:`~dfa_lib.detector.onnx_runtime.load_runtime_model`); other detectors refuse them.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    folder = Path(folder)
    config = _read_config(folder)
    if runtime != "torch":
        neural_check(folder, config)
    name = config["model"]["name"]
    if name in FOLDER_LOADERS:
        model = _load_with_folder_loader(folder, config)
    else:
        model = _load_torch_model(folder, config)
    # After loading, so that a file that is not weights at all is reported as such first.
    check_weights(folder, config)
    if runtime != "torch":
        model = load_runtime_model(folder, config, runtime, model, threads=threads)
    metrics = read_metrics(folder)
    card_path = folder / MODEL_CARD_FILE
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    return Detector(
        model,
        config,
        folder=folder,
        device=device,
        threshold=threshold,
        batch_size=batch_size,
        metrics=metrics,
        model_card=card,
        silence_dbfs=silence_dbfs,
        min_speech_seconds=min_speech_seconds,
        max_seconds=max_seconds,
    )


def load_detectors(
    folders: Iterable[str | os.PathLike], device: str = "auto"
) -> tuple[dict[str, Detector], dict[str, str]]:
    """Load several detector folders, keyed by folder name; one that fails does not stop the rest.

    Returns ``(detectors, failed)``: the loaded detectors, and for each folder that could not be
    loaded the error :func:`load_detector` raised (missing, another format version, broken
    weights ...), naming the folder.
    """
    detectors: dict[str, Detector] = {}
    failed: dict[str, str] = {}
    for folder in map(Path, folders):
        try:
            detectors[folder.name] = load_detector(folder, device=device)
        except (DetectorFormatError, OSError, ValueError, RuntimeError) as error:
            message = str(error) or type(error).__name__
            failed[folder.name] = message if str(folder) in message else f"{folder}: {message}"
    return detectors, failed


def load_fusion(folder: str | os.PathLike, device: str = "auto") -> FusedScorer:
    """Load a fusion folder's members (each with :func:`~dfa_lib.detector.scorer.load_detector`).

    Raises :class:`DetectorFormatError` naming the cycle when the fusion contains itself,
    directly or through another fusion, before anything is loaded.
    """

    folder = Path(folder)
    config = _config(folder)
    cycle = member_cycle(folder)
    if cycle:
        shown = " -> ".join(f.name for f in cycle)
        raise DetectorFormatError(
            f"{folder}: the fusion contains itself ({shown}); a fusion's members must be "
            "other detectors: fit it again from its members' folders"
        )
    parameters = FusionParameters.from_kwargs(config["model"]["kwargs"])
    # Every member is checked before any is loaded: a stale member is named first.
    folders = member_folders(folder)
    return FusedScorer([load_detector(f, device=device) for f in folders], parameters)
