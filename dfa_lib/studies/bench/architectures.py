"""Size and CPU speed of every registered network: parameters, milliseconds per second of audio.

Each network of :data:`~dfa_lib.models.registry.MODEL_NAMES` is built with its default
settings (untrained: speed does not depend on the weights) and, on the CPU in the calling
process's torch threads:

* scores one clip of ``seconds`` (or its fixed input length) in evaluation mode, batch 1:
  inference milliseconds per second of audio (below 1,000 is faster than real time);
* takes Adam training steps (forward, cross-entropy, backward, update) on ``train_batch``
  such clips: training milliseconds per second of audio, which times the seconds of audio
  of an epoch give its training pass.

Each figure is the median of ``repeats`` timed runs after one warm-up, as wall-clock time
and as the process's CPU time (all threads), which other processes on the same cores disturb
less.
"""

from __future__ import annotations

import html
import statistics
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from dfa_lib.models.networks import count_parameters
from dfa_lib.models.registry import MODEL_NAMES, build_model

SAMPLE_RATE = 16000


@torch.inference_mode()
def _forward_seconds(
    model: torch.nn.Module, waves: torch.Tensor, repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` forward passes after a warm-up."""
    model(waves)  # warm-up: first-call allocations and kernel selection
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model(waves)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def _training_step_seconds(
    model: torch.nn.Module, waves: torch.Tensor, repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` Adam steps after a warm-up step."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    labels = torch.arange(len(waves)) % 2

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(waves), labels).backward()
        optimizer.step()

    step()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    model.eval()
    return wall, cpu


def run_architecture_benchmark(
    repeats: int = 3,
    seconds: float = 4.0,
    names: Sequence[str] = MODEL_NAMES,
    progress: bool = True,
    seed: int = 0,
    train_batch: int = 4,
) -> dict[str, Any]:
    """Return parameter counts and CPU inference time per second of audio of ``names``.

    ``seconds`` is the clip length of the variable-length networks (4 s: the input of the
    raw-waveform papers); a network with a fixed ``input_samples`` gets exactly that many.
    """
    if repeats < 1 or seconds <= 0 or train_batch < 2:
        raise ValueError(
            f"repeats must be >= 1, seconds > 0 and train_batch >= 2 (BatchNorm needs two "
            f"clips), got {repeats}, {seconds} and {train_batch}"
        )
    generator = torch.Generator().manual_seed(seed)
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        model = build_model(name).eval()
        samples = getattr(model, "input_samples", None) or int(round(seconds * SAMPLE_RATE))
        waves = 0.1 * torch.randn(1, samples, generator=generator)
        runs, cpu_runs = _forward_seconds(model, waves, repeats)
        batch = 0.1 * torch.randn(train_batch, samples, generator=generator)
        steps, cpu_steps = _training_step_seconds(model, batch, repeats)
        audio_s = samples / SAMPLE_RATE
        ms_per_audio_s = 1000 * statistics.median(runs) / audio_s
        models[name] = {
            "parameters": count_parameters(model),
            "input_seconds": audio_s,
            "runs_s": runs,
            "ms_per_audio_second": ms_per_audio_s,
            # CPU time of this process over all its threads: less sensitive than the wall
            # clock to other processes sharing the cores.
            "cpu_ms_per_audio_second": 1000 * statistics.median(cpu_runs) / audio_s,
            "training_steps_s": steps,
            "training_ms_per_audio_second": 1000
            * statistics.median(steps)
            / (train_batch * audio_s),
            "training_cpu_ms_per_audio_second": (
                1000 * statistics.median(cpu_steps) / (train_batch * audio_s)
            ),
            "x_realtime": 1000 / ms_per_audio_s,
        }
        if progress:
            print(
                f"architectures {name}: {models[name]['parameters']:,} parameters, "
                f"{ms_per_audio_s:.1f} ms per second of audio to score, "
                f"{models[name]['training_ms_per_audio_second']:.1f} to train on",
                flush=True,
            )
    return {
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "batch": 1,
        "train_batch": train_batch,
        "method": (
            f"default settings, untrained; one {seconds:g}-s clip (or the network's fixed "
            f"input) in evaluation mode, and Adam steps on {train_batch} such clips; median of "
            f"{repeats} runs after a warm-up, divided by the seconds of audio"
        ),
        "models": models,
    }


def architecture_figures(section: dict[str, Any]) -> dict[str, float]:
    """Return the headline figures of a :func:`run_architecture_benchmark` record, by name."""
    out: dict[str, float] = {}
    for name, entry in section["models"].items():
        out[f"architectures: {name} parameters"] = float(entry["parameters"])
        out[f"architectures: {name} CPU ms per audio s"] = entry["ms_per_audio_second"]
        out[f"architectures: {name} CPU training ms per audio s"] = entry[
            "training_ms_per_audio_second"
        ]
    return out


def render(section: dict[str, Any]) -> str:
    """The stage's section of ``bench.html``: one row per network, and how it was measured."""
    rows = [
        {
            "model": name,
            "parameters": f"{entry['parameters']:,}",
            "score ms / audio s": round(entry["ms_per_audio_second"], 2),
            "train ms / audio s": round(entry["training_ms_per_audio_second"], 2),
            "x real time": round(entry["x_realtime"], 1),
        }
        for name, entry in section["models"].items()
    ]
    note = (
        f"<p class='note'>{html.escape(section['method'])}; {section['torch_threads']} torch "
        "thread(s).</p>"
    )
    return pd.DataFrame(rows).to_html(index=False, border=0) + note
