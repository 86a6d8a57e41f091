"""The stages of ``make bench``: each measured side by side with the reference it is compared with.

Every figure is the median of ``repeats`` (at least 3) timed runs after one warm-up run, and
each stage times its reference in the same process, on the same clips, just before or after
its own measurement, so both see the same machine load:

1. :func:`measure_loading`: clips per second through one training epoch of dfa_lib's loader
   (clips decoded once into a :class:`~dfa_lib.data.clips.ClipStore`, random crops, DataLoader),
   against the original notebook's loader (``librosa.load`` of every file, every item, every
   epoch, then pad or crop to 1 s).
2. :func:`measure_training`: seconds per epoch of the original CNN and the LCNN on the
   corpus's in-domain training split, with :func:`dfa_lib.training.engine.train` itself: a capped number
   of batches is timed and extrapolated to the whole split, plus the validation pass.
3. :func:`measure_heads`: :func:`dfa_lib.studies.bench.heads.run_head_benchmark`.
4. :func:`measure_codecs`: milliseconds per clip of the codec round trips that augmentation
   and the degradation sweep draw from, in-process through PyAV against the ffmpeg program,
   on real training clips and without the on-disk cache (what an epoch pays on a cache miss).
5. :func:`measure_inference`: :func:`dfa_lib.studies.bench.inference.run_benchmark` on the trained
   detectors of the profile (untrained ones of the same architectures when none exist).
6. :func:`read_end_to_end`: the durations recorded by the last ``make reports`` and by the
   corpus build (read, never rerun).
7. :func:`measure_app_load`: ``app_uploads`` concurrent uploads to the Streamlit app on
   127.0.0.1, through the browser's protocol: the server's peak memory and the seconds per
   upload (:mod:`dfa_lib.studies.bench.app_load`).
8. :func:`measure_architectures`: every registered network's parameter count and CPU
   milliseconds per second of audio (:mod:`dfa_lib.studies.bench.architectures`).
9. :func:`~dfa_lib.studies.bench.runtimes.measure_runtimes`: each neural detector under torch,
   ONNX float32 and ONNX int8 (dynamic, static): size, one-core latency, EERs.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pandas as pd
import torch

from dfa_lib.core.provenance import git_revision, machine, package_versions
from dfa_lib.data.audio import pad_or_crop
from dfa_lib.data.augment import AugmentConfig
from dfa_lib.data.clips import ClipStore, decode_clips
from dfa_lib.data.codecs import (
    CODECS,
    FFmpegNotFoundError,
    available_encoders,
    codec_round_trip,
    in_process_available,
)
from dfa_lib.data.copysynth import CODEC2_MODES, CopySynthesisError, codec2_copy
from dfa_lib.data.degrade import DEGRADATIONS
from dfa_lib.data.protocol_data import load_protocol_frames, prepare_protocol
from dfa_lib.evaluation.evaluate import find_runs
from dfa_lib.models.registry import build_model
from dfa_lib.reporting.runner import HISTORY_FILE, load_profile
from dfa_lib.scoring.windows import score_waves
from dfa_lib.studies.bench.app_load import AppLoadError, run_app_load
from dfa_lib.studies.bench.architectures import architecture_figures, run_architecture_benchmark
from dfa_lib.studies.bench.heads import HeadBenchConfig, run_head_benchmark
from dfa_lib.studies.bench.inference import build_untrained, run_benchmark
from dfa_lib.studies.bench.runtimes import measure_runtimes
from dfa_lib.training.engine import (
    CropBatches,
    TrainConfig,
    _labels_of,
    batch_loader,
    choose_device,
    train,
)

SAMPLE_RATE = 16000
LOADING_TARGET = 10.0  # dfa_lib's loader against librosa per item, clips per second
HEADS_TARGET = 50.0  # head epoch on cached features against the backbone every epoch
REPORTS_COLD_TARGET_S = 30 * 60.0  # default `make reports` from nothing (set-up excluded)
REPORTS_WARM_TARGET_S = 3 * 60.0  # the same with nothing changed
STAGE_NAMES = (
    "loading",
    "training",
    "heads",
    "codecs",
    "inference",
    "end_to_end",
    "app-load",
    "architectures",
    "runtimes",
)

# Speed changes made before this benchmark existed, with the figures measured at the time.
# Figures of the current run are appended by :func:`history` (the decode-once loader and the
# feature cache are themselves such changes, measured here against what they replaced).
PAST_CHANGES: tuple[dict[str, Any], ...] = (
    {
        "stage": "training",
        "change": "LCNN max-feature-map written as b + relu(a - b) instead of torch.maximum",
        "where": "dfa_lib/models/networks.py MaxFeatureMap",
        "metric": "ms per 4-s clip, one LCNN training step, one torch thread",
        "before": 21.0,
        "after": 12.0,
        "lower_is_better": True,
    },
    {
        "stage": "data loading",
        "change": "a batch of random crops cut in one call (ClipStore.crops, hashed draws "
        "instead of a numpy Generator per clip) and served without DataLoader bookkeeping "
        "when there are no workers (InlineBatches)",
        "where": "dfa_lib/data/clips.py, dfa_lib/training/engine.py CropBatches",
        "metric": "clips per second through a training epoch, 400 clips of 1 s, batch 32",
        "before": 37461.0,
        "after": 116000.0,
        "lower_is_better": False,
        "note": "before: one numpy Generator, pad_or_crop and collate per clip (3.5x the "
        "librosa loader); after: 12.5x on the same machine, quiet",
    },
    {
        "stage": "pretrained features",
        "change": "heads train on one torch thread by default (HeadConfig.num_threads = 1)",
        "where": "dfa_lib/models/heads.py HeadConfig",
        "metric": "head epoch time, one thread against two on the shared 2-core CPU",
        "before": None,
        "after": None,
        "lower_is_better": True,
        "note": "often about 10x faster than two threads; the exact figures were not recorded",
    },
    {
        "stage": "pretrained features",
        "change": "Whisper encoder position embeddings cut to the input length (no 30-s padding)",
        "where": "dfa_lib/features/backbones.py, dfa_lib/features/whisper_ct2.py",
        "metric": "ms per 1-s clip, Whisper tiny.en encoder forward on the CPU",
        "before": 250.0,
        "after": 12.0,
        "lower_is_better": True,
    },
)


@dataclass
class BenchConfig:
    """Sizes of every stage; the defaults give the figures ``make bench`` reports."""

    data_dir: Path = Path("data")
    runs_dir: Path = Path("runs")
    reports_dir: Path = Path("reports")
    profile: str = "default"  # whose trained detectors and training settings are measured
    dataset: str = "offline"
    protocol: str = "in-domain"
    cache_dir: Path | None = None  # decoded-clip cache; None: <data_dir>/cache, as make reports
    repeats: int = 3  # timed runs per figure (median reported), after one warm-up
    seed: int = 0
    # 1. data loading
    loading_clips: int = 400
    loading_clip_seconds: float = 1.0  # the original notebook's crop
    # 2. training
    batch_size: int | None = None  # None: the profile's 02_cnn batch_size
    train_batches: int = 30  # batches timed per epoch, extrapolated to the whole split
    val_clips: int = 64  # validation clips timed, extrapolated to the whole split
    cnn_clip_seconds: float = 1.0
    lcnn_clip_seconds: float | None = None  # None: the profile's spectral_clip_seconds
    # 3. pretrained features
    backbone: str = "whisper-base-offline"
    head_clips: int = 32
    head_clip_seconds: float = 4.0
    heads: tuple[str, ...] = ("original", "weighted-asp")
    # 4. codecs
    codec_clips: int = 16
    # 5. inference
    batch_clips: int = 64
    long_seconds: float = 3600.0
    long_file_models: tuple[str, ...] = ("original_cnn", "lcnn")  # the others skip the hour
    # 8. every registered network: parameters, CPU ms per second of audio on a clip this long
    architecture_seconds: float = 4.0
    # 7. app under load
    app_uploads: int = 20  # browser sessions uploading at once
    app_upload_seconds: float = 30.0  # audio in each upload (Opus)
    app_timeout_s: float = 600.0  # each session gives up after this
    app_model: str = "lcnn"  # the detector the app serves (a trained one when there is one)
    stages: tuple[str, ...] = STAGE_NAMES
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """Return a config where every stage takes seconds (for tests and a first look)."""
        sizes: dict[str, Any] = dict(
            loading_clips=16,
            batch_size=4,
            train_batches=2,
            val_clips=4,
            head_clips=4,
            head_clip_seconds=1.0,
            heads=("original",),
            backbone="whisper-tiny-offline",
            codec_clips=2,
            batch_clips=2,
            long_seconds=5.0,
            app_uploads=2,
            app_upload_seconds=2.0,
            app_timeout_s=120.0,
            architecture_seconds=1.0,
        )
        sizes.update(overrides)
        return cls(**sizes)

    def __post_init__(self) -> None:
        if self.repeats < 3:
            raise ValueError("repeats must be at least 3: figures are medians of 3 or more runs")
        unknown = set(self.stages) - {*STAGE_NAMES}
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}")
        if self.app_uploads < 1 or self.app_upload_seconds <= 0 or self.app_timeout_s <= 0:
            raise ValueError("app_uploads, app_upload_seconds and app_timeout_s must be positive")

    @property
    def clip_cache(self) -> Path:
        """Where decoded clips are cached (shared with ``make reports``)."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.data_dir) / "cache"


def _timed_runs(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Return the wall-clock seconds of ``repeats`` calls of ``fn`` after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _profile_parameters(profile: str, notebook: str) -> dict:

    for nb in load_profile(profile)["notebooks"]:
        if nb["name"] == notebook:
            return dict(nb.get("parameters", {}))
    return {}


def _training_settings(config: BenchConfig) -> tuple[int, float]:
    """Return the batch size and the LCNN crop of the profile's training notebook."""
    params = _profile_parameters(config.profile, "02_cnn")
    batch = config.batch_size or int(params.get("batch_size", 32))
    lcnn = config.lcnn_clip_seconds or float(params.get("spectral_clip_seconds", 4.0))
    return batch, lcnn


def _training_frames(config: BenchConfig) -> tuple[Path, pd.DataFrame]:

    return load_protocol_frames(config.dataset, config.protocol, config.data_dir, config.seed)


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Return ``n`` rows (all when fewer), half of them real where possible, in a seeded order."""
    n = min(n, len(df))
    parts = []
    for i, label in enumerate(("real", "fake")):
        part = df[df["label"] == label]
        want = n // 2 + (n % 2 if i == 0 else 0)
        parts.append(part.sample(n=min(want, len(part)), random_state=seed))
    picked = pd.concat(parts)
    if len(picked) < n:  # one class is short: fill from the rest
        rest = df.drop(index=picked.index)
        picked = pd.concat([picked, rest.sample(n=n - len(picked), random_state=seed)])
    return picked.sample(frac=1.0, random_state=seed).reset_index(drop=True)


class _LibrosaCropDataset(torch.utils.data.Dataset):
    """The original notebook's loader: decode (and resample) each file on every access."""

    def __init__(self, paths: list[Path], labels: np.ndarray, length: int, seed: int):
        self.paths, self.labels, self.length, self.seed = paths, labels, length, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):

        wave, _ = librosa.load(self.paths[i], sr=SAMPLE_RATE)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        wave = pad_or_crop(wave, self.length, mode="random", rng=rng, pad_mode="constant")
        return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), int(self.labels[i])


def _epoch_runs(dataset: Any, loader: Any, repeats: int) -> list[float]:
    """Time full passes over ``loader`` (shuffled, as in training), a new epoch each."""

    def one_epoch() -> None:
        dataset.epoch += 1
        for _ in loader:
            pass

    return _timed_runs(one_epoch, repeats)


def _per_item_loader(dataset: Any, batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=0,
    )


def measure_loading(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Clips per second through a training epoch: dfa_lib's loader against librosa per item."""

    batch, _ = _training_settings(config)
    root, rows = _training_frames(config)
    df = _sample(rows[rows["split"] == "training"], config.loading_clips, config.seed)
    labels = _labels_of(df)
    length = int(round(config.loading_clip_seconds * SAMPLE_RATE))
    paths = [root / p for p in df["path"]]
    librosa.load(paths[0], sr=SAMPLE_RATE)  # first call compiles (numba): not part of an epoch

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        store = decode_clips(df, root, tmp, progress=progress)
        decode_s = time.perf_counter() - start
        ours = CropBatches(
            store, np.arange(len(df)), labels, length, config.seed, "wrap", augment=None
        )
        loader = batch_loader(ours, batch, config.seed)  # what train() uses
        ours_runs = _epoch_runs(ours, loader, config.repeats)
        del store, ours, loader  # the memory map must close before the folder goes
    original = _LibrosaCropDataset(paths, labels, length, config.seed)
    original_runs = _epoch_runs(
        original, _per_item_loader(original, batch, config.seed), config.repeats
    )

    n = len(df)
    ours_cps = n / statistics.median(ours_runs)
    original_cps = n / statistics.median(original_runs)
    ratio = ours_cps / original_cps
    if progress:
        print(f"loading: {ours_cps:.0f} vs {original_cps:.0f} clips/s ({ratio:.1f}x)", flush=True)
    return {
        "clips": n,
        "batch_size": batch,
        "crop_seconds": config.loading_clip_seconds,
        "dfa_loader": {
            "what": "ClipStore (decoded once, memory-mapped int16) + CropBatches (one call "
            "per batch of seeded random crops) through InlineBatches, as train() with num_workers=0",
            "clips_per_second": ours_cps,
            "epoch_runs_s": ours_runs,
            "one_off_decode_s": decode_s,
        },
        "original_loader": {
            "what": "librosa.load(path, sr=16000) of every file, every item, every epoch, then "
            "pad/crop to the crop length, DataLoader(num_workers=0)",
            "clips_per_second": original_cps,
            "epoch_runs_s": original_runs,
        },
        "speedup": ratio,
        "target_speedup": LOADING_TARGET,
        "meets_target": ratio >= LOADING_TARGET,
    }


def measure_training(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Seconds per epoch of the original CNN and the LCNN, with the real training engine.

    ``dfa_lib.training.engine.train`` runs ``repeats + 1`` epochs capped at ``train_batches`` batches
    each, validating on ``8`` clips (the cheapest set it accepts, so that the epoch times are
    almost all training); the median of the last ``repeats`` epochs is scaled to the number of
    batches of the whole training split. The validation pass over the whole validation split is
    timed apart (``dfa_lib.scoring.windows.score_waves`` on ``val_clips`` clips, scaled) and added.
    """

    batch, lcnn_seconds = _training_settings(config)
    data = prepare_protocol(
        config.dataset,
        config.protocol,
        config.data_dir,
        config.clip_cache,
        seed=config.seed,
        splits=("training", "validation"),
        progress=progress,
    )
    train_df, train_store = data.frames["training"], data.stores["training"]
    val_df, val_store = data.frames["validation"], data.stores["validation"]
    n_train = sum(train_store.ok(i) for i in range(len(train_df)))
    n_val = sum(val_store.ok(i) for i in range(len(val_df)))
    full_batches = n_train // batch if n_train > batch else 1

    def val_subset(n: int) -> tuple[pd.DataFrame, ClipStore]:
        ok = val_df[[val_store.ok(i) for i in range(len(val_df))]]
        picked = _sample(ok, n, config.seed)
        index = {p: i for i, p in enumerate(val_df["path"])}
        waves = [val_store[index[p]] for p in picked["path"]]
        return picked, ClipStore.from_waves(waves)

    tiny_val_df, tiny_val_store = val_subset(8)
    timed_val_df, timed_val_store = val_subset(config.val_clips)
    device = choose_device("auto")
    models = {}
    for name, seconds in (("original_cnn", config.cnn_clip_seconds), ("lcnn", lcnn_seconds)):
        train_config = TrainConfig(
            name=name,
            model=name,
            clip_seconds=seconds,
            epochs=config.repeats + 1,
            batch_size=batch,
            lr_schedule="constant",
            patience=config.repeats + 2,  # never stop early: every epoch is a timed run
            seed=config.seed,
            max_batches_per_epoch=config.train_batches,
        )
        with tempfile.TemporaryDirectory() as tmp:
            (result,) = train(
                train_config,
                train_df,
                tiny_val_df,
                train_store,
                tiny_val_store,
                tmp,
                progress=progress,
                reuse=False,
            )
        epoch_runs = [float(s) for s in result.history["seconds"].tolist()[1:]]
        timed_batches = min(config.train_batches, full_batches)
        train_pass_s = statistics.median(epoch_runs) * full_batches / timed_batches

        model = build_model(name).to(device).eval()
        length = int(round(seconds * SAMPLE_RATE))
        waves = [timed_val_store[i] for i in range(len(timed_val_store))]
        val_runs = _timed_runs(
            lambda m=model, w=waves, n=length: score_waves(
                m, w, n, "wrap", batch, device, progress=False
            ),
            config.repeats,
        )
        val_pass_s = statistics.median(val_runs) * n_val / len(waves)
        epoch_s = train_pass_s + val_pass_s
        models[name] = {
            "clip_seconds": seconds,
            "timed_batches_per_epoch": timed_batches,
            "timed_epoch_runs_s": epoch_runs,
            "training_pass_s": train_pass_s,
            "validation_pass_s": val_pass_s,
            "validation_runs_s": val_runs,
            "validation_clips_timed": len(waves),
            "epoch_s": epoch_s,
            "ms_per_training_clip": 1000 * statistics.median(epoch_runs) / (timed_batches * batch),
        }
        if progress:
            print(f"training {name}: {epoch_s:.1f} s/epoch (extrapolated)", flush=True)
    return {
        "dataset": config.dataset,
        "protocol": config.protocol,
        "training_clips": n_train,
        "validation_clips": n_val,
        "batch_size": batch,
        "batches_per_epoch": full_batches,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "extrapolated": True,
        "method": (
            f"dfa_lib.training.engine.train for {config.repeats + 1} epochs of at most "
            f"{config.train_batches} batches (8 validation clips), first epoch dropped as "
            "warm-up; median epoch time scaled to the split's batches; plus the validation pass "
            f"(score_waves on {config.val_clips} clips, median of {config.repeats}) scaled to the "
            "validation split"
        ),
        "models": models,
    }


def measure_heads(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Head epoch on cached features against the backbone every epoch (see bench.heads)."""

    head_config = HeadBenchConfig(
        backbone=config.backbone,
        clips=config.head_clips,
        clip_seconds=config.head_clip_seconds,
        batch_size=8,
        repeats=config.repeats,
        heads=tuple(config.heads),
        seed=config.seed,
    )
    return run_head_benchmark(head_config, progress=progress)


def measure_codecs(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Time each codec of the augmentation mix and the sweep, per backend, per clip (no cache)."""

    root, rows = _training_frames(config)
    picked = _sample(rows[rows["split"] == "training"], config.codec_clips, config.seed)
    store = decode_clips(picked, root, config.clip_cache, progress=False)
    clips = [np.array(store[i]) for i in range(len(picked)) if store.ok(i)]
    settings = {tuple(c) for c in AugmentConfig().codecs}
    settings |= {d.codec for d in DEGRADATIONS.values() if d.codec is not None}
    try:
        program = available_encoders()
    except FFmpegNotFoundError:
        program = frozenset()
    rows = []
    for codec, bitrate in sorted(settings, key=lambda cb: (cb[0], str(cb[1]))):
        row: dict[str, Any] = {"codec": codec, "bitrate": bitrate or "fixed"}
        for backend in ("av", "ffmpeg"):
            if backend == "av":
                usable = in_process_available(codec)
            else:
                usable = CODECS[codec].encoder in program
            if not usable:
                row[f"{backend}_ms_per_clip"] = None
                continue

            def run(backend: str = backend, codec: str = codec, bitrate=bitrate) -> None:
                for clip in clips:
                    codec_round_trip(clip, SAMPLE_RATE, codec, bitrate, backend=backend)

            times = _timed_runs(run, config.repeats)
            row[f"{backend}_ms_per_clip"] = 1000.0 * statistics.median(times) / len(clips)
        fast, slow = row["av_ms_per_clip"], row["ffmpeg_ms_per_clip"]
        row["speedup"] = slow / fast if fast and slow else None
        rows.append(row)
        if progress:
            print(f"codecs: {codec} {bitrate or ''}: {row}", flush=True)
    return {
        "config": {
            "clips": len(clips),
            "clip_seconds": float(np.median([c.size for c in clips])) / SAMPLE_RATE,
        },
        "codecs": rows,
        "codec2_copies": _codec2_copies(clips, config.repeats),
    }


def _codec2_copies(clips: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Milliseconds per clip of a Codec 2 copy (``TrainConfig.vocoded_fakes``), per mode."""

    modes = {}
    for mode in CODEC2_MODES:

        def run(mode: str = mode) -> None:
            for clip in clips:
                codec2_copy(clip, SAMPLE_RATE, mode)

        try:
            times = _timed_runs(run, repeats)
        except CopySynthesisError as error:
            return {"error": str(error), "ms_per_clip": {}}
        modes[mode] = 1000.0 * statistics.median(times) / len(clips)
    return {"error": None, "ms_per_clip": modes}


def trained_detectors(config: BenchConfig) -> list[Path]:
    """Return the detector folders ``make reports`` trained for the profile's in-domain split."""

    # Every kind: CNN weights, classical classifiers and encoder heads (head.safetensors).
    return find_runs(Path(config.runs_dir) / config.profile / config.dataset / config.protocol)


def _model_name(folder: Path) -> str:
    return json.loads((folder / "config.json").read_text())["model"]["name"]


def measure_inference(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Multiples of real time, single clip and batch, and the one-hour file (see bench.inference).

    The hour-long file is scored by the detectors in ``long_file_models`` (original CNN and
    LCNN); the others (pretrained-encoder heads take minutes per hour of audio) are measured
    in memory only.
    """

    with tempfile.TemporaryDirectory() as built:
        folders = trained_detectors(config)
        source = "trained"
        if not folders:
            source = "untrained (no trained detectors found; speed does not depend on weights)"
            folders = [build_untrained(name, Path(built)) for name in config.long_file_models]
        with_long = [f for f in folders if _model_name(f) in config.long_file_models]
        without = [f for f in folders if f not in with_long]
        report = run_benchmark(
            with_long or without,
            config.repeats,
            config.batch_clips,
            config.long_seconds if with_long else 0.0,
        )
        if with_long and without:
            rest = run_benchmark(
                without,
                config.repeats,
                config.batch_clips,
                long_seconds=0.0,
                speech_activity=False,
            )
            report["results"].extend(rest["results"])
    report["detectors"] = source
    if progress:
        print(f"inference: {len(report['results'])} detectors ({source})", flush=True)
    return report


def measure_architectures(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Parameters and CPU inference time per second of audio of every registered network."""
    return run_architecture_benchmark(
        config.repeats, config.architecture_seconds, progress=progress
    )


def measure_app_load(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Peak memory and seconds per upload of the app under ``app_uploads`` concurrent uploads.

    The app serves the profile's trained ``app_model`` detector, or an untrained one of the
    same architecture (time and memory do not depend on the weights). A server that cannot
    start is recorded as the stage's ``error``, not raised: the other stages keep their figures.
    """
    with tempfile.TemporaryDirectory() as built:
        trained = [f for f in trained_detectors(config) if _model_name(f) == config.app_model]
        folder = trained[0] if trained else build_untrained(config.app_model, Path(built))
        try:
            report = run_app_load(
                folder, config.app_uploads, config.app_upload_seconds, config.app_timeout_s
            )
        except AppLoadError as error:
            return {"error": str(error)}
    report["error"] = None
    report["detector_source"] = "trained" if trained else "untrained"
    if progress:
        print(
            f"app-load: {report['completed']}/{config.app_uploads} uploads, server peak "
            f"{report['server_and_children_peak_mb']:.0f} MB, {report['wall_s']:.1f} s",
            flush=True,
        )
    return report


def _mtime_utc(path: Path) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))


def _read_history(reports_dir: Path, profile: str) -> list[dict[str, Any]]:
    """Complete runs of ``profile`` in ``reports/run_history.jsonl``, oldest first."""

    path = reports_dir / HISTORY_FILE
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed run
        if entry.get("profile") == profile and entry.get("timings_s", {}).get("total") is not None:
            runs.append(entry)
    return runs


def _reports_entry(entry: dict[str, Any], kind: str, target_s: float) -> dict[str, Any]:
    total = entry["timings_s"]["total"]
    return {
        "kind": kind,
        "created_utc": entry.get("created_utc"),
        "git_commit": entry.get("git_commit"),
        "start": entry.get("start"),
        "timings_s": entry["timings_s"],
        "target_s": target_s,
        "meets_target": total <= target_s,
    }


def read_end_to_end(config: BenchConfig) -> dict[str, Any]:
    """Read the durations of ``make reports`` runs and of the corpus build (never rerun).

    From ``reports/run_history.jsonl``: the last run that started from nothing (no corpus, no
    trained detector: the cold figure) and the last run that found the outputs of an earlier
    one (the warm figure). A run record without history is reported as of unknown kind.
    """
    out: dict[str, Any] = {"make_reports": None, "make_reports_runs": [], "corpus_build": {}}
    history_runs = _read_history(Path(config.reports_dir), config.profile)
    cold = [r for r in history_runs if (r.get("start") or {}).get("kind") == "from nothing"]
    warm = [r for r in history_runs if (r.get("start") or {}).get("kind") == "with earlier outputs"]
    if cold:
        out["make_reports_runs"].append(
            _reports_entry(cold[-1], "from nothing", REPORTS_COLD_TARGET_S)
        )
    if warm:
        out["make_reports_runs"].append(
            _reports_entry(warm[-1], "with earlier outputs", REPORTS_WARM_TARGET_S)
        )
    record_path = Path(config.reports_dir) / "run_record.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        total = record.get("timings_s", {}).get("total")
        out["make_reports"] = {
            "source": "from the last make reports run (reports/run_record.json)",
            "created_utc": record.get("created_utc") or _mtime_utc(record_path),
            "profile": record.get("profile"),
            "git_commit": record.get("git", {}).get("commit"),
            "start": record.get("start"),
            "timings_s": record.get("timings_s", {}),
            "cold_target_s": REPORTS_COLD_TARGET_S,
            "warm_target_s": REPORTS_WARM_TARGET_S,
            "meets_cold_target": total is not None and total <= REPORTS_COLD_TARGET_S,
            "meets_warm_target": total is not None and total <= REPORTS_WARM_TARGET_S,
        }
    for corpus in ("offline-main", "offline-cross"):
        marker = Path(config.data_dir) / corpus / ".complete.json"
        if marker.is_file():
            record = json.loads(marker.read_text())
            if isinstance(record.get("seconds"), (int, float)):
                out["corpus_build"][corpus] = {
                    "seconds": float(record["seconds"]),
                    "clips": record.get("clips"),
                    "finished_utc": _mtime_utc(marker),
                    "source": f"{corpus}/.complete.json",
                }
    return out


def history(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the before/after record of speed changes: past ones, then this run's comparisons."""
    entries = [dict(e, measured="before this benchmark existed") for e in PAST_CHANGES]
    loading = results.get("loading")
    if loading:
        entries.append(
            {
                "stage": "data loading",
                "change": "clips decoded once into a memory-mapped ClipStore instead of "
                "librosa.load of every file in every epoch",
                "where": "dfa_lib/data/clips.py, dfa_lib/training/engine.py",
                "metric": "clips per second through a training epoch",
                "before": loading["original_loader"]["clips_per_second"],
                "after": loading["dfa_loader"]["clips_per_second"],
                "lower_is_better": False,
                "measured": "this run",
            }
        )
    heads = results.get("heads")
    if heads:
        best = min(h["head_epoch_s"] for h in heads["heads"].values())
        entries.append(
            {
                "stage": "pretrained features",
                "change": "heads train on cached encoder features instead of running the "
                "encoder every epoch",
                "where": "dfa_lib/features/ssl_features.py, dfa_lib/models/heads.py",
                "metric": "seconds per epoch",
                "before": heads["backbone_epoch_s"],
                "after": best,
                "lower_is_better": True,
                "measured": "this run",
            }
        )
    codecs = results.get("codecs")
    if codecs:
        timed = [r for r in codecs["codecs"] if r.get("speedup")]
        if timed:
            entries.append(
                {
                    "stage": "augmentation",
                    "change": "codec round trips in-process through PyAV instead of two ffmpeg "
                    "program runs per clip",
                    "where": "dfa_lib/data/codecs.py",
                    "metric": "ms per clip, median over the codec settings both backends have",
                    "before": statistics.median(r["ffmpeg_ms_per_clip"] for r in timed),
                    "after": statistics.median(r["av_ms_per_clip"] for r in timed),
                    "lower_is_better": True,
                    "measured": "this run",
                }
            )
    return entries


def machine_record() -> dict[str, Any]:
    """Describe the machine, the versions and the load on it."""

    info = machine()
    info["affinity_cpus"] = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    )
    info["gpu"] = info.get("cuda")
    return {
        "machine": info,
        "packages": package_versions(),
        "git": git_revision(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "loading": measure_loading,
    "training": measure_training,
    "heads": measure_heads,
    "codecs": measure_codecs,
    "inference": measure_inference,
    "app-load": measure_app_load,
    "architectures": measure_architectures,
    "runtimes": measure_runtimes,
}


def run_all(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run every stage in ``config.stages`` and return the bench record (JSON-ready)."""
    report = machine_record()
    report["config"] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
    }
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    report["load_average_at_start"] = list(load)
    report["stage_seconds"] = {}
    for name in config.stages:
        start = time.perf_counter()
        if name == "end_to_end":
            report[name] = read_end_to_end(config)
        else:
            report[name] = STAGES[name](config, progress=progress)
        report["stage_seconds"][name] = round(time.perf_counter() - start, 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    report["load_average_at_end"] = list(load)
    report["history"] = history(report)
    return report


def figures(report: dict[str, Any]) -> dict[str, float]:
    """Return the headline figures by name (what the summary table and the tests read)."""
    out: dict[str, float] = {}
    if "loading" in report:
        out["loading: dfa_lib clips/s"] = report["loading"]["dfa_loader"]["clips_per_second"]
        out["loading: librosa per item clips/s"] = report["loading"]["original_loader"][
            "clips_per_second"
        ]
        out["loading: speedup"] = report["loading"]["speedup"]
    if "training" in report:
        for name, m in report["training"]["models"].items():
            out[f"training: {name} s/epoch"] = m["epoch_s"]
    if "heads" in report:
        out["heads: backbone epoch s"] = report["heads"]["backbone_epoch_s"]
        for name, h in report["heads"]["heads"].items():
            out[f"heads: {name} head epoch s"] = h["head_epoch_s"]
            out[f"heads: {name} speedup"] = h["speedup_vs_backbone_epoch"]
    if "codecs" in report:
        for row in report["codecs"]["codecs"]:
            name = f"codecs: {row['codec']} {row['bitrate']}"
            for backend in ("av", "ffmpeg"):
                if row.get(f"{backend}_ms_per_clip") is not None:
                    out[f"{name} {backend} ms/clip"] = row[f"{backend}_ms_per_clip"]
    if "inference" in report:
        for entry in report["inference"]["results"]:
            model = entry["model"]
            out[f"inference: {model} single x real time"] = entry["single_clip"]["x_realtime"]
            out[f"inference: {model} batch x real time"] = entry["batch"]["x_realtime"]
            if "batch_without_checks" in entry:
                out[f"inference: {model} batch, checks off, x real time"] = entry[
                    "batch_without_checks"
                ]["x_realtime"]
            if "long_file" in entry:
                out[f"inference: {model} long file x real time"] = entry["long_file"]["x_realtime"]
                out[f"inference: {model} long file peak MB"] = entry["long_file"]["peak_rss_mb"]
        for kind, entry in report["inference"].get("speech_activity", {}).items():
            if isinstance(entry, dict):
                out[f"inference: speech-activity check {kind} x real time"] = entry["x_realtime"]
    if "architectures" in report:
        out.update(architecture_figures(report["architectures"]))
    app = report.get("app-load")
    if app and not app.get("error"):
        out["app-load: server peak MB"] = app["server_and_children_peak_mb"]
        out["app-load: seconds for all uploads"] = app["wall_s"]
        if app.get("upload_s_median") is not None:
            out["app-load: median s per upload"] = app["upload_s_median"]
    return out
