"""Inference benchmark: scoring speed in multiples of real time, and peak memory on a long file.

For each detector (a folder given with ``--model``, or an architecture built untrained with
``--build``: speed does not depend on the weights) it measures, each as the median of
``--repeats`` runs after one warm-up:

- ``single_clip``: one training-length clip at a time (the latency a user of the app sees);
- ``batch``: ``--batch-clips`` clips scored together, their windows pooled into batches;
- ``batch_without_checks``: the same with the input checks off, as evaluation scores;
- ``long_file``: a synthetic ``--long-seconds`` file (default one hour, 16 kHz 16-bit WAV)
  scored end to end from disk (decode + windows + model) in a fresh process, whose peak
  resident memory (``VmHWM``) is reported along with the memory of that process just
  before scoring (Python, torch and the detector loaded).

All three go through the detector's interactive path, the one ``dfa predict`` and the app use,
so they include the silence floor and the speech-activity check (:mod:`dfa_lib.features.vad`);
``speech_activity`` times that check alone, on the same kinds of input (a 1.5-s clip, the
batch, and a signal of up to ten minutes held in memory).

"x real time" is seconds of audio scored per second of wall-clock time. Results go to stdout
as a table and to ``--output`` as JSON. Example::

    python -m dfa_lib.studies.bench.inference --model runs/quick/lcnn --output reports/bench.json
    python -m dfa_lib.studies.bench.inference --build original_cnn --build lcnn --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dfa_lib.detector.folder import CLASSICAL_MODELS, export_detector
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.scorer import resolve_device
from dfa_lib.features.vad import SpeechActivityUnavailable, load_speech_activity
from dfa_lib.models.classical import build_classical
from dfa_lib.models.registry import build_model

SAMPLE_RATE = 16000


def _proc_status_mb(field: str) -> float | None:
    """Read a memory field (kB) of /proc/self/status in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    ``VmHWM`` is the high-water mark of this process's own memory; ``ru_maxrss`` is the
    fallback, but on Linux a child inherits its parent's value through fork and exec.
    """
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    current = _proc_status_mb("VmRSS")
    return current if current is not None else _peak_rss_mb()


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: first calls allocate buffers and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def synthetic_speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Return a deterministic test signal: noise bursts and gliding tones at speech-like levels."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tone = 0.2 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t)
    envelope = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(np.float64)
    return ((tone + 0.05 * rng.standard_normal(n)) * envelope).astype(np.float32)


def write_long_file(
    path: Path,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    channels: int = 1,
    chunk_seconds: float = 60.0,
) -> Path:
    """Write a long PCM-16 WAV chunk by chunk, so the writer never holds it all."""

    with sf.SoundFile(path, "w", sample_rate, channels, subtype="PCM_16") as out:
        done, i = 0.0, 0
        while done < seconds:
            step = min(chunk_seconds, seconds - done)
            # Generated at 16 kHz and stretched by index: only the decoding cost matters here.
            chunk = synthetic_speechlike(step, seed=i)
            n = int(round(step * sample_rate))
            chunk = chunk[np.minimum(np.arange(n) * SAMPLE_RATE // sample_rate, chunk.size - 1)]
            out.write(np.repeat(chunk[:, None], channels, axis=1) if channels > 1 else chunk)
            done += step
            i += 1
    return path


def build_untrained(spec: str, folder: Path) -> Path:
    """Export an untrained detector for ``spec`` (``name`` or ``name:{json kwargs}``)."""

    name, _, raw = spec.partition(":")
    kwargs = json.loads(raw) if raw else {}
    clip_seconds = 1.0 if name == "original_cnn" else 4.0
    config = {
        "model": {"name": name, "kwargs": kwargs},
        "preprocessing": {"sample_rate": SAMPLE_RATE, "clip_seconds": clip_seconds},
        "threshold": 0.0,
        "dataset": {"note": "untrained, for speed measurements only"},
    }
    if name in CLASSICAL_MODELS:
        # Fitted on a few synthetic clips: the cost of scoring does not depend on the fit.
        waves = [synthetic_speechlike(clip_seconds, seed=i) for i in range(8)]
        waves = [w * (0.5 if i % 2 else 1.0) for i, w in enumerate(waves)]
        model = build_classical(name, **kwargs).fit(waves, ["real", "fake"] * 4)
    else:
        torch.manual_seed(0)
        model = build_model(name, **kwargs)
    return export_detector(folder / name, model, config, overwrite=True)


def _parameter_count(detector: Any) -> int | None:
    if not detector.is_torch:
        return None
    return int(sum(p.numel() for p in detector.model.parameters()))


def bench_in_memory(detector: Any, repeats: int, batch_clips: int) -> dict[str, Any]:
    """Time single-clip and batched scoring of training-length clips held in memory."""
    clip = synthetic_speechlike(detector.window_seconds, seed=1)
    single, single_times = _median_time(lambda: detector.score_waveform(clip, SAMPLE_RATE), repeats)
    clips = [synthetic_speechlike(detector.window_seconds, seed=10 + i) for i in range(batch_clips)]
    batched, batch_times = _median_time(lambda: detector.score_batch(clips, SAMPLE_RATE), repeats)
    unchecked, unchecked_times = _median_time(
        lambda: detector.score_batch(clips, SAMPLE_RATE, input_checks=False), repeats
    )
    audio = detector.window_seconds
    return {
        "single_clip": {
            "audio_seconds": audio,
            "median_seconds": single,
            "runs_seconds": single_times,
            "x_realtime": audio / single,
        },
        "batch": {
            "clips": batch_clips,
            "audio_seconds": audio * batch_clips,
            "median_seconds": batched,
            "runs_seconds": batch_times,
            "x_realtime": audio * batch_clips / batched,
        },
        "batch_without_checks": {  # no silence floor, no speech-activity check (evaluation)
            "clips": batch_clips,
            "audio_seconds": audio * batch_clips,
            "median_seconds": unchecked,
            "runs_seconds": unchecked_times,
            "x_realtime": audio * batch_clips / unchecked,
        },
    }


def bench_speech_activity(
    repeats: int, batch_clips: int, long_seconds: float, clip_seconds: float = 1.5
) -> dict[str, Any]:
    """Time the speech-activity check alone: one clip, ``batch_clips`` clips, one long signal."""

    activity = load_speech_activity()
    clip = synthetic_speechlike(clip_seconds, seed=1)
    clips = [synthetic_speechlike(clip_seconds, seed=10 + i) for i in range(batch_clips)]
    long = synthetic_speechlike(long_seconds, seed=2)
    out: dict[str, Any] = {}
    for name, fn, audio in (
        ("single_clip", lambda: activity.probabilities(clip, SAMPLE_RATE), clip_seconds),
        (
            "batch",
            lambda: activity.probabilities_many(clips, SAMPLE_RATE),
            clip_seconds * batch_clips,
        ),
        ("long_signal", lambda: activity.probabilities(long, SAMPLE_RATE), long_seconds),
    ):
        median, times = _median_time(fn, repeats)
        out[name] = {
            "audio_seconds": audio,
            "median_seconds": median,
            "runs_seconds": times,
            "x_realtime": audio / median,
        }
    return out


def _long_file_child(folder: str, path: str, repeats: int, device: str, threads: int) -> None:
    """Run in a fresh process: score ``path`` ``repeats`` times; print JSON with timings and RSS."""

    if threads:
        torch.set_num_threads(threads)

    detector = load_detector(folder, device=device)
    detector.score_waveform(synthetic_speechlike(detector.window_seconds), SAMPLE_RATE)
    before = _current_rss_mb()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = detector.score_path(path)
        times.append(time.perf_counter() - start)
    assert result is not None
    print(
        json.dumps(
            {
                "audio_seconds": result.duration,
                "n_windows": result.n_windows,
                "median_seconds": statistics.median(times),
                "runs_seconds": times,
                "x_realtime": result.duration / statistics.median(times),
                "rss_before_mb": before,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def bench_long_file(
    folder: Path, path: Path, repeats: int, device: str, threads: int
) -> dict[str, Any]:
    """Score the long file in a fresh process so its peak memory is its own."""
    cmd = [
        sys.executable,
        "-m",
        "dfa_lib.studies.bench.inference",
        "--long-file-child",
        str(folder),
    ]
    cmd += ["--long-file", str(path), "--repeats", str(repeats), "--device", device]
    cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"long-file benchmark of {folder} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_benchmark(
    folders: list[Path],
    repeats: int = 3,
    batch_clips: int = 64,
    long_seconds: float = 3600.0,
    device: str = "auto",
    threads: int = 0,
    workdir: Path | None = None,
    long_sample_rate: int = SAMPLE_RATE,
    long_channels: int = 1,
    speech_activity: bool = True,
) -> dict[str, Any]:
    """Benchmark each detector folder; returns a JSON-serialisable report.

    ``speech_activity=False`` leaves out the timing of the speech-activity check alone.
    """

    if threads:
        torch.set_num_threads(threads)
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "torch_threads": torch.get_num_threads(),
            "device": str(resolve_device(device)),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            # Other processes competing for the CPUs slow every figure down; keep the context.
            "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "settings": {
            "repeats": repeats,
            "batch_clips": batch_clips,
            "long_seconds": long_seconds,
            "long_sample_rate": long_sample_rate,
            "long_channels": long_channels,
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        long_path = None
        if long_seconds > 0:
            long_path = write_long_file(
                Path(tmp) / "long.wav", long_seconds, long_sample_rate, long_channels
            )
        for folder in folders:
            detector = load_detector(folder, device=device)
            entry: dict[str, Any] = {
                "detector": str(folder),
                "model": detector.model_name,
                "parameters": _parameter_count(detector),
                "window_seconds": detector.window_seconds,
            }
            entry.update(bench_in_memory(detector, repeats, batch_clips))
            if long_path is not None:
                entry["long_file"] = bench_long_file(folder, long_path, repeats, device, threads)
            report["results"].append(entry)
            print(_summary_line(entry), file=sys.stderr, flush=True)
    if not speech_activity:
        return report

    try:
        long_signal = min(long_seconds, 600.0) or 60.0
        report["speech_activity"] = bench_speech_activity(repeats, batch_clips, long_signal)
    except SpeechActivityUnavailable as error:
        report["speech_activity"] = {"unavailable": str(error)}
    return report


def _summary_line(entry: dict[str, Any]) -> str:
    parts = [
        f"{entry['model']:<14}",
        f"single {entry['single_clip']['x_realtime']:8.0f}x",
        f"batch {entry['batch']['x_realtime']:8.0f}x",
        f"(unchecked {entry['batch_without_checks']['x_realtime']:6.0f}x)",
    ]
    if "long_file" in entry:
        long = entry["long_file"]
        parts.append(
            f"{long['audio_seconds'] / 60:.0f}-min file {long['x_realtime']:7.0f}x, "
            f"peak {long['peak_rss_mb']:.0f} MB (before scoring {long['rss_before_mb']:.0f} MB)"
        )
    return "  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print a summary and write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.studies.bench.inference", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", action="append", default=[], metavar="FOLDER")
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="NAME[:JSON]",
        help="benchmark an untrained model built by name, e.g. lcnn or 'resnet:{\"width\": 16}'",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--batch-clips", type=int, default=64)
    parser.add_argument(
        "--long-seconds", type=float, default=3600.0, help="length of the long file (0 skips it)"
    )
    parser.add_argument(
        "--long-sample-rate", type=int, default=SAMPLE_RATE, help="sample rate of the long file"
    )
    parser.add_argument("--long-channels", type=int, default=1, help="channels of the long file")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--output", metavar="FILE", help="write the JSON report here")
    parser.add_argument("--long-file-child", help=argparse.SUPPRESS)
    parser.add_argument("--long-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.long_file_child:
        _long_file_child(
            args.long_file_child, args.long_file, args.repeats, args.device, args.threads
        )
        return 0
    if not args.model and not args.build:
        parser.error("give at least one --model FOLDER or --build NAME")
    with tempfile.TemporaryDirectory() as built:
        folders = [Path(m) for m in args.model]
        folders += [build_untrained(spec, Path(built)) for spec in args.build]
        report = run_benchmark(
            folders,
            args.repeats,
            args.batch_clips,
            args.long_seconds,
            args.device,
            args.threads,
            long_sample_rate=args.long_sample_rate,
            long_channels=args.long_channels,
        )
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
