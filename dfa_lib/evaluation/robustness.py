"""The degradation sweep: every detector on the test split under each named degradation.

Degraded audio is cached on disk keyed by clip content and degradation
(:func:`dfa_lib.data.degrade.degrade_cached`), and so are a detector's scores, keyed by its run
folder and weights, the degradation and the clips: a second sweep with nothing changed
neither degrades nor scores. Clips are degraded in parallel over the cores. Detectors that
are heads on the same frozen encoder share one run of it per batch (:func:`share_encoders`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dfa_lib.core.atomic import save_array
from dfa_lib.data.degrade import DEGRADATIONS, degrade_cached
from dfa_lib.data.manifest import clip_ids, split_checksum
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.data.protocols import make_subset
from dfa_lib.evaluation.results import weights_mtime
from dfa_lib.models.heads import BackboneWithHead
from dfa_lib.scoring.calibration import Calibration
from dfa_lib.scoring.metrics import cllr, equal_error_rate, roc_auc

# Every named degradation, in the registry's order (clean first).
SWEEP: tuple[str, ...] = tuple(DEGRADATIONS)


class EncoderMemo(torch.nn.Module):
    """A frozen encoder that answers a batch it has already seen from memory.

    Called like the encoder (a ``(batch, samples)`` tensor in, its output out). Outputs are
    kept until :meth:`clear`, keyed by the batch's shape and bytes, so several heads scoring
    the same clips, batched the same way, run the encoder once.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.identity = getattr(encoder, "identity", None)
        self._outputs: dict[tuple, object] = {}

    def forward(self, waves):
        """Return the encoder's output for ``waves``, from memory when seen before."""
        data = waves.detach().cpu().contiguous().numpy() if torch.is_tensor(waves) else None
        if data is None:  # a list of clips: not a batch the detectors send; run it
            return self.encoder(waves)
        key = (data.shape, str(data.dtype), hashlib.blake2b(data.tobytes()).hexdigest())
        if key not in self._outputs:
            self._outputs[key] = self.encoder(waves)
        return self._outputs[key]

    def clear(self) -> None:
        """Forget every stored output (call between sets of clips to bound memory)."""
        self._outputs.clear()


def share_encoders(detectors: dict) -> list[EncoderMemo]:
    """Let detectors whose models are heads on the same frozen encoder run it once per batch.

    Each such model's encoder is replaced by one :class:`EncoderMemo` per encoder identity;
    the detectors' scores do not change. Returns the memos, to :meth:`~EncoderMemo.clear`.
    """

    memos: dict[str, EncoderMemo] = {}
    for detector in detectors.values():
        model = getattr(detector, "model", None)
        if not isinstance(model, BackboneWithHead):
            continue
        identity = getattr(model.backbone, "identity", None)
        if identity is None:
            continue
        if identity not in memos:
            encoder = model.backbone
            memos[identity] = encoder if isinstance(encoder, EncoderMemo) else EncoderMemo(encoder)
        model.backbone = memos[identity]
    return list(memos.values())


def _degrade_job(args: tuple[str, np.ndarray, int, str, str]) -> np.ndarray:
    name, wave, sr, key, cache_dir = args
    return degrade_cached(name, wave, sr, key=key, cache_dir=Path(cache_dir))


def _sweep_rows(data: ProtocolData, max_per_class: int | None, seed: int) -> list[int]:
    """Positions of the decodable test clips the sweep uses (a seeded subset when capped)."""
    frame, store = data.frames["testing"], data.stores["testing"]
    rows = [i for i in range(len(frame)) if store.ok(i)]
    if max_per_class:
        keep = set(make_subset(frame.iloc[rows], max_per_class=max_per_class, seed=seed).index)
        rows = [i for i in rows if frame.index[i] in keep]
    return rows


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
    rows = _sweep_rows(data, max_per_class, seed)
    ids = clip_ids(frame)
    keys = [ids.iloc[i] for i in rows]
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
    fusions: Mapping[str, tuple[Sequence[str], Any]] | None = None,
) -> pd.DataFrame:
    """Score every detector under every degradation; one row per (detector, degradation).

    Columns: ``detector``, ``degradation``, ``family``, ``eer`` (fraction), ``auc``, ``cllr``
    (bits, of the probabilities the detector reports: its calibration applied), ``n``. Each
    detector keeps its own scoring rule; the EER needs no threshold. ``fusions`` maps a name to
    ``(member names, parameters)`` (see :func:`dfa_lib.detector.fusion.members_and_parameters`): each is
    scored from its members' scores, which must be among ``detectors``; its log-odds are taken
    as they are (a fusion is a logistic regression, calibrated on validation by its fit).
    """

    fusions = dict(fusions or {})
    for fused, (members, _) in fusions.items():
        missing = [m for m in members if m not in detectors]
        if missing:
            raise ValueError(f"fusion {fused!r} needs members {missing} in the sweep")

    frame = data.frames["testing"].iloc[_sweep_rows(data, max_per_class, seed)]
    clips = split_checksum(frame)
    labels = frame["label"].to_numpy()
    score_dir = Path(cache_dir) / "scores"
    memos = share_encoders(detectors)
    rows = []
    for name in degradations:
        if name not in DEGRADATIONS:
            raise KeyError(f"unknown degradation {name!r}; choose from {sorted(DEGRADATIONS)}")
        paths = {d: _score_path(score_dir, det, name, clips) for d, det in detectors.items()}
        scores = {
            d: s for d, p in paths.items() if (s := _cached_scores(p, len(labels))) is not None
        }
        if len(scores) < len(detectors):
            _, waves = degraded_test_set(
                data, name, cache_dir, progress=progress, max_per_class=max_per_class, seed=seed
            )
            for det_name, detector in detectors.items():
                if det_name in scores:
                    continue
                scores[det_name] = np.asarray(detector.score_waves(waves), dtype=np.float64)
                if paths[det_name] is not None:
                    save_array(paths[det_name], scores[det_name])
            for memo in memos:
                memo.clear()
        for fused, (members, parameters) in fusions.items():
            scores[fused] = parameters.combine(np.stack([scores[m] for m in members], axis=1))
        for det_name in [*detectors, *fusions]:
            bona, spoof = scores[det_name][labels == "real"], scores[det_name][labels == "fake"]
            calibration = getattr(detectors.get(det_name), "calibration", None) or Calibration()
            rows.append(
                {
                    "detector": det_name,
                    "degradation": name,
                    "family": DEGRADATIONS[name].family,
                    "eer": equal_error_rate(bona, spoof).eer,
                    "auc": roc_auc(bona, spoof),
                    "cllr": cllr(calibration.apply(bona), calibration.apply(spoof)),
                    "n": len(labels),
                }
            )
    return pd.DataFrame(rows)


def _cached_scores(path: Path | None, n: int) -> np.ndarray | None:
    """Return cached scores when ``path`` holds ``n`` of them, else None (score again)."""
    if path is None or not path.is_file():
        return None
    try:
        scores = np.load(path)
    except (OSError, ValueError):
        return None  # truncated or not an array: recomputed and rewritten
    return scores if scores.shape == (n,) else None


def _score_path(score_dir: Path, detector, degradation: str, clips: str) -> Path | None:
    """Where a detector's scores under ``degradation`` are cached (None: not cacheable).

    Only detectors loaded from a run folder are cached; the key holds the folder, the newest
    weights file's modification time, the degradation and the clips' identity.
    """

    folder = getattr(detector, "folder", None)
    stamp = weights_mtime(Path(folder)) if folder is not None else None
    if stamp is None:
        return None
    key = f"{Path(folder).resolve()}|{stamp}|{degradation}|{clips}"
    return score_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per detector: clean EER, mean EER over the degraded conditions and their ratio.

    With a ``cllr`` column (:func:`degradation_sweep`), also the clean and mean degraded Cllr.
    """
    is_clean = sweep["degradation"] == "clean"
    clean = sweep[is_clean].set_index("detector")["eer"]
    degraded = sweep[~is_clean].groupby("detector")["eer"].mean()
    worst = sweep[~is_clean].groupby("detector")["eer"].max()
    out = pd.DataFrame({"clean_eer": clean, "mean_degraded_eer": degraded, "worst_eer": worst})
    out["ratio"] = out["mean_degraded_eer"] / out["clean_eer"].where(out["clean_eer"] > 0)
    if "cllr" in sweep.columns:
        out["clean_cllr"] = sweep[is_clean].set_index("detector")["cllr"]
        out["mean_degraded_cllr"] = sweep[~is_clean].groupby("detector")["cllr"].mean()
    return out


AUGMENTED_SUFFIX = "_aug"


def augmentation_effect(
    summary: pd.DataFrame,
    results: pd.DataFrame,
    protocols: tuple[str, ...] = ("in-domain", "unseen-generator", "cross-source"),
) -> pd.DataFrame:
    """Set each detector trained both ways (``X`` and ``X_aug``) side by side, in percent.

    ``summary`` is :func:`sweep_summary`'s table, ``results`` is
    :func:`dfa_lib.evaluation.evaluate.results_table`'s. One row per (detector, training): the sweep's
    clean EER, mean degraded EER and their ratio, then the test EER of each protocol (NaN
    where that run was not trained or not swept).
    """
    models = set(summary.index) | (set(results["model"]) if not results.empty else set())
    rows = []
    for augmented in sorted(m for m in models if m.endswith(AUGMENTED_SUFFIX)):
        base = augmented[: -len(AUGMENTED_SUFFIX)]
        if base not in models:
            continue
        for training, name in (("clean", base), ("augmented", augmented)):
            row: dict[str, object] = {"detector": base, "training": training}
            swept = summary.loc[name] if name in summary.index else None
            row["sweep_clean_%"] = 100 * swept["clean_eer"] if swept is not None else np.nan
            row["sweep_mean_%"] = 100 * swept["mean_degraded_eer"] if swept is not None else np.nan
            row["sweep_ratio"] = swept["ratio"] if swept is not None else np.nan
            for protocol in protocols:
                hit = (
                    results[(results["model"] == name) & (results["protocol"] == protocol)]
                    if not results.empty
                    else results
                )
                row[f"{protocol}_%"] = float(hit["eer_%"].iloc[0]) if len(hit) else np.nan
            rows.append(row)
    columns = ["detector", "training", "sweep_clean_%", "sweep_mean_%", "sweep_ratio"]
    return pd.DataFrame(rows, columns=[*columns, *(f"{p}_%" for p in protocols)])
