"""Train detectors on one protocol in every process a launcher starts (data parallel).

Every process runs this module with the same arguments; the engine
(:mod:`dfa_lib.training.engine`) trains data-parallel through Hugging Face Accelerate when a
launcher started several processes, and in this one process otherwise. On the GPUs of one
machine::

    accelerate launch --num_processes 4 -m dfa_lib.training.distributed \\
        --dataset asvspoof2019-la --protocol in-domain --model aasist --runs-dir runs/ddp

On CPUs (gloo; ``accelerate launch --cpu`` starts a single process)::

    torchrun --standalone --nproc_per_node 2 -m dfa_lib.training.distributed \\
        --dataset offline --protocol in-domain --model lcnn --epochs 5 --runs-dir runs/ddp

``--model`` names baselines of 02_cnn (:data:`~dfa_lib.training.baselines.BASELINE_NAMES`,
trained with 02's settings) or networks of the model registry, one or more (comma-separated,
trained in turn); a classical model fits in the main process while the others wait. Each run
folder is ``<runs-dir>/<protocol>/<name>``, as 02_cnn writes it, and is a detector that
``dfa predict`` loads. One process per machine decodes the clips into the cache first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dfa_lib.data.errors import DatasetError
from dfa_lib.data.protocol_data import ProtocolUnavailableError, prepare_protocol
from dfa_lib.models.networks import ModelConfigError
from dfa_lib.models.registry import MODEL_NAMES, PRETRAINED_MODEL_NAMES
from dfa_lib.training.baselines import (
    BASELINE_NAMES,
    BaselineSettings,
    UnknownBaselineError,
    baseline_config,
    train_on_protocols,
)
from dfa_lib.training.engine import (
    TrainConfig,
    TrainingError,
    launched_accelerator,
    launched_processes,
)
from dfa_lib.training.plan import training_groups

# TrainConfig fields that the command-line option of the same name replaces when given.
OVERRIDES: tuple[str, ...] = (
    "epochs",
    "batch_size",
    "learning_rate",
    "patience",
    "clip_seconds",
    "grad_accumulation",
    "max_batches_per_epoch",
    "num_workers",
)


def run_configs(args: argparse.Namespace) -> list[TrainConfig]:
    """Return the training configs the options describe, one per model of ``--model``.

    A baseline starts from 02_cnn's settings (:func:`baseline_config`); a registry network
    from :class:`TrainConfig`'s defaults. ``--model-kwargs`` entries replace the model's
    keyword arguments of the same name, and each option given replaces its field.
    """
    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    except json.JSONDecodeError as error:
        raise TrainingError(
            f"--model-kwargs is not valid JSON ({error}): {args.model_kwargs!r}"
        ) from None
    if not isinstance(kwargs, dict):
        raise TrainingError(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
    models = [m for m in args.model.split(",") if m]
    if args.name and len(models) != 1:
        raise TrainingError(f"--name names the folder of one model, not of {models}")
    changes = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    configs = []
    for model in models:
        if model in BASELINE_NAMES:
            settings = BaselineSettings(
                seed=args.seed, device=args.device, cache_dir=args.cache_dir
            )
            config = baseline_config(model, settings)
        elif model in MODEL_NAMES + PRETRAINED_MODEL_NAMES:
            config = TrainConfig(name=model, model=model, seed=args.seed, device=args.device)
        else:
            raise UnknownBaselineError(
                f"unknown model {model!r}; choose a baseline {list(BASELINE_NAMES)} or a "
                f"network {list(MODEL_NAMES + PRETRAINED_MODEL_NAMES)}"
            )
        configs.append(
            dataclasses.replace(
                config,
                name=args.name or config.name,
                model_kwargs={**config.model_kwargs, **kwargs},
                **changes,
            )
        )
    return configs


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of this module."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.training.distributed",
        description=(
            "Train one detector on one protocol. Started by accelerate launch or torchrun with "
            "several processes, it trains data-parallel: batch-size stays the whole batch, "
            "which the processes share."
        ),
    )
    parser.add_argument("--dataset", default="offline", help="offline (default), or any dataset")
    parser.add_argument("--protocol", default="in-domain", help="training protocol")
    parser.add_argument(
        "--model",
        required=True,
        help=f"a baseline ({', '.join(BASELINE_NAMES)}) or a registry network; several, "
        "comma-separated, train one after another",
    )
    parser.add_argument("--model-kwargs", metavar="JSON", help="model keyword arguments")
    parser.add_argument("--name", help="run folder name (default: the model's)")
    parser.add_argument("--data-dir", default="data", metavar="DIR", help="where corpora live")
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="decoded-audio cache (default: <data-dir>/cache)"
    )
    parser.add_argument(
        "--runs-dir",
        default="runs/distributed",
        metavar="DIR",
        help="run folders go to <runs-dir>/<protocol>/<name> (default runs/distributed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--device", default="auto", help="auto (default) | cuda | cpu")
    parser.add_argument(
        "--max-per-class",
        type=int,
        default=0,
        help="cap on training and validation clips per class (default 0: every clip)",
    )
    parser.add_argument("--epochs", type=int, help="maximum epochs")
    parser.add_argument("--batch-size", type=int, help="clips per batch, all processes together")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate")
    parser.add_argument("--patience", type=int, help="epochs without a better validation EER")
    parser.add_argument("--clip-seconds", type=float, help="training crop and scoring window, s")
    parser.add_argument("--grad-accumulation", type=int, help="batches per optimizer step")
    parser.add_argument("--max-batches-per-epoch", type=int, help="cap for quick experiments")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers per process")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train the configured detector; return the exit status (0 trained, 2 bad input)."""
    args = build_parser().parse_args(argv)
    args.cache_dir = cache_dir = args.cache_dir or str(Path(args.data_dir) / "cache")
    try:
        configs = run_configs(args)
        accelerator = launched_accelerator(configs) if launched_processes() > 1 else None
        if accelerator is not None:
            # One process per machine decodes the clips into the cache; the others then read
            # it, rather than all writing the same files at once.
            with accelerator.local_main_process_first():
                for cap, _ in training_groups(configs, args.max_per_class):
                    prepare_protocol(
                        args.dataset,
                        args.protocol,
                        args.data_dir,
                        cache_dir,
                        max_per_class=cap,
                        seed=args.seed,
                        splits=("training", "validation"),
                        progress=accelerator.is_local_main_process,
                    )
        training = train_on_protocols(
            {args.protocol: configs},
            args.dataset,
            args.data_dir,
            cache_dir,
            args.runs_dir,
            max_per_class=args.max_per_class,
            seed=args.seed,
        )
    except (
        TrainingError,
        DatasetError,
        ProtocolUnavailableError,
        UnknownBaselineError,
        ModelConfigError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if accelerator is None or accelerator.is_main_process:
        print(training.validation_table().to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
