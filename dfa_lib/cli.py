"""The ``dfa`` command line.

- ``dfa predict`` scores audio files with a trained detector;
- ``dfa evaluate`` scores run folders on a protocol's test split (for instance detectors
  trained on another machine, on the cross-source corpus) and writes their metrics;
- ``dfa audit`` runs the shortcut audit on a built corpus;
- ``dfa stream`` scores audio as it arrives (a file, raw PCM on standard input, a microphone),
  one window score per hop and a running verdict (docs/streaming.md).

Each command lives in its own ``add_<command>_parser`` function that registers a subparser and
its handler, so new commands join :func:`build_parser` in one line. Exit status: 0 when every
file or folder was done, 1 when some failed (each failure still gets a row), 2 for a usage
error, 130 when ``dfa predict`` was interrupted (the rows written so far are kept, and
``--resume`` goes on from them) or ``dfa stream`` was stopped with Ctrl-C (after its summary).
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from dfa_lib import __version__
from dfa_lib.data.audio import SILENCE_FLOOR_DBFS, AudioError, TruncatedAudioWarning
from dfa_lib.data.datasets import DatasetError
from dfa_lib.data.live import (
    PCM_FORMATS,
    LiveSource,
    MicrophoneUnavailable,
    check_stream_rate,
    file_source,
    microphone_source,
    pcm_source,
)
from dfa_lib.data.manifest import ManifestError, read_manifest
from dfa_lib.data.protocol_data import ProtocolUnavailableError, prepare_protocol
from dfa_lib.data.protocols import PROTOCOLS, ProtocolError
from dfa_lib.detector.explain import explain_path
from dfa_lib.detector.folder import DetectorFormatError
from dfa_lib.detector.loading import load_detector
from dfa_lib.detector.onnx_runtime import RUNTIMES
from dfa_lib.detector.scorer import resolve_device
from dfa_lib.detector.streaming import (
    DEFAULT_HOP_SECONDS,
    HopScore,
    StreamScorer,
    StreamSummary,
)
from dfa_lib.evaluation.audit import shortcut_audit
from dfa_lib.evaluation.evaluate import evaluate_folders, run_folders
from dfa_lib.features.vad import MIN_SPEECH_SECONDS, SpeechActivityUnavailable
from dfa_lib.reporting.explain_plots import save_explanation

__all__ = ["AUDIO_EXTENSIONS", "CSV_COLUMNS", "build_parser", "expand_inputs", "main"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C

# Extensions collected when a folder is given; a file named explicitly is always tried.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4",
        ".webm", ".wma", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".g722",
        ".gsm", ".ulaw", ".alaw", ".amr", ".sph", ".voc",
    }
)  # fmt: skip
CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "p_fake",
    "label",
    "threshold",
    "duration",
    "n_windows",
    "n_audible_windows",
    "n_windows_in_mean",
    "speech_seconds",
    "speech_found",
    "error",
)
_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: Sequence[str]) -> list[tuple[str, str | None]]:
    """Expand files, folders (recursively) and globs into ``(path, problem)`` pairs.

    ``problem`` is None for a path to score, or a message for an input that names no audio
    (a glob that matches nothing, a folder without audio files); such inputs become error rows.
    A path that does not exist is kept so that scoring reports it. Duplicates are dropped.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, problem: str | None = None) -> None:
        if problem is None and path in seen:
            return
        seen.add(path)
        out.append((path, problem))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                add(item, f"{item}: folder holds no audio files ({', '.join(_sample_exts())} ...)")
            for p in found:
                add(p)
        elif not path.exists() and _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                add(item, f"{item}: no file matches this pattern")
            for m in files:
                add(m)
        else:
            add(item)
    return out


def _sample_exts() -> list[str]:
    return [".wav", ".flac", ".mp3", ".ogg", ".m4a"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from error
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability of fake in [0, 1] is needed, got {value}")
    return value


def _number_or_off(text: str, needed: str, ok: Any, rule: str) -> float | None:
    """Parse ``off`` (None) or a number for which ``ok(value)`` holds; else a usage error."""
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{needed} or 'off' is needed, got {text!r}") from error
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def _silence_floor(text: str) -> float | None:
    return _number_or_off(
        text, "a level in dBFS", lambda v: v <= 0.0, "a level in dBFS is at most 0"
    )


def _min_speech(text: str) -> float | None:
    return _number_or_off(
        text, "a number of seconds", lambda v: v >= 0.0, "seconds of speech are at least 0"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from error
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from error
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_predict_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dfa predict``: score audio files with a trained detector."""
    parser = subparsers.add_parser(
        "predict",
        help="score audio files with a trained detector",
        description=(
            "Score audio files (any format ffmpeg or libsndfile reads) with a detector folder. "
            "Long files are scored in windows; the file's probability of fake is the sigmoid "
            "of minus the mean window bona fide score, through the calibration the folder "
            "carries (fitted on its validation scores; none: the raw score). One row per file."
        ),
        epilog=(
            "examples:\n"
            "  dfa predict clip.wav --model runs/quick/lcnn\n"
            "  dfa predict recordings/ '**/*.mp3' --model runs/quick/lcnn --format jsonl "
            "--output scores.jsonl\n"
            "  dfa predict long.flac --model runs/quick/lcnn --hop 1 --threshold 0.8\n"
            "  dfa predict recordings/ --model runs/quick/lcnn --output scores.csv --resume\n"
            "file names that are not UTF-8 are written with \\xNN escapes for their bytes.\n"
            "exit status: 0 every file scored, 1 some failed (see their error column), "
            "2 usage error, 130 interrupted (the rows so far are kept)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    parser.add_argument(
        "--model", required=True, metavar="FOLDER", help="detector folder (a run folder)"
    )
    parser.add_argument(
        "--window",
        type=_positive_float,
        metavar="S",
        help="window seconds (default: training clip)",
    )
    parser.add_argument(
        "--hop", type=_positive_float, metavar="S", help="hop seconds (default: the window)"
    )
    parser.add_argument(
        "--format",
        choices=("csv", "json", "jsonl"),
        default="csv",
        help="csv: one line per file; json/jsonl add every window's probability (default csv)",
    )
    parser.add_argument(
        "--threshold",
        type=_probability,
        metavar="T",
        help="probability of fake at or above which a file is labelled fake "
        "(default: the detector's validation-EER threshold)",
    )
    parser.add_argument(
        "--silence-floor",
        type=_silence_floor,
        default=SILENCE_FLOOR_DBFS,
        metavar="DBFS",
        help="windows whose loudest 20 ms frame is quieter are left out of the file score, and "
        f"a file with no louder window is an error (default {SILENCE_FLOOR_DBFS:g}; 'off' "
        "scores everything)",
    )
    parser.add_argument(
        "--min-speech",
        type=_min_speech,
        default=MIN_SPEECH_SECONDS,
        metavar="S",
        help="a file with fewer seconds of speech (Silero VAD) is scored but flagged: "
        "speech_found is false and a warning goes to stderr; its verdict is about a sound the "
        "detector was not trained on; in a file with speech, windows holding less are left "
        f"out of the file score (default {MIN_SPEECH_SECONDS:g}; 'off' skips the check)",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write results here instead of stdout (never one of the inputs)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with an --output csv or jsonl file that exists: skip the inputs it already has a "
        "row for and append the others (to finish an interrupted run)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=32, metavar="N", help="windows per forward"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the GPU when torch sees one, else the CPU",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what runs a neural detector: torch (default), or its ONNX export through "
        "onnxruntime, float32 (onnx) or int8 (onnx-int8); exported into the folder on first "
        "use (python -m dfa_lib.detector.onnx_runtime export FOLDER writes it beforehand)",
    )
    parser.add_argument(
        "--explain",
        metavar="DIR",
        help="also write, per scored file, DIR/<file name>.explain.png and .explain.json: "
        "P(fake) per window and an occlusion saliency map of its first 60 s (where in time "
        "and frequency the verdict comes from; a few seconds per 4 s of audio)",
    )
    parser.set_defaults(handler=_run_predict)
    return parser


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dfa evaluate``: score run folders on one protocol's test split."""

    parser = subparsers.add_parser(
        "evaluate",
        help="score run folders on a protocol's test split and write their metrics",
        description=(
            "Score trained detectors (run folders, or folders holding them) on the test split "
            "of one protocol, with each detector's own validation-EER threshold. Score files "
            "(ASVspoof 2019 and 2021 forms) and metrics.json are written into each run folder, "
            "as 05_evaluation writes them; fusions are evaluated from their members' score "
            "files. A folder already evaluated on the same test split with the same weights is "
            "read back. On another dataset than a detector's own the results are filed as "
            "<dataset>.<protocol>, beside its own. One row per folder."
        ),
        epilog=(
            "examples:\n"
            "  dfa evaluate runs/ablation/cuda/lcnn-phase --protocol cross-source\n"
            "  dfa evaluate runs/default/offline/in-domain/lcnn --protocol in-domain "
            "--format csv --output lcnn.csv\n"
            "  dfa evaluate runs/default/offline/in-domain --dataset for-2sec --protocol "
            "in-domain\n"
            "exit status: 0 every folder evaluated, 1 some failed (see their error column), "
            "2 usage error (unknown protocol, missing data, no run folder)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folders", nargs="+", metavar="RUN", help="run folders, or folders that hold run folders"
    )
    parser.add_argument(
        "--protocol",
        required=True,
        metavar="NAME",
        help=f"the test split: {', '.join(PROTOCOLS)} (offline corpus); in-domain for others",
    )
    parser.add_argument(
        "--dataset",
        default="offline",
        help="offline (default), a FoR version, a folder in FoR layout or a csv of path,label",
    )
    parser.add_argument("--data-dir", default="data", metavar="DIR", help="where corpora live")
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="decoded-audio cache (default: <data-dir>/cache)",
    )
    parser.add_argument(
        "--n-boot",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="bootstrap replicates for the EER interval (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score again even where the folder holds this test split's metrics",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table: aligned text (default); csv or json: every column",
    )
    parser.add_argument("--output", metavar="FILE", help="write results here instead of stdout")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the GPU when torch sees one, else the CPU",
    )
    parser.set_defaults(handler=_run_evaluate)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dfa`` parser with one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="dfa",
        description="Audio deepfake detection: score files and evaluate trained detectors.",
    )
    parser.add_argument("--version", action="version", version=f"dfa {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_predict_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_audit_parser(subparsers)
    add_stream_parser(subparsers)
    return parser


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dfa audit``: the shortcut audit of a built corpus."""
    parser = subparsers.add_parser(
        "audit",
        help="run the shortcut audit on a built corpus",
        description=(
            "Can the label be told from metadata or from the channel alone (duration, level, "
            "silence, bandwidth, speech activity)? Prints each cue's AUC on the corpus."
        ),
    )
    parser.add_argument("--data-dir", default="data", help="folder that holds the corpora")
    parser.add_argument("--corpus", default="offline-main", help="corpus folder name")
    parser.set_defaults(handler=_run_audit)
    return parser


def _run_audit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    corpus = Path(args.data_dir) / args.corpus
    try:
        manifest = read_manifest(corpus / "manifest.csv")
    except (ManifestError, OSError) as error:
        parser.error(f"no built corpus at {corpus} ({error}); build it with `make data`")
    print(shortcut_audit(manifest, corpus).summary())
    return EXIT_OK


def _row(path: str, result: Any = None, error: str | None = None) -> dict[str, Any]:
    if error is not None:
        row = {
            "path": path,
            "p_fake": None,
            "label": None,
            "threshold": None,
            "duration": None,
            "n_windows": None,
            "n_audible_windows": None,
            "n_windows_in_mean": None,
            "speech_seconds": None,
            "speech_found": None,
            "error": error,
        }
    else:
        row = {"path": path, **result.to_dict(windows=True), "error": None}
    return _safe_value(row)


def _safe_value(value: Any) -> Any:
    """``value`` with every string in it (also in lists and dicts) made by :func:`_safe_text`."""
    if isinstance(value, str):
        return _safe_text(value)
    if isinstance(value, list | tuple):
        return [_safe_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _safe_value(v) for k, v in value.items()}
    return value


def _safe_text(text: str) -> str:
    """Return ``text`` writable as UTF-8: bytes of a file name that are not UTF-8 become \\xNN.

    On POSIX a file name is bytes; Python carries the bytes that are not UTF-8 as lone
    surrogates, which no UTF-8 writer accepts, so one odd name would stop a batch midway.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class _Writer:
    """Stream rows as CSV, JSON lines or the items of one JSON list, flushing each row.

    A JSON list is written item by item and closed by :meth:`close`, which runs however the
    batch ends, so an interrupted run leaves a valid list of the rows done.
    """

    def __init__(self, stream: TextIO, fmt: str, header: bool = True) -> None:
        self.stream = stream
        self.fmt = fmt
        self.count = 0
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            if header:
                self.csv.writeheader()
        elif fmt == "json":
            stream.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "csv":
            self.csv.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(row) + "\n")
        else:
            item = textwrap.indent(json.dumps(row, indent=2), "  ")
            self.stream.write(("," if self.count else "") + "\n" + item)
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def _score_rows(detector: Any, inputs: list[tuple[str, str | None]], args: Any) -> Iterator[dict]:
    """Yield one row per input, in input order, scoring the valid paths in groups."""
    valid = [p for p, problem in inputs if problem is None]
    scored = detector.score_paths(valid, window_seconds=args.window, hop_seconds=args.hop)
    for path, problem in inputs:
        if problem is not None:
            yield _row(path, error=problem)
            continue
        _, result = next(scored)  # score_paths keeps the input order
        if isinstance(result, Exception):
            yield _row(path, error=str(result))
        else:
            yield _row(path, result)


def _input_named_by(output: str, inputs: list[tuple[str, str | None]]) -> str | None:
    """Return the input that ``output`` names (same path, link or hard link), if any."""
    target = Path(output)
    if not target.exists():
        return None
    resolved = target.resolve()
    for path, problem in inputs:
        if problem is not None:
            continue
        try:
            if Path(path).resolve() == resolved or os.path.samefile(path, target):
                return path
        except OSError:  # a missing input: it cannot be the output
            continue
    return None


def _rows_done(path: Path, fmt: str, parser: argparse.ArgumentParser) -> tuple[set[str], bool]:
    """Read the paths an earlier run wrote to ``path``; return them and whether a header is there.

    A last line cut short (a run killed while writing it) is removed, so that its input is
    scored again and the file stays well formed.
    """
    with path.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            f.truncate(len(data))
    text = data.decode("utf-8", "replace")
    if not text.strip():
        return set(), False
    if fmt == "csv":
        # Quoted fields may hold line breaks (a file name can): let the csv module split rows.
        reader = csv.reader(io.StringIO(text, newline=""))
        if tuple(next(reader)) != CSV_COLUMNS:
            parser.error(
                f"--resume: {path} is not a csv written by dfa predict (its header differs); "
                "give another --output"
            )
        return {row[0] for row in reader if row}, True
    done = set()
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        try:
            done.add(str(json.loads(line)["path"]))
        except (ValueError, TypeError, KeyError):
            parser.error(
                f"--resume: line {number} of {path} is not a row written by dfa predict; "
                "give another --output"
            )
    return done, True


def _run_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:

    if args.resume and not args.output:
        parser.error("--resume needs --output: the csv or jsonl file of the run to go on with")
    if args.resume and args.format == "json":
        parser.error(
            "--resume works with --format csv or jsonl (a JSON list cannot be appended to)"
        )
    try:
        detector = load_detector(
            args.model,
            device=args.device,
            threshold=args.threshold,
            batch_size=args.batch_size,
            silence_dbfs=args.silence_floor,
            min_speech_seconds=args.min_speech,
            runtime=args.runtime,
        )
        detector.window_and_hop(args.window, args.hop)  # reject a bad --window before any work
        if args.min_speech is not None:
            detector.speech_activity  # noqa: B018 - load it now: a missing model is a usage error
    except (DetectorFormatError, ValueError, SpeechActivityUnavailable) as error:
        parser.error(str(error))
    if args.explain:
        try:
            Path(args.explain).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(f"cannot write explanations to --explain {args.explain}: {error}")
    inputs = expand_inputs(args.paths)
    failed = 0
    no_speech = 0
    header = True
    out: TextIO
    if args.output:
        clobbered = _input_named_by(args.output, inputs)
        if clobbered is not None:
            parser.error(
                f"--output {args.output} is one of the inputs ({clobbered}): writing the "
                "results there would destroy that audio; choose another file"
            )
        if args.resume and Path(args.output).is_file():
            done, header_written = _rows_done(Path(args.output), args.format, parser)
            header = not header_written
            skipped = [p for p, _ in inputs if _safe_text(p) in done]
            inputs = [(p, problem) for p, problem in inputs if _safe_text(p) not in done]
            print(
                f"dfa predict: {len(skipped)} inputs already in {args.output} (--resume); "
                f"scoring the other {len(inputs)}",
                file=sys.stderr,
            )
        try:
            mode = "a" if args.resume else "w"
            out = open(args.output, mode, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as error:
            parser.error(f"cannot write --output {args.output}: {error}")
    else:
        out = sys.stdout
    writer = _Writer(out, args.format, header=header)
    explained: set[str] = set()  # names of the explanation files written so far
    interrupted = False
    progress = tqdm(total=len(inputs), unit="file", file=sys.stderr, disable=None)
    try:
        for (path, _), row in zip(inputs, _score_rows(detector, inputs, args), strict=True):
            failed += row["error"] is not None
            if args.explain and row["error"] is None:
                _explain_file(detector, path, args, explained, progress)
            if row.get("speech_found") is False:
                no_speech += 1
                progress.write(
                    f"dfa predict: warning: {row['path']}: {row['speech_seconds']:.2f} s of "
                    f"speech found (less than {args.min_speech:g} s); its verdict is about a "
                    "sound the detector was not trained on",
                    file=sys.stderr,
                )
            writer.write(row)
            progress.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        writer.close()  # a JSON list is closed however the batch ended
        if out is not sys.stdout:
            out.close()
    if interrupted:
        where = f" in {args.output}" if args.output else ""
        again = " (--resume goes on from them)" if args.output and args.format != "json" else ""
        print(
            f"dfa predict: interrupted after {writer.count} of {len(inputs)} inputs; their rows "
            f"are kept{where}{again}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if no_speech:
        print(
            f"dfa predict: {no_speech} of {len(inputs)} inputs hold no speech (speech_found "
            "false); their verdicts are kept but mean little",
            file=sys.stderr,
        )
    if failed:
        print(f"dfa predict: {failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _explain_file(
    detector: Any, path: str, args: argparse.Namespace, explained: set[str], progress: Any
) -> None:
    """Write ``--explain``'s figure and JSON for one scored file; a failure only warns.

    Files are named after the input's file name; a name met before in this run gets ``-2``,
    ``-3`` ... so that two inputs never share an explanation.
    """
    base = _safe_text(Path(path).name)
    name, number = base, 1
    while name in explained:
        number += 1
        name = f"{base}-{number}"
    explained.add(name)
    try:
        explanation = explain_path(detector, path, window_seconds=args.window, hop_seconds=args.hop)
        save_explanation(explanation, args.explain, name, source=_safe_text(path))
    except Exception as error:  # noqa: BLE001 - the verdict row stands; the batch goes on
        progress.write(
            f"dfa predict: warning: {_safe_text(path)}: no explanation written "
            f"({type(error).__name__}: {error})",
            file=sys.stderr,
        )


def _run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:

    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        parser.error(str(error))
    folders, problems = run_folders(args.folders)
    if not folders:
        parser.error("; ".join(message for _, message in problems) or "no run folder given")
    cache_dir = args.cache_dir or str(Path(args.data_dir) / "cache")
    try:
        data = prepare_protocol(
            args.dataset,
            args.protocol,
            args.data_dir,
            cache_dir,
            seed=args.seed,
            splits=("testing",),
            progress=sys.stderr.isatty(),
        )
    except (DatasetError, ProtocolUnavailableError, ProtocolError, ManifestError) as error:
        parser.error(str(error))
    if data.frames["testing"].empty:
        parser.error(f"{args.dataset}: the {args.protocol} protocol has no test clips")
    table = evaluate_folders(
        folders,
        data,
        n_boot=args.n_boot,
        seed=args.seed,
        device=args.device,
        reuse=not args.rescore,
        problems=problems,
    )
    _write_table(table, args, parser)
    warned = int((table["error"].isna() & table["warning"].notna()).sum())
    if warned:
        print(
            f"dfa evaluate: {warned} of {len(table)} results come with a warning (see their "
            "warning column): read them before the numbers",
            file=sys.stderr,
        )
    failed = int(table["error"].notna().sum())
    if failed:
        print(f"dfa evaluate: {failed} of {len(table)} folders failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _write_table(table: Any, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Write ``dfa evaluate``'s rows as an aligned table, CSV or a JSON list."""
    if args.format == "csv":
        text = table.to_csv(index=False)
    elif args.format == "json":
        text = json.dumps(
            [{k: (None if _missing(v) else v) for k, v in row.items()} for row in
             table.to_dict(orient="records")],
            indent=2,
        ) + "\n"  # fmt: skip
    else:
        shown = table.drop(columns=["folder", "warning", "error"]).astype(
            {"n": "Int64", "n_undecodable": "Int64"}
        )
        if not (shown["n_undecodable"].fillna(0) > 0).any():
            shown = shown.drop(columns=["n_undecodable"])  # the usual case: no column of zeros
        status = [_status(e, w) for e, w in zip(table["error"], table["warning"], strict=True)]
        shown.insert(len(shown.columns), "status", status)
        text = shown.round(2).to_string(index=False, na_rep="-") + "\n"
        warned = table.loc[table["error"].map(_missing) & ~table["warning"].map(_missing)]
        if len(warned):
            text += "\nwarnings:\n" + "".join(
                f"  {row.model}: {row.warning}\n" for row in warned.itertuples()
            )
        errors = table["error"].dropna()
        if len(errors):
            text += "\nfailed:\n" + "".join(f"  {message}\n" for message in errors)
    if not args.output:
        sys.stdout.write(text)
        return
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as error:
        parser.error(f"cannot write --output {args.output}: {error}")


def _status(error: Any, warning: Any = None) -> str:
    if not _missing(error):
        return "failed"
    return "ok" if _missing(warning) else "warning"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _stream_rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"a whole number of samples per second is needed (e.g. 16000), got {text!r}"
        ) from error
    try:
        return check_stream_rate(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_stream_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dfa stream``: score audio as it arrives, one window score per hop."""
    parser = subparsers.add_parser(
        "stream",
        help="score audio as it arrives (file, standard input or microphone), hop by hop",
        description=(
            "Score a stream with a detector folder: every --hop seconds, the last --window "
            "seconds get a score (the same windows, silence floor, speech check and calibration "
            "as dfa predict --window W --hop H), and the stream gets a running verdict: the "
            "mean window score of the windows that hold speech, as dfa predict judges a file. "
            "Each hop reports its latency; the run says whether scoring kept up with real time."
        ),
        epilog=(
            "examples:\n"
            "  dfa stream clip.wav --model runs/quick/lcnn\n"
            "  dfa stream clip.wav --model runs/quick/lcnn --realtime --hop 0.5\n"
            "  ffmpeg -i in.mp3 -f s16le -ac 1 -ar 16000 - | "
            "dfa stream - --rate 16000 --model runs/quick/lcnn\n"
            "  dfa stream --mic --model runs/quick/lcnn --format jsonl\n"
            "exit status: 0 the stream was scored, 1 its audio could not be read or scored, "
            "2 usage error (no microphone included), 130 stopped with Ctrl-C (after the summary)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="an audio file, or - for headerless PCM on standard input (with --rate)",
    )
    parser.add_argument(
        "--mic",
        nargs="?",
        const="",
        metavar="DEVICE",
        help="record from a microphone (default device, or an index or part of a name)",
    )
    parser.add_argument(
        "--model", required=True, metavar="FOLDER", help="detector folder (a run folder)"
    )
    parser.add_argument(
        "--window",
        type=_positive_float,
        metavar="S",
        help="window seconds (default: training clip)",
    )
    parser.add_argument(
        "--hop",
        type=_positive_float,
        metavar="S",
        help=f"seconds between scores (default {DEFAULT_HOP_SECONDS:g}, or the window if shorter)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play a file at the pace of its audio instead of as fast as it is read",
    )
    parser.add_argument(
        "--rate",
        type=_stream_rate,
        metavar="HZ",
        help="sample rate of the PCM on standard input (needed with -), or the microphone's",
    )
    parser.add_argument(
        "--sample-format",
        choices=tuple(PCM_FORMATS),
        metavar="FMT",
        help="sample encoding of the PCM on standard input: s16le (default) or f32le",
    )
    parser.add_argument(
        "--channels",
        type=_positive_int,
        metavar="N",
        help="interleaved channels of the PCM on standard input, averaged (default 1)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text: a line per hop and a summary (default); jsonl: one JSON object per hop "
        'and a last one with "event": "summary"',
    )
    parser.add_argument(
        "--threshold",
        type=_probability,
        metavar="T",
        help="probability of fake at or above which the stream is labelled fake "
        "(default: the detector's validation-EER threshold)",
    )
    parser.add_argument(
        "--silence-floor",
        type=_silence_floor,
        default=SILENCE_FLOOR_DBFS,
        metavar="DBFS",
        help="windows whose loudest 20 ms frame is quieter are left out of the running verdict "
        f"(default {SILENCE_FLOOR_DBFS:g}; 'off' counts every window)",
    )
    parser.add_argument(
        "--min-speech",
        type=_min_speech,
        default=MIN_SPEECH_SECONDS,
        metavar="S",
        help="once a window holds this much speech (Silero VAD), windows holding less are left "
        f"out of the running verdict (default {MIN_SPEECH_SECONDS:g}; 'off' skips the check)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the GPU when torch sees one, else the CPU",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="what runs the network: torch (default), or its ONNX export through onnxruntime, "
        "float32 (onnx) or int8 (onnx-int8)",
    )
    parser.set_defaults(handler=_run_stream)
    return parser


def _stream_source(
    args: argparse.Namespace, parser: argparse.ArgumentParser, sample_rate: int
) -> LiveSource:
    """Open the source ``dfa stream`` was given, or exit with a usage error saying what is wrong."""
    if (args.source is None) == (args.mic is None):
        parser.error("give one source: an audio file, - for standard input, or --mic")
    pcm_only = {"--sample-format": args.sample_format, "--channels": args.channels}
    if args.source != "-":
        given = [flag for flag, value in pcm_only.items() if value is not None]
        if given:
            parser.error(f"{', '.join(given)} describe PCM on standard input; they need -")
    if args.realtime and args.source in (None, "-"):
        parser.error("--realtime paces a file; standard input and a microphone set their own pace")
    if args.mic is not None:
        try:
            return microphone_source(args.mic or None, args.rate)
        except MicrophoneUnavailable as error:
            parser.error(str(error))
    if args.source == "-":
        if args.rate is None:
            parser.error(
                "--rate is needed with -: headerless PCM does not say its sample rate "
                "(ffmpeg ... -ar 16000 - | dfa stream - --rate 16000 ...)"
            )
        return pcm_source(
            sys.stdin.buffer, args.rate, args.sample_format or "s16le", args.channels or 1
        )
    if args.rate is not None:
        parser.error(f"--rate is for - and --mic; {args.source} says its own rate in its header")
    return file_source(args.source, sample_rate, realtime=args.realtime)


def _hop_line(hop: HopScore) -> str:
    """One readable line about a hop: its window, score, speech gate and the running verdict."""
    if not hop.audible:
        gate = "silent, not counted"
    elif hop.speech_seconds is None:
        gate = "counted" if hop.in_verdict else "not counted"
    else:
        gate = f"speech {hop.speech_seconds:.2f} s" + ("" if hop.in_verdict else ", not counted")
    return (
        f"{hop.time:8.2f} s  window {hop.start:.2f}-{hop.end:.2f} s  P(fake) {hop.p_fake:.3f}  "
        f"({gate})  running: {hop.verdict.upper()} {hop.verdict_p_fake:.3f} over "
        f"{hop.windows_in_verdict} window(s)  {hop.latency_ms:.0f} ms"
        + ("  BEHIND real time" if hop.behind else "")
    )


def _summary_line(summary: StreamSummary, name: str) -> str:
    """The last line of ``dfa stream``: the stream's verdict and whether scoring kept up."""
    head = f"summary: {name}: {summary.seconds:.2f} s of audio, {summary.hops} window(s) of "
    head += f"{summary.window_seconds:g} s every {summary.hop_seconds:g} s: "
    if summary.verdict is None:
        return head + "no verdict (no audio arrived)"
    text = (
        f"{summary.verdict.upper()}, P(fake) {summary.verdict_p_fake:.3f} (threshold "
        f"{summary.threshold:.3f}) over {summary.windows_in_verdict} window(s); latency median "
        f"{summary.median_latency_ms:.0f} ms, max {summary.max_latency_ms:.0f} ms: "
    )
    if summary.keeps_up:
        return head + text + "keeps up with real time"
    return (
        f"{head}{text}CANNOT keep up with real time ({summary.hops_behind} of {summary.hops} "
        "hops fell behind; try a longer --hop, --runtime onnx or --device cuda)"
    )


def _run_stream(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        detector = load_detector(
            args.model,
            device=args.device,
            threshold=args.threshold,
            silence_dbfs=args.silence_floor,
            min_speech_seconds=args.min_speech,
            runtime=args.runtime,
        )
        if args.min_speech is not None:
            detector.speech_activity  # noqa: B018 - load it now: a missing model is a usage error
    except (DetectorFormatError, ValueError, SpeechActivityUnavailable) as error:
        parser.error(str(error))
    try:
        source = _stream_source(args, parser, detector.sample_rate)
        scorer = StreamScorer(detector, source.sample_rate, args.window, args.hop, source.name)
        scorer.warm_up()
    except AudioError as error:
        print(f"dfa stream: {error}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except ValueError as error:
        parser.error(str(error))

    def show(hops: list[HopScore]) -> None:
        for hop in hops:
            if args.format == "jsonl":
                print(json.dumps({"event": "hop", **hop.to_dict()}), flush=True)
            else:
                print(_hop_line(hop), flush=True)
            if hop.behind and not warned:
                warned.append(hop)
                print(
                    f"dfa stream: warning: falling behind real time at {hop.time:.2f} s (the "
                    f"window took {hop.latency_ms:.0f} ms to score; a hop lasts "
                    f"{1000 * scorer.hop_seconds:.0f} ms)",
                    file=sys.stderr,
                )

    warned: list[HopScore] = []
    status = EXIT_OK
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncatedAudioWarning)
        try:
            for chunk in source.chunks:
                show(scorer.feed(chunk))
            show(scorer.finish())
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
            print(f"dfa stream: stopped at {scorer.seconds:.2f} s", file=sys.stderr)
        except AudioError as error:
            status = EXIT_SOME_FAILED
            print(f"dfa stream: {error}", file=sys.stderr)
        finally:
            close = getattr(source.chunks, "close", None)
            if close is not None:
                close()  # a microphone stops recording here
    for warning in caught:
        print(f"dfa stream: warning: {warning.message}", file=sys.stderr)
    summary = scorer.summary()
    if summary.hops == 0 and status == EXIT_OK:
        print(f"dfa stream: {source.name}: no audio arrived, nothing to score", file=sys.stderr)
        status = EXIT_SOME_FAILED
    if summary.speech_found is False:
        print(
            f"dfa stream: warning: {source.name}: no window held {args.min_speech:g} s of "
            "speech; the verdict is about a sound the detector was not trained on",
            file=sys.stderr,
        )
    if args.format == "jsonl":
        record = {"event": "summary", "source": source.name, **summary.to_dict()}
        print(json.dumps(_safe_value(record)))
    else:
        print(_summary_line(summary, source.name))
    sys.stdout.flush()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dfa`` command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    # The subcommand's own parser reports its usage errors.
    sub = _subparser(parser, args.command)
    return handler(args, sub)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    return parser  # pragma: no cover - every command is a subparser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
