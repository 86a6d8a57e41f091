"""Fine-tuning any transformers audio-classification model end to end on a dfa protocol.

:func:`finetune_hf` takes a hub id (``facebook/wav2vec2-base``,
``MIT/ast-finetuned-audioset-10-10-0.4593``) or a local folder written by ``save_pretrained``,
gives it a real/fake head where its labels are anything else
(:func:`dfa_lib.models.hf_audio.load_hf_classifier`), and trains it on a protocol's training
split: the engine's seeded random crops (:class:`dfa_lib.training.engine.CropBatches`),
class-weighted cross entropy, AdamW with a linear warm-up and linear decay, gradient
accumulation and clipping, mixed precision on CUDA, the convolutional feature encoder frozen
by default (as wav2vec2 fine-tuning usually does) and optionally the lowest transformer
layers, and early stopping on the validation EER (the clips scored by
:func:`dfa_lib.scoring.windows.score_waves`, as every detector scores them).

The best epoch becomes a detector folder::

    <out_dir>/<name>/
        hf/                  the transformers model: config.json, model.safetensors,
                             preprocessor_config.json (AutoModelForAudioClassification and
                             AutoFeatureExtractor load this subfolder)
        config.json          dfa's detector config (model hf_audio_classification, threshold at
                             the validation EER, calibration, SHA-256 of the files in hf/)
        README.md            model card
        train_log.csv        one row per epoch: training loss, validation EER, learning rate
        scores/validation.txt, provenance.json

The two ``config.json`` files never meet: transformers reads ``hf/``, dfa reads the folder.
``dfa predict``, ``dfa evaluate`` and the app load the folder as any other detector. A folder
already trained with the same settings, data and source model is reused.

``python -m dfa_lib.training.hf_finetune MODEL --dataset offline`` runs it from a shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from dfa_lib import __version__
from dfa_lib.core.labels import FAKE, REAL, label_to_index
from dfa_lib.core.provenance import provenance_record, write_json
from dfa_lib.data.clips import ClipStore
from dfa_lib.data.manifest import split_checksum
from dfa_lib.data.protocol_data import ProtocolData, prepare_protocol
from dfa_lib.detector.calibrate import calibrate_new_folder
from dfa_lib.detector.folder import FORMAT_VERSION, export_detector
from dfa_lib.models.hf_audio import (
    HF_AUDIO_MODEL,
    HF_FILES_KEY,
    HF_SUBFOLDER,
    HFAudioClassifier,
    HFModelError,
    hf_file_checksums,
    load_hf_classifier,
    load_source_config,
)
from dfa_lib.scoring.metrics import equal_error_rate, write_scores_asvspoof2021
from dfa_lib.scoring.windows import score_waves
from dfa_lib.training.encoder_runs import FinetuneBudget, backbone_tag
from dfa_lib.training.engine import (
    CropBatches,
    TrainingError,
    batch_loader,
    choose_device,
    class_weights,
    seed_everything,
)


@dataclass
class HFFinetuneConfig:
    """Everything that defines one fine-tuning run; written resolved into the run folder."""

    model: str  # hub id or local folder of an AutoModelForAudioClassification
    name: str = "hf_finetune"  # run folder name
    clip_seconds: float = 4.0  # training crop and scoring window, seconds
    pad_mode: str = "wrap"  # how clips shorter than the window are filled: wrap | constant
    epochs: int = 5  # maximum epochs
    batch_size: int = 8  # clips per forward pass
    grad_accumulation: int = 4  # batches per optimizer step
    learning_rate: float = 3e-5  # AdamW peak learning rate
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and norms)
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming up linearly
    max_grad_norm: float = 1.0  # gradient clipping (L2 norm); 0 turns it off
    patience: int = 2  # epochs without a better validation EER before stopping
    class_weighted: bool = True  # cross-entropy weights inversely proportional to class counts
    freeze_feature_encoder: bool = True  # keep a wav2vec2-style convolutional front end fixed
    freeze_layers: int = 0  # lowest transformer layers kept fixed (-1: the whole encoder)
    mixed_precision: bool = True  # bfloat16 (or float16 with scaling) autocast, on CUDA only
    max_batches_per_epoch: int | None = None  # cap for quick experiments
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a hub id or a local model folder, got ''")
        for key in ("epochs", "batch_size", "grad_accumulation", "patience"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.pad_mode not in ("wrap", "constant"):
            raise ValueError(f"pad_mode must be wrap or constant, got {self.pad_mode!r}")

    def resolved(self) -> dict:
        """Return the config as a plain dict (what the run folder records)."""
        return dataclasses.asdict(self)


@dataclass
class HFRun:
    """What one fine-tuning run produced (the fields :func:`finetune_summary` reads)."""

    config: HFFinetuneConfig
    folder: Path
    best_epoch: int
    val_eer: float
    threshold: float
    history: pd.DataFrame
    reused: bool
    seconds: float
    head_note: str  # why the model got a new real/fake head ("" when it kept its own)


def hf_finetune_config(
    model: str,
    budget: FinetuneBudget,
    freeze_layers: int,
    clip_seconds: float,
    batch_size: int,
    grad_accumulation: int,
    learning_rate: float,
    seed: int,
    device: str,
) -> HFFinetuneConfig:
    """Return 04's run ``<tag>_hf``: ``model`` fine-tuned end to end within ``budget``'s epochs."""
    return HFFinetuneConfig(
        model=model,
        name=f"{backbone_tag(model.rstrip('/'))}_hf",
        clip_seconds=clip_seconds,
        epochs=budget.epochs,
        batch_size=batch_size,
        grad_accumulation=grad_accumulation,
        learning_rate=learning_rate,
        freeze_layers=freeze_layers,
        seed=seed,
        device=device,
    )


def source_identity(model: str) -> str:
    """Name the source model's exact files: a local folder by their SHA-256, a hub id by its name."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    blob = json.dumps(hf_file_checksums(path), sort_keys=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _fingerprint(config: HFFinetuneConfig, data: ProtocolData, identity: str) -> str:
    """Return the hash that decides whether an existing run folder can be reused."""
    payload = {
        "config": config.resolved(),
        "source": identity,
        "train": split_checksum(data.frames["training"]),
        "val": split_checksum(data.frames["validation"]),
        "dfa": __version__,
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _usable(frame: pd.DataFrame, store: ClipStore, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([i for i in range(len(frame)) if store.ok(i)], dtype=np.int64)
    labels = np.array([label_to_index(v) for v in frame["label"]], dtype=np.int64)[rows]
    if set(labels.tolist()) != {REAL, FAKE}:
        raise TrainingError(f"the {split} split needs decodable real and fake clips")
    return rows, labels


def _precision(config: HFFinetuneConfig, device: torch.device) -> str:
    if device.type != "cuda" or not config.mixed_precision:
        return "float32"
    return "bfloat16-mixed" if torch.cuda.is_bf16_supported() else "float16-mixed"


def _optimizer(classifier: HFAudioClassifier, config: HFFinetuneConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for param in classifier.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def finetune_hf(
    config: HFFinetuneConfig,
    data: ProtocolData,
    out_dir: str | os.PathLike,
    progress: bool = True,
    reuse: bool = True,
) -> HFRun:
    """Fine-tune ``config.model`` on ``data``'s training split and write its detector folder.

    Keeps the epoch with the lowest validation EER, sets the threshold there, calibrates the
    folder on the validation scores. Raises :class:`dfa_lib.models.hf_audio.HFModelError` when
    the model cannot be loaded and :class:`dfa_lib.training.engine.TrainingError` when the data
    cannot train it (one class only, another sample rate, a diverging loss).
    """
    folder = Path(out_dir) / config.name
    identity = source_identity(config.model)
    fingerprint = _fingerprint(config, data, identity)
    if reuse:
        previous = _previous_run(folder, fingerprint, config)
        if previous is not None:
            return previous
    start = time.perf_counter()
    seed_everything(config.seed)
    device = choose_device(config.device)
    classifier = load_hf_classifier(config.model)
    train_store, val_store = data.stores["training"], data.stores["validation"]
    for split, store in (("training", train_store), ("validation", val_store)):
        if store.sample_rate != classifier.sample_rate:
            raise TrainingError(
                f"the {split} clips are decoded at {store.sample_rate} Hz but {config.model} "
                f"takes {classifier.sample_rate} Hz audio"
            )
    trainable = classifier.freeze(config.freeze_feature_encoder, config.freeze_layers)
    if trainable == 0:
        raise TrainingError(f"{config.model}: every parameter is frozen; nothing to fine-tune")
    classifier.to(device)
    train_rows, train_labels = _usable(data.frames["training"], train_store, "training")
    val_rows, val_labels = _usable(data.frames["validation"], val_store, "validation")
    history, best_epoch, val_scores = _fit(
        classifier,
        config,
        device,
        (train_store, train_rows, train_labels),
        (val_store, val_rows, val_labels),
        progress,
    )
    eer = equal_error_rate(val_scores[val_labels == REAL], val_scores[val_labels == FAKE])
    seconds = time.perf_counter() - start
    validation = data.frames["validation"]
    record = provenance_record(
        fingerprint=fingerprint,
        source=config.model,
        source_identity=identity,
        dataset=data.info,
        n_train=len(train_rows),
        n_val=len(val_rows),
        trainable_parameters=trainable,
        precision=_precision(config, device),
        train_seconds=round(seconds, 2),
    )
    write_hf_run(
        folder,
        classifier.cpu().eval(),
        config,
        threshold=eer.threshold,
        val_eer=eer.eer,
        history=history,
        best_epoch=best_epoch,
        val_ids=validation["path"].iloc[val_rows].tolist(),
        val_scores=val_scores,
        provenance=record,
        dataset=data.info,
        fingerprint=fingerprint,
    )
    calibrate_new_folder(folder, dict(zip(validation["path"], validation["label"], strict=True)))
    return HFRun(
        config,
        folder,
        best_epoch,
        eer.eer,
        eer.threshold,
        history,
        False,
        seconds,
        classifier.head_note,
    )


def _fit(
    classifier: HFAudioClassifier,
    config: HFFinetuneConfig,
    device: torch.device,
    training: tuple[ClipStore, np.ndarray, np.ndarray],
    validation: tuple[ClipStore, np.ndarray, np.ndarray],
    progress: bool,
) -> tuple[pd.DataFrame, int, np.ndarray]:
    """Train with early stopping; leave the best epoch's weights in ``classifier``.

    ``training`` and ``validation`` are (clip store, usable rows, their class indices).
    """
    train_store, train_rows, train_labels = training
    val_store, val_rows, val_labels = validation
    length = int(round(config.clip_seconds * classifier.sample_rate))
    data = CropBatches(
        train_store, train_rows, train_labels, length, config.seed, config.pad_mode, None
    )
    loader = batch_loader(
        data,
        config.batch_size,
        config.seed,
        pin_memory=device.type == "cuda",
        drop_last=len(data) > config.batch_size,
    )
    batches = min(len(loader), config.max_batches_per_epoch or len(loader))
    total_steps = config.epochs * math.ceil(batches / config.grad_accumulation)
    weight = class_weights(train_labels, config.class_weighted)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32, device=device))
    optimizer = _optimizer(classifier, config)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.warmup_ratio * total_steps), total_steps
    )
    precision = _precision(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "float16-mixed")
    autocast = {
        "device_type": device.type,
        "enabled": precision != "float32",
        "dtype": torch.bfloat16 if precision == "bfloat16-mixed" else torch.float16,
    }
    trainable = [p for p in classifier.parameters() if p.requires_grad]

    def optimizer_step() -> None:
        if config.max_grad_norm > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    val_waves = [val_store[int(r)] for r in val_rows]
    best_eer, best_epoch, best_state, best_scores = math.inf, 0, None, None
    history, stale = [], 0
    for epoch in range(1, config.epochs + 1):
        data.epoch = epoch
        classifier.train()
        t0, total, seen, pending = time.perf_counter(), 0.0, 0, False
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(
            loader,
            total=batches,
            desc=f"{config.name} epoch {epoch}",
            disable=not progress,
            leave=False,
        )
        optimizer.zero_grad(set_to_none=True)
        for step, (x, y) in enumerate(bar, start=1):
            if step > batches:
                break
            y = y.to(device)
            with torch.autocast(**autocast):
                logits = classifier(x.to(device))
            loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainingError(f"{config.name}: loss became {loss.item()} at epoch {epoch}")
            scaler.scale(loss / config.grad_accumulation).backward()
            pending = step % config.grad_accumulation != 0
            if not pending:
                optimizer_step()
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if pending:  # the last batches of the epoch, fewer than grad_accumulation
            optimizer_step()
        scores = score_waves(
            classifier,
            val_waves,
            length,
            config.pad_mode,
            config.batch_size,
            device,
            progress=False,
        )
        eer = equal_error_rate(scores[val_labels == REAL], scores[val_labels == FAKE]).eer
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / max(seen, 1),
                "val_eer": eer,
                "lr": lr,
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        if eer < best_eer:
            best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in classifier.state_dict().items()
            }
            best_eer, best_epoch, best_scores, stale = eer, epoch, scores, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    classifier.load_state_dict(best_state)
    return pd.DataFrame(history), best_epoch, best_scores


def write_hf_run(
    folder: Path,
    classifier: HFAudioClassifier,
    config: HFFinetuneConfig,
    threshold: float,
    val_eer: float,
    history: pd.DataFrame,
    best_epoch: int,
    val_ids: list[str],
    val_scores: np.ndarray,
    provenance: dict,
    dataset: dict,
    fingerprint: str,
) -> Path:
    """Write the detector folder of a fine-tuned model (layout in the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    sub = folder / HF_SUBFOLDER
    if sub.exists():
        shutil.rmtree(sub)
    classifier.save_pretrained(sub)
    run_config = {
        "model": {
            "name": HF_AUDIO_MODEL,
            "kwargs": {
                "source": config.model,
                "model_type": classifier.model.config.model_type,
                "subfolder": HF_SUBFOLDER,
                "head_note": classifier.head_note,
            },
        },
        "preprocessing": {
            "sample_rate": classifier.sample_rate,
            "clip_seconds": config.clip_seconds,
            "crop": "random",
            "pad_mode": config.pad_mode,
            "normalization": "none",  # the model's feature extractor normalises
        },
        "threshold": float(threshold),
        "val_eer": float(val_eer),
        "best_epoch": int(best_epoch),
        "training": config.resolved(),
        "dataset": dataset,
        "fingerprint": fingerprint,
        HF_FILES_KEY: hf_file_checksums(sub),
    }
    # No weights of dfa's own: export_detector writes the config and model card, and removes
    # the metrics of earlier weights.
    export_detector(folder, None, run_config, metrics=None)
    history.to_csv(folder / "train_log.csv", index=False)
    (folder / "scores").mkdir(exist_ok=True)
    write_scores_asvspoof2021(folder / "scores" / "validation.txt", val_ids, val_scores)
    write_json(folder / "provenance.json", provenance)
    return folder


def _previous_run(folder: Path, fingerprint: str, config: HFFinetuneConfig) -> HFRun | None:
    """The finished run in ``folder`` when its fingerprint matches, else None."""
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint or not (folder / HF_SUBFOLDER).is_dir():
            return None
        history = pd.read_csv(folder / "train_log.csv")
        return HFRun(
            config,
            folder,
            int(saved["best_epoch"]),
            float(saved["val_eer"]),
            float(saved["threshold"]),
            history,
            True,
            0.0,
            str(saved["model"]["kwargs"].get("head_note", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, partial or from another version: train again


def main(argv: list[str] | None = None) -> int:
    """Fine-tune a model on a protocol from the command line; print the run folder."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.training.hf_finetune",
        description="Fine-tune an AutoModelForAudioClassification (hub id or local folder) on "
        "a protocol's training split and write a detector folder that dfa and transformers "
        "(its hf/ subfolder) both load.",
    )
    parser.add_argument("model", help="hub id (facebook/wav2vec2-base) or local model folder")
    parser.add_argument("--dataset", default="offline", help="offline, a FoR version or a folder")
    parser.add_argument("--protocol", default="in-domain", help="protocol to train on")
    parser.add_argument("--data-dir", default="data", help="where corpora live")
    parser.add_argument("--cache-dir", default=None, help="decoded-audio cache")
    parser.add_argument("--out", default="runs/hf", help="run folders: <out>/<protocol>/<name>")
    parser.add_argument("--name", default=None, help="run folder name (default <model>_hf)")
    parser.add_argument("--max-per-class", type=int, default=0, help="0: every clip")
    defaults = HFFinetuneConfig(model="-")
    for key in (
        "epochs",
        "batch_size",
        "grad_accumulation",
        "learning_rate",
        "clip_seconds",
        "freeze_layers",
        "patience",
        "seed",
    ):
        value = getattr(defaults, key)
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    parser.add_argument("--train-feature-encoder", action="store_true", help="do not freeze it")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    args = parser.parse_args(argv)
    budget = FinetuneBudget(args.max_per_class or None, args.epochs, args.device)
    config = hf_finetune_config(
        args.model,
        budget,
        freeze_layers=args.freeze_layers,
        clip_seconds=args.clip_seconds,
        batch_size=args.batch_size,
        grad_accumulation=args.grad_accumulation,
        learning_rate=args.learning_rate,
        seed=args.seed,
        device=args.device,
    )
    config = dataclasses.replace(
        config,
        name=args.name or config.name,
        patience=args.patience,
        freeze_feature_encoder=not args.train_feature_encoder,
    )
    cache_dir = args.cache_dir or str(Path(args.data_dir) / "cache")
    try:
        load_source_config(config.model)  # a wrong name fails before the data is decoded
        data = prepare_protocol(
            args.dataset,
            args.protocol,
            args.data_dir,
            cache_dir,
            budget.max_per_class,
            seed=args.seed,
        )
        run = finetune_hf(config, data, Path(args.out) / args.protocol)
    except (HFModelError, TrainingError, OSError, ValueError) as error:
        print(f"hf_finetune: {error}", file=sys.stderr)
        return 2
    print(f"{run.folder}  validation EER {100 * run.val_eer:.2f} % (epoch {run.best_epoch})")
    if run.head_note:
        print(run.head_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
