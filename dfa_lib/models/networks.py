"""Detector networks: the project's original 1-D CNN, an LFCC-LCNN and a small ResNet.

Every model takes a batch of 16 kHz float32 waveforms ``(batch, samples)`` and returns logits
``(batch, 2)`` ordered ``[real, fake]`` (class index real = 0, fake = 1). The bona fide score
used for EER is ``logits[:, 0] - logits[:, 1]`` (higher = real). Each model declares
``input_samples`` (a fixed input length in samples, or ``None`` for variable-length input) and
``frontend_name`` (``"waveform"`` or a name of :data:`~dfa_lib.features.frontends.FRONTEND_NAMES`).

Build models by name with :func:`build_model`; its keyword arguments are plain JSON values,
so a run folder's ``config.json`` (``{"model": {"name": ..., "kwargs": {...}}}``) rebuilds
the same architecture.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dfa_lib.features.frontends import build_frontend


class ModelConfigError(ValueError):
    """Raised for an unknown model name or bad model keyword arguments."""


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable, by default) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_waves(waves: torch.Tensor, model_name: str, input_samples: int | None) -> None:
    if waves.dim() != 2:
        raise ValueError(
            f"{model_name} expects waveforms shaped (batch, samples), got {tuple(waves.shape)}"
        )
    if input_samples is not None and waves.shape[1] != input_samples:
        raise ValueError(
            f"{model_name} takes exactly {input_samples} samples per clip, got {waves.shape[1]}; "
            "crop or pad the clips first (dfa_lib.data.audio.pad_or_crop)"
        )


class OriginalCNN(nn.Module):
    """The project's original 1-D CNN on raw 1-s waveforms, kept as is for comparison.

    Origin: the notebook the project started from. Input is exactly 16,000 samples (1 s at
    16 kHz). Three Conv1d layers 1->16->32->64 (kernel 5, stride 2, padding 2), each followed
    by BatchNorm1d and ReLU, halve the length each time (16000 -> 8000 -> 4000 -> 2000); the
    64 x 2000 map is flattened into a Linear layer to 128 units (ReLU, dropout 0.3) and a
    Linear layer to the 2 logits. About 16.4 M parameters, almost all in the first Linear
    layer.
    """

    input_samples: int | None = 16000
    frontend_name = "waveform"

    def __init__(self, input_samples: int = 16000, dropout: float = 0.3) -> None:
        super().__init__()
        self.input_samples = input_samples
        layers: list[nn.Module] = []
        length = input_samples
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [
                nn.Conv1d(c_in, c_out, kernel_size=5, stride=2, padding=2),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
            ]
            length = (length + 2 * 2 - 5) // 2 + 1
        self.features = nn.Sequential(*layers)
        self.flat_features = 64 * length
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 2),
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Map waveforms (batch, input_samples) to logits (batch, 2) [real, fake]."""
        _check_waves(waves, "original_cnn", self.input_samples)
        return self.classifier(self.features(waves.unsqueeze(1)))


class MaxFeatureMap(nn.Module):
    """Max-feature-map activation: split the channels in two halves, keep the element-wise max."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the channel dimension (dim 1)."""
        first, second = torch.chunk(x, 2, dim=1)
        # max(a, b) written as b + relu(a - b): the same value, but its backward pass is about
        # twice as fast on the CPU as that of torch.maximum (measured: 21 -> 12 ms per 4-s clip
        # for a training step of the default LCNN on one thread).
        return second + torch.relu(first - second)


def _mfm_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    # The convolution produces twice the channels; MFM keeps the larger of each pair.
    return nn.Sequential(
        nn.Conv2d(c_in, 2 * c_out, kernel_size=kernel, padding=kernel // 2),
        MaxFeatureMap(),
    )


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: attention-weighted mean and std of frames over time.

    Origin: Okabe et al. (2018), for speaker embeddings. A small network scores every frame,
    and the softmax of the scores over time weights the mean and standard deviation, so
    frames that carry the evidence count more than an average over the clip would let them.
    """

    def __init__(self, hidden_size: int, attention_dim: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(hidden_size, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1)
        )

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pool `(batch, time, hidden)` over valid frames to `(batch, 2 * hidden)`."""
        time_steps = frames.shape[1]
        mask = torch.arange(time_steps, device=frames.device)[None, :] < lengths[:, None]
        scores = self.attention(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        mean = (weights * frames).sum(dim=1)
        var = (weights * (frames - mean[:, None, :]) ** 2).sum(dim=1)
        return torch.cat([mean, var.clamp_min(1e-8).sqrt()], dim=-1)


POOLINGS = ("stats", "attentive")


def _stats_pool(frames: torch.Tensor) -> torch.Tensor:
    """Concatenate mean and standard deviation over time: (batch, dim, T) -> (batch, 2 dim)."""
    mean = frames.mean(dim=-1)
    std = torch.sqrt(frames.var(dim=-1, unbiased=False).clamp(min=1e-6))
    return torch.cat([mean, std], dim=1)


class SpecAugment(nn.Module):
    """Frequency and time masking of a feature map in training (SpecAugment, Park et al. 2019).

    Each clip gets ``freq_masks`` bands of up to ``freq_width`` feature rows and
    ``time_masks`` spans of up to ``time_width`` frames set to zero (the mean of utterance-
    normalised features), drawn from torch's generator, so a seeded run repeats its masks. In
    evaluation mode the input passes unchanged.
    """

    def __init__(
        self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 20
    ) -> None:
        super().__init__()
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if int(value) != value or value < 0:
                raise ModelConfigError(f"spec_augment {name} must be a whole number >= 0")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)

    @staticmethod
    def _spans(n: int, size: int, count: int, width: int, device) -> torch.Tensor:
        """(n, size) boolean map of ``count`` random spans of up to ``width`` per row."""
        hit = torch.zeros(n, size, dtype=torch.bool, device=device)
        if count == 0 or width == 0 or size == 0:
            return hit
        index = torch.arange(size, device=device)
        for _ in range(count):
            w = torch.randint(0, min(width, size) + 1, (n, 1), device=device)
            start = (torch.rand(n, 1, device=device) * (size - w + 1)).long()
            hit |= (index >= start) & (index < start + w)
        return hit

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Mask a ``(batch, 1, features, frames)`` map in training; identity otherwise."""
        if not self.training:
            return feats
        n, _, n_feats, n_frames = feats.shape
        rows = self._spans(n, n_feats, self.freq_masks, self.freq_width, feats.device)
        cols = self._spans(n, n_frames, self.time_masks, self.time_width, feats.device)
        masked = rows[:, None, :, None] | cols[:, None, None, :]
        return feats.masked_fill(masked, 0.0)


class _SpectralModel(nn.Module):
    """Shared plumbing: a front end, a 2-D trunk, pooling over frequency then time, a head.

    ``spec_augment`` (set by the subclasses from a dict of :class:`SpecAugment` settings, or
    None) masks the features between the front end and the trunk while training.
    """

    input_samples: int | None = None
    frontend_name = "lfcc"

    # No class-level ``spec_augment`` default: a class attribute would shadow the submodule
    # that nn.Module keeps in ``_modules``, and the masking would silently never run.
    def _set_spec_augment(self, settings: dict[str, Any] | None) -> None:
        if settings is None:
            self.spec_augment = None
            return
        if not isinstance(settings, dict):
            raise ModelConfigError("spec_augment must be a dict of SpecAugment settings or None")
        try:
            self.spec_augment = SpecAugment(**settings)
        except TypeError as error:
            raise ModelConfigError(f"bad spec_augment settings: {error}") from error

    def _set_pooling(self, pooling: str) -> None:
        # Called after the trunk exists: attentive pooling is sized from its output.
        if pooling not in POOLINGS:
            raise ModelConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.attentive_pool = (
            AttentiveStatsPool(self._trunk_output_dim()) if pooling == "attentive" else None
        )

    def _trunk_output_dim(self) -> int:
        n_feats = self.frontend.n_features  # type: ignore[attr-defined]
        n_channels = self.frontend.n_channels  # type: ignore[attr-defined]
        trunk: nn.Module = self.trunk  # type: ignore[attr-defined]
        # Eval mode so that the probe leaves the BatchNorm running statistics untouched.
        was_training = trunk.training
        trunk.eval()
        with torch.no_grad():
            probe = trunk(torch.zeros(1, n_channels, n_feats, 32))
        trunk.train(was_training)
        return probe.shape[1] * probe.shape[2]

    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        """Return the utterance embedding (before the classification head)."""
        _check_waves(waves, type(self).__name__, None)
        feats = self.frontend(waves)  # type: ignore[attr-defined]
        if self.spec_augment is not None:
            feats = self.spec_augment(feats)
        maps = self.trunk(feats)  # type: ignore[attr-defined]
        frames = maps.flatten(1, 2)  # (batch, channels * freq, time)
        if self.attentive_pool is None:
            return _stats_pool(frames)
        lengths = torch.full((frames.shape[0],), frames.shape[-1], device=frames.device)
        return self.attentive_pool(frames.transpose(1, 2), lengths)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Map waveforms (batch, samples), any length, to logits (batch, 2) [real, fake]."""
        return self.head(self.embed(waves))  # type: ignore[attr-defined]


class LCNN(_SpectralModel):
    """Light CNN with max-feature-map activations on LFCCs, for variable-length input.

    Origin: the light CNN with MFM activations of Wu et al. (2015/2018), used for spoofing
    detection by Lavrentyeva et al. (STC, ASVspoof 2017 and 2019) and as the LFCC-LCNN
    baseline of ASVspoof 2021. The trunk follows the nine-convolution layout of that family
    (5x5, then pairs of 1x1 and 3x3 MFM convolutions, four 2x2 max-pools, BatchNorm between
    blocks) with a configurable ``width`` (channels after the first MFM; the published
    system uses 32). Instead of a fixed-size flatten, the trunk output is pooled over time
    with mean and standard deviation statistics (``pooling="attentive"``: attention-weighted
    ones), so any clip length works. A MFM fully connected layer and dropout precede the
    2-way output.
    """

    def __init__(
        self,
        frontend: str = "lfcc",
        normalize: bool = True,
        width: int = 16,
        embedding: int = 64,
        dropout: float = 0.5,
        frontend_settings: dict[str, Any] | None = None,
        spec_augment: dict[str, Any] | None = None,
        pooling: str = "stats",
    ) -> None:
        super().__init__()
        self.frontend_name = frontend
        self.frontend = build_frontend(frontend, normalize=normalize, **(frontend_settings or {}))
        self._set_spec_augment(spec_augment)
        w = width
        w15 = (3 * w) // 2
        pool = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)  # stateless, safe to share
        self.trunk = nn.Sequential(
            _mfm_conv(self.frontend.n_channels, w, 5),
            pool,
            _mfm_conv(w, w, 1),
            nn.BatchNorm2d(w),
            _mfm_conv(w, w15, 3),
            pool,
            nn.BatchNorm2d(w15),
            _mfm_conv(w15, w15, 1),
            nn.BatchNorm2d(w15),
            _mfm_conv(w15, 2 * w, 3),
            pool,
            _mfm_conv(2 * w, 2 * w, 1),
            nn.BatchNorm2d(2 * w),
            _mfm_conv(2 * w, w, 3),
            nn.BatchNorm2d(w),
            _mfm_conv(w, w, 1),
            nn.BatchNorm2d(w),
            _mfm_conv(w, w, 3),
            pool,
        )
        self._set_pooling(pooling)
        # No BatchNorm in the head: it would fail on a last training batch of one clip.
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * self._trunk_output_dim(), 2 * embedding),
            MaxFeatureMap(),
            nn.Dropout(dropout),
            nn.Linear(embedding, 2),
        )


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual connection: relu(body(x) + shortcut(x))."""
        return self.relu(self.body(x) + self.shortcut(x))


class SmallResNet(_SpectralModel):
    """A small four-stage ResNet on log-mel (default) or LFCC features, variable length.

    Origin: residual networks of He et al. (2016), applied to spoofing detection on
    spectral features by Alzantot et al. (ASVspoof 2019, "Deep residual neural networks for
    audio spoofing detection") and many later systems. Layout: a strided 3x3 stem, four
    stages of one basic block each with ``(w, 2w, 4w, 8w)`` channels (strides 1, 2, 2, 2),
    then mean and standard deviation pooling over time of the frequency-flattened map and a
    linear 2-way output.
    """

    def __init__(
        self,
        frontend: str = "mel",
        normalize: bool = True,
        width: int = 8,
        dropout: float = 0.3,
        frontend_settings: dict[str, Any] | None = None,
        spec_augment: dict[str, Any] | None = None,
        pooling: str = "stats",
    ) -> None:
        super().__init__()
        self.frontend_name = frontend
        self.frontend = build_frontend(frontend, normalize=normalize, **(frontend_settings or {}))
        self._set_spec_augment(spec_augment)
        w = width
        self.trunk = nn.Sequential(
            nn.Conv2d(self.frontend.n_channels, w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            _BasicBlock(w, w, 1),
            _BasicBlock(w, 2 * w, 2),
            _BasicBlock(2 * w, 4 * w, 2),
            _BasicBlock(4 * w, 8 * w, 2),
            # Collapse frequency so the pooled embedding stays small whatever the front end.
            nn.AdaptiveAvgPool2d((1, None)),
        )
        self._set_pooling(pooling)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self._trunk_output_dim(), 2))


def phase_lcnn_kwargs(f_max: float = 4000.0) -> dict[str, Any]:
    """The LCNN settings of ``lcnn_phase`` (``02_cnn``): power and phase, unnormalised, masked.

    The ``ifd`` front end (each STFT bin's log power and instantaneous-frequency deviation) up
    to ``f_max``, without per-utterance normalisation, with SpecAugment: the
    ``ifd-4k-unnormalised+specaugment`` variant of the ``lcnn-phase`` ablation, which builds
    its settings here too.
    """
    return {
        "frontend": "ifd",
        "frontend_settings": {"f_max": f_max},
        "normalize": False,
        "spec_augment": {},
    }
