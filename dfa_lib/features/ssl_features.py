"""Frozen pretrained-encoder features: every layer's hidden states, computed once and cached.

A head trained on a frozen encoder needs the encoder's output for each clip, and that output
never changes between epochs. `extract_features` runs the backbone once per clip and stores,
per clip, one small file:

- `pooled`: mean and standard deviation over time of every layer's hidden states,
  float32 `(num_layers + 1, 2 * hidden)` (wav2vec2-base: 80 KB per clip; Whisper base: 28 KB);
- optionally `frames`, for attentive statistics pooling over time: every layer's frames
  averaged over `frame_stride` consecutive frames and stored as float16,
  `(num_layers + 1, ceil(frames / frame_stride), hidden)`. With the default stride 4 (80 ms)
  a 4 s clip takes 0.36 MB for Whisper base and 1 MB for wav2vec2-base, so they are only
  written when asked for (`frames=True`); `frame_layers` keeps a subset of layers.

Cache layout: `<cache_dir>/<backbone identity>/<preprocessing key>/{pooled,frames}/<ab>/<clip
hash>.npy`. The backbone identity is its name plus a hash of its weights; the preprocessing
key hashes sample rate, clip length, crop, padding, normalisation and the frame settings;
the clip hash is the SHA-256 of the waveform's samples. Changing any of them reads or writes
other files, so stale features are never returned. Clips are batched only with clips of the
same length (so no padding enters the encoder) and a clip's features do not depend on which
other clips share its batch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dfa_lib.core.atomic import save_array
from dfa_lib.data.audio import pad_or_crop, peak_normalize, rms_normalize

FEATURE_CACHE_VERSION = 1
CROP_MODES = ("center", "start")
NORMALIZATIONS = ("none", "peak", "rms")


class FeatureCacheError(ValueError):
    """The feature extraction settings cannot be cached, or a cached file is unreadable."""


@dataclass(frozen=True)
class FeaturePreprocessing:
    """How each waveform is prepared before the backbone; part of the cache key.

    `clip_seconds=None` keeps each clip's own length. Random crops are not allowed: a cached
    feature must be a function of the clip.
    """

    sample_rate: int = 16000
    clip_seconds: float | None = 4.0
    crop: str = "center"  # center | start
    pad_mode: str = "wrap"  # constant | wrap
    normalization: str = "none"  # none | peak | rms

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise FeatureCacheError(
                f"crop {self.crop!r} cannot be cached (features must be a function of the clip); "
                f"use one of {CROP_MODES}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise FeatureCacheError(
                f"normalization {self.normalization!r} is not one of {NORMALIZATIONS}"
            )
        if self.clip_seconds is not None and self.clip_seconds <= 0:
            raise FeatureCacheError(f"clip_seconds must be positive, got {self.clip_seconds}")

    def apply(self, wave: np.ndarray) -> np.ndarray:
        """Return the waveform as the backbone sees it (float32, cropped or padded, scaled)."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if self.clip_seconds is not None:
            length = int(round(self.clip_seconds * self.sample_rate))
            wave = pad_or_crop(wave, length, mode=self.crop, pad_mode=self.pad_mode)
        if self.normalization == "peak":
            wave = peak_normalize(wave)
        elif self.normalization == "rms":
            wave = rms_normalize(wave)
        return wave


@dataclass
class FeatureSet:
    """Cached features of a list of clips, in the order given.

    `pooled[i, layer]` is `[mean, std]` of that layer's frames (layer 0 = the encoder's input
    embeddings). Rows whose clip failed are zeros with `valid[i] = False` and a message in
    `errors[i]`. `frames`, when requested, is `(n_clips, n_layers, max_frames, hidden)` float16
    zero-padded beyond `frame_lengths[i]`.
    """

    pooled: np.ndarray
    valid: np.ndarray
    errors: dict[int, str]
    backbone: dict
    preprocessing: dict
    frames: np.ndarray | None = None
    frame_lengths: np.ndarray | None = None
    frame_layers: tuple[int, ...] | None = None
    stats: dict = field(default_factory=dict)  # cached/computed/failed counts, compute_seconds

    @property
    def num_layers(self) -> int:
        """Number of hidden-state layers stored (encoder layers + 1)."""
        return int(self.pooled.shape[1])


def clip_sha256(wave: np.ndarray, sample_rate: int) -> str:
    """Return the SHA-256 of a waveform's float32 samples and sample rate."""
    digest = hashlib.sha256(f"{sample_rate}|".encode())
    digest.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    return digest.hexdigest()


def preprocessing_key(
    preprocessing: FeaturePreprocessing,
    frames: bool,
    frame_stride: int,
    frame_layers: Sequence[int] | None,
) -> str:
    """Return the cache folder name for these preprocessing and frame settings."""
    settings = {
        "version": FEATURE_CACHE_VERSION,
        **asdict(preprocessing),
        "frame_stride": frame_stride if frames else None,
        "frame_layers": list(frame_layers) if frames and frame_layers is not None else None,
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe_name(identity: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in identity)


def pool_mean_std(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Return per-layer mean and std over valid frames: (layers, batch, 2 * hidden).

    `states` is (layers, batch, frames, hidden); frames at or beyond `lengths[b]` are ignored.
    """
    frames = states.shape[2]
    positions = torch.arange(frames, device=states.device)
    mask = (positions[None, :] < lengths.to(states.device)[:, None]).to(states.dtype)
    mask = mask[None, :, :, None]
    count = mask.sum(dim=2).clamp_min(1.0)
    mean = (states * mask).sum(dim=2) / count
    var = (((states - mean[:, :, None, :]) ** 2) * mask).sum(dim=2) / count
    return torch.cat([mean, var.clamp_min(0.0).sqrt()], dim=-1)


def downsample_frames(states: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """Average (layers, frames, hidden) over windows of `stride` frames; keep valid frames only."""
    valid = states[:, :length]
    if stride == 1:
        return valid
    pooled = torch.nn.functional.avg_pool1d(
        valid.transpose(1, 2), kernel_size=stride, stride=stride, ceil_mode=True
    )
    return pooled.transpose(1, 2)


def extract_features(
    backbone,
    clips: Sequence[np.ndarray | None],
    cache_dir: str | Path,
    preprocessing: FeaturePreprocessing | None = None,
    batch_size: int = 8,
    frames: bool = False,
    frame_stride: int = 4,
    frame_layers: Sequence[int] | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Return pooled (and optionally frame-level) features of every clip, computing only misses.

    `backbone` is a `dfa_lib.features.backbones.Backbone`; `clips` is any indexable sequence of 1-D
    float32 waveforms at `preprocessing.sample_rate` (a `dfa_lib.data.clips.ClipStore` works; `None`
    or empty entries become errors). Bad clips do not stop the run: they are listed in
    `FeatureSet.errors` and masked out by `FeatureSet.valid`.
    """
    preprocessing = preprocessing or FeaturePreprocessing()
    if preprocessing.sample_rate != backbone.sample_rate:
        raise FeatureCacheError(
            f"preprocessing sample rate {preprocessing.sample_rate} differs from backbone "
            f"{backbone.name}'s {backbone.sample_rate}; resample the clips first"
        )
    if frame_stride < 1:
        raise FeatureCacheError(f"frame_stride must be >= 1, got {frame_stride}")
    n_layers = backbone.num_layers + 1
    layers = tuple(range(n_layers)) if frame_layers is None else tuple(int(i) for i in frame_layers)
    if frames and any(not 0 <= i < n_layers for i in layers):
        raise FeatureCacheError(f"frame_layers {layers} outside 0..{n_layers - 1}")
    key = preprocessing_key(preprocessing, frames, frame_stride, frame_layers)
    root = Path(cache_dir) / _safe_name(backbone.identity) / key
    root.mkdir(parents=True, exist_ok=True)
    settings_path = root / "settings.json"
    if not settings_path.is_file():
        settings = {
            "backbone": backbone.describe(),
            "preprocessing": asdict(preprocessing),
            "frames": frames,
            "frame_stride": frame_stride,
            "frame_layers": list(layers) if frames else None,
            "version": FEATURE_CACHE_VERSION,
        }
        settings_path.write_text(json.dumps(settings, indent=2) + "\n")

    n = len(clips)
    width = 2 * backbone.hidden_size
    pooled = np.zeros((n, n_layers, width), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    frame_rows: dict[int, np.ndarray] = {}
    hashes: dict[int, str] = {}
    pending: dict[int, list[int]] = {}  # length in samples -> rows to compute
    prepared: dict[int, np.ndarray] = {}

    def paths(digest: str) -> tuple[Path, Path]:
        return (
            root / "pooled" / digest[:2] / f"{digest}.npy",
            root / "frames" / digest[:2] / f"{digest}.npy",
        )

    cached = 0
    for i in range(n):
        clip = clips[i]
        if clip is None or np.asarray(clip).size == 0:
            # A ClipStore keeps the loader's message for clips it could not decode.
            errors[i] = getattr(clips, "errors", {}).get(i, "empty or unreadable clip")
            continue
        wave = np.asarray(clip, dtype=np.float32).reshape(-1)
        if not np.isfinite(wave).all():
            errors[i] = "clip contains NaN or infinite samples"
            continue
        digest = clip_sha256(wave, preprocessing.sample_rate)
        hashes[i] = digest
        pooled_path, frames_path = paths(digest)
        if pooled_path.is_file() and (not frames or frames_path.is_file()):
            try:
                pooled[i] = np.load(pooled_path)
                if frames:
                    frame_rows[i] = np.load(frames_path)
                valid[i] = True
                cached += 1
                continue
            except (OSError, ValueError):
                pass  # unreadable cache file: recompute it below
        ready = preprocessing.apply(wave)
        if ready.size < backbone.min_samples:
            errors[i] = f"clip has {ready.size} samples, fewer than {backbone.min_samples}"
            continue
        prepared[i] = ready
        pending.setdefault(ready.size, []).append(i)

    batches = [
        rows[start : start + batch_size]
        for _, rows in sorted(pending.items())
        for start in range(0, len(rows), batch_size)
    ]
    bar = tqdm(
        total=sum(len(b) for b in batches),
        desc=f"features {backbone.name}",
        unit="clip",
        disable=not progress or not batches,
        leave=False,
    )
    was_training = backbone.training
    backbone.eval()
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for rows in batches:
                try:
                    outputs = [(rows, backbone([prepared[i] for i in rows]))]
                except (RuntimeError, ValueError):
                    # Isolate the clip that breaks the batch instead of losing the batch.
                    outputs = []
                    for i in rows:
                        try:
                            outputs.append(([i], backbone([prepared[i]])))
                        except (RuntimeError, ValueError) as error:
                            errors[i] = f"backbone failed: {error}"
                for batch_rows, out in outputs:
                    states = out.stacked().float().cpu()
                    stats = pool_mean_std(states, out.lengths).numpy()
                    for b, i in enumerate(batch_rows):
                        pooled_path, frames_path = paths(hashes[i])
                        pooled[i] = stats[:, b]
                        save_array(pooled_path, pooled[i])
                        if frames:
                            kept = states[list(layers), b]
                            small = downsample_frames(kept, int(out.lengths[b]), frame_stride)
                            frame_rows[i] = small.numpy().astype(np.float16)
                            save_array(frames_path, frame_rows[i])
                        valid[i] = True
                bar.update(len(rows))
    finally:
        bar.close()
        backbone.train(was_training)
    compute_seconds = time.perf_counter() - started

    result = FeatureSet(
        pooled=pooled,
        valid=valid,
        errors=errors,
        backbone=backbone.describe(),
        preprocessing=asdict(preprocessing),
        stats={
            "cached": cached,
            "computed": int(valid.sum()) - cached,
            "failed": len(errors),
            "compute_seconds": compute_seconds,  # backbone time for the computed clips
        },
    )
    if frames:
        max_len = max((r.shape[1] for r in frame_rows.values()), default=0)
        stack = np.zeros((n, len(layers), max_len, backbone.hidden_size), dtype=np.float16)
        lengths = np.zeros(n, dtype=np.int64)
        for i, row in frame_rows.items():
            stack[i, :, : row.shape[1]] = row
            lengths[i] = row.shape[1]
        result.frames, result.frame_lengths, result.frame_layers = stack, lengths, layers
    return result
