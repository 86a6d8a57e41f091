"""Classification heads trained on cached frozen-encoder features, and per-layer signal.

Six heads, all returning logits `(batch, 2)` ordered [real, fake]:

- `OriginalHead`: the original notebook's head, hidden -> 128, ReLU, dropout, -> 2, on one
  layer's time-pooled features (by default the last layer's mean, the encoder's width wide).
- `LayerWeightedASPHead`: a learned softmax-weighted sum of all layers' frames followed by
  attentive statistics pooling over time (an attention score per frame, then the
  attention-weighted mean and standard deviation), then the same small classifier. It needs
  frame-level features (`extract_features(..., frames=True)`).
- `LayerWeightedPooledHead`: the same learned sum of layers applied to the cached mean/std
  statistics, for when only pooled features are cached. It cannot attend over time (the time
  axis is already averaged away) but keeps the "which layers matter" weights.
- `AASISTHead` (`head="aasist"`): SSL + AASIST (Tak et al., Odyssey 2022): the same learned
  sum of layers' frames, Linear(hidden -> 128) per frame, then AASIST's graph attention
  back-end (`dfa_lib.models.aasist.AASISTBackend`) on the `(128, time)` map. Frame-level too.
- `LCNNHead` (`head="lcnn"`): encoder features with a convolutional back-end (Kawa et al.,
  Interspeech 2023, who found Whisper features with MesoNet/LCNN back-ends generalise better
  across datasets): the same learned sum of layers' frames, Linear(hidden -> 64) per frame,
  then a light CNN with max-feature-map activations on the `(64, time)` map as a 1-channel
  image, pooled over time. Frame-level too.
- `LinearProbeHead` (`head="linear"`): a logistic regression on the pooled mean/std of the
  `first_layers` lowest layers side by side (Whisper keeps most of the deepfake signal in its
  first layers: `layer_signal`).

`train_head` trains all but the linear head with class-weighted cross entropy, Adam (weight decay
1e-4), and early stopping on the validation EER; the linear head is fitted in one go as an
L2-regularised logistic regression (class-balanced, inverse strength `C`), the convex optimum,
with no epochs. `layer_signal` fits one logistic regression per layer
on pooled features and reports its validation EER, for the "which layers carry the signal" plot.
Scores follow the project: `score = logit_real - logit_fake`, higher means bona fide.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from dfa_lib.core.labels import FAKE, REAL, label_to_index
from dfa_lib.features.ssl_features import downsample_frames, pool_mean_std
from dfa_lib.models.aasist import AASISTBackend
from dfa_lib.models.networks import AttentiveStatsPool, MaxFeatureMap
from dfa_lib.scoring.metrics import equal_error_rate

HEADS = ("original", "weighted-asp", "weighted-pooled", "linear", "aasist", "lcnn")
# Heads that read every frame, `(frames, lengths)`, instead of pooled statistics.
FRAME_HEADS = ("weighted-asp", "aasist", "lcnn")
# AASIST's residual encoder channels in Tak et al. (2022)'s SSL + AASIST.
SSL_AASIST_CHANNELS = (32, 32, 64, 64, 64, 64)
# The lcnn head: each mixed frame projected to this many features (the image's height), the
# channels after its first max-feature-map, and the width of its max-feature-map embedding.
LCNN_PROJECTION = 64
LCNN_WIDTH = 16
LCNN_EMBEDDING = 64
# Momentum of the lcnn head's BatchNorm running statistics (torch's default is 0.1). Each batch
# pools thousands of positions per channel, so a short memory adds little noise, and the running
# statistics follow the weights within a few steps: with 0.1, a few dozen steps (a small
# training set) leave them near their initial values and the head's eval-mode output collapses
# to one score (seen on toy sets of 32 clips, batch 8).
_LCNN_BN_MOMENTUM = 0.3
_LINEAR_MAX_ITER = 3000  # L-BFGS iterations of the linear head's logistic regression
# Frame features up to this size are held as float32 while training, larger ones as float16.
_FLOAT32_FRAMES_BYTES = 2 * 2**30
STATS = ("mean", "std", "mean+std")


class HeadInputError(ValueError):
    """Features do not have the shape the chosen head needs."""


def select_layer_features(pooled: np.ndarray, layer: int = -1, stats: str = "mean") -> np.ndarray:
    """Return one layer's pooled statistics from `(n, layers, 2 * hidden)` features.

    `stats` is `"mean"` (hidden wide, as the original head), `"std"` or `"mean+std"`.
    """
    if pooled.ndim != 3 or pooled.shape[2] % 2:
        raise HeadInputError(f"expected pooled features (n, layers, 2*hidden), got {pooled.shape}")
    hidden = pooled.shape[2] // 2
    row = pooled[:, layer]
    if stats == "mean":
        return row[:, :hidden]
    if stats == "std":
        return row[:, hidden:]
    if stats == "mean+std":
        return row
    raise HeadInputError(f"stats must be one of {STATS}, got {stats!r}")


class _Standardize(nn.Module):
    """Fixed feature scaling learned from the training set, saved with the head."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _classifier(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2)
    )


class OriginalHead(nn.Module):
    """The original notebook's head: in_dim -> hidden (128), ReLU, dropout, -> 2 logits."""

    def __init__(self, in_dim: int, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.scale = _Standardize(torch.zeros(in_dim), torch.ones(in_dim))
        self.classifier = _classifier(in_dim, hidden, dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map `(batch, in_dim)` features to `(batch, 2)` logits."""
        return self.classifier(self.scale(features))


class LayerWeightedPooledHead(nn.Module):
    """Softmax-weighted sum of every layer's pooled mean/std, then the small classifier."""

    def __init__(self, num_layers: int, feature_dim: int, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.scale = _Standardize(
            torch.zeros(num_layers, feature_dim), torch.ones(num_layers, feature_dim)
        )
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.classifier = _classifier(feature_dim, hidden, dropout)

    def layer_weights(self) -> torch.Tensor:
        """Return the learned weight of each layer (sums to 1)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map `(batch, layers, 2 * hidden)` pooled features to `(batch, 2)` logits."""
        mixed = torch.einsum("l,bld->bd", self.layer_weights(), self.scale(pooled))
        return self.classifier(mixed)


class LinearProbeHead(nn.Module):
    """Logistic regression on the pooled mean/std of the lowest `first_layers` layers.

    Logits are `[0, log-odds of fake]`, so the project's score (`logit_real - logit_fake`) is
    minus the log-odds, as for the classical logistic regressions.
    """

    def __init__(self, num_layers: int, feature_dim: int, first_layers: int) -> None:
        super().__init__()
        if not 1 <= first_layers <= num_layers:
            raise HeadInputError(
                f"first_layers must be 1..{num_layers} for features with {num_layers} layers, "
                f"got {first_layers}"
            )
        self.first_layers = first_layers
        in_dim = first_layers * feature_dim
        self.scale = _Standardize(torch.zeros(in_dim), torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, 1)

    def flatten(self, pooled: torch.Tensor) -> torch.Tensor:
        """Return `(batch, first_layers * 2 * hidden)`: the used layers side by side."""
        return pooled[:, : self.first_layers].reshape(pooled.shape[0], -1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map `(batch, layers, 2 * hidden)` pooled features to `(batch, 2)` logits."""
        fake = self.linear(self.scale(self.flatten(pooled)))
        return torch.cat([torch.zeros_like(fake), fake], dim=1)


def normalize_frames(frames, chunk: int = 64) -> torch.Tensor:
    """Layer-normalise every frame of every layer (no learned scale), returned as float16.

    Layers differ in scale by orders of magnitude; normalising each frame before the layer mix
    lets the mix weights express importance rather than magnitude. The normalisation has no
    parameters, so it is applied once to the cached frames instead of in every epoch.
    """
    frames = torch.as_tensor(frames)
    out = torch.empty(frames.shape, dtype=torch.float16, device=frames.device)
    for start in range(0, frames.shape[0], chunk):
        block = frames[start : start + chunk].float()
        out[start : start + chunk] = nn.functional.layer_norm(block, block.shape[-1:]).half()
    return out


class LayerWeightedASPHead(nn.Module):
    """Softmax-weighted sum of layers' frames, attentive statistics pooling, small classifier.

    Its input is frames already passed through `normalize_frames`.
    """

    def __init__(
        self,
        num_layers: int,
        hidden_size: int,
        hidden: int = 128,
        dropout: float = 0.3,
        attention_dim: int = 128,
    ) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.pool = AttentiveStatsPool(hidden_size, attention_dim)
        self.classifier = _classifier(2 * hidden_size, hidden, dropout)

    def layer_weights(self) -> torch.Tensor:
        """Return the learned weight of each layer (sums to 1)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map normalised `(batch, layers, time, hidden)` frames and `(batch,)` lengths to logits."""
        mixed = torch.einsum("l,blth->bth", self.layer_weights(), frames.float())
        return self.classifier(self.pool(mixed, lengths))


class AASISTHead(nn.Module):
    """SSL + AASIST (Tak et al., 2022) on cached frames: layer mix, Linear to 128, AASIST.

    Its input is frames already passed through `normalize_frames`. The learned softmax sum of
    the encoder's layers replaces the paper's single last layer; each mixed frame is projected
    to `projection_dim` (128 in the paper), and the `(batch, 1, projection_dim, time)` map goes
    through AASIST's residual encoder and graph attention back-end in the paper's SSL
    configuration: encoder channels 32, 32, 64, 64, 64, 64 with no max-pooling over time
    inside the residual blocks (an encoder's frames are already 20-80 ms apart, not samples),
    graph dimensions 64 and 32, pool ratios 0.5. Frames at or beyond a clip's length are
    zeroed after the projection, so padding carries no signal. It needs at least 3 frames
    (the back-end starts with a 3x3 max-pool).
    """

    def __init__(self, num_layers: int, hidden_size: int, projection_dim: int = 128) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.projection = nn.Linear(hidden_size, projection_dim)
        self.backend = AASISTBackend(
            projection_dim,
            channels=SSL_AASIST_CHANNELS,
            pool_ratios=(0.5, 0.5, 0.5, 0.5),
            time_pools=0,
        )

    def layer_weights(self) -> torch.Tensor:
        """Return the learned weight of each layer (sums to 1)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map normalised `(batch, layers, time, hidden)` frames and `(batch,)` lengths to logits."""
        mixed = torch.einsum("l,blth->bth", self.layer_weights(), frames.float())
        projected = self.projection(mixed)
        steps = torch.arange(projected.shape[1], device=projected.device)
        valid = steps[None, :] < lengths.to(projected.device)[:, None]
        projected = projected * valid.unsqueeze(-1)
        return self.backend(projected.transpose(1, 2).unsqueeze(1))


class _MaskedMFMStage(nn.Module):
    """One LCNN stage on a `(batch, channels, features, time)` map that keeps padding at zero.

    A convolution with twice the output channels and a max-feature-map, then optionally a 2x2
    max-pool and a BatchNorm. Frames at or beyond a clip's length are set back to zero after
    every step (and to -inf just before the max-pool), so a clip's output does not depend on
    how much padding its batch adds: it sees zeros past its end, as a convolution's own
    padding would give it.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, pool: bool, batch_norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, kernel_size=kernel, padding=kernel // 2)
        self.mfm = MaxFeatureMap()
        self.pool = pool
        self.norm = (
            nn.BatchNorm2d(c_out, momentum=_LCNN_BN_MOMENTUM) if batch_norm else nn.Identity()
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the stage's output map and the clips' lengths on its (maybe halved) time axis."""
        padding = _padding_mask(lengths, x.shape[-1])
        x = self.mfm(self.conv(x)).masked_fill(padding, 0.0)
        if self.pool:
            x = nn.functional.max_pool2d(
                x.masked_fill(padding, float("-inf")), kernel_size=2, stride=2, ceil_mode=True
            )
            lengths = (lengths + 1) // 2
            padding = _padding_mask(lengths, x.shape[-1])
            x = x.masked_fill(padding, 0.0)
        return self.norm(x).masked_fill(padding, 0.0), lengths


def _padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Return a `(batch, 1, 1, steps)` mask, True at time steps at or beyond each length."""
    positions = torch.arange(steps, device=lengths.device)
    return (positions[None, :] >= lengths[:, None])[:, None, None, :]


class LCNNHead(nn.Module):
    """Encoder frames with a light CNN back-end (Kawa et al., 2023): layer mix, Linear, LCNN.

    Its input is frames already passed through `normalize_frames`. Kawa et al. (Interspeech
    2023, "Improved DeepFake Detection Using Whisper Features") fed the Whisper encoder's
    output to convolutional back-ends (MesoNet, LCNN) and found them to generalise better
    across datasets. Here the learned softmax sum of the encoder's layers is projected frame by
    frame to `projection_dim` features, and the `(batch, 1, projection_dim, time)` map goes
    through the nine-convolution light CNN of Wu et al. (2018) as Lavrentyeva et al. (2019)
    used it for spoofing: a 5x5 convolution, then pairs of 1x1 and 3x3 convolutions, each
    followed by a max-feature-map (the larger of two channel halves), four 2x2 max-pools and
    BatchNorms between them, `width` channels after the first max-feature-map. Instead of a
    fixed-size flatten, the map is pooled over time with the mean and standard deviation of
    each clip's valid steps, then dropout, a max-feature-map fully connected layer of
    `embedding` units, dropout and the 2-way output. Frames at or beyond a clip's length carry
    no signal (see `_MaskedMFMStage`).
    """

    def __init__(
        self,
        num_layers: int,
        hidden_size: int,
        projection_dim: int = LCNN_PROJECTION,
        width: int = LCNN_WIDTH,
        embedding: int = LCNN_EMBEDDING,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.projection = nn.Linear(hidden_size, projection_dim)
        w, w15 = width, (3 * width) // 2
        layout = [  # (in, out, kernel, 2x2 max-pool after it, BatchNorm after it)
            (1, w, 5, True, False),
            (w, w, 1, False, True),
            (w, w15, 3, True, True),
            (w15, w15, 1, False, True),
            (w15, 2 * w, 3, True, False),
            (2 * w, 2 * w, 1, False, True),
            (2 * w, w, 3, False, True),
            (w, w, 1, False, True),
            (w, w, 3, True, False),
        ]
        self.stages = nn.ModuleList(_MaskedMFMStage(*spec) for spec in layout)
        height = projection_dim
        for *_, pool, _ in layout:
            height = (height + 1) // 2 if pool else height
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * w * height, 2 * embedding),
            MaxFeatureMap(),
            nn.Dropout(dropout),
            nn.Linear(embedding, 2),
        )

    def layer_weights(self) -> torch.Tensor:
        """Return the learned weight of each layer (sums to 1)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Map normalised `(batch, layers, time, hidden)` frames and `(batch,)` lengths to logits."""
        mixed = torch.einsum("l,blth->bth", self.layer_weights(), frames.float())
        # An empty clip would divide by zero in the pooling; it is scored on one zero frame.
        lengths = lengths.to(mixed.device).clamp_min(1)
        x = self.projection(mixed).transpose(1, 2).unsqueeze(1)  # (batch, 1, features, time)
        x = x.masked_fill(_padding_mask(lengths, x.shape[-1]), 0.0)
        for stage in self.stages:
            x, lengths = stage(x, lengths)
        steps = x.flatten(1, 2)  # (batch, channels * features, time), zero past each length
        count = lengths.to(steps.dtype)[:, None]
        mean = steps.sum(dim=2) / count
        valid = ~_padding_mask(lengths, steps.shape[-1])[:, 0]
        spread = ((steps - mean[:, :, None]) * valid).pow(2).sum(dim=2) / count
        std = spread.clamp_min(1e-6).sqrt()
        return self.classifier(torch.cat([mean, std], dim=1))


@dataclass
class HeadConfig:
    """Hyperparameters of `train_head` (all recorded in the run's config)."""

    head: str = "original"  # original | weighted-asp | weighted-pooled | linear | aasist | lcnn
    layer: int = -1  # original head: which layer's pooled features
    stats: str = "mean"  # original head: mean (as the original notebook) | std | mean+std
    first_layers: int = 0  # linear head: how many of the lowest layers it reads (0 = all)
    C: float = 0.1  # linear head: inverse L2 strength of its logistic regression
    hidden: int = 128  # classifier width; the aasist head's per-frame projection width
    dropout: float = 0.3  # also the lcnn head's, before and after its embedding
    attention_dim: int = 128
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    layer_lr_scale: float = 20.0  # learning-rate multiplier of the layer weights
    patience: int = 10  # epochs without a better validation EER before stopping
    seed: int = 0
    device: str = "cpu"
    # Heads are small: on a shared CPU one thread avoids costly thread synchronisation (often
    # 10x faster than two); None keeps torch's setting. Restored after training.
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.stats not in STATS:
            raise ValueError(f"stats must be one of {STATS}, got {self.stats!r}")
        if self.first_layers < 0:
            raise ValueError(f"first_layers must be 0 (all) or positive, got {self.first_layers}")
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")


@dataclass
class HeadHistory:
    """Per-epoch training record and the epoch whose weights were kept."""

    epochs: list[dict] = field(
        default_factory=list
    )  # epoch, train_loss, val_loss, val_eer, seconds
    best_epoch: int = 0
    best_val_eer: float = float("nan")
    config: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Return the per-epoch record as a DataFrame."""
        return pd.DataFrame(self.epochs)

    @property
    def seconds_per_epoch(self) -> float:
        """Median wall time of one epoch (training and validation), seconds."""
        return float(np.median([e["seconds"] for e in self.epochs])) if self.epochs else 0.0


def _labels(labels) -> np.ndarray:
    return np.asarray([label_to_index(v) for v in labels], dtype=np.int64)


def _inputs(features, config: HeadConfig) -> tuple[torch.Tensor, ...]:
    """Turn cached features into the tensors the configured head takes."""
    if config.head in FRAME_HEADS:
        if not (isinstance(features, tuple) and len(features) == 2):
            raise HeadInputError(
                f"head {config.head!r} needs (frames, lengths) from "
                "extract_features(..., frames=True); pass (fs.frames, fs.frame_lengths)"
            )
        frames, lengths = features
        if frames.ndim != 4:
            raise HeadInputError(f"frames must be (n, layers, time, hidden), got {frames.shape}")
        normalized = normalize_frames(frames)
        if normalized.numel() * 4 <= _FLOAT32_FRAMES_BYTES:
            # Converting float16 batches every step costs more than the layer mix itself.
            normalized = normalized.float()
        return normalized, torch.as_tensor(lengths, dtype=torch.long)
    pooled = np.asarray(features, dtype=np.float32)
    if config.head == "original":
        if pooled.ndim == 3:
            pooled = select_layer_features(pooled, config.layer, config.stats)
        if pooled.ndim != 2:
            raise HeadInputError(f"head 'original' needs (n, dim) features, got {pooled.shape}")
    elif pooled.ndim != 3:
        raise HeadInputError(
            f"head {config.head!r} needs (n, layers, 2*hidden), got {pooled.shape}"
        )
    return (torch.from_numpy(np.ascontiguousarray(pooled)),)


def build_head(config: HeadConfig, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """Build the configured head with the sizes of `example` (from the training features)."""
    first = example[0]
    if config.head == "original":
        dims = {"in_dim": int(first.shape[1])}
    elif config.head in ("weighted-pooled", "linear"):
        dims = {"num_layers": int(first.shape[1]), "feature_dim": int(first.shape[2])}
    else:
        dims = {"num_layers": int(first.shape[1]), "hidden_size": int(first.shape[3])}
    return build_head_from_dims(config, dims)


def build_head_from_dims(config: HeadConfig, dims: dict[str, int]) -> nn.Module:
    """Build an untrained head from its input sizes (as recorded in `model.head_dims`)."""
    if config.head == "original":
        model = OriginalHead(dims["in_dim"], config.hidden, config.dropout)
    elif config.head == "weighted-pooled":
        model = LayerWeightedPooledHead(
            dims["num_layers"], dims["feature_dim"], config.hidden, config.dropout
        )
    elif config.head == "linear":
        model = LinearProbeHead(
            dims["num_layers"], dims["feature_dim"], config.first_layers or dims["num_layers"]
        )
    elif config.head == "aasist":
        model = AASISTHead(dims["num_layers"], dims["hidden_size"], config.hidden)
    elif config.head == "lcnn":
        model = LCNNHead(dims["num_layers"], dims["hidden_size"], dropout=config.dropout)
    else:
        model = LayerWeightedASPHead(
            dims["num_layers"],
            dims["hidden_size"],
            config.hidden,
            config.dropout,
            config.attention_dim,
        )
    model.head_config = config
    model.head_dims = dict(dims)
    return model


def save_head(model: nn.Module, folder: str | Path) -> Path:
    """Write a trained head as `head.safetensors` plus `head.json` (config and input sizes)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "head.safetensors"))
    record = {"config": asdict(model.head_config), "dims": model.head_dims}
    (folder / "head.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder


def load_head(folder: str | Path, device: str = "cpu") -> nn.Module:
    """Load a head written by `save_head`, in eval mode."""

    folder = Path(folder)
    record = json.loads((folder / "head.json").read_text())
    config = HeadConfig(**{**record["config"], "device": device})
    model = build_head_from_dims(config, record["dims"])
    model.load_state_dict(load_file(str(folder / "head.safetensors")))
    return model.to(device).eval()


def _fit_scaling(model: nn.Module, x: torch.Tensor) -> None:
    scale = getattr(model, "scale", None)
    if scale is not None:
        scale.mean.copy_(x.mean(dim=0))
        scale.std.copy_(x.std(dim=0).clamp_min(1e-6))


@torch.no_grad()
def _predict(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], batch_size: int = 256
) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, inputs[0].shape[0], batch_size):
        batch = [t[start : start + batch_size].to(device) for t in inputs]
        out.append(model(*batch).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), np.float32)


def predict_logits(model: nn.Module, features, config: HeadConfig | None = None) -> np.ndarray:
    """Return `(n, 2)` logits of a trained head on cached features (same forms as training)."""
    config = config or getattr(model, "head_config", HeadConfig())
    return _predict(model, _inputs(features, config))


def bonafide_scores(logits: np.ndarray) -> np.ndarray:
    """Return the project's score, logit_real - logit_fake (higher = bona fide)."""
    return logits[:, REAL] - logits[:, FAKE]


def _eer(scores: np.ndarray, labels: np.ndarray) -> float:
    return equal_error_rate(scores[labels == REAL], scores[labels == FAKE]).eer


def train_head(
    features,
    labels,
    val_features,
    val_labels,
    config: HeadConfig | None = None,
    progress: bool = False,
) -> tuple[nn.Module, HeadHistory]:
    """Train a head on cached features; keep the weights with the best validation EER.

    `features` is `(n, dim)` or `(n, layers, 2*hidden)` pooled features for the `original`
    head (a 3-D array is reduced with `config.layer` and `config.stats`), `(n, layers,
    2*hidden)` for `weighted-pooled`, or `(frames, lengths)` for the frame heads
    (`FRAME_HEADS`: `weighted-asp`, `aasist`, `lcnn`).
    Labels are "real"/"fake" or 0/1. Cross entropy is weighted by inverse class frequency
    (n / (2 n_c)), the optimiser is Adam with `config.weight_decay`, and training stops after
    `config.patience` epochs without a lower validation EER (ties go to the lower validation
    loss). The returned model is in eval mode, on `config.device`, with `model.head_config`.
    """
    config = config or HeadConfig()
    if config.head == "linear":
        # No epochs to speed up, and several linear fits may run at once on threads
        # (`probe_table`): torch's process-wide thread setting is left alone.
        return _train_head(features, labels, val_features, val_labels, config, progress)
    previous_threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        return _train_head(features, labels, val_features, val_labels, config, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _fit_linear(
    x, y, x_val, y_val, config: HeadConfig, loss_fn: nn.Module
) -> tuple[nn.Module, HeadHistory]:
    """Fit the linear head's logistic regression and copy it into the module.

    The solver runs on one BLAS thread: the result then does not depend on the machine's core
    count (several BLAS threads sum in another order, and L-BFGS stops on another iterate).
    """

    start = time.perf_counter()
    model = build_head(config, x)
    flat = model.flatten(x[0]).double()
    mean, std = flat.mean(dim=0), flat.std(dim=0).clamp_min(1e-6)
    with threadpool_limits(limits=1):
        regression = LogisticRegression(
            C=config.C,
            class_weight="balanced",
            max_iter=_LINEAR_MAX_ITER,
            random_state=config.seed,
        ).fit(((flat - mean) / std).numpy(), y.numpy())
    with torch.no_grad():
        model.scale.mean.copy_(mean.float())
        model.scale.std.copy_(std.float())
        # classes_ is [REAL, FAKE] = [0, 1]: the decision function is the log-odds of fake.
        model.linear.weight.copy_(torch.from_numpy(regression.coef_).float())
        model.linear.bias.copy_(torch.from_numpy(regression.intercept_).float())
    model = model.to(config.device).eval()
    device = loss_fn.weight.device
    train_logits = torch.from_numpy(_predict(model, x)).to(device)
    val_logits = torch.from_numpy(_predict(model, x_val)).to(device)
    val_eer = _eer(bonafide_scores(val_logits.cpu().numpy()), y_val.numpy())
    history = HeadHistory(config=asdict(config), best_epoch=1, best_val_eer=val_eer)
    history.epochs.append(
        {
            "epoch": 1,
            "train_loss": float(loss_fn(train_logits, y.to(device))),
            "val_loss": float(loss_fn(val_logits, y_val.to(device))),
            "val_eer": val_eer,
            "seconds": time.perf_counter() - start,
        }
    )
    return model, history


def _train_head(features, labels, val_features, val_labels, config: HeadConfig, progress: bool):
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x = _inputs(features, config)
    x_val = _inputs(val_features, config)
    y = torch.from_numpy(_labels(labels))
    y_val_np = _labels(val_labels)
    y_val = torch.from_numpy(y_val_np)
    if len(y) != x[0].shape[0] or len(y_val) != x_val[0].shape[0]:
        raise HeadInputError("features and labels have different lengths")
    counts = np.bincount(y.numpy(), minlength=2)
    if (counts == 0).any() or np.bincount(y_val_np, minlength=2).min() == 0:
        raise HeadInputError(
            f"both classes are needed in training and validation (training counts {counts.tolist()})"
        )
    device = torch.device(config.device)
    weights = torch.tensor(len(y) / (2.0 * counts), dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    if config.head == "linear":
        return _fit_linear(x, y, x_val, y_val, config, loss_fn)
    model = build_head(config, x).to(device)
    if config.head not in FRAME_HEADS:
        _fit_scaling(model, x[0].to(device))
    # The layer weights are a handful of softmax logits; at the classifier's learning rate they
    # barely move within a few hundred steps, so they get a larger one (and no weight decay).
    layer_params = [p for n, p in model.named_parameters() if n == "layer_logits"]
    other_params = [p for n, p in model.named_parameters() if n != "layer_logits"]
    groups = [{"params": other_params, "weight_decay": config.weight_decay}]
    if layer_params:
        groups.append(
            {
                "params": layer_params,
                "lr": config.learning_rate * config.layer_lr_scale,
                "weight_decay": 0.0,
            }
        )
    optimizer = torch.optim.Adam(groups, lr=config.learning_rate)

    history = HeadHistory(config=asdict(config))
    best_key = (float("inf"), float("inf"))
    best_eer = float("inf")
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        total = 0.0
        for begin in range(0, len(order), config.batch_size):
            idx = order[begin : begin + config.batch_size]
            batch = [t[idx].to(device) for t in x]
            loss = loss_fn(model(*batch), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        logits = torch.from_numpy(_predict(model, x_val))
        val_loss = float(loss_fn(logits.to(device), y_val.to(device)))
        val_eer = _eer(bonafide_scores(logits.numpy()), y_val_np)
        record = {
            "epoch": epoch,
            "train_loss": total / len(y),
            "val_loss": val_loss,
            "val_eer": val_eer,
            "seconds": time.perf_counter() - start,
        }
        history.epochs.append(record)
        if progress:
            print(
                f"epoch {epoch}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
            )
        # Patience counts epochs without a lower EER; among equal EERs the lower loss is kept.
        if val_eer < best_eer:
            best_eer, since_best = val_eer, 0
        else:
            since_best += 1
        if (val_eer, val_loss) < best_key:
            best_key = (val_eer, val_loss)
            best_state = copy.deepcopy(model.state_dict())
            history.best_epoch, history.best_val_eer = epoch, val_eer
        if since_best >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def layer_signal(
    pooled: np.ndarray,
    labels,
    val_pooled: np.ndarray,
    val_labels,
    stats: str = "mean+std",
    regularization: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Return, per layer, the validation EER of a logistic regression on that layer alone.

    Lower EER = more deepfake signal in that layer. Columns: `layer` (0 = input embeddings),
    `val_eer`, `val_auc`. Features are standardised on the training set.
    """

    y = _labels(labels)
    y_val = _labels(val_labels)
    rows = []
    for layer in range(pooled.shape[1]):
        train_x = select_layer_features(pooled, layer, stats)
        val_x = select_layer_features(val_pooled, layer, stats)
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=regularization, max_iter=2000, class_weight="balanced", random_state=seed
            ),
        )
        clf.fit(train_x, y)
        # decision_function is the log-odds of class 1 (fake); negate so higher = bona fide.
        scores = -clf.decision_function(val_x)
        rows.append(
            {
                "layer": layer,
                "val_eer": _eer(scores, y_val),
                "val_auc": float(roc_auc_score(y_val == REAL, scores)),
            }
        )
    return pd.DataFrame(rows)


class BackboneWithHead(nn.Module):
    """A detector on waveforms: frozen backbone, the same pooling as the cache, a trained head.

    `forward(waves)` takes `(batch, samples)` float32 at 16 kHz and returns `(batch, 2)`
    logits [real, fake], like `dfa_lib.models.networks`; `input_samples = None` (any length).
    """

    input_samples = None

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        config: HeadConfig,
        frame_stride: int = 4,
        frame_layers: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        self.frame_stride = frame_stride
        self.frame_layers = frame_layers

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """Return logits for a batch of waveforms."""
        out = self.backbone(waves)
        states = out.stacked().float()
        device = next(self.head.parameters()).device
        if self.config.head in FRAME_HEADS:
            layers = (
                list(self.frame_layers)
                if self.frame_layers is not None
                else list(range(states.shape[0]))
            )
            rows = [
                downsample_frames(states[layers, b], int(out.lengths[b]), self.frame_stride)
                for b in range(states.shape[1])
            ]
            longest = max(r.shape[1] for r in rows)
            frames = torch.zeros(len(rows), len(layers), longest, states.shape[-1])
            for b, r in enumerate(rows):
                # The cache stores float16; round the same way so scores match the cached ones.
                frames[b, :, : r.shape[1]] = r.half().float().cpu()
            lengths = torch.tensor([r.shape[1] for r in rows])
            return self.head(normalize_frames(frames).to(device), lengths.to(device))
        pooled = pool_mean_std(states, out.lengths).permute(1, 0, 2)  # (batch, layers, 2*hidden)
        if self.config.head == "original":
            hidden = pooled.shape[-1] // 2
            row = pooled[:, self.config.layer]
            pooled = {"mean": row[:, :hidden], "std": row[:, hidden:], "mean+std": row}[
                self.config.stats
            ]
        return self.head(pooled.to(device))
