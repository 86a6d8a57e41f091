"""The detector folder format: its files, config.json's fields, reading, checking and writing.

A detector folder (a training run or an export) holds ``config.json`` (``"format": "dfa-detector"``,
the model name and keyword arguments, the preprocessing and the decision threshold), the weights
in ``model.safetensors`` (never a pickle; classical models write their own safetensors file),
``metrics.json`` (one entry per protocol it was tested on) and a model card ``README.md``.
This module is the only one that writes or validates that layout.

``config.json`` records the SHA-256 of each weights file (``*.safetensors``) under
``weights_sha256`` when the folder is written, so that weights copied in from another folder
are refused at loading instead of being used with this folder's threshold and calibration.
The key is optional: folders written before it existed still load.

Every number a folder supplies is checked for type and range when it is read
(:meth:`Preprocessing.from_dict`, the threshold): a hand-edited or hostile config gets a
:class:`DetectorFormatError` naming the key, the value and what is allowed, never an
allocation error or a TypeError deep in scoring.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import save_file

from dfa_lib import __version__
from dfa_lib.core.atomic import atomic_path, write_text_atomically
from dfa_lib.core.provenance import write_json
from dfa_lib.data.audio import peak_normalize, rms_normalize
from dfa_lib.models.classical import CLASSICAL_MODEL_NAMES
from dfa_lib.scoring.calibration import Calibration, CalibrationError, probability_threshold
from dfa_lib.scoring.calibration import describe as describe_calibration

FORMAT_NAME = "dfa-detector"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "README.md"
# Classical models write their own weights file (models.classical owns the list).
CLASSICAL_MODELS: tuple[str, ...] = tuple(CLASSICAL_MODEL_NAMES)
NORMALIZATIONS: tuple[str, ...] = ("none", "peak", "rms")
PAD_MODES: tuple[str, ...] = ("wrap", "constant")
CROPS: tuple[str, ...] = ("center", "random", "start")
# config.json's map of weights file name -> SHA-256 (hex) of its bytes when it was written.
WEIGHTS_CHECKSUM_KEY = "weights_sha256"
# The rates a preprocessing may name: telephone speech to the highest studio rate.
SAMPLE_RATE_RANGE = (1000, 384000)  # Hz, both included
# The clip (window) length a model may be trained on: above 50 ms, at most ten minutes.
CLIP_SECONDS_RANGE = (0.05, 600.0)  # seconds, (low, high]


class DetectorFormatError(ValueError):
    """The folder is not a detector this version of dfa can load; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """How a waveform becomes a model input; the same settings training used."""

    sample_rate: int = 16000  # Hz
    clip_seconds: float = 4.0  # seconds per model input (the window length at inference)
    crop: str = "center"  # how training cut longer clips: center | random | start
    pad_mode: str = "wrap"  # how shorter clips were padded: wrap (repeat) | constant (zeros)
    normalization: str = "none"  # level normalisation of each model input: none | peak | rms
    peak: float = 0.95  # target peak for normalization="peak"
    target_dbfs: float = -23.0  # target RMS level (dBFS) for normalization="rms"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Build from a config's ``preprocessing`` dict, ignoring keys this version does not use.

        Raises :class:`DetectorFormatError` naming the key, the value and what is allowed for a
        value of the wrong type or out of range: ``sample_rate`` an integer in
        :data:`SAMPLE_RATE_RANGE`, ``clip_seconds`` a number in :data:`CLIP_SECONDS_RANGE`,
        ``crop``, ``pad_mode`` and ``normalization`` from their sets, ``peak`` in (0, 1] and
        ``target_dbfs`` in [-100, 0].
        """
        if not isinstance(data, dict):
            raise DetectorFormatError(f"preprocessing must be a JSON object, got {data!r}")
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        low, high = SAMPLE_RATE_RANGE
        if "sample_rate" in known:
            rate = known["sample_rate"]
            if not _is_int(rate) or not low <= rate <= high:
                raise DetectorFormatError(
                    f"preprocessing.sample_rate must be an integer number of Hz in "
                    f"[{low}, {high}], got {rate!r}"
                )
            known["sample_rate"] = int(rate)
        for key, (lo, hi, closed_low) in {
            "clip_seconds": (*CLIP_SECONDS_RANGE, False),
            "peak": (0.0, 1.0, False),
            "target_dbfs": (-100.0, 0.0, True),
        }.items():
            if key in known:
                known[key] = _number_in(known[key], f"preprocessing.{key}", lo, hi, closed_low)
        for key, allowed in (
            ("crop", CROPS),
            ("pad_mode", PAD_MODES),
            ("normalization", NORMALIZATIONS),
        ):
            if key in known and known[key] not in allowed:
                raise DetectorFormatError(
                    f"preprocessing.{key} must be one of {list(allowed)}, got {known[key]!r}"
                )
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serialisable dict."""
        return asdict(self)

    def normalize(self, window: np.ndarray) -> np.ndarray:
        """Apply the level normalisation to one model input."""
        if self.normalization == "peak":
            return peak_normalize(window, peak=self.peak)
        if self.normalization == "rms":
            return rms_normalize(window, target_dbfs=self.target_dbfs)
        return window


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which Python counts as an int; a setting never means them.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number_in(value: Any, key: str, low: float, high: float, closed_low: bool) -> float:
    """Return ``value`` as a float when it is a finite number in the range, else raise."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if is_number else math.nan
    above_low = number >= low if closed_low else number > low
    if not (math.isfinite(number) and above_low and number <= high):
        bracket = "[" if closed_low else "("
        raise DetectorFormatError(
            f"{key} must be a finite number in {bracket}{low:g}, {high:g}], got {value!r}"
        )
    return number


def check_threshold(config: dict[str, Any], where: str | os.PathLike) -> None:
    """Raise DetectorFormatError unless the config's ``threshold`` (when present) is a finite number."""
    if "threshold" not in config:
        return
    value = config["threshold"]
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (is_number and math.isfinite(float(value))):
        raise DetectorFormatError(
            f"{where}: threshold (the bona fide score at the validation EER) must be a finite "
            f"number, got {value!r}"
        )


def weights_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """Return the SHA-256 (hex) of each weights file (``*.safetensors``) in ``folder``, by name."""
    checksums = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with path.open("rb") as handle:
            checksums[path.name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return checksums


def check_weights(folder: str | os.PathLike, config: dict[str, Any]) -> None:
    """Raise DetectorFormatError when a weights file differs from the one ``config`` was written with.

    A config without :data:`WEIGHTS_CHECKSUM_KEY` (written before it existed) passes.
    """
    folder = Path(folder)
    recorded = config.get(WEIGHTS_CHECKSUM_KEY)
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and Path(k).name == k for k, v in recorded.items()
    ):
        raise DetectorFormatError(
            f"{folder / CONFIG_FILE}: {WEIGHTS_CHECKSUM_KEY} must map weights file names in the "
            "folder to SHA-256 checksums"
        )
    found = weights_checksums(folder)
    for name, checksum in recorded.items():
        if name not in found:
            raise DetectorFormatError(
                f"{folder}: missing {name} (the weights its config was written with); the "
                "folder is incomplete"
            )
        if found[name] != checksum.lower():
            raise DetectorFormatError(
                f"{folder}: the weights in {name} are not the ones this config was written "
                "with (their SHA-256 differs), so its threshold and calibration do not apply "
                "to them; copy the whole detector folder, or re-export it from its training run"
            )


def is_detector_folder(folder: str | os.PathLike) -> bool:
    """Return True when ``folder`` has a ``config.json`` declaring the dfa-detector format."""
    config = Path(folder) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def read_detector_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Return a detector folder's checked ``config.json`` (DetectorFormatError when it is not one)."""
    return _read_config(Path(folder))


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        raise DetectorFormatError(f"{folder}: no such detector folder")
    if not folder.is_dir():
        raise DetectorFormatError(
            f"{folder}: is a file; a detector is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise DetectorFormatError(
            f"{folder}: not a detector folder (no {CONFIG_FILE}); train one with `make reports` "
            "or write one with dfa_lib.detector.scorer.export_detector"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DetectorFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise DetectorFormatError(
            f"{path}: not a dfa detector config (format is {found!r}, expected {FORMAT_NAME!r})"
        )
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        written_by = config.get("dfa_version", "an unknown dfa version")
        hint = (
            "upgrade dfa to read it"
            if isinstance(version, int) and version > FORMAT_VERSION
            else "re-export it with this version (dfa_lib.detector.scorer.export_detector) or retrain"
        )
        raise DetectorFormatError(
            f"{folder}: detector format_version {version!r} (written by dfa {written_by}); "
            f"this dfa {__version__} reads format_version {FORMAT_VERSION}: {hint}"
        )
    dfa_version = config.get("dfa_version")
    if dfa_version is not None and _major(dfa_version) != _major(__version__):
        raise DetectorFormatError(
            f"{folder}: written by dfa {dfa_version}, whose major version differs from this "
            f"dfa {__version__}; load it with dfa {_major(dfa_version)}.x or retrain"
        )
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise DetectorFormatError(
            f'{path}: missing "model": {{"name": ..., "kwargs": {{...}}}} entry'
        )
    if not isinstance(model.get("kwargs", {}), dict):
        raise DetectorFormatError(f"{path}: model.kwargs must be a JSON object")
    check_threshold(config, path)
    try:
        Preprocessing.from_dict(config.get("preprocessing", {}))
    except DetectorFormatError as error:
        raise DetectorFormatError(f"{path}: {error}") from error
    return config


def _full_config(config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
        raise ValueError('config needs "model": {"name": ..., "kwargs": {...}}')
    if "threshold" not in config:
        raise ValueError('config needs "threshold" (bona fide score at the validation EER)')
    check_threshold(config, "config")
    full = dict(config)
    full["format"] = FORMAT_NAME
    full["format_version"] = FORMAT_VERSION
    full["dfa_version"] = __version__
    full["model"] = {"name": config["model"]["name"], "kwargs": config["model"].get("kwargs", {})}
    full["preprocessing"] = Preprocessing.from_dict(config.get("preprocessing", {})).to_dict()
    return full


def export_detector(
    folder: str | os.PathLike,
    model: Any,
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a detector folder: weights (safetensors), ``config.json``, metrics and model card.

    ``config`` needs ``model`` (``{"name", "kwargs"}``, so :func:`dfa_lib.models.networks.build_model`
    rebuilds the architecture) and ``threshold`` (bona fide score at the validation EER);
    ``preprocessing``, ``training``, ``dataset`` and any other keys are copied as given. The
    format fields are filled in here. Classical models are written with their own
    ``save(folder)``; with ``model=None`` no weights are written (a fusion, whose parameters
    are in the config and whose members keep their own folders). Returns the folder.

    Re-exporting into a detector folder replaces it (retraining a run in place), unless
    ``overwrite=False``, which raises FileExistsError instead. New weights make the old
    ``metrics.json`` meaningless, so it is replaced by ``metrics`` or removed when that is None;
    evaluation then adds protocols and calls :func:`write_model_card`.
    """
    folder = Path(folder)
    full = _full_config(config)
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{folder} already holds a detector; pass overwrite=True to replace it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if model is None or full["model"]["name"] in CLASSICAL_MODELS:
        if model is not None:
            model.save(folder)
        (folder / WEIGHTS_FILE).unlink(missing_ok=True)  # left by an earlier network, if any
    else:
        # Cloned so that tensors sharing storage can still be written one by one.
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE) as temporary:
            save_file(state, str(temporary), metadata={"format": FORMAT_NAME})
    _record_weights(folder, full)
    write_text_atomically(folder / CONFIG_FILE, json.dumps(full, indent=2) + "\n")
    if metrics is not None:
        write_metrics(folder, metrics)
    else:
        (folder / METRICS_FILE).unlink(missing_ok=True)
    write_text_atomically(folder / MODEL_CARD_FILE, model_card(full, metrics))
    return folder


def write_model_card(folder: str | os.PathLike) -> Path:
    """Regenerate a detector folder's ``README.md`` from its config.json and metrics.json.

    Call it after evaluation adds protocols to ``metrics.json``.
    """
    folder = Path(folder)
    config = _read_config(folder)
    metrics = read_metrics(folder)
    path = folder / MODEL_CARD_FILE
    write_text_atomically(path, model_card(config, metrics))
    return path


def read_metrics(folder: str | os.PathLike) -> dict:
    """Return a detector folder's metrics.json, one entry per protocol (empty when it has none).

    Raises DetectorFormatError when the file is not valid JSON.
    """
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DetectorFormatError(f"{path}: not valid JSON ({error})") from error


def write_metrics(folder: str | os.PathLike, metrics: dict) -> Path:
    """Write a detector folder's metrics.json (every protocol's entry) atomically."""
    return write_json(Path(folder) / METRICS_FILE, metrics)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flatten(value, name))
        elif not isinstance(value, list):
            out[name] = value
    return out


def _metrics_section(metrics: dict[str, Any]) -> list[str]:
    if not metrics:
        return [
            "No metrics recorded yet: evaluation writes metrics.json; regenerate this card "
            "with dfa_lib.detector.scorer.write_model_card(folder)."
        ]
    lines = []
    for protocol, values in metrics.items():
        lines.append(f"### {protocol}")
        # Only the headline numbers; tables by generator or language stay in metrics.json.
        flat = {
            k: v
            for k, v in (values.items() if isinstance(values, dict) else [("value", values)])
            if isinstance(v, int | float | str) and not (isinstance(v, str) and len(v) > 60)
        }
        if not flat:
            lines += ["", "(see metrics.json)", ""]
            continue
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
        lines.append("")
    return lines


def model_card(config: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """Write the model card (Markdown) of a detector from its config and metrics."""
    metrics = metrics or {}
    model = config.get("model", {})
    prep = Preprocessing.from_dict(config.get("preprocessing", {}))
    tau = float(config.get("threshold", 0.0))
    try:
        calibration = Calibration.from_config(config)
    except CalibrationError:
        calibration = Calibration()
    dataset = config.get("dataset", {}) or {}
    training = config.get("training", {}) or {}
    name = model.get("name", "unknown")
    kwargs = model.get("kwargs", {})
    if name == "fusion" and isinstance(kwargs.get("members"), list):
        members = ", ".join(
            f"`{m.get('name')}` (weight {_fmt(w)})"
            for m, w in zip(kwargs["members"], kwargs.get("weights", []), strict=False)
        )
        settings = (
            f"combining the detector folders {members} beside it: their bona fide scores, "
            "standardised on the validation split, weighted by a logistic regression fitted "
            "there"
        )
        window_score = "the fusion's log-odds of real"
    else:
        settings = f"with settings {_fmt(kwargs)}"
        window_score = "logit real minus logit fake"
    lines = [
        f"# Audio deepfake detector: `{name}`",
        "",
        "## What it is",
        f'A binary classifier that tells genuine ("real") speech from synthetic ("fake") '
        f"speech. Model `{name}` {settings}, written by "
        f"dfa {config.get('dfa_version', __version__)} (detector format "
        f"{config.get('format_version', FORMAT_VERSION)}).",
        "",
        f"- Input: mono audio resampled to {prep.sample_rate} Hz, scored in "
        f"{prep.clip_seconds:g}-second windows; shorter files are padded "
        f"({prep.pad_mode}), level normalisation: {prep.normalization}.",
        "- Output: probability of fake per window; the file's score is the mean of the "
        f"window bona fide scores ({window_score}) and its probability of fake "
        "is the sigmoid of minus that mean, calibrated.",
        f"- Calibration: {describe_calibration(config)}.",
        f"- Decision threshold: bona fide score {tau:.4g} (validation equal error rate), i.e. "
        f'"fake" when the probability of fake is at least '
        f"{probability_threshold(calibration.apply(tau)):.4g}.",
    ]
    if isinstance(config.get("val_eer"), int | float):
        lines.append(f"- Validation equal error rate: {100 * float(config['val_eer']):.2f} %.")
    lines += [
        "",
        "## Training data",
    ]
    if dataset:
        lines += [f"- {k}: {_fmt(v)}" for k, v in _flatten(dataset).items()]
    else:
        lines.append("Not recorded in the config.")
    if training:
        keys = ("epochs", "batch_size", "learning_rate", "clip_seconds", "seed", "augment")
        shown = {k: training[k] for k in keys if k in training}
        if shown:
            lines += [
                "",
                "Training settings: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) + ".",
            ]
    lines += ["", "## Metrics per protocol", ""]
    lines += _metrics_section(metrics)
    lines += [
        "",
        "## Intended use",
        "Research and teaching: comparing detection methods, and screening recordings to "
        "decide which deserve a closer look by a person. Score files with "
        "`dfa predict FILE --model <this folder>` or in the app (`make app`).",
        "",
        "## Known limits",
        "- It knows only the kinds of synthetic speech in its training data; speech from "
        "other generators (modern neural TTS, voice conversion) may be missed. See the "
        "unseen-generator, lofo-<family> (one family of generators left out of training) "
        "and cross-source metrics above for how far it generalises.",
        "- Channel effects (codec, bandwidth, level, background noise, silence) can change the "
        "score; the threshold was set on the validation data and may need recalibration on "
        "other recordings.",
        "- The file score averages windows: a short synthetic passage inside a long genuine "
        "recording can stay below the threshold; look at the window timeline.",
        "- Not a forensic tool: do not base legal, employment or security decisions on its "
        "output alone.",
        "",
    ]
    return "\n".join(lines)


def _record_weights(folder: Path, full: dict[str, Any]) -> None:
    """Put the checksums of the folder's weights files (if any) into the config to be written."""
    full.pop(WEIGHTS_CHECKSUM_KEY, None)  # a key copied from an older config means nothing here
    checksums = weights_checksums(folder)
    if checksums:
        full[WEIGHTS_CHECKSUM_KEY] = checksums


def write_detector_config(folder: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """Write ``config.json`` with the format fields filled in, for a folder whose weights its
    own model wrote (an encoder head); returns what was written.

    Write the weights first: their checksums go into the config (see :func:`check_weights`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    full = _full_config(config)
    _record_weights(folder, full)
    write_text_atomically(folder / CONFIG_FILE, json.dumps(full, indent=2) + "\n")
    return full
