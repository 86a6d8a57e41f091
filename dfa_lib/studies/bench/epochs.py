"""Seconds per training epoch of the spectral LCNNs on one device, on synthetic clips.

Needs no corpus, so it runs on any machine that has the package (a GPU box with nothing
else on it included)::

    python -m dfa_lib.studies.bench.epochs --device cuda
    python -m dfa_lib.studies.bench.epochs --device cpu --out reports/epochs-cpu.json

The settings are those of ``make ablation STUDY=lcnn-phase``: 1,000 clips per class, 1.5 s
crops, batch 32, front ends cut at 4 kHz; 389 validation clips per class scored after every
epoch (part of the epoch's time, as in the engine). Clips are 2-4 s tones and noise: the cost
of an epoch depends on the clips' lengths, not on what they contain. The first epoch carries
the warm-up; the record keeps every epoch and the median of the later ones.

``--bfloat16`` times each model a second time with the engine's ``cpu_bfloat16`` (bfloat16
training steps on a CPU that has them natively; see :class:`dfa_lib.training.engine.TrainConfig`), as
``<model>+bfloat16``, with the speed-up over float32; each entry records the precision its
steps actually ran in (float32 on a CPU without native bfloat16).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dfa_lib.core.provenance import write_json
from dfa_lib.data.clips import ClipStore
from dfa_lib.training.engine import TrainConfig, choose_device, train, training_precision

MODELS: dict[str, dict[str, Any]] = {
    "lcnn-mel-4k": {"frontend": "mel", "frontend_settings": {"f_max": 4000.0}},
    "lcnn-ifd-4k-unnormalised": {
        "frontend": "ifd",
        "normalize": False,
        "frontend_settings": {"f_max": 4000.0},
    },
}


def synthetic_split(n_per_class: int, seed: int, tag: str, sample_rate: int = 16000):
    """Return (rows, ClipStore): ``n_per_class`` noisy tones (real) and noise bursts (fake)."""

    rng = np.random.default_rng(seed)
    waves, labels = [], []
    for _ in range(n_per_class):
        t = np.arange(int(rng.uniform(2.0, 4.0) * sample_rate)) / sample_rate
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)
        waves.append((tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
        n = int(rng.uniform(2.0, 4.0) * sample_rate)
        waves.append((0.3 * rng.standard_normal(n)).astype(np.float32))
        labels += ["real", "fake"]
    rows = pd.DataFrame({"path": [f"{tag}/{i}.wav" for i in range(len(waves))], "label": labels})
    return rows, ClipStore.from_waves(waves, sample_rate)


def measure_epochs(
    device: str = "auto",
    epochs: int = 3,
    n_train: int = 1000,
    n_val: int = 389,
    models: tuple[str, ...] = tuple(MODELS),
    seed: int = 0,
    bfloat16: bool = False,
) -> dict[str, Any]:
    """Train each model for ``epochs`` epochs; return seconds per epoch and their summary.

    ``bfloat16`` also trains each with ``cpu_bfloat16`` (entry ``<model>+bfloat16``).
    """

    if epochs < 2:
        raise ValueError("epochs must be at least 2: the first one carries the warm-up")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    (tr, trs), (va, vas) = (
        synthetic_split(n_train, seed, "train"),
        synthetic_split(n_val, seed + 1, "val"),
    )
    resolved = choose_device(device)
    record: dict[str, Any] = {
        "device": str(resolved),
        "device_name": _device_name(resolved),
        "host": platform.node(),
        "settings": {"epochs": epochs, "n_train": n_train, "n_val": n_val, "seed": seed},
        "models": {},
    }
    runs = [(name, False) for name in models]
    if bfloat16:
        runs = [(name, half) for name in models for half in (False, True)]
    with tempfile.TemporaryDirectory() as out:
        for name, half in runs:
            config = TrainConfig(
                name=name,
                model="lcnn",
                model_kwargs=MODELS[name],
                clip_seconds=1.5,
                epochs=epochs,
                batch_size=32,
                learning_rate=1e-3,
                device=str(resolved),
                patience=epochs,
                seed=seed,
                cpu_bfloat16=half,
            )
            [res] = train(config, tr, va, trs, vas, out, progress=False, reuse=False)
            seconds = [float(s) for s in res.history["seconds"]]
            entry = {
                "seconds": seconds,
                "median_after_first": statistics.median(seconds[1:]),
                "precision": training_precision(config, resolved),
            }
            if half:
                entry["speedup"] = (
                    record["models"][name]["median_after_first"] / entry["median_after_first"]
                )
            record["models"][f"{name}+bfloat16" if half else name] = entry
    return record


def _device_name(device) -> str:

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.studies.bench.epochs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1000, help="training clips per class")
    parser.add_argument("--n-val", type=int, default=389, help="validation clips per class")
    parser.add_argument("--out", type=Path, help="write the record as JSON here")
    parser.add_argument(
        "--bfloat16", action="store_true", help="also time each model with cpu_bfloat16"
    )
    args = parser.parse_args(argv)
    record = measure_epochs(
        args.device, args.epochs, args.n_train, args.n_val, bfloat16=args.bfloat16
    )
    for name, row in record["models"].items():
        times = ", ".join(f"{s:.2f}" for s in row["seconds"])
        faster = f", {row['speedup']:.2f}x float32" if "speedup" in row else ""
        print(
            f"{name} on {record['device_name']} ({row['precision']}): {times} s per epoch{faster}"
        )
    if args.out:
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
