"""Head-on-cache benchmark: a head epoch on cached features against re-running the backbone.

The original notebook ran the pretrained encoder on every clip in every epoch. Here the
encoder runs once per clip (`dfa_lib.features.ssl_features.extract_features`) and heads train on the
cache. This benchmark measures, on the same clips and each as the median of `--repeats`
epochs after a warm-up:

- `backbone_epoch_s`: one epoch the original way: encoder forward (frozen, no gradients) on
  every batch, mean pooling of the last layer, head forward, backward and step, then the
  validation pass (encoder and head again) over the same clips;
- `head_epoch_s`: one epoch of `dfa_lib.models.heads.train_head` on the cached pooled features
  (training pass plus its validation pass over the same clips), for each head in `--heads`;
- `extraction`: the one-off cost of the cache (clips per second), and the encoder's latency
  on a single 1 s clip (ms, median).

The clips are synthetic (harmonic tones with vibrato and noise, `--clip-seconds` long): speed
does not depend on what the audio says. Results are printed and written as JSON. Example::

    python -m dfa_lib.studies.bench.heads --backbone whisper-base-offline --clips 64 \\
        --output reports/bench_heads.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from dfa_lib.features.backbones import load_backbone
from dfa_lib.features.ssl_features import FeaturePreprocessing, extract_features
from dfa_lib.models.heads import HeadConfig, OriginalHead, train_head

SAMPLE_RATE = 16000


@dataclass
class HeadBenchConfig:
    """What to benchmark; defaults give the figure quoted in the reports."""

    backbone: str = "whisper-base-offline"
    clips: int = 64  # clips per epoch
    clip_seconds: float = 4.0
    batch_size: int = 8
    repeats: int = 3  # epochs timed per method (median reported), after one warm-up
    heads: tuple[str, ...] = ("original", "weighted-asp")
    seed: int = 0
    cache_dir: str | None = None  # feature cache; a fresh temporary folder when None
    threads: int | None = None  # torch threads for the encoder (None: torch's default)
    extra: dict = field(default_factory=dict)


def synthetic_clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Return `n` voiced-like clips: a few harmonics with vibrato, an envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    clips = []
    for _ in range(n):
        f0 = rng.uniform(90, 250) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t) ** 2
        wave = 0.2 * envelope * voiced + 0.01 * rng.standard_normal(t.size)
        clips.append((wave / np.abs(wave).max() * 0.8).astype(np.float32))
    return clips


def _backbone_epoch(backbone, head, optimizer, loss_fn, clips, labels, batch_size) -> float:
    """Time one epoch the original way: encoder on every batch, a head step, then validation.

    Validation runs over the same clips, as the head epochs on the cache do, so both sides of
    the comparison do a training pass and a validation pass.
    """
    start = time.perf_counter()
    head.train()
    for begin in range(0, len(clips), batch_size):
        with torch.inference_mode():
            last = backbone.hidden_states(clips[begin : begin + batch_size])[-1]
        pooled = last.mean(dim=1).clone()  # leave inference mode for autograd
        loss = loss_fn(head(pooled), labels[begin : begin + batch_size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.inference_mode():
        for begin in range(0, len(clips), batch_size):
            last = backbone.hidden_states(clips[begin : begin + batch_size])[-1]
            head(last.mean(dim=1))
    return time.perf_counter() - start


def run_head_benchmark(config: HeadBenchConfig, progress: bool = True) -> dict:
    """Run the benchmark and return its results as a JSON-ready dict."""

    if config.repeats < 3:
        raise ValueError("repeats must be at least 3 (medians of fewer runs are not reported)")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    backbone = load_backbone(config.backbone)
    clips = synthetic_clips(config.clips, config.clip_seconds, config.seed)
    labels_text = np.array(["real", "fake"] * (config.clips // 2 + 1))[: config.clips]
    labels = torch.tensor([0 if v == "real" else 1 for v in labels_text])

    # Encoder latency on one 1 s clip (the FACTS figure), median of 10 after a warm-up.
    one_second = synthetic_clips(1, 1.0, config.seed + 1)
    latencies = []
    with torch.inference_mode():
        for i in range(11):
            start = time.perf_counter()
            backbone.hidden_states(one_second)
            if i:
                latencies.append(time.perf_counter() - start)

    # The original way: the encoder runs in every epoch.
    head = OriginalHead(backbone.hidden_size)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs = [
        _backbone_epoch(backbone, head, optimizer, loss_fn, clips, labels, config.batch_size)
        for _ in range(config.repeats + 1)
    ][1:]
    backbone_epoch_s = statistics.median(epochs)
    if progress:
        print(f"backbone every epoch: {backbone_epoch_s:.3f} s/epoch ({config.clips} clips)")

    # The cached way: extract once, then epochs on the cache.
    preprocessing = FeaturePreprocessing(clip_seconds=config.clip_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        cache = config.cache_dir or tmp
        start = time.perf_counter()
        features = extract_features(
            backbone,
            clips,
            cache,
            preprocessing,
            batch_size=config.batch_size,
            frames="weighted-asp" in config.heads,
            progress=progress,
        )
        extraction_s = time.perf_counter() - start
    heads = {}
    for name in config.heads:
        inputs = (
            (features.frames, features.frame_lengths) if name == "weighted-asp" else features.pooled
        )
        head_config = HeadConfig(
            head=name, epochs=config.repeats + 1, patience=config.repeats + 1, seed=config.seed
        )
        _, history = train_head(inputs, labels_text, inputs, labels_text, head_config)
        seconds = [e["seconds"] for e in history.epochs][1:]
        head_epoch_s = statistics.median(seconds)
        heads[name] = {
            "head_epoch_s": head_epoch_s,
            "epoch_runs_s": seconds,
            "speedup_vs_backbone_epoch": backbone_epoch_s / head_epoch_s,
        }
        if progress:
            print(
                f"head {name!r} on cache: {head_epoch_s * 1000:.2f} ms/epoch, "
                f"{backbone_epoch_s / head_epoch_s:.0f}x faster than re-running the backbone"
            )
    result = {
        "benchmark": "heads",
        "config": asdict(config),
        "backbone": backbone.describe(),
        "device": str(backbone.device),
        "torch_threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "encoder_ms_per_1s_clip": 1000 * statistics.median(latencies),
        "extraction": {
            "seconds": extraction_s,
            "clips": config.clips,
            "clips_per_second": config.clips / extraction_s,
            "clip_seconds": config.clip_seconds,
            "x_real_time": config.clips * config.clip_seconds / extraction_s,
        },
        "backbone_epoch_s": backbone_epoch_s,
        "backbone_epoch_runs_s": epochs,
        "heads": heads,
        "min_speedup": min(h["speedup_vs_backbone_epoch"] for h in heads.values()),
        "target_speedup": 50.0,
    }
    result["meets_target"] = result["min_speedup"] >= result["target_speedup"]
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run, print a summary, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = HeadBenchConfig()
    parser.add_argument("--backbone", default=defaults.backbone)
    parser.add_argument("--clips", type=int, default=defaults.clips)
    parser.add_argument("--clip-seconds", type=float, default=defaults.clip_seconds)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--heads", nargs="+", default=list(defaults.heads))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--output", type=Path, default=Path("reports/bench_heads.json"))
    args = parser.parse_args(argv)
    config = HeadBenchConfig(
        backbone=args.backbone,
        clips=args.clips,
        clip_seconds=args.clip_seconds,
        batch_size=args.batch_size,
        repeats=args.repeats,
        heads=tuple(args.heads),
        threads=args.threads,
        cache_dir=args.cache_dir,
    )
    result = run_head_benchmark(config)
    print(
        f"encoder {result['encoder_ms_per_1s_clip']:.1f} ms per 1 s clip; extraction "
        f"{result['extraction']['clips_per_second']:.2f} clips/s "
        f"({config.clip_seconds:g} s clips); minimum speedup {result['min_speedup']:.0f}x "
        f"(target {result['target_speedup']:.0f}x: {'met' if result['meets_target'] else 'NOT met'})"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
