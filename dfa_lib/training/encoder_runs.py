"""Detectors on a pretrained speech encoder, named and sized as 03_wav2vec2 and 04_finetune train them.

03 trains heads on the frozen encoder's cached features (:func:`encoder_heads`; the layer
and probe heads are chosen per protocol on validation: :func:`layer_head`, :func:`probe_head`).
04 fine-tunes the encoder end to end (:func:`finetune_config`), on a capped subset and fewer
epochs when it runs on a CPU (:func:`finetune_budget`). Every run's name starts with the
backbone's tag (:func:`backbone_tag`), so runs on two encoders sit side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from dfa_lib.models.heads import HeadConfig
from dfa_lib.training.engine import RunResult, TrainConfig, choose_device

# Heads whose twin trained on augmented copies the notebooks may ask for (`augmented_heads`).
HEAD_KINDS: tuple[str, ...] = ("head", "wpool", "wasp", "layer", "probe")


class EncoderRunError(ValueError):
    """A notebook parameter names a head or protocol the encoder runs cannot have."""


def backbone_tag(resolved: str) -> str:
    """Return the short name runs on a backbone carry (``whisper-base-offline`` -> ``whisper-base``).

    A hub id keeps its last part (``facebook/wav2vec2-base`` -> ``wav2vec2-base``).
    """
    return resolved.split("/")[-1].replace("-offline", "")


def encoder_heads(tag: str, head_epochs: int, seed: int) -> dict[str, HeadConfig]:
    """Return the heads 03 trains on every protocol, whatever validation says, by run name.

    ``<tag>_head``: the original project's head (last layer, mean over time);
    ``<tag>_wpool``: a softmax-weighted sum of every layer's pooled statistics;
    ``<tag>_wasp``: a weighted sum of all layers' frames with attentive statistics pooling.
    """
    return {
        f"{tag}_head": HeadConfig(head="original", stats="mean", epochs=head_epochs, seed=seed),
        f"{tag}_wpool": HeadConfig(head="weighted-pooled", epochs=head_epochs, seed=seed),
        f"{tag}_wasp": HeadConfig(head="weighted-asp", epochs=head_epochs, seed=seed),
    }


def layer_head(layer: int, head_epochs: int, seed: int) -> HeadConfig:
    """The original head on the mean and spread of one layer (``<tag>_layer``, chosen on validation)."""
    return HeadConfig(head="original", layer=layer, stats="mean+std", epochs=head_epochs, seed=seed)


def aasist_head(epochs: int, seed: int) -> HeadConfig:
    """SSL + AASIST (``<tag>_aasist``): the layers' frames mixed, Linear to 128, AASIST's back-end.

    Trained only on the protocols 03 names (``aasist_protocols``): its graph attention over
    every frame is the slowest head, so it gets its own epoch budget.
    """
    return HeadConfig(head="aasist", epochs=epochs, seed=seed)


def lcnn_head(epochs: int, seed: int) -> HeadConfig:
    """Encoder features + LCNN (``<tag>_lcnn``): the layers' frames mixed, Linear to 64, a light CNN.

    The convolutional back-end of Kawa et al. (2023) on Whisper features; trained only on the
    protocols 03 names (``lcnn_protocols``), with its own epoch budget.
    """
    return HeadConfig(head="lcnn", epochs=epochs, seed=seed)


def probe_head(first_layers: int, C: float, seed: int) -> HeadConfig:
    """The logistic regression on the lowest ``first_layers`` layers (``<tag>_probe``)."""
    return HeadConfig(head="linear", first_layers=first_layers, C=C, seed=seed)


def augmented_twins(tag: str, augmented_heads: str) -> list[str]:
    """Return the run names of the heads that also get an augmented twin (``<name>_aug``).

    ``augmented_heads`` is a comma-separated list of :data:`HEAD_KINDS` (empty: none); an
    unknown kind raises :class:`EncoderRunError` instead of silently training no twin.
    """
    kinds = [k for k in augmented_heads.split(",") if k]
    unknown = [k for k in kinds if k not in HEAD_KINDS]
    if unknown:
        raise EncoderRunError(f"unknown head kind(s) {unknown}; choose from {list(HEAD_KINDS)}")
    return [f"{tag}_{kind}" for kind in kinds]


@dataclass(frozen=True)
class FinetuneBudget:
    """How much 04 fine-tunes on: clips per class and split (None: all), maximum epochs."""

    max_per_class: int | None
    epochs: int
    device: str  # the torch device it trains on

    def describe(self) -> str:
        """Return the budget as one line for the report."""
        return (
            f"device: {self.device}; clips per class and split: {self.max_per_class or 'all'}; "
            f"epochs: {self.epochs}"
        )


def finetune_budget(
    device: str, max_per_class: int, cpu_max_per_class: int, epochs: int, cpu_epochs: int
) -> FinetuneBudget:
    """Return 04's budget: on a CPU ``cpu_max_per_class`` clips and ``cpu_epochs`` epochs.

    ``cpu_max_per_class`` 0 falls back to ``max_per_class`` (0: every clip); off the CPU the
    run takes ``max_per_class`` and ``epochs``.
    """
    chosen = choose_device(device)
    on_cpu = chosen.type == "cpu"
    cap = (cpu_max_per_class if on_cpu else 0) or max_per_class or None
    return FinetuneBudget(cap, cpu_epochs if on_cpu else epochs, str(chosen))


def finetune_config(
    backbone: str,
    budget: FinetuneBudget,
    freeze_layers: int,
    clip_seconds: float,
    batch_size: int,
    grad_accumulation: int,
    learning_rate: float,
    seed: int,
    device: str,
) -> TrainConfig:
    """Return 04's run ``<tag>_finetune``: the encoder ``backbone`` and a small head, end to end.

    A constant learning rate and early stopping after two epochs without a better validation
    EER; the lowest ``freeze_layers`` encoder layers stay frozen (-1: the whole encoder).
    """
    return TrainConfig(
        name=f"{backbone_tag(backbone)}_finetune",
        model="ssl_classifier",
        model_kwargs={"backbone": backbone, "freeze_layers": freeze_layers},
        clip_seconds=clip_seconds,
        epochs=budget.epochs,
        batch_size=batch_size,
        grad_accumulation=grad_accumulation,
        learning_rate=learning_rate,
        lr_schedule="constant",
        patience=2,
        seed=seed,
        device=device,
    )


def protocol_list(spec: str) -> list[str]:
    """Split a comma-separated protocol parameter, empty entries dropped."""
    return [p for p in spec.split(",") if p]


def wants(protocol: str, spec: str, empty_means_all: bool) -> bool:
    """Whether ``protocol`` is in the comma-separated ``spec`` (an empty ``spec``: ``empty_means_all``)."""
    chosen: Sequence[str] = protocol_list(spec)
    return protocol in chosen if chosen else empty_means_all


def finetune_summary(result: RunResult, metrics: dict, protocol: str = "in-domain") -> pd.DataFrame:
    """One row for 04's report: validation EER at the best epoch, test EER (%) with its interval, AUC."""
    return pd.DataFrame(
        [
            {
                "model": result.config.name,
                "protocol": protocol,
                "best_epoch": result.best_epoch,
                "val_eer_%": 100 * result.val_eer,
                "test_eer_%": 100 * metrics["eer"],
                "ci_low_%": 100 * metrics["eer_ci_low"],
                "ci_high_%": 100 * metrics["eer_ci_high"],
                "test_auc": metrics["auc"],
                "reused": result.reused,
            }
        ]
    ).set_index("model")
