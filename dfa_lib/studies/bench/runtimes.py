"""The ``runtimes`` stage of ``make bench``: neural detectors under torch, ONNX float32 and int8.

For each neural detector of the profile (:data:`DEFAULT_DETECTORS`, trained on the in-domain and
on the unseen-generator protocol), four runtimes (:data:`RUNTIME_NAMES`): torch float32, ONNX
float32, ONNX int8 with dynamic quantisation and ONNX int8 with static quantisation calibrated
on clips of the detector's own training split
(:mod:`dfa_lib.detector.onnx_runtime`). Measured for each:

- size: the torch state dict's bytes (encoder included) or the ONNX file's size, in MB;
- latency per second of audio on one core (``torch.set_num_threads(1)``, onnxruntime with one
  intra-op thread): a batch of ``batch_windows`` windows, median of ``repeats`` runs after a
  warm-up, divided by the seconds of audio; the real-time factor is the same ratio;
- latency of one streaming hop: one window, batch 1, median likewise;
- EER on the in-domain and unseen-generator test protocols, each scored by the detector trained
  for that protocol through the same runtime, on at most ``clips_per_class`` test clips per
  class (the same clips for every runtime, so the runtimes are compared on equal terms).

The exports go to a temporary folder (``runtime_export_dir`` keeps them, as
``<protocol>/<detector>/``), never into the run folders. The rows are written to ``bench.json``
and to ``runtimes.csv`` beside it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dfa_lib.data.protocol_data import prepare_protocol
from dfa_lib.detector.folder import DetectorFormatError, read_detector_config
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.onnx_runtime import (
    ONNX_FILE,
    OnnxModel,
    export_onnx,
    neural_check,
    quantize,
    read_onnx_record,
    torch_scores,
)
from dfa_lib.detector.scorer import Detector
from dfa_lib.scoring.metrics import equal_error_rate

RUNTIME_NAMES: tuple[str, ...] = (
    "torch fp32",
    "onnx fp32",
    "onnx int8 dynamic",
    "onnx int8 static",
)
PROTOCOLS: tuple[str, ...] = ("in-domain", "unseen-generator")
# The profile's neural detectors measured by default: the two networks and two encoder heads
# on Whisper base (the linear probe and the layer-weighted pooled head), encoder included.
DEFAULT_DETECTORS: tuple[str, ...] = (
    "original_cnn",
    "lcnn",
    "whisper-base_probe",
    "whisper-base_wpool",
)
INT8_FILES = {
    "onnx int8 dynamic": "model.int8-dynamic.onnx",
    "onnx int8 static": "model.int8-static.onnx",
}
# Targets for the edge (docs/edge.md): int8 against torch float32, and one streaming hop.
SPEEDUP_TARGET = 2.0  # int8 at least this many times faster
SIZE_TARGET = 3.0  # int8 at least this many times smaller
EER_TARGET_POINTS = 0.5  # int8 EER within this many percentage points of torch's
HOP_TARGET_MS = 100.0  # one window, batch 1, one core (CNN/LCNN family)


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: buffers, kernels, onnxruntime's first-run allocations
    times = []
    for _ in range(max(5, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _state_dict_mb(model: torch.nn.Module) -> float:
    tensors = {id(t): t for t in model.state_dict().values()}.values()
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def _sample_clips(
    config: Any, protocol: str, split: str, per_class: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to ``per_class`` decoded clips of each class of a protocol's split, seeded."""
    data = prepare_protocol(
        config.dataset,
        protocol,
        config.data_dir,
        config.clip_cache,
        seed=config.seed,
        splits=(split,),
        progress=False,
    )
    frame = data.frames[split]
    picked = []
    for label in ("real", "fake"):
        rows = frame.index[frame["label"] == label].to_numpy()
        rng = np.random.default_rng(config.seed)
        picked += sorted(rng.permutation(rows)[:per_class].tolist())
    store = data.stores[split]
    keep = [i for i in picked if store.ok(i)]
    return [store[i] for i in keep], frame.loc[keep, "label"].to_numpy()


def _eer(detector: Detector, waves: list[np.ndarray], labels: np.ndarray) -> float:
    scores = detector.score_waves(waves)
    return 100.0 * equal_error_rate(scores[labels == "real"], scores[labels == "fake"]).eer


def _runtime_models(
    folder: Path, torch_detector: Detector, cache: Path, calibration: list[np.ndarray]
) -> dict[str, tuple[Any, float]]:
    """Each runtime's model object and its size in MB (exports made here, into ``cache``)."""
    model = torch_detector.model
    export_onnx(folder, model, destination=cache)
    quantize(folder, "dynamic", destination=cache, output_name=INT8_FILES["onnx int8 dynamic"])
    quantize(
        folder,
        "static",
        calibration,
        destination=cache,
        output_name=INT8_FILES["onnx int8 static"],
    )
    fixed = read_onnx_record(cache)["files"][ONNX_FILE]["input_samples"]
    out: dict[str, tuple[Any, float]] = {"torch fp32": (model, _state_dict_mb(model))}
    for name, file_name in (("onnx fp32", ONNX_FILE), *INT8_FILES.items()):
        path = cache / file_name
        out[name] = (OnnxModel(path, fixed, threads=1), path.stat().st_size / 1e6)
    return out


def _latencies(model: Any, window: int, batch_windows: int, repeats: int, sr: int) -> dict:
    rng = np.random.default_rng(0)
    batch = (0.05 * rng.standard_normal((batch_windows, window))).astype(np.float32)
    one = batch[:1]
    score: Callable[[np.ndarray], Any] = (
        (lambda x: torch_scores(model, x)) if isinstance(model, torch.nn.Module) else model.score
    )
    batch_ms = _median_ms(lambda: score(batch), repeats)
    seconds = batch_windows * window / sr
    return {
        "ms_per_audio_second": batch_ms / seconds,
        "real_time_factor": batch_ms / 1000.0 / seconds,
        "hop_ms": _median_ms(lambda: score(one), repeats),
    }


def _detector_with(model: Any, torch_detector: Detector) -> Detector:
    return Detector(
        model,
        torch_detector.config,
        folder=torch_detector.folder,
        device="cpu",
        metrics=torch_detector.metrics,
        silence_dbfs=None,
        min_speech_seconds=None,
    )


def measure_runtimes(config: Any, progress: bool = True) -> dict[str, Any]:
    """Run the stage for a :class:`~dfa_lib.studies.bench.stages.BenchConfig`; JSON-ready.

    ``config.extra`` may set ``runtime_detectors`` (folder names, default
    :data:`DEFAULT_DETECTORS`), ``runtime_clips_per_class`` (test clips per class for the EERs,
    default 100), ``runtime_calibration_clips`` (training clips for static quantisation,
    default 64), ``runtime_batch_windows`` (windows per timed batch, default 8) and
    ``runtime_export_dir`` (keep the exports there; default: a temporary folder, removed).
    """
    extra = config.extra or {}
    names = tuple(extra.get("runtime_detectors", DEFAULT_DETECTORS))
    per_class = int(extra.get("runtime_clips_per_class", 100))
    n_calibration = int(extra.get("runtime_calibration_clips", 64))
    batch_windows = int(extra.get("runtime_batch_windows", 8))
    base = Path(config.runs_dir) / config.profile / config.dataset
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    # The exports weigh hundreds of MB with the Whisper heads: kept only when asked for.
    scratch = tempfile.TemporaryDirectory(prefix="dfa-runtimes-")
    kept = extra.get("runtime_export_dir")
    cache_root = Path(kept) if kept else Path(scratch.name)
    try:
        for protocol in PROTOCOLS:
            folders = [base / protocol / n for n in names if (base / protocol / n).is_dir()]
            if not folders:
                continue
            test_waves, test_labels = _sample_clips(config, protocol, "testing", per_class)
            train_waves, _ = _sample_clips(config, protocol, "training", n_calibration // 2)
            for folder in folders:
                try:
                    neural_check(folder, read_detector_config(folder))
                except DetectorFormatError as error:
                    skipped[f"{protocol}/{folder.name}"] = str(error)
                    continue
                started = time.perf_counter()
                torch_detector = load_detector(folder, device="cpu", silence_dbfs=None)
                model = torch_detector.model
                window = round(torch_detector.window_seconds * torch_detector.sample_rate)
                runtimes = _runtime_models(
                    folder, torch_detector, cache_root / protocol / folder.name, train_waves
                )
                parameters = int(sum(p.numel() for p in model.parameters()))
                for runtime, (runtime_model, size_mb) in runtimes.items():
                    row: dict[str, Any] = {
                        "detector": folder.name,
                        "model": torch_detector.model_name,
                        "protocol": protocol,
                        "runtime": runtime,
                        "size_mb": size_mb,
                        "parameters": parameters,
                        "window_seconds": window / torch_detector.sample_rate,
                        "test_clips": len(test_waves),
                        "eer_%": _eer(
                            _detector_with(runtime_model, torch_detector), test_waves, test_labels
                        ),
                    }
                    if protocol == PROTOCOLS[0]:  # speed and size do not depend on the data
                        row.update(
                            _latencies(
                                runtime_model,
                                window,
                                batch_windows,
                                config.repeats,
                                torch_detector.sample_rate,
                            )
                        )
                    rows.append(row)
                if progress:
                    print(
                        f"runtimes: {protocol}/{folder.name} in "
                        f"{time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
    finally:
        torch.set_num_threads(threads)
        scratch.cleanup()
    table = summary(rows)
    csv_path = Path(config.reports_dir) / "runtimes.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path, index=False, float_format="%.4g")
    return {
        "rows": rows,
        "summary": table.to_dict(orient="records"),
        "skipped": skipped,
        "csv": str(csv_path),
        "clips_per_class": per_class,
        "calibration_clips": n_calibration,
        "batch_windows": batch_windows,
        "threads": 1,
        "targets": {
            "speedup": SPEEDUP_TARGET,
            "size": SIZE_TARGET,
            "eer_points": EER_TARGET_POINTS,
            "hop_ms": HOP_TARGET_MS,
        },
    }


def summary(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per detector and runtime: size, speed, both EERs and the ratios to torch."""
    columns = [
        "detector",
        "runtime",
        "size_mb",
        "parameters",
        "ms_per_audio_second",
        "real_time_factor",
        "hop_ms",
        "eer_in_domain_%",
        "eer_unseen_generator_%",
        "smaller_than_torch",
        "faster_than_torch",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    speed = frame[frame["protocol"] == PROTOCOLS[0]].set_index(["detector", "runtime"])
    eers = frame.pivot_table(index=["detector", "runtime"], columns="protocol", values="eer_%")
    table = speed.drop(columns=["eer_%", "protocol"]).join(
        eers.rename(columns=lambda p: f"eer_{p.replace('-', '_')}_%")
    )
    table = table.reset_index()
    torch_rows = table[table["runtime"] == RUNTIME_NAMES[0]].set_index("detector")
    table["smaller_than_torch"] = [
        torch_rows.loc[d, "size_mb"] / s
        for d, s in zip(table["detector"], table["size_mb"], strict=True)
    ]
    table["faster_than_torch"] = [
        torch_rows.loc[d, "ms_per_audio_second"] / v
        for d, v in zip(table["detector"], table["ms_per_audio_second"], strict=True)
    ]
    order = {name: i for i, name in enumerate(RUNTIME_NAMES)}
    table["rank"] = table["runtime"].map(order)
    table = table.sort_values(["detector", "rank"])
    return table.reindex(columns=[c for c in columns if c in table.columns]).reset_index(drop=True)


def render(report: dict[str, Any]) -> str:
    """The stage's section of ``bench.html``: the summary table and the targets."""
    table = pd.DataFrame(report.get("summary", []))
    if table.empty:
        return "<p>No neural detector found.</p>"
    targets = report["targets"]
    note = (
        f"<p class='note'>One core; latency per second of audio from batches of "
        f"{report['batch_windows']} windows, hop latency from one window; EERs on at most "
        f"{report['clips_per_class']} test clips per class. Targets: int8 at least "
        f"{targets['speedup']:g}x faster and {targets['size']:g}x smaller than torch float32 "
        f"with EER within {targets['eer_points']:g} points; one hop under "
        f"{targets['hop_ms']:g} ms for the CNN/LCNN family. Also in "
        f"<code>{report['csv']}</code>.</p>"
    )
    return table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0) + note
