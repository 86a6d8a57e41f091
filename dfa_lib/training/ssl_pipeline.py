"""Detectors on a frozen pretrained speech encoder: features per protocol, heads, run folders.

The encoder runs once per clip (:func:`dfa_lib.features.ssl_features.extract_features` caches its
pooled layer statistics and downsampled frames on disk); heads then train in seconds. A head
can also train on augmented copies of training clips (:func:`augmented_training_features`):
each chosen clip goes once through :class:`dfa_lib.data.augment.Augmenter` and the encoder, and the
copies' features are cached with the augmentation settings in their key. Each
trained head becomes a run folder like the CNNs' (``config.json`` with the model name
``ssl_head``, the backbone's name and the validation-EER threshold, plus ``head.safetensors``
and ``head.json``), so ``load_detector``, ``dfa predict`` and the app use it as any other
detector: the backbone is loaded by name and the head from the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from dfa_lib import __version__
from dfa_lib.core.atomic import write_atomically
from dfa_lib.core.labels import FAKE, REAL, label_to_index
from dfa_lib.core.provenance import provenance_record, write_json
from dfa_lib.data.augment import AugmentConfig, Augmenter
from dfa_lib.data.manifest import clip_ids, split_checksum
from dfa_lib.data.protocol_data import ProtocolData
from dfa_lib.detector.calibrate import calibrate_new_folder
from dfa_lib.detector.folder import write_detector_config, write_model_card
from dfa_lib.features.ssl_features import FeaturePreprocessing, FeatureSet, extract_features
from dfa_lib.models.heads import (
    FRAME_HEADS,
    HeadConfig,
    HeadHistory,
    bonafide_scores,
    layer_signal,
    load_head,
    predict_logits,
    save_head,
    train_head,
)
from dfa_lib.models.ssl import SSL_HEAD_MODEL
from dfa_lib.scoring.metrics import equal_error_rate, write_scores_asvspoof2021


@dataclass
class HeadRun:
    """One trained head and its run folder."""

    name: str
    folder: Path
    head: object
    config: HeadConfig
    history: HeadHistory
    val_eer: float
    threshold: float
    reused: bool = False  # True when an earlier run folder with the same fingerprint was kept


def split_features(
    backbone,
    data: ProtocolData,
    cache_dir: str | os.PathLike,
    preprocessing: FeaturePreprocessing,
    frames: bool = True,
    batch_size: int = 8,
) -> dict[str, FeatureSet]:
    """Extract (or read from the cache) the features of every split of ``data``."""
    return {
        split: extract_features(
            backbone,
            data.stores[split],
            cache_dir,
            preprocessing=preprocessing,
            batch_size=batch_size,
            frames=frames,
        )
        for split in data.frames
    }


@dataclass(frozen=True)
class AugmentedCopies:
    """Pooled features of augmented copies of training clips, to add to a head's training set.

    ``key`` names the augmentation settings, the seed, the backbone, the preprocessing and the
    copied clips; it enters the fingerprint of every head trained with these copies.
    """

    pooled: np.ndarray  # (n_copies, layers, 2 * hidden), valid copies only
    labels: np.ndarray  # class index of each copy
    key: str
    source_paths: tuple[str, ...]  # manifest path of the clip behind each copy

    def restricted_to(self, frame: pd.DataFrame) -> AugmentedCopies:
        """Keep the copies whose source clip is in ``frame`` (another protocol's training set).

        The key changes with the kept clips, so heads trained on the subset get their own
        fingerprint.
        """
        keep = np.flatnonzero(np.isin(np.array(self.source_paths), frame["path"].astype(str)))
        kept_paths = tuple(self.source_paths[i] for i in keep)
        key = hashlib.sha256(f"{self.key}|{'|'.join(kept_paths)}".encode()).hexdigest()[:20]
        return AugmentedCopies(self.pooled[keep], self.labels[keep], key, kept_paths)


def _seeded_rank(digests: pd.Series, seed: int) -> np.ndarray:
    """Order clips by a seeded hash of their content hash (stable across protocols)."""
    keys = [hashlib.sha256(f"{seed}|{d}".encode()).hexdigest() for d in digests.astype(str)]
    return np.argsort(np.array(keys), kind="stable")


def augmentation_rows(frame: pd.DataFrame, max_per_class: int | None, seed: int) -> np.ndarray:
    """Choose the training rows that get an augmented copy: up to ``max_per_class`` per class.

    Rows are ranked by a seeded hash of the clip's content hash (``sha256``, else ``path``), so
    two protocols whose training sets overlap choose mostly the same clips and share the
    cached copies.
    """
    order = _seeded_rank(clip_ids(frame), seed)
    labels = frame["label"].to_numpy()[order]
    chosen = [order[labels == label][: max_per_class or None] for label in ("real", "fake")]
    return np.sort(np.concatenate(chosen))


def augmented_training_features(
    backbone,
    data: ProtocolData,
    cache_dir: str | os.PathLike,
    preprocessing: FeaturePreprocessing,
    augment: AugmentConfig,
    max_per_class: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
) -> AugmentedCopies:
    """Augment chosen training clips once each and return their encoder features.

    Each copy is seeded by ``seed`` and the clip's content hash, so a clip gets the same copy
    in every protocol. The result is stored under ``<cache_dir>/augmented/<key>.npz``; a later
    call with the same settings and clips reads it without augmenting or running the encoder.
    Clips that cannot be decoded or augmented are skipped.
    """
    frame, store = data.frames["training"], data.stores["training"]
    rows = augmentation_rows(frame, max_per_class, seed)
    digests = clip_ids(frame)
    settings = {k: v for k, v in augment.to_dict().items() if k != "codec_cache_dir"}
    key = hashlib.sha256(
        json.dumps(
            {
                "augment": settings,
                "seed": seed,
                "backbone": backbone.identity,
                "preprocessing": asdict(preprocessing),
                "clips": [digests.iloc[r] for r in rows],
                "version": __version__,
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / "augmented" / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as saved:
                return AugmentedCopies(
                    saved["pooled"], saved["labels"], key, tuple(saved["paths"].tolist())
                )
        except (OSError, ValueError, KeyError):
            pass  # damaged: made again below
    augmenter = Augmenter.for_training(augment, store, np.arange(len(frame)), seed=seed)
    waves, kept = [], []
    for r in rows:
        if not store.ok(int(r)):
            continue
        rng = np.random.default_rng([seed, _clip_seed(digests.iloc[r])])
        try:
            waves.append(augmenter(store[int(r)], rng))
        except (RuntimeError, ValueError):
            continue  # e.g. a codec that fails on this clip: the copy is left out
        kept.append(int(r))
    fs = extract_features(
        backbone, waves, cache_dir, preprocessing, batch_size=batch_size, progress=progress
    )
    good = np.flatnonzero(fs.valid)
    chosen = frame.iloc[[kept[i] for i in good]]
    copies = AugmentedCopies(
        pooled=fs.pooled[good],
        labels=np.array([label_to_index(v) for v in chosen["label"]], dtype=np.int64),
        key=key,
        source_paths=tuple(chosen["path"].astype(str)),
    )
    write_atomically(
        path,
        lambda handle: np.savez(
            handle, pooled=copies.pooled, labels=copies.labels, paths=np.array(copies.source_paths)
        ),
    )
    return copies


def _clip_seed(digest: str) -> int:
    """A 60-bit integer from a clip's content hash: its augmentation seed beside the run's."""
    return int(hashlib.sha256(digest.encode()).hexdigest()[:15], 16)


def head_inputs(fs: FeatureSet, config: HeadConfig):
    """Return the valid clips' features in the form ``config.head`` takes, and their row indices."""
    rows = np.flatnonzero(fs.valid)
    if config.head in FRAME_HEADS:
        if fs.frames is None:
            raise ValueError(f"head {config.head!r} needs features extracted with frames=True")
        return (fs.frames[rows], fs.frame_lengths[rows]), rows
    return fs.pooled[rows], rows


def head_scores(head, fs: FeatureSet, config: HeadConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return bona fide scores of the valid clips of ``fs`` and their row indices."""
    x, rows = head_inputs(fs, config)
    return bonafide_scores(predict_logits(head, x, config)), rows


def head_fingerprint(
    backbone,
    config: HeadConfig,
    data: ProtocolData,
    preprocessing: FeaturePreprocessing,
    augmented: str | None = None,
) -> str:
    """Return the hash that decides whether a head's run folder can be reused.

    It covers the head's settings, the backbone's identity, the preprocessing, the training
    and validation clips (paths, labels and content hashes), the key of the augmented copies
    added to training (if any) and the package version.
    """

    blob = json.dumps(
        {
            "head": asdict(config),
            "backbone": backbone.identity,
            "preprocessing": asdict(preprocessing),
            "training": split_checksum(data.frames["training"]),
            "validation": split_checksum(data.frames["validation"]),
            "augmented": augmented,
            "dfa_version": __version__,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _reuse_head_run(name: str, folder: Path, config: HeadConfig, fingerprint: str):
    """Return the finished run in ``folder`` when its fingerprint matches, else None."""
    try:
        saved = json.loads((folder / "config.json").read_text())
        if saved.get("fingerprint") != fingerprint:
            return None
        head = load_head(folder, device=config.device)
        log = pd.read_csv(folder / "train_log.csv")
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # missing, partial or from another version: train again
    history = HeadHistory(
        epochs=log.to_dict("records"),
        best_epoch=int(saved["best_epoch"]),
        best_val_eer=float(saved["val_eer"]),
        config=asdict(config),
    )
    return HeadRun(
        name, folder, head, config, history, history.best_val_eer, float(saved["threshold"]), True
    )


def train_heads(
    backbone,
    features: dict[str, FeatureSet],
    data: ProtocolData,
    head_configs: dict[str, HeadConfig],
    out_dir: str | os.PathLike,
    preprocessing: FeaturePreprocessing,
    reuse: bool = True,
    augmented: AugmentedCopies | None = None,
) -> list[HeadRun]:
    """Train each named head on the training features, keep the best epoch, write its run folder.

    With ``reuse`` a folder already trained with the same fingerprint (see
    :func:`head_fingerprint`) is loaded instead of trained again. ``augmented`` copies (from
    :func:`augmented_training_features`) are added to every head's training set; validation
    stays clean. Only heads on pooled features can take them.
    """
    runs = []
    labels = {
        s: np.array([label_to_index(v) for v in data.frames[s]["label"]]) for s in data.frames
    }
    for name, config in head_configs.items():
        folder = Path(out_dir) / name
        fingerprint = head_fingerprint(
            backbone, config, data, preprocessing, augmented.key if augmented else None
        )
        previous = _reuse_head_run(name, folder, config, fingerprint) if reuse else None
        if previous is not None:
            runs.append(previous)
            continue
        start = time.perf_counter()
        if augmented is not None and config.head in FRAME_HEADS:
            raise ValueError(
                "augmented copies carry pooled features only; head "
                f"{name!r} ({config.head!r}) needs frames"
            )
        x_tr, rows_tr = head_inputs(features["training"], config)
        y_tr = labels["training"][rows_tr]
        if augmented is not None:
            x_tr = np.concatenate([x_tr, augmented.pooled])
            y_tr = np.concatenate([y_tr, augmented.labels])
        x_va, rows_va = head_inputs(features["validation"], config)
        head, history = train_head(x_tr, y_tr, x_va, labels["validation"][rows_va], config)
        scores = bonafide_scores(predict_logits(head, x_va, config))
        y_va = labels["validation"][rows_va]
        eer = equal_error_rate(scores[y_va == REAL], scores[y_va == FAKE])
        write_head_run(
            folder,
            head,
            config,
            backbone,
            preprocessing,
            threshold=eer.threshold,
            val_eer=eer.eer,
            history=history,
            dataset=data.info,
            val_ids=data.frames["validation"]["path"].iloc[rows_va].tolist(),
            val_scores=scores,
            seconds=time.perf_counter() - start,
            fingerprint=fingerprint,
        )
        validation = data.frames["validation"]
        calibrate_new_folder(
            folder, dict(zip(validation["path"], validation["label"], strict=True))
        )
        runs.append(HeadRun(name, folder, head, config, history, eer.eer, eer.threshold))
    return runs


def write_head_run(
    folder: Path,
    head,
    config: HeadConfig,
    backbone,
    preprocessing: FeaturePreprocessing,
    threshold: float,
    val_eer: float,
    history: HeadHistory,
    dataset: dict,
    val_ids: list[str],
    val_scores: np.ndarray,
    seconds: float,
    fingerprint: str | None = None,
) -> Path:
    """Write a head's run folder: a detector whose backbone is loaded by name."""

    folder.mkdir(parents=True, exist_ok=True)
    save_head(head, folder)
    run_config = {
        "model": {
            "name": SSL_HEAD_MODEL,
            "kwargs": {"backbone": backbone.name, "backbone_identity": backbone.identity},
        },
        "preprocessing": {
            "sample_rate": preprocessing.sample_rate,
            "clip_seconds": preprocessing.clip_seconds,
            "pad_mode": preprocessing.pad_mode,
            "normalization": preprocessing.normalization,
        },
        "threshold": float(threshold),
        "val_eer": float(val_eer),
        "best_epoch": int(history.best_epoch),
        "training": {"head": asdict(config), "backbone": backbone.describe()},
        "dataset": dataset,
        "fingerprint": fingerprint,
    }
    write_detector_config(folder, run_config)
    history.to_frame().to_csv(folder / "train_log.csv", index=False)
    write_scores_asvspoof2021(folder / "scores" / "validation.txt", val_ids, val_scores)
    write_json(
        folder / "provenance.json",
        provenance_record(dataset=dataset, train_seconds=round(seconds, 2)),
    )
    write_model_card(folder)
    return folder


def summary_row(protocol: str, run: HeadRun, metrics: dict) -> dict:
    """One row of a heads summary table: validation and test EER (%), AUC, epochs, reuse."""
    return {
        "protocol": protocol,
        "model": run.name,
        "val_eer_%": 100 * run.val_eer,
        "test_eer_%": 100 * metrics["eer"],
        "test_auc": metrics["auc"],
        "best_epoch": run.history.best_epoch,
        "s_per_epoch": run.history.seconds_per_epoch,
        "reused": run.reused,
    }


def _cached_table(
    cache_dir: str | os.PathLike | None,
    kind: str,
    parts: tuple[np.ndarray, ...],
    columns: list[str],
    compute: Callable[[], pd.DataFrame],
) -> pd.DataFrame:
    """Return ``compute()``, stored under ``cache_dir`` keyed by ``kind`` and the arrays."""
    path = None
    if cache_dir is not None:
        shapes = "|".join(str(part.shape) for part in parts)
        digest = hashlib.sha256(f"{__version__}|{kind}|{shapes}".encode())
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes())
        path = Path(cache_dir) / f"{digest.hexdigest()[:24]}.csv"
        if path.is_file():
            try:
                table = pd.read_csv(path)
                if list(table.columns) == columns:
                    return table
            except (OSError, ValueError, pd.errors.ParserError):
                pass  # damaged: computed again
    table = compute()
    if path is not None:
        write_atomically(path, lambda handle: handle.write(table.to_csv(index=False).encode()))
    return table


def _pooled_splits(features: dict[str, FeatureSet], data: ProtocolData):
    tr, va = features["training"], features["validation"]
    x_tr, x_va = tr.pooled[tr.valid], va.pooled[va.valid]
    y_tr = data.frames["training"]["label"].to_numpy()[tr.valid]
    y_va = data.frames["validation"]["label"].to_numpy()[va.valid]
    return x_tr, y_tr, x_va, y_va


def layer_table(
    features: dict[str, FeatureSet],
    data: ProtocolData,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Per-layer validation EER of a logistic regression on pooled statistics (layer signal).

    With ``cache_dir`` the table is stored there, keyed by the training and validation
    features and labels, and read back when they have not changed.
    """

    x_tr, y_tr, x_va, y_va = _pooled_splits(features, data)
    return _cached_table(
        cache_dir,
        "layers",
        (x_tr, x_va, y_tr.astype(str), y_va.astype(str)),
        ["layer", "val_eer", "val_auc"],
        lambda: layer_signal(x_tr, y_tr, x_va, y_va),
    )


PROBE_C = (0.1,)  # inverse L2 strengths the linear head chooses from on validation


def probe_table(
    features: dict[str, FeatureSet],
    data: ProtocolData,
    cache_dir: str | os.PathLike | None = None,
    C_values: Sequence[float] = PROBE_C,
    seed: int = 0,
    workers: int = 2,
) -> pd.DataFrame:
    """Validation EER of the linear head on the lowest k layers, for every k and C.

    Columns ``first_layers``, ``C``, ``val_eer``; cached like :func:`layer_table`. The fits
    are the ones :func:`dfa_lib.models.heads.train_head` makes (one BLAS thread each, so the table
    does not depend on ``workers``, the number of fits run at once), and the chosen row's EER
    is the EER the trained head will have.
    """

    x_tr, y_tr, x_va, y_va = _pooled_splits(features, data)
    grid = [(k, float(C)) for k in range(1, x_tr.shape[1] + 1) for C in C_values]

    def fit(point: tuple[int, float]) -> dict:
        k, C = point
        config = HeadConfig(head="linear", first_layers=k, C=C, seed=seed)
        _, history = train_head(x_tr, y_tr, x_va, y_va, config)
        return {"first_layers": k, "C": C, "val_eer": history.best_val_eer}

    def compute() -> pd.DataFrame:
        # Held at one BLAS thread for the whole grid, so that no fit's own limit, set and
        # restored on its thread, lets another fit run on more threads meanwhile.
        with threadpool_limits(limits=1), ThreadPoolExecutor(max(1, workers)) as pool:
            return pd.DataFrame(list(pool.map(fit, grid)))

    parts = (x_tr, x_va, y_tr.astype(str), y_va.astype(str), np.asarray(C_values, float))
    return _cached_table(
        cache_dir, f"probe|{seed}", parts, ["first_layers", "C", "val_eer"], compute
    )


def best_probe(table: pd.DataFrame) -> tuple[int, float]:
    """Return the ``(first_layers, C)`` of :func:`probe_table` with the lowest validation EER.

    Ties go to fewer layers, then to the stronger regularisation (smaller C).
    """
    if table.empty:
        raise ValueError("the probe table is empty: no features to choose from")
    ordered = table.sort_values(["val_eer", "first_layers", "C"], kind="stable")
    return int(ordered["first_layers"].iloc[0]), float(ordered["C"].iloc[0])


def best_layer(table: pd.DataFrame) -> int:
    """Return the layer whose linear probe (:func:`layer_table`) has the lowest validation EER.

    Ties go to the lower layer. The choice uses training and validation clips only, so a head
    on that layer is tuned the way any hyperparameter is, never on the test split.
    """
    if table.empty:
        raise ValueError("the layer table is empty: no features to choose a layer from")
    ordered = table.sort_values(["val_eer", "layer"], kind="stable")
    return int(ordered["layer"].iloc[0])
