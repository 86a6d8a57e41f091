"""The degradation sweep: every detector on the test split under each named degradation.

Degraded audio is cached on disk keyed by clip content and degradation
(:func:`dfa_lib.degrade.degrade_cached`), so a second sweep only scores. Clips are degraded in
parallel over the cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dfa_lib.degrade import DEGRADATIONS, degrade_cached
from dfa_lib.experiment import ProtocolData
from dfa_lib.metrics import equal_error_rate, roc_auc

# Every named degradation, in the registry's order (clean first).
SWEEP: tuple[str, ...] = tuple(DEGRADATIONS)


def _degrade_job(args: tuple[str, np.ndarray, int, str, str]) -> np.ndarray:
    name, wave, sr, key, cache_dir = args
    return degrade_cached(name, wave, sr, key=key, cache_dir=Path(cache_dir))


def degraded_test_set(
    data: ProtocolData,
    name: str,
    cache_dir: str | os.PathLike,
    workers: int | None = None,
    progress: bool = True,
    max_per_class: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Return the decodable test rows and their waveforms under degradation ``name``.

    ``max_per_class`` takes a seeded stratified subset of the test clips (the same subset for
    every degradation), to keep the sweep short.
    """
    if name not in DEGRADATIONS:
        raise KeyError(f"unknown degradation {name!r}; choose from {sorted(DEGRADATIONS)}")
    frame, store = data.frames["testing"], data.stores["testing"]
    rows = [i for i in range(len(frame)) if store.ok(i)]
    if max_per_class:
        from dfa_lib.protocols import make_subset

        keep = make_subset(frame.iloc[rows], max_per_class=max_per_class, seed=seed).index
        rows = [i for i in rows if frame.index[i] in set(keep)]
    keys = [
        str(frame["sha256"].iloc[i]) if "sha256" in frame.columns else str(frame["path"].iloc[i])
        for i in rows
    ]
    jobs = [
        (name, store[i], store.sample_rate, k, str(cache_dir))
        for i, k in zip(rows, keys, strict=True)
    ]
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(jobs), desc=f"degrading: {name}", disable=not progress, leave=False)
    if name == "clean":
        waves = [j[1] for j in jobs]
    elif workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            waves = list(tqdm(pool.map(_degrade_job, jobs, chunksize=16), **bar))
    else:
        waves = [_degrade_job(j) for j in tqdm(jobs, **bar)]
    return frame.iloc[rows].reset_index(drop=True), waves


def degradation_sweep(
    detectors: dict,
    data: ProtocolData,
    degradations: tuple[str, ...] = SWEEP,
    cache_dir: str | os.PathLike = "cache/degraded",
    progress: bool = True,
    max_per_class: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Score every detector under every degradation; one row per (detector, degradation).

    Columns: ``detector``, ``degradation``, ``family``, ``eer`` (fraction), ``auc``, ``n``.
    Each detector keeps its own scoring rule; the EER needs no threshold.
    """
    rows = []
    for name in degradations:
        frame, waves = degraded_test_set(
            data, name, cache_dir, progress=progress, max_per_class=max_per_class, seed=seed
        )
        labels = frame["label"].to_numpy()
        for det_name, detector in detectors.items():
            scores = np.asarray(detector.score_waves(waves), dtype=np.float64)
            bona, spoof = scores[labels == "real"], scores[labels == "fake"]
            rows.append(
                {
                    "detector": det_name,
                    "degradation": name,
                    "family": DEGRADATIONS[name].family,
                    "eer": equal_error_rate(bona, spoof).eer,
                    "auc": roc_auc(bona, spoof),
                    "n": len(scores),
                }
            )
    return pd.DataFrame(rows)


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per detector: clean EER, mean EER over the degraded conditions and their ratio."""
    clean = sweep[sweep["degradation"] == "clean"].set_index("detector")["eer"]
    degraded = sweep[sweep["degradation"] != "clean"].groupby("detector")["eer"].mean()
    worst = sweep[sweep["degradation"] != "clean"].groupby("detector")["eer"].max()
    out = pd.DataFrame({"clean_eer": clean, "mean_degraded_eer": degraded, "worst_eer": worst})
    out["ratio"] = out["mean_degraded_eer"] / out["clean_eer"].where(out["clean_eer"] > 0)
    return out
