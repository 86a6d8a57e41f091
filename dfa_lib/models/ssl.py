"""Pretrained speech encoders as detectors: fine-tuned end to end, or with a trained head."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.ssl_features import pool_mean_std
from dfa_lib.models.heads import BackboneWithHead, load_head

SSL_HEAD_MODEL = "ssl_head"  # the model name of a head trained on a frozen encoder


class SSLClassifier(torch.nn.Module):
    """A pretrained speech encoder fine-tuned end to end with a small classification head.

    Waveforms ``(batch, samples)`` at 16 kHz in, logits ``[real, fake]`` out, like every model
    of :mod:`dfa_lib.models.networks`. The head is a learned softmax-weighted sum of the encoder's
    layers, mean and standard deviation over valid frames, then Linear(2H, 128), ReLU, dropout
    and Linear(128, 2). ``freeze_layers`` keeps the input stage and the lowest N transformer
    layers fixed (-1 freezes the whole encoder), the usual way to fine-tune on little data.
    """

    input_samples = None

    def __init__(
        self,
        backbone: str = "auto",
        freeze_layers: int = 0,
        hidden: int = 128,
        dropout: float = 0.3,
        cache_dir: str | None = None,
    ) -> None:

        super().__init__()
        self.backbone = load_backbone(backbone, cache_dir=cache_dir)
        self.backbone_choice = self.backbone.choice
        # LayerDrop skips whole layers in training mode, which would change how many hidden
        # states the layer weights see from one step to the next.
        encoder_config = getattr(self.backbone.encoder, "config", None)
        if encoder_config is not None and hasattr(encoder_config, "layerdrop"):
            encoder_config.layerdrop = 0.0
        n_states = self.backbone.num_layers + 1
        width = self.backbone.hidden_size
        self.layer_logits = nn.Parameter(torch.zeros(n_states))
        self.classifier = nn.Sequential(
            nn.Linear(2 * width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2)
        )
        for name, param in self.backbone.named_parameters():
            match = re.search(r"layers\.(\d+)\.", name)
            if freeze_layers < 0:
                param.requires_grad_(False)
            elif freeze_layers > 0:
                param.requires_grad_(match is not None and int(match.group(1)) >= freeze_layers)

    def forward(self, waves):
        """Return logits for a batch of waveforms."""

        out = self.backbone(waves)
        states = out.stacked().float()  # (layers, batch, frames, hidden)
        weights = torch.softmax(self.layer_logits, dim=0)
        mixed = (weights[:, None, None, None] * states).sum(dim=0, keepdim=True)
        pooled = pool_mean_std(mixed, out.lengths)[0]  # (batch, 2 * hidden)
        return self.classifier(pooled)


def load_head_detector(folder: str | os.PathLike) -> torch.nn.Module:
    """Rebuild a head run folder as one model: its backbone (loaded by name) and its head.

    Raises ``ValueError`` when the backbone that loads under the recorded name is not the one
    the head was trained on (different weights), rather than scoring with a mismatched pair.
    """

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    kwargs = config["model"]["kwargs"]
    backbone = load_backbone(kwargs["backbone"], cache_dir=os.environ.get("DFA_CACHE_DIR"))
    expected = kwargs.get("backbone_identity")
    if expected and backbone.identity != expected:
        raise ValueError(
            f"the head was trained on backbone {expected}, but {kwargs['backbone']!r} now loads "
            f"{backbone.identity}; retrain the head or install the original weights"
        )
    head = load_head(folder)
    model = BackboneWithHead(backbone, head, head.head_config)
    return model.eval()
