"""Render ``reports/bench.json`` as ``reports/bench.html``: tables, targets and whether each is met."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from dfa_lib.studies.bench.architectures import render as render_architectures
from dfa_lib.studies.bench.runtimes import render as render_runtimes

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.met { background: #dfd; } .missed { background: #fdd; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 85%; }
p.note { color: #555; }
"""


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if 0 < abs(value) < 0.1:  # millisecond epochs would otherwise print as 0.00
            return f"{value:.2g}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f" class='{classes[i]}'" if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "missed")


def _targets(report: dict[str, Any]) -> str:
    rows, classes = [], []
    if "loading" in report:
        r = report["loading"]
        rows.append(["data loading speedup", f"≥ {r['target_speedup']:g}x", r["speedup"]])
        classes.append(_verdict(r["meets_target"]))
    if "heads" in report:
        r = report["heads"]
        rows.append(["head on cache vs backbone", f"≥ {r['target_speedup']:g}x", r["min_speedup"]])
        classes.append(_verdict(r["meets_target"]))
    end_to_end = report.get("end_to_end") or {}
    for run in end_to_end.get("make_reports_runs") or []:
        label = "cold (from nothing)" if run["kind"] == "from nothing" else "warm"
        rows.append(
            [f"make reports, {label}", f"≤ {run['target_s']:g} s", run["timings_s"]["total"]]
        )
        classes.append(_verdict(run["meets_target"]))
    rows = [[*r, {"met": "yes", "missed": "no"}[c]] for r, c in zip(rows, classes, strict=True)]
    return _table(["figure", "target", "measured", "met"], rows, classes)


def _loading(r: dict[str, Any]) -> str:
    rows = [
        [
            "dfa_lib loader",
            r["dfa_loader"]["clips_per_second"],
            ", ".join(f"{v:.3f}" for v in r["dfa_loader"]["epoch_runs_s"]),
        ],
        [
            "original (librosa per item)",
            r["original_loader"]["clips_per_second"],
            ", ".join(f"{v:.3f}" for v in r["original_loader"]["epoch_runs_s"]),
        ],
    ]
    return (
        f"<p>{r['clips']} clips of the training split, {r['crop_seconds']:g}-s random crops, "
        f"batches of {r['batch_size']}. Speedup <b>{r['speedup']:.1f}x</b>. dfa_lib decodes the "
        f"clips once first ({r['dfa_loader']['one_off_decode_s']:.2f} s, not in the epochs).</p>"
        + _table(["loader", "clips/s (median)", "epoch runs (s)"], rows)
        + f"<p class='note'>dfa_lib: {html.escape(r['dfa_loader']['what'])}. Original: "
        f"{html.escape(r['original_loader']['what'])}.</p>"
    )


def _training(r: dict[str, Any]) -> str:
    rows = [
        [
            name,
            m["clip_seconds"],
            m["epoch_s"],
            m["training_pass_s"],
            m["validation_pass_s"],
            m["ms_per_training_clip"],
        ]
        for name, m in r["models"].items()
    ]
    header = ["model", "crop (s)", "s/epoch", "training pass (s)", "validation pass (s)"]
    return (
        f"<p>{r['training_clips']} training and {r['validation_clips']} validation clips "
        f"({html.escape(r['protocol'])}), batches of {r['batch_size']} "
        f"({r['batches_per_epoch']} per epoch), device {html.escape(r['device'])}, "
        f"{r['torch_threads']} torch threads. Extrapolated: {html.escape(r['method'])}.</p>"
        + _table([*header, "ms per training clip"], rows)
    )


def _heads(r: dict[str, Any]) -> str:
    rows = [["backbone every epoch", r["backbone_epoch_s"], 1.0]]
    rows += [
        [f"head {name!r} on cache", h["head_epoch_s"], h["speedup_vs_backbone_epoch"]]
        for name, h in r["heads"].items()
    ]
    cfg = r["config"]
    backbone = r.get("backbone", {})
    name = backbone.get("name", cfg["backbone"]) if isinstance(backbone, dict) else cfg["backbone"]
    return (
        f"<p>Backbone {html.escape(str(name))}, {cfg['clips']} clips of "
        f"{cfg['clip_seconds']:g} s, batches of {cfg['batch_size']}. One-off feature extraction: "
        f"{r['extraction']['clips_per_second']:.2f} clips/s; encoder "
        f"{r['encoder_ms_per_1s_clip']:.1f} ms per 1-s clip.</p>"
        + _table(["epoch", "s (median)", "speedup"], rows)
    )


def _codecs(r: dict[str, Any]) -> str:
    rows = [
        [
            f"{c['codec']} {c['bitrate']}",
            c["av_ms_per_clip"],
            c["ffmpeg_ms_per_clip"],
            c["speedup"],
        ]
        for c in r["codecs"]
    ]
    cfg = r["config"]
    return (
        f"<p>{cfg['clips']} training clips of about {cfg['clip_seconds']:.1f} s, each codec "
        "setting of the augmentation mix and the degradation sweep, no cache (what a training "
        "epoch pays on a cache miss). A dash: that backend has no encoder for it.</p>"
        + _table(["codec", "PyAV ms/clip", "ffmpeg program ms/clip", "speedup"], rows)
        + _codec2_copies(r.get("codec2_copies"))
    )


def _codec2_copies(r: dict[str, Any] | None) -> str:
    if r is None:  # a record from before the Codec 2 copies
        return ""
    if r["error"]:
        return f"<p>Codec 2 copies not timed: {html.escape(r['error'])}</p>"
    return (
        "<p>Codec 2 copies of the same clips (<code>TrainConfig.vocoded_fakes</code>), "
        "resampled to 8 kHz and back:</p>"
        + _table(["mode", "ms/clip"], [[m, v] for m, v in r["ms_per_clip"].items()])
    )


def _inference(r: dict[str, Any]) -> str:
    rows = []
    for e in r["results"]:
        long = e.get("long_file", {})
        rows.append(
            [
                e["model"],
                e["window_seconds"],
                e["single_clip"]["x_realtime"],
                e["batch"]["x_realtime"],
                e.get("batch_without_checks", {}).get("x_realtime"),
                long.get("x_realtime"),
                long.get("peak_rss_mb"),
                long.get("rss_before_mb"),
            ]
        )
    header = ["model", "window (s)", "single clip (x real time)", "batch (x real time)"]
    header += ["batch, input checks off (x real time)"]
    header += ["long file (x real time)", "long file peak MB", "MB before scoring"]
    settings = r["settings"]
    vad = r.get("speech_activity") or {}
    if "unavailable" in vad:
        vad_text = (
            f"<p>Speech-activity check: not measured ({html.escape(vad['unavailable'])}).</p>"
        )
    elif vad:
        vad_text = (
            "<p>Every figure above includes the speech-activity check of "
            "<code>dfa_lib.features.vad</code>; alone it reads "
            f"{vad['single_clip']['x_realtime']:.0f}x real time on one "
            f"{vad['single_clip']['audio_seconds']:g}-s clip, "
            f"{vad['batch']['x_realtime']:.0f}x on the batch and "
            f"{vad['long_signal']['x_realtime']:.0f}x on a "
            f"{vad['long_signal']['audio_seconds'] / 60:g}-minute signal in memory.</p>"
        )
    else:
        vad_text = ""
    return (
        f"<p>Detectors: {html.escape(str(r.get('detectors', '')))}. Batch: "
        f"{settings['batch_clips']} clips; long file: {settings['long_seconds'] / 60:g} minutes "
        "scored from disk in a fresh process.</p>" + _table(header, rows) + vad_text
    )


def _end_to_end(r: dict[str, Any]) -> str:
    parts = []
    for run in r.get("make_reports_runs") or []:
        start = run.get("start") or {}
        rows = [[k, v] for k, v in run["timings_s"].items()]
        parts.append(
            f"<p><code>make reports</code> {html.escape(run['kind'])} "
            f"({html.escape(str(run.get('created_utc')))}, commit "
            f"{html.escape(str(run.get('git_commit'))[:10])}; it found a built corpus: "
            f"{start.get('corpus_built')}, trained detector folders: "
            f"{start.get('detector_folders')}).</p>" + _table(["step", "seconds"], rows)
        )
    if not r.get("make_reports_runs"):
        parts.append(
            "<p>No <code>reports/run_history.jsonl</code>: run <code>make reports</code> "
            "(from nothing, then again with nothing changed).</p>"
        )
    builds = r.get("corpus_build") or {}
    if builds:
        rows = [[k, b["seconds"], b["clips"], b["finished_utc"]] for k, b in builds.items()]
        parts.append(_table(["corpus build", "seconds", "clips", "finished (UTC)"], rows))
    return "".join(parts)


def _app_load(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"<p>Not measured: {html.escape(r['error'])}</p>"
    cfg = r["config"]
    rows = [
        ["server memory before the uploads (MB)", r["server_rss_before_mb"]],
        ["server peak (MB, VmHWM)", r["server_peak_rss_mb"]],
        [
            "server (resident) and its ffmpeg children (proportional), peak MB, sampled",
            r["server_and_children_peak_mb"],
        ],
        ["uploads with a verdict", f"{r['completed']} of {cfg['uploads']}"],
        ["median seconds per upload, first byte to verdict", r["upload_s_median"]],
        ["slowest upload (s)", r["upload_s_max"]],
        ["all uploads (s)", r["wall_s"]],
    ]
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in r.get("errors") or [])
    return (
        f"<p>{cfg['uploads']} browser sessions upload at once to <code>streamlit run</code> on "
        f"{html.escape(cfg['address'])} ({html.escape(cfg['protocol'])}), each "
        f"{cfg['upload_seconds']:g} s of speech-like audio in {html.escape(cfg['codec'])}, "
        f"scored by the {html.escape(str(r.get('detector_source', '')))} "
        f"<code>{html.escape(cfg['detector'])}</code> detector.</p>"
        + _table(["figure", "value"], rows)
        + (f"<p>Failures:</p><ul>{errors}</ul>" if errors else "")
    )


def _history(entries: list[dict[str, Any]]) -> str:
    rows = [
        [e["stage"], e["change"], e["metric"], e["before"], e["after"], e.get("measured", "")]
        for e in entries
    ]
    notes = "".join(
        f"<li>{html.escape(e['change'])}: {html.escape(e['note'])}</li>"
        for e in entries
        if e.get("note")
    )
    header = ["stage", "change", "metric", "before", "after", "measured"]
    return _table(header, rows) + (f"<ul>{notes}</ul>" if notes else "")


def render_html(report: dict[str, Any]) -> str:
    """Return the benchmark page for a ``bench.json`` record."""
    m = report["machine"]
    load_start = report.get("load_average_at_start") or []
    load_end = report.get("load_average_at_end") or []
    sections = [f"<h2>Targets</h2>{_targets(report)}"]
    titles = {
        "loading": ("1. Data loading", _loading),
        "training": ("2. Training", _training),
        "heads": ("3. Pretrained features", _heads),
        "codecs": ("4. Codec round trips", _codecs),
        "inference": ("5. Inference", _inference),
        "end_to_end": ("6. End to end", _end_to_end),
        "app-load": ("7. The app under load", _app_load),
        "architectures": ("8. Networks: size and CPU cost", render_architectures),
        "runtimes": ("9. Edge runtimes: torch, ONNX and int8", render_runtimes),
    }
    for key, (title, render) in titles.items():
        if report.get(key) is not None:
            sections.append(f"<h2>{title}</h2>{render(report[key])}")
    sections.append(f"<h2>History of speed changes</h2>{_history(report.get('history', []))}")
    versions = ", ".join(f"{k} {v}" for k, v in report.get("packages", {}).items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dfa speed benchmark</title><style>{STYLE}</style></head>
<body>
<h1>dfa speed benchmark</h1>
<p>{html.escape(str(report.get("created_utc", "")))}, commit
<code>{html.escape(str(report.get("git", {}).get("commit", "unknown"))[:12])}</code>.
Machine: {m.get("cpu_count")} CPUs ({m.get("affinity_cpus")} usable),
{m.get("torch_threads")} torch threads, GPU: {html.escape(str(m.get("gpu") or "none"))},
{html.escape(str(m.get("platform")))}, Python {html.escape(str(m.get("python")))}.
Load average (1, 5, 15 min) at start {", ".join(f"{v:.2f}" for v in load_start)},
at end {", ".join(f"{v:.2f}" for v in load_end)}: other processes slow every figure down.</p>
<p class="note">Every figure is the median of {report["config"]["repeats"]} runs after a warm-up,
measured in the same run as the reference it is compared with. Versions: {html.escape(versions)}.
</p>
{"".join(sections)}
<h2>Raw record</h2>
<p><a href="bench.json">bench.json</a></p>
</body></html>
"""


def write_html(json_path: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    """Read ``bench.json`` and write the page beside it; return the page's path."""
    report = json.loads(Path(json_path).read_text())
    out = Path(html_path)
    out.write_text(render_html(report), encoding="utf-8")
    return out
