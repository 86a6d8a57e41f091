"""The model registry: every network a detector folder names, built from its JSON kwargs.

The kwargs come from a folder's ``config.json``, which anyone can edit, so each number is
checked for type and range before a layer is built: a width of 100,000 would ask for hundreds of
gigabytes, and a string where an integer belongs fails deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from torch import nn

from dfa_lib.features.frontends import FRONTEND_NAMES, FrontendError
from dfa_lib.models.aasist import AASIST, AASISTLight, RawNet2
from dfa_lib.models.networks import LCNN, ModelConfigError, OriginalCNN, SmallResNet
from dfa_lib.models.ssl import SSLClassifier

MODEL_NAMES: tuple[str, ...] = ("original_cnn", "lcnn", "resnet", "rawnet2", "aasist", "aasist_l")


# Built on a pretrained encoder (dfa_lib.training.ssl_pipeline); loading it loads the encoder's weights.
PRETRAINED_MODEL_NAMES: tuple[str, ...] = ("ssl_classifier",)


# Integer settings and the range (both ends included) that builds a model of sane size.
INT_KWARG_RANGES: dict[str, tuple[int, int]] = {
    "width": (1, 1024),  # channels of the first block (the defaults are 8 and 16)
    "embedding": (1, 4096),  # LCNN embedding size (default 64)
    "hidden": (1, 4096),  # SSL classifier head width (default 128)
    "freeze_layers": (-1, 1000),  # SSL encoder layers kept fixed; -1 freezes all of them
    # The original CNN's first Linear layer has about 1,000 weights per input sample, so 10 s
    # at 16 kHz (160,000 samples) is already 164 M weights.
    "input_samples": (16, 160_000),
    # RawNet2 and AASIST (dfa_lib.models.aasist): sinc filters and their taps, GRU and FC sizes.
    "sinc_filters": (3, 512),  # 20 in RawNet2, 70 in AASIST
    "sinc_kernel": (3, 4096),  # taps: 1,024 in RawNet2, 128 in AASIST (one more if even)
    "gru_hidden": (1, 4096),
    "gru_layers": (1, 8),
    "fc_hidden": (1, 8192),
}
# Real-valued settings and their range: [low, high).
FLOAT_KWARG_RANGES: dict[str, tuple[float, float]] = {"dropout": (0.0, 1.0)}
BOOL_KWARGS: tuple[str, ...] = ("normalize",)
STRING_KWARGS: tuple[str, ...] = ("frontend", "pooling", "backbone")


def check_model_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ModelConfigError when a known keyword argument has the wrong type or range.

    The message names the model, the key, the value and what is allowed. Keys not listed here
    are left to the model's constructor.
    """
    for key, value in kwargs.items():
        problem = None
        if key in INT_KWARG_RANGES:
            low, high = INT_KWARG_RANGES[key]
            # JSON true/false arrive as bool, which Python counts as an int.
            is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if not (is_int and low <= value <= high):
                problem = f"an integer in [{low}, {high}]"
        elif key in FLOAT_KWARG_RANGES:
            low, high = FLOAT_KWARG_RANGES[key]
            is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (is_number and math.isfinite(value) and low <= value < high):
                problem = f"a number in [{low:g}, {high:g})"
        elif key in BOOL_KWARGS and not isinstance(value, bool):
            problem = "true or false"
        elif key in STRING_KWARGS and not isinstance(value, str):
            problem = "a string"
        elif key in ("frontend_settings", "spec_augment") and not isinstance(value, dict | None):
            problem = "an object of settings or null"
        if problem:
            raise ModelConfigError(f"model {name!r}: {key} must be {problem}, got {value!r}")


_BUILDERS: dict[str, type[nn.Module]] = {
    "original_cnn": OriginalCNN,
    "lcnn": LCNN,
    "resnet": SmallResNet,
    "rawnet2": RawNet2,
    "aasist": AASIST,
    "aasist_l": AASISTLight,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a detector by name (one of :data:`MODEL_NAMES`) with JSON-serialisable kwargs.

    ``original_cnn``: ``input_samples`` (16000), ``dropout`` (0.3).
    ``lcnn``: ``frontend`` ("lfcc" | "mel" | "spec" | "ifd", default "lfcc"), ``normalize``
    (per-utterance mean/variance normalisation of the magnitude features, default True),
    ``width`` (16), ``embedding`` (64), ``dropout`` (0.5), ``frontend_settings`` (dict
    overriding the front end's config, e.g. :class:`~dfa_lib.features.frontends.LFCCConfig`),
    ``spec_augment`` (None, or a dict of :class:`SpecAugment` settings, ``{}`` for its
    defaults: feature masking in training), ``pooling`` over time ("stats": mean and standard
    deviation, the default; "attentive": :class:`AttentiveStatsPool`).
    ``resnet``: ``frontend`` (default "mel"), ``normalize`` (True), ``width`` (8),
    ``dropout`` (0.3), ``frontend_settings``, ``spec_augment``, ``pooling``.
    ``rawnet2``, ``aasist``, ``aasist_l``: raw-waveform reference systems
    (:mod:`dfa_lib.models.aasist`), the published configurations by default; ``input_samples``
    (None: any length), ``sinc_filters``, ``sinc_kernel``, ``channels``; RawNet2 also
    ``blocks``, ``gru_hidden``, ``gru_layers``, ``fc_hidden``; AASIST also ``gat_dims``,
    ``pool_ratios``, ``temperatures`` (lists, checked by the constructors).

    Numbers are checked first (:func:`check_model_kwargs`): a ModelConfigError names the key,
    the value and the allowed range.
    """
    if name not in _BUILDERS and name != "ssl_classifier":
        choices = list(MODEL_NAMES + PRETRAINED_MODEL_NAMES)
        raise ModelConfigError(f"unknown model {name!r}; choose one of {choices}")
    check_model_kwargs(name, kwargs)
    if name == "ssl_classifier":  # a pretrained encoder, not a network of MODEL_NAMES
        return SSLClassifier(**kwargs)
    frontend = kwargs.get("frontend")
    if frontend is not None and frontend not in FRONTEND_NAMES:
        raise ModelConfigError(
            f"unknown front end {frontend!r} for model {name!r}; choose one of "
            f"{list(FRONTEND_NAMES)}"
        )
    try:
        return _BUILDERS[name](**kwargs)
    except TypeError as error:
        raise ModelConfigError(f"bad keyword arguments for model {name!r}: {error}") from error
    except FrontendError as error:
        raise ModelConfigError(f"bad front end settings for model {name!r}: {error}") from error
