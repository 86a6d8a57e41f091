"""Which models a notebook trains, and which of them share one load of the clips."""

from __future__ import annotations

from collections.abc import Sequence

from dfa_lib.models.classical import LOGREG_MODEL_NAMES
from dfa_lib.training.engine import TrainConfig


def models_to_train(models: str, gpu_models: str, device_type: str) -> tuple[list[str], list[str]]:
    """Return the model names a notebook trains, and those it adds on any device but the CPU.

    ``models`` and ``gpu_models`` are comma-separated names (empty entries ignored);
    ``device_type`` is ``torch.device.type`` of the device the run trains on. Models that cost
    too much on a CPU are named in ``gpu_models`` and join the list only elsewhere, so one
    profile serves both. The second list is what ``gpu_models`` added (for the report).
    """
    names = [m for m in models.split(",") if m]
    extra = [m for m in gpu_models.split(",") if m] if device_type != "cpu" else []
    added = [m for m in dict.fromkeys(extra) if m not in names]
    return names + added, added


def training_groups(
    configs: Sequence[TrainConfig], max_per_class: int, logreg_max_per_class: int = -1
) -> list[tuple[int | None, list[TrainConfig]]]:
    """Group training configs by the cap on clips per class each trains on.

    ``max_per_class`` caps every model (0: every clip); ``logreg_max_per_class`` overrides it
    for the logistic regressions of :data:`dfa_lib.models.classical.LOGREG_MODEL_NAMES`, which fit in
    seconds on every clip (-1: the same cap as the others). Returns ``(cap, configs)`` pairs,
    ``cap`` None for every clip, in the order their first config appears; a notebook loads a
    protocol's clips once per pair (:func:`prepare_protocol`'s ``max_per_class``).
    """

    if max_per_class < 0:
        raise ValueError(
            f"max_per_class must be 0 (every clip) or a positive cap, got {max_per_class}"
        )
    if logreg_max_per_class < -1:
        raise ValueError(
            "logreg_max_per_class must be -1 (as max_per_class), 0 (every clip) or a positive "
            f"cap, got {logreg_max_per_class}"
        )
    logreg_cap = max_per_class if logreg_max_per_class == -1 else logreg_max_per_class
    groups: dict[int | None, list[TrainConfig]] = {}
    for config in configs:
        cap = logreg_cap if config.model in LOGREG_MODEL_NAMES else max_per_class
        groups.setdefault(cap or None, []).append(config)
    return list(groups.items())
