"""The training engine: one function, driven by a config dataclass, used by every notebook.

:func:`train` takes one :class:`TrainConfig` or a list of them (several hyperparameter
configurations in one call, as the original notebook had), trains each on the same decoded
clips and writes one run folder per configuration::

    <out_dir>/<config.name>/
        model.safetensors   weights (torch models) or classifier arrays (classical models)
        config.json         model, preprocessing, threshold at validation EER, resolved config
        train_log.csv       one row per epoch: losses, validation EER, learning rate, seconds
        scores/validation.txt   bona fide scores of the validation clips (ASVspoof 2021 form)
        provenance.json     git commit, package versions, machine, data checksums, timings

A run whose folder already holds the same fingerprint (config, data checksums, package
version) is reused, not retrained: a second ``make reports`` with nothing changed is fast.

Started by a distributed launcher (``accelerate launch``, ``torchrun``: ``WORLD_SIZE`` above 1
in the environment), every process runs :func:`train` with the same arguments and a torch model
trains data-parallel through Hugging Face Accelerate: ``batch_size`` stays the global batch,
each process computes the loss of its own share of every batch (:class:`ShardedBatches`), the
gradients are averaged across processes before each step, and the validation scores are
gathered, so every process takes the same early-stopping decision. Only the main process writes
the run folder. ``python -m dfa_lib.training.distributed`` is the command to launch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list, gather_object
from torch import nn
from tqdm.auto import tqdm

from dfa_lib import __version__
from dfa_lib.core.labels import FAKE, REAL, label_to_index
from dfa_lib.core.provenance import cpu_identity, provenance_record, write_json
from dfa_lib.data.audio import pad_or_crop
from dfa_lib.data.augment import AugmentConfig, Augmenter, with_augmented_copies
from dfa_lib.data.clips import ClipStore
from dfa_lib.data.copysynth import parse_modes, with_vocoded_fakes
from dfa_lib.data.manifest import split_checksum
from dfa_lib.detector.calibrate import calibrate_new_folder
from dfa_lib.detector.folder import CLASSICAL_MODELS, FORMAT_VERSION, export_detector
from dfa_lib.models import classical
from dfa_lib.models.registry import build_model
from dfa_lib.scoring.metrics import equal_error_rate, write_scores_asvspoof2021
from dfa_lib.scoring.windows import mean_window_scores, score_waves


class TrainingError(RuntimeError):
    """Training cannot start or continue (no data, one class only, diverged loss ...)."""


@dataclass
class TrainConfig:
    """Everything that defines one training run; written resolved into the run folder."""

    name: str = "lcnn"  # run folder name
    model: str = "lcnn"  # build_model name, or a classical model (lfcc_gmm, ifd_logreg ...)
    model_kwargs: dict = field(default_factory=dict)
    clip_seconds: float = 4.0  # training crop and scoring window, seconds
    pad_mode: str = "wrap"  # how clips shorter than the window are filled: wrap | constant
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"  # cosine | plateau | constant
    patience: int = 4  # epochs without a better validation EER before stopping
    class_weighted: bool = True  # cross-entropy weights inversely proportional to class counts
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    num_workers: int = 0  # DataLoader workers; clips are already decoded, so 0 is usually fastest
    mixed_precision: bool = True  # autocast and gradient scaling, on CUDA only
    # bfloat16 autocast for the training steps on a CPU with native bfloat16 arithmetic
    # (AVX512-BF16 or AMX; LCNN epochs 1.4-1.7x faster: dfa_lib.studies.bench.epochs --bfloat16);
    # float32 on any other CPU.
    # Validation and test scores are always computed in float32.
    cpu_bfloat16: bool = False
    grad_accumulation: int = 1  # optimizer step every N batches
    max_batches_per_epoch: int | None = None  # cap for quick experiments
    # dfa_lib.data.augment.AugmentConfig fields, or None for clean training; torch models draw new
    # augmentations every epoch, classical models fit once on one augmented copy of each clip.
    augment: dict | None = None
    # Codec 2 modes ("3200,1300,700C") whose copies of the real training clips are added to
    # training as fakes, one copy per real clip (dfa_lib.data.copysynth); "" adds none.
    vocoded_fakes: str = ""
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        parse_modes(self.vocoded_fakes)  # an unknown mode fails here, before any training

    def resolved(self) -> dict:
        """Return the config as a plain dict (what the run folder records)."""
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """What one training run produced."""

    config: TrainConfig
    folder: Path
    best_epoch: int
    val_eer: float
    threshold: float
    history: pd.DataFrame
    reused: bool
    seconds: float


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, Linux)."""

    flags = cpu_identity().get("flags", [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """Return what the training steps of ``config`` compute in on ``device``.

    ``"float16-mixed"`` (CUDA with ``mixed_precision``), ``"bfloat16"`` (a CPU with native
    bfloat16 and ``cpu_bfloat16``) or ``"float32"``. Recorded in the run's provenance.
    """
    if device.type == "cuda" and config.mixed_precision:
        return "float16-mixed"
    if device.type == "cpu" and config.cpu_bfloat16 and native_bfloat16():
        return "bfloat16"
    return "float32"


def choose_device(requested: str = "auto") -> torch.device:
    """Return the requested device, or the best available one for ``"auto"`` (cuda, mps, cpu)."""
    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise TrainingError("device='cuda' was requested but no CUDA device is available")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# How long a process waits for the others at a barrier: the main process may decode a corpus
# or fit a classical model alone meanwhile (the default, 10 minutes on CUDA, can be too short).
PROCESS_GROUP_TIMEOUT = timedelta(hours=1)

# What accelerate launch's --mixed_precision calls each precision of training_precision.
_ACCELERATE_PRECISION = {"float16-mixed": "fp16", "bfloat16": "bf16", "float32": "no"}


def launched_processes() -> int:
    """Return how many processes a distributed launcher started (``WORLD_SIZE``; 1 without one)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(int(value), 1)
    except ValueError:
        raise TrainingError(
            f"WORLD_SIZE must be a whole number of processes, got {value!r}: "
            "start the run with accelerate launch or torchrun, or unset it"
        ) from None


def launched_accelerator(configs: Sequence[TrainConfig]) -> Accelerator:
    """Join the process group of a launched run; return this process's ``Accelerator``.

    The torch models of ``configs`` must share a ``device``: ``auto`` and ``cuda`` give each
    process the GPU of its local rank (NCCL), ``cpu`` the CPU (gloo), as does a launch with
    ``ACCELERATE_USE_CPU=1`` (``accelerate launch --cpu``). Accelerate's own mixed precision
    stays off: it would also cast the validation forward passes, which the engine computes in
    float32, so the training steps keep the engine's precision (:func:`training_precision`).
    """
    devices = sorted({c.device for c in configs if c.model not in CLASSICAL_MODELS})
    if len(devices) > 1:
        raise TrainingError(
            f"the torch models of one distributed run must share a device, got {devices}"
        )
    device = devices[0] if devices else "auto"
    if device != "auto" and device != "cpu" and not device.startswith("cuda"):
        raise TrainingError(
            f"distributed training runs on CUDA devices or CPUs, not device={device!r}"
        )
    choose_device(device)  # device="cuda" without CUDA fails here, with a clear message
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision="no",
        kwargs_handlers=[InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT)],
    )


def parameters_sha256(model: nn.Module) -> str:
    """Return a SHA-256 of a model's parameters and buffers (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def uniform_draws(seed: int, epoch: int, rows: np.ndarray) -> np.ndarray:
    """Return one float in [0, 1) per row, a hash of (seed, epoch, row) (SplitMix64).

    The value of an item depends on nothing else, so batches, their order and the number of
    DataLoader workers leave every crop unchanged, and a whole batch is drawn in one step.
    """
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= np.uint64((seed * 1_000_003 + epoch) & 0xFFFFFFFFFFFFFFFF)
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class CropBatches(torch.utils.data.Dataset):
    """Training batches of decoded clips: ``dataset[list_of_items]`` is ``(x, y)`` tensors.

    Without augmentation a batch is one call to the clip store (seeded random crops, see
    :meth:`ClipStore.crops`): a slice copy per clip and no random generator per clip. With
    augmentation each item gets its own generator, seeded by (seed, epoch, row), as the
    augmenter needs one.
    """

    def __init__(
        self,
        store: ClipStore,
        rows: np.ndarray,
        labels: np.ndarray,
        length: int,
        seed: int,
        pad_mode: str,
        augment: Callable | None,
    ):
        self.store, self.rows = store, np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.length, self.seed, self.pad_mode, self.augment = length, seed, pad_mode, augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, items):
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        rows = self.rows[items]
        if self.augment is None:
            draws = uniform_draws(self.seed, self.epoch, rows)
            x = self.store.crops(rows, self.length, draws, pad_mode=self.pad_mode)
        else:
            x = np.empty((len(rows), self.length), dtype=np.float32)
            for k, row in enumerate(rows):
                rng = np.random.default_rng([self.seed, self.epoch, int(row)])
                wave = self.augment(self.store[int(row)], rng)
                x[k] = pad_or_crop(wave, self.length, "random", rng=rng, pad_mode=self.pad_mode)
        return torch.from_numpy(x), torch.from_numpy(self.labels[items])


class InlineBatches:
    """Batches of a :class:`CropBatches` in the calling process, in a sampler's order.

    What a ``DataLoader`` with ``num_workers=0`` does, without its per-batch bookkeeping,
    which costs more than cropping a batch of decoded clips.
    """

    def __init__(self, data: CropBatches, sampler: torch.utils.data.Sampler, pin_memory: bool):
        self.data, self.sampler, self.pin_memory = data, sampler, pin_memory

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for items in self.sampler:
            x, y = self.data[items]
            yield (x.pin_memory(), y.pin_memory()) if self.pin_memory else (x, y)


class ShardedBatches(torch.utils.data.Sampler):
    """One process's share of every batch of a batch sampler: items ``rank::processes``.

    Every process draws the same batches (the same seeded order) and keeps its own items of
    each, so the shares of a batch are disjoint and together the whole batch. A last batch too
    small to give every process an item is skipped by all, so all take the same number of steps.
    """

    def __init__(self, batches: torch.utils.data.BatchSampler, rank: int, processes: int):
        if not 0 <= rank < processes:
            raise ValueError(f"rank must be in [0, {processes}), got {rank}")
        self.batches, self.rank, self.processes = batches, rank, processes

    def __len__(self) -> int:
        full, rest = divmod(len(self.batches.sampler), self.batches.batch_size)
        return full + int(not self.batches.drop_last and rest >= self.processes)

    def __iter__(self):
        for batch in self.batches:
            if len(batch) >= self.processes:
                yield batch[self.rank :: self.processes]


def batch_loader(
    data: CropBatches,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
) -> InlineBatches | torch.utils.data.DataLoader:
    """Return shuffled batches of ``data`` (seeded order), in worker processes if asked.

    ``shard`` is ``(rank, processes)`` for one process's share of each batch
    (:class:`ShardedBatches`); None gives whole batches.
    """
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(data, generator=torch.Generator().manual_seed(seed)),
        batch_size=batch_size,
        drop_last=drop_last,
    )
    if shard is not None:
        sampler = ShardedBatches(sampler, *shard)
    if num_workers == 0:
        return InlineBatches(data, sampler, pin_memory)
    return torch.utils.data.DataLoader(
        data,
        sampler=sampler,
        batch_size=None,  # the dataset returns batches already
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
    )


class _Replicas:
    """The processes of a launched run, each training a replica of the same model (DDP).

    What the training loop does differently when it is one of several processes: its share
    of each batch, a loss normalised over the whole batch, gradients averaged across processes
    (Accelerate's DDP wrapper), validation scores gathered, the run folder left to the main one.
    """

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.rank, self.count = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.device = accelerator.device
        self.record: dict = {}  # what the last torch fit says about its processes (provenance)

    def loss(
        self, logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, float, int]:
        """This process's part of the whole batch's class-weighted mean cross-entropy.

        Returns the loss to differentiate (scaled so that DDP's mean over processes is the
        whole batch's loss), the whole batch's loss and its number of clips.
        """
        own = nn.functional.cross_entropy(logits, y, weight=weight, reduction="sum")
        stats = torch.stack(
            [weight[y].sum().detach(), own.detach(), torch.tensor(float(len(y)), device=y.device)]
        ).double()
        weights, total, clips = self.accelerator.reduce(stats, "sum").tolist()
        return own * (self.count / weights), total / weights, int(clips)

    def backward(self, loss: torch.Tensor, model: nn.Module, sync: bool) -> None:
        """Backpropagate; average the gradients across processes only when ``sync``."""
        with nullcontext() if sync else self.accelerator.no_sync(model):
            self.accelerator.backward(loss)

    def scores(self, model: nn.Module, waves: list, length: int, config: TrainConfig) -> np.ndarray:
        """Score every validation clip: each process its share, then gathered in clip order.

        The main process's buffers (batch-norm statistics, which each process updates from its
        own share) go to all first: the clips are scored, and the best weights kept, with the
        model the main process saves.
        """
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer.data, src=0)
        own = score_waves(
            model,
            waves[self.rank :: self.count],
            length,
            config.pad_mode,
            config.batch_size,
            self.device,
            progress=False,
        )
        width = -(-len(waves) // self.count)
        padded = torch.full((width,), math.nan, dtype=torch.float64, device=self.device)
        padded[: len(own)] = torch.from_numpy(own)
        table = self.accelerator.gather(padded).reshape(self.count, width).cpu().numpy()
        scores = np.empty(len(waves), dtype=np.float64)
        for rank in range(self.count):
            scores[rank :: self.count] = table[rank, : len(range(rank, len(waves), self.count))]
        return scores

    def gather(self, value) -> list:
        """Return ``value`` of every process, in rank order."""
        return gather_object([value])

    def from_main(self, value):
        """Return the main process's ``value`` in every process."""
        return broadcast_object_list([value])[0]


def _labels_of(df: pd.DataFrame) -> np.ndarray:
    return np.array([label_to_index(v) for v in df["label"]], dtype=np.int64)


def fingerprint(config: TrainConfig, train_checksum: str, val_checksum: str) -> str:
    """Return the hash that decides whether an existing run folder can be reused."""
    resolved = config.resolved()
    # The precision the steps ran in is what matters: asking for bfloat16 on a CPU without it
    # trains exactly as without asking, and folders from before the setting stay valid.
    del resolved["cpu_bfloat16"]
    # Folders from before vocoded fakes existed trained without them, and stay valid.
    if not resolved["vocoded_fakes"]:
        del resolved["vocoded_fakes"]
    payload = {
        "config": resolved,
        "train": train_checksum,
        "val": val_checksum,
        "dfa": __version__,
        "format": FORMAT_VERSION,
    }
    if config.model in CLASSICAL_MODELS:
        # Classical validation scores were once those of one centre crop per clip; folders
        # written then are refitted (seconds) rather than reused.
        payload["validation_scores"] = "window-mean"
    elif config.cpu_bfloat16:
        precision = training_precision(config, choose_device(config.device))
        if precision == "bfloat16":
            payload["precision"] = precision
    blob = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def train(
    configs: TrainConfig | Sequence[TrainConfig],
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    train_store: ClipStore,
    val_store: ClipStore,
    out_dir: str | os.PathLike,
    dataset: dict | None = None,
    progress: bool = True,
    reuse: bool = True,
) -> list[RunResult]:
    """Train each configuration and write its run folder; return one :class:`RunResult` each.

    ``train_df``/``val_df`` are manifest rows whose positions index ``train_store``/``val_store``
    (row ``i`` of the frame is clip ``i`` of the store). Clips that failed to decode are left
    out and counted in the provenance record. ``dataset`` (name, protocol, manifest checksum
    ...) is copied into every run folder.

    Under a distributed launcher every process calls this with the same arguments (see the
    module docstring); each returns the same results, and only the main process writes.
    """
    if isinstance(configs, TrainConfig):
        configs = [configs]
    if len(train_df) != len(train_store) or len(val_df) != len(val_store):
        raise TrainingError("each data frame must have exactly one decoded clip per row")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise TrainingError(f"configuration names must be unique, got {names}")
    out_dir = Path(out_dir)
    replicas = None
    if launched_processes() > 1:
        replicas = _Replicas(launched_accelerator(configs))
        progress = progress and replicas.is_main
    results = []
    copies: dict = {}  # what _extended_training made, for the configs after it
    for config in configs:
        results.append(
            _train_one(
                config,
                train_df,
                val_df,
                train_store,
                val_store,
                out_dir,
                dataset,
                progress,
                reuse,
                copies,
                replicas,
            )
        )
    return results


def class_weights(labels: np.ndarray, weighted: bool = True) -> np.ndarray:
    """Cross-entropy weights [real, fake]: ``n / (2 n_class)`` (ones when not ``weighted``)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=2).astype(np.float64)
    if not weighted:
        return np.ones(2)
    if (counts == 0).any():
        raise TrainingError("class weights need real and fake training clips")
    return counts.sum() / (2.0 * counts)


def _usable(df: pd.DataFrame, store: ClipStore, what: str) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([i for i in range(len(df)) if store.ok(i)], dtype=np.int64)
    labels = _labels_of(df)[rows]
    present = set(labels.tolist())
    if present != {REAL, FAKE}:
        have = ", ".join(sorted({"real" if v == REAL else "fake" for v in present})) or "nothing"
        raise TrainingError(f"the {what} split needs real and fake clips; it has {have}")
    return rows, labels


def _train_one(
    config: TrainConfig,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    train_store: ClipStore,
    val_store: ClipStore,
    out_dir: Path,
    dataset: dict | None,
    progress: bool,
    reuse: bool,
    copies: dict | None = None,
    replicas: _Replicas | None = None,
) -> RunResult:
    folder = out_dir / config.name
    fp = fingerprint(config, split_checksum(train_df), split_checksum(val_df))
    if reuse:
        # The main process decides, so that all agree even where they see different disks.
        main = replicas is None or replicas.is_main
        previous = _load_previous(folder, fp, config) if main else None
        if replicas is not None:
            previous = replicas.from_main(previous)
        if previous is not None:
            return previous
    if replicas is not None and config.model in CLASSICAL_MODELS:
        # A classical model fits in one process: the main one fits and writes, the others
        # wait for its result.
        result = None
        if replicas.is_main:
            result = _train_new(
                config,
                train_df,
                val_df,
                train_store,
                val_store,
                folder,
                fp,
                dataset,
                progress,
                copies,
            )
        return replicas.from_main(result)
    result = _train_new(
        config,
        train_df,
        val_df,
        train_store,
        val_store,
        folder,
        fp,
        dataset,
        progress,
        copies,
        replicas,
    )
    if replicas is not None:
        replicas.accelerator.wait_for_everyone()  # the folder is complete when any returns
    return result


def _train_new(
    config: TrainConfig,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    train_store: ClipStore,
    val_store: ClipStore,
    folder: Path,
    fp: str,
    dataset: dict | None,
    progress: bool,
    copies: dict | None,
    replicas: _Replicas | None = None,
) -> RunResult:
    """Train ``config`` and write its run folder (in the main process only, when launched)."""
    start = time.perf_counter()
    seed_everything(config.seed)
    n_clips = len(train_df)
    train_df, train_store, n_augmented = _extended_training(
        config, train_df, train_store, {} if copies is None else copies
    )
    train_rows, train_labels = _usable(train_df, train_store, "training")
    val_rows, val_labels = _usable(val_df, val_store, "validation")
    if config.model in CLASSICAL_MODELS:
        model, history, best_epoch, val_scores = _fit_classical(
            config, train_store, train_rows, train_labels, val_store, val_rows
        )
    else:
        model, history, best_epoch, val_scores = _fit_torch(
            config,
            train_store,
            train_rows,
            train_labels,
            val_store,
            val_rows,
            val_labels,
            progress,
            replicas,
        )
    eer = equal_error_rate(val_scores[val_labels == REAL], val_scores[val_labels == FAKE])
    seconds = time.perf_counter() - start
    if replicas is not None:
        if not replicas.is_main:
            return RunResult(
                config, folder, best_epoch, eer.eer, eer.threshold, history, False, seconds
            )
        launch = {"processes": replicas.record}
    else:
        launch = {}
    record = provenance_record(
        fingerprint=fp,
        dataset=dataset or {},
        train_checksum=split_checksum(train_df),
        val_checksum=split_checksum(val_df),
        n_train=len(train_rows),
        n_vocoded_fakes=len(train_df) - n_clips - n_augmented,
        n_augmented_copies=n_augmented,
        n_val=len(val_rows),
        undecodable={
            "training": [train_df["path"].iloc[i] for i in train_store.errors],
            "validation": [val_df["path"].iloc[i] for i in val_store.errors],
        },
        train_seconds=round(seconds, 2),
        # What the training steps computed in (classical models: scikit-learn's own).
        precision=None
        if config.model in CLASSICAL_MODELS
        else training_precision(
            config, choose_device(config.device) if replicas is None else replicas.device
        ),
        **launch,
    )
    save_run(
        folder,
        model,
        config,
        threshold=eer.threshold,
        val_eer=eer.eer,
        history=history,
        best_epoch=best_epoch,
        val_ids=val_df["path"].iloc[val_rows].tolist(),
        val_scores=val_scores,
        provenance=record,
        dataset=dataset or {},
    )
    # The probability of fake the folder reports, calibrated on these validation scores.
    calibrate_new_folder(folder, dict(zip(val_df["path"], val_df["label"], strict=True)))
    return RunResult(config, folder, best_epoch, eer.eer, eer.threshold, history, False, seconds)


def _extended_training(
    config: TrainConfig,
    train_df: pd.DataFrame,
    train_store: ClipStore,
    cache: dict,
) -> tuple[pd.DataFrame, ClipStore, int]:
    """The training split with what ``config`` adds to it, and how many augmented copies.

    Codec 2 copies of the real clips (``vocoded_fakes``); for classical models with
    ``augment``, one augmented copy of each original clip (torch models augment on the fly
    instead). ``cache`` keeps what one :func:`train` call made, for the configs after it.
    """
    augment_once = bool(config.augment) and config.model in CLASSICAL_MODELS
    # The augmented copies depend on the augmentation and on the seed that draws them.
    augmentation = (
        (json.dumps(config.augment, sort_keys=True), config.seed) if augment_once else None
    )
    key = (config.vocoded_fakes, augmentation)
    if key == ("", None):
        return train_df, train_store, 0
    if key not in cache:
        df, store = with_vocoded_fakes(train_df, train_store, config.vocoded_fakes)
        before = len(df)
        if augment_once:
            df, store = with_augmented_copies(
                df,
                store,
                AugmentConfig.from_dict(config.augment),
                config.seed,
                range(len(train_df)),
            )
        cache[key] = (df, store, len(df) - before)
    return cache[key]


def _load_previous(folder: Path, fp: str, config: TrainConfig) -> RunResult | None:
    prov, cfg = folder / "provenance.json", folder / "config.json"
    # Torch models keep model.safetensors, classical ones classifier.safetensors.
    if not (prov.is_file() and cfg.is_file() and any(folder.glob("*.safetensors"))):
        return None
    try:
        record = json.loads(prov.read_text())
        saved = json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("fingerprint") != fp:
        return None
    log = folder / "train_log.csv"
    history = pd.read_csv(log) if log.is_file() else pd.DataFrame()
    return RunResult(
        config,
        folder,
        int(saved.get("best_epoch", 0)),
        float(saved["val_eer"]),
        float(saved["threshold"]),
        history,
        True,
        0.0,
    )


def _fit_classical(config, train_store, train_rows, train_labels, val_store, val_rows):

    length = int(round(config.clip_seconds * config.sample_rate))

    def waves(store, rows):
        return [
            pad_or_crop(store[int(r)], length, "center", pad_mode=config.pad_mode) for r in rows
        ]

    model = classical.build_classical(config.model, seed=config.seed, **config.model_kwargs)
    labels = ["real" if v == REAL else "fake" for v in train_labels]
    model.fit(waves(train_store, train_rows), labels)
    # Validation clips are scored as a detector scores any file (the mean over its windows),
    # so that the validation-EER threshold is set on the scores it will be applied to.
    val_waves = [val_store[int(r)] for r in val_rows]
    val_scores = mean_window_scores(model.score, val_waves, length, config.pad_mode)
    return model, pd.DataFrame([{"epoch": 1}]), 1, val_scores


def _fit_torch(
    config,
    train_store,
    train_rows,
    train_labels,
    val_store,
    val_rows,
    val_labels,
    progress,
    replicas: _Replicas | None = None,
):

    device = choose_device(config.device) if replicas is None else replicas.device
    if replicas is not None and config.batch_size < replicas.count:
        raise TrainingError(
            f"{config.name}: batch_size {config.batch_size} cannot give each of the "
            f"{replicas.count} processes a clip of every batch; raise batch_size"
        )
    model = build_model(config.model, **config.model_kwargs).to(device)
    fixed = getattr(model, "input_samples", None)
    length = fixed or int(round(config.clip_seconds * config.sample_rate))
    if fixed and abs(fixed - config.clip_seconds * config.sample_rate) > 1:
        raise TrainingError(
            f"model {config.model!r} takes exactly {fixed} samples; "
            f"set clip_seconds={fixed / config.sample_rate:g}"
        )
    augment = None
    if config.augment:
        augment = Augmenter.for_training(
            AugmentConfig.from_dict(config.augment), train_store, train_rows, seed=config.seed
        )
    data = CropBatches(
        train_store, train_rows, train_labels, length, config.seed, config.pad_mode, augment
    )
    loader = batch_loader(
        data,
        config.batch_size,
        config.seed,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=len(data) > config.batch_size,
        shard=None if replicas is None else (replicas.rank, replicas.count),
    )
    weight = class_weights(train_labels, config.class_weighted)
    class_weight = torch.tensor(weight, dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weight)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = _scheduler(optimizer, config)
    precision = training_precision(config, device)
    replica = model  # the model itself; under a launcher, its DDP wrapper for the steps
    if replicas is not None:
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        if launched not in ("no", _ACCELERATE_PRECISION[precision]):
            warnings.warn(
                f"--mixed_precision {launched} is not used: the training steps run in "
                f"{precision}, as TrainConfig.mixed_precision and cpu_bfloat16 set them",
                stacklevel=2,
            )
        # The scheduler is not prepared: it steps once per epoch in every process alike.
        replica, optimizer = replicas.accelerator.prepare(model, optimizer)
        # The same initial weights everywhere, but dropout and SpecAugment masks of its own.
        torch.manual_seed(
            int(np.random.SeedSequence([config.seed, replicas.rank]).generate_state(1)[0])
        )
    use_amp = precision == "float16-mixed"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    # bfloat16 needs no gradient scaling: it has float32's range.
    autocast = (
        {"device_type": "cpu", "dtype": torch.bfloat16}
        if precision == "bfloat16"
        else {"device_type": device.type, "enabled": use_amp}
    )

    val_waves = [val_store[int(r)] for r in val_rows]
    best = (math.inf, 0, None, None)  # eer, epoch, state, scores
    history, stale = [], 0
    own_crops = 0  # crops this process trained on, over all epochs
    for epoch in range(1, config.epochs + 1):
        data.epoch = epoch
        replica.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(loader, desc=f"{config.name} epoch {epoch}", disable=not progress, leave=False)
        optimizer.zero_grad(set_to_none=True)
        for step, (x, y) in enumerate(bar, start=1):
            if config.max_batches_per_epoch and step > config.max_batches_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(**autocast):
                if replicas is None:
                    loss = loss_fn(replica(x).float(), y)
                    value, clips = loss.item(), len(y)
                else:  # every process sees the whole batch's loss, so all stop alike
                    loss, value, clips = replicas.loss(replica(x).float(), y, class_weight)
            if not math.isfinite(value):
                raise TrainingError(f"{config.name}: loss became {value} at epoch {epoch}")
            sync = step % config.grad_accumulation == 0
            scaled = scaler.scale(loss / config.grad_accumulation)
            if replicas is None:
                scaled.backward()
            else:
                replicas.backward(scaled, replica, sync)
            if sync:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            total += value * clips
            seen += clips
            own_crops += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if replicas is None:
            scores = score_waves(
                model, val_waves, length, config.pad_mode, config.batch_size, device, progress=False
            )
        else:
            scores = replicas.scores(model, val_waves, length, config)
        eer = equal_error_rate(scores[val_labels == REAL], scores[val_labels == FAKE]).eer
        lr = optimizer.param_groups[0]["lr"]
        if config.lr_schedule == "plateau":
            scheduler.step(eer)
        elif scheduler is not None:
            scheduler.step()
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / max(seen, 1),
                "val_eer": eer,
                "lr": lr,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        if eer < best[0]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best, stale = (eer, epoch, state, scores), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best[2])
    if replicas is not None:
        digests = replicas.gather(parameters_sha256(model))
        if len(set(digests)) > 1:
            raise TrainingError(
                f"{config.name}: the {replicas.count} processes ended with different weights "
                f"({digests}); a layer whose gradients are not averaged (a parameter left "
                "out of the loss, or state outside parameters and buffers) breaks data parallelism"
            )
        replicas.record = {
            "count": replicas.count,
            "training_crops": replicas.gather(own_crops),
            "parameters_sha256": digests,
        }
    return model.cpu().eval(), pd.DataFrame(history), best[1], best[3]


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _scheduler(optimizer, config: TrainConfig):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=1)
    if config.lr_schedule == "constant":
        return None
    raise TrainingError(
        f"lr_schedule must be cosine, plateau or constant, got {config.lr_schedule!r}"
    )


def save_run(
    folder: Path,
    model,
    config: TrainConfig,
    threshold: float,
    val_eer: float,
    history: pd.DataFrame,
    best_epoch: int,
    val_ids: list[str],
    val_scores: np.ndarray,
    provenance: dict,
    dataset: dict,
) -> Path:
    """Write a run folder that is also a self-contained detector (see the module docstring)."""

    folder.mkdir(parents=True, exist_ok=True)
    run_config = {
        "model": {"name": config.model, "kwargs": copy.deepcopy(config.model_kwargs)},
        "preprocessing": {
            "sample_rate": config.sample_rate,
            "clip_seconds": config.clip_seconds,
            "pad_mode": config.pad_mode,
            "normalization": "none",
        },
        "threshold": float(threshold),
        "val_eer": float(val_eer),
        "best_epoch": int(best_epoch),
        "training": config.resolved(),
        "dataset": dataset,
    }
    export_detector(folder, model, run_config, overwrite=True)
    history.to_csv(folder / "train_log.csv", index=False)
    (folder / "scores").mkdir(exist_ok=True)
    write_scores_asvspoof2021(folder / "scores" / "validation.txt", val_ids, val_scores)
    write_json(folder / "provenance.json", provenance)
    return folder
