"""The model registry: every network a detector folder names, built from its JSON kwargs."""

from __future__ import annotations

from typing import Any

from torch import nn

from dfa_lib.features.frontends import FRONTEND_NAMES, FrontendError
from dfa_lib.models.networks import LCNN, ModelConfigError, OriginalCNN, SmallResNet
from dfa_lib.models.ssl import SSLClassifier

MODEL_NAMES: tuple[str, ...] = ("original_cnn", "lcnn", "resnet")


# Built on a pretrained encoder (dfa_lib.training.ssl_pipeline); loading it loads the encoder's weights.
PRETRAINED_MODEL_NAMES: tuple[str, ...] = ("ssl_classifier",)


_BUILDERS: dict[str, type[nn.Module]] = {
    "original_cnn": OriginalCNN,
    "lcnn": LCNN,
    "resnet": SmallResNet,
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
    """
    if name == "ssl_classifier":  # a pretrained encoder, not a network of MODEL_NAMES
        return SSLClassifier(**kwargs)
    if name not in _BUILDERS:
        choices = list(MODEL_NAMES + PRETRAINED_MODEL_NAMES)
        raise ModelConfigError(f"unknown model {name!r}; choose one of {choices}")
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
