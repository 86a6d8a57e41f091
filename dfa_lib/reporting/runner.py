"""``make reports``: build the data, execute the notebooks with papermill, render HTML, write the index.

Each notebook runs with the parameters of a profile (``dfa_lib/profiles/<name>.json``; on a
GPU also its ``gpu_parameters``), in order, on the registered Jupyter kernel. The executed
notebook is kept in ``reports/executed/`` (the immutable record of the run) and rendered to
``reports/<notebook>.html`` with its figures embedded and its set-up hidden (:func:`render_html`).
``reports/index.html`` links every report, shows the headline table (EER by model and protocol)
and the run's record. A failing notebook still gets its HTML (showing the error) and is marked
in the index; the command then exits with status 1.

With ``--guard-extras`` each notebook runs with the packages of the extras its install cell
does not install made unimportable (:mod:`dfa_lib.reporting.import_guard`): what it would lack
in a fresh Colab runtime.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

from dfa_lib.core.provenance import package_versions, provenance_record, write_json
from dfa_lib.data.corpus.build import build_offline_corpus
from dfa_lib.data.manifest import manifest_checksum, read_manifest
from dfa_lib.evaluation.evaluate import find_runs, headline_table, results_table
from dfa_lib.reporting.import_guard import (
    blocked_packages,
    explain,
    guard_environment,
    install_cell_extras,
)
from dfa_lib.training.engine import TrainingError, choose_device

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
PYPROJECT = NOTEBOOKS_DIR.parent / "pyproject.toml"

# Cells the HTML report leaves out: the install cell, the parameters cells (papermill's
# injected one too; the run's parameters are in the index and the report's record) and the
# imports. ``remove-input`` cells show their outputs only: the work before a headline.
REMOVED_CELL_TAGS = frozenset({"remove-cell", "injected-parameters"})
REMOVED_INPUT_TAGS = frozenset({"remove-input"})


class ProfileError(ValueError):
    """The requested profile does not exist or is malformed."""


def load_profile(name: str) -> dict:
    """Return a profile: ``{"description", "data": {...}, "common": {...}, "notebooks": [...]}``."""
    try:
        text = resources.files("dfa_lib.profiles").joinpath(f"{name}.json").read_text()
    except FileNotFoundError as err:
        choices = sorted(
            p.name.removesuffix(".json")
            for p in resources.files("dfa_lib.profiles").iterdir()
            if p.name.endswith(".json")
        )
        raise ProfileError(f"no profile {name!r}; choose one of {choices}") from err
    profile = json.loads(text)
    for key in ("common", "notebooks"):
        if key not in profile:
            raise ProfileError(f"profile {name!r} lacks the {key!r} section")
    return profile


@dataclass
class NotebookRun:
    """What happened to one notebook."""

    name: str
    parameters: dict
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    error: str = ""
    outputs: dict = field(default_factory=dict)


def notebook_parameters(
    profile: dict, notebook: dict, overrides: dict, device_type: str = "cpu"
) -> dict:
    """Merge the profile's common parameters, the notebook's own and command-line overrides.

    On any device but the CPU (``device_type``, a ``torch.device.type``) the notebook's
    ``gpu_parameters`` replace its own before the overrides apply: a profile sized for a
    2-core CPU can give a GPU every clip and more epochs.
    """
    gpu = notebook.get("gpu_parameters", {}) if device_type != "cpu" else {}
    return {**profile["common"], **notebook.get("parameters", {}), **gpu, **overrides}


def notebook_device(profile: dict, notebook: dict, overrides: dict) -> str:
    """Return the type of the device the notebook will run on (its ``device`` parameter)."""
    device = notebook_parameters(profile, notebook, overrides).get("device", "auto")
    return choose_device(str(device)).type


@contextmanager
def environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``variables`` in ``os.environ`` (which a kernel started meanwhile inherits), then restore.

    A variable given as None is removed for the while.
    """
    saved = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute_notebook(
    source: Path,
    executed: Path,
    parameters: dict,
    kernel: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> NotebookRun:
    """Run one notebook with papermill; a failing cell marks the run failed but keeps the output.

    ``env`` holds environment variables for the notebook's kernel only (the import guard's).
    """

    run = NotebookRun(name=source.stem, parameters=parameters)
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        # A kernel that inherits MPLBACKEND (Streamlit, for one, sets it to Agg on import)
        # draws no figure into the report: the kernel picks its inline backend itself.
        with environment({"MPLBACKEND": None, **(env or {})}):
            pm.execute_notebook(
                str(source),
                str(executed),
                parameters=parameters,
                kernel_name=kernel,
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
            )
        run.status = "ok"
    except pm.PapermillExecutionError as err:
        run.status, run.error = "failed", f"{err.ename}: {err.evalue}"
    except Exception as err:  # noqa: BLE001 - kernel start-up problems and the like
        run.status, run.error = "failed", f"{type(err).__name__}: {err}"
    run.seconds = round(time.perf_counter() - start, 1)
    return run


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


class KeepErrorsAndQuietWork(Preprocessor):
    """Before the tag removal: a hidden cell that failed keeps its error, work cells their results.

    A cell tagged for removal whose run raised is shown as its error alone (input hidden), so
    a failed set-up still explains itself in the report. A ``remove-input`` cell (the work
    before a headline) loses its stderr stream, progress bars and warnings, which the
    executed notebook keeps.
    """

    def preprocess_cell(self, cell, resources, index):
        """Retag a failed hidden cell to show its error; drop a work cell's stderr."""
        if cell.cell_type != "code":
            return cell, resources
        tags = _tags(cell)
        if tags & REMOVED_CELL_TAGS and any(o.output_type == "error" for o in cell.outputs):
            cell.metadata["tags"] = sorted((tags - REMOVED_CELL_TAGS) | REMOVED_INPUT_TAGS)
            cell.outputs = [o for o in cell.outputs if o.output_type == "error"]
        elif tags & REMOVED_INPUT_TAGS:
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.output_type == "stream" and o.get("name") == "stderr")
            ]
        return cell, resources


def render_html(executed: Path, out: Path) -> Path:
    """Render an executed notebook to HTML: figures embedded, set-up cells and work code hidden.

    Cells tagged ``remove-cell`` (install, parameters, imports) and papermill's
    ``injected-parameters`` cell are left out, ``remove-input`` cells show only their outputs
    (:class:`KeepErrorsAndQuietWork` keeps any error). The notebooks keep every cell.
    """

    nb = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(KeepErrorsAndQuietWork(), enabled=True)
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags=set(REMOVED_CELL_TAGS),
            remove_input_tags=set(REMOVED_INPUT_TAGS),
            enabled=True,
        ),
        enabled=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    out.write_text(body, encoding="utf-8")
    return out


def guard_for(notebook: Path) -> dict[str, str]:
    """Return what ``notebook``'s install cell leaves out: module or distribution -> its extra.

    The packages of every extra of ``pyproject.toml`` the cell does not name, and their own
    dependencies, less what the core dependencies and the named extras bring.
    """
    return blocked_packages(install_cell_extras(notebook), PYPROJECT)


def _table_html(df) -> str:
    if df is None or len(df) == 0:
        return "<p><em>No evaluated models yet.</em></p>"
    return df.to_html(float_format=lambda v: f"{v:.2f}", na_rep="–", border=0, classes="results")


def write_index(
    reports_dir: Path, runs: list[NotebookRun], record: dict, runs_dir: Path, profile: str
) -> Path:
    """Write ``reports/index.html``: links, statuses, headline EER table and the run record."""

    try:
        headline = headline_table(results_table(runs_dir))
    except Exception as err:  # noqa: BLE001 - the index must still be written
        headline, note = None, f"<p>Could not read results: {html.escape(str(err))}</p>"
    else:
        note = ""
    rows = []
    for run in runs:
        mark = {"ok": "✔ ok", "failed": "✘ FAILED", "skipped": "– skipped"}[run.status]
        link = f'<a href="{run.name}.html">{run.name}</a>' if run.status != "skipped" else run.name
        err = f"<br><code>{html.escape(run.error[:400])}</code>" if run.error else ""
        rows.append(
            f"<tr class='{run.status}'><td>{link}</td><td>{mark}{err}</td>"
            f"<td>{run.seconds:.1f}</td></tr>"
        )
    bench = reports_dir / "bench.html"
    bench_link = '<p><a href="bench.html">Speed benchmark</a></p>' if bench.exists() else ""
    params = {r.name: r.parameters for r in runs}
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dfa reports ({html.escape(profile)})</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: .3em .6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.failed td {{ background: #fdd; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 85%; }}
</style></head><body>
<h1>dfa reports — profile <code>{html.escape(profile)}</code></h1>
<h2>Notebooks</h2>
<table><tr><th>report</th><th>status</th><th>seconds</th></tr>{"".join(rows)}</table>
{bench_link}
<h2>Equal error rate (%) by model and protocol</h2>
<p>Lower is better. Each model is tested with the threshold chosen at its validation EER;
confidence intervals and per-generator tables are in <a href="05_evaluation.html">05_evaluation</a>.</p>
{note}{_table_html(headline)}
<h2>Record of this run</h2>
<pre>{html.escape(json.dumps(record, indent=2, sort_keys=True, default=str))}</pre>
<h2>Parameters of each notebook</h2>
<pre>{html.escape(json.dumps(params, indent=2, sort_keys=True, default=str))}</pre>
</body></html>
"""
    out = reports_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out


def build_data(data_dir: Path, smoke: bool) -> dict:
    """Build (or reuse) the offline corpus; return its manifest checksums."""

    build_offline_corpus(data_dir, smoke=smoke)
    out = {}
    for corpus in ("offline-main", "offline-cross"):
        path = data_dir / corpus / "manifest.csv"
        if path.is_file():
            out[corpus] = manifest_checksum(read_manifest(path))
    return out


HISTORY_FILE = "run_history.jsonl"


def starting_state(data_dir: Path, run_root: Path, dataset: str) -> dict:
    """Describe what a run finds before it starts: a built corpus, trained detector folders.

    ``kind`` is ``"from nothing"`` when neither exists (the run builds and trains everything)
    and ``"with earlier outputs"`` otherwise, so a timing can be read as cold or warm.
    """

    corpus = dataset == "offline" and all(
        (data_dir / c / ".complete.json").is_file() for c in ("offline-main", "offline-cross")
    )
    folders = len(find_runs(run_root))
    kind = "from nothing" if not corpus and folders == 0 else "with earlier outputs"
    return {"corpus_built": corpus, "detector_folders": folders, "kind": kind}


def append_history(reports_dir: Path, record: dict) -> Path:
    """Append a run's summary (one JSON line) to ``reports/run_history.jsonl``."""
    entry = {
        "created_utc": record.get("created_utc"),
        "profile": record.get("profile"),
        "dataset": record.get("dataset"),
        "git_commit": record.get("git", {}).get("commit"),
        "git_dirty": record.get("git", {}).get("dirty"),
        "start": record.get("start"),
        "notebooks": record.get("notebooks_run"),
        "timings_s": record.get("timings_s"),
    }
    path = reports_dir / HISTORY_FILE
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def run_reports(
    profile_name: str,
    kernel: str,
    data_dir: Path,
    runs_dir: Path,
    reports_dir: Path,
    dataset: str | None = None,
    only: list[str] | None = None,
    guard_extras: bool = False,
    seed: int | None = None,
) -> int:
    """Execute the profile's notebooks and write the reports; return the process exit status.

    ``seed`` replaces the profile's seed (every notebook's ``seed`` parameter); the run then
    writes its folders under ``<runs_dir>/<profile>-seed-<seed>/<dataset>`` and its reports
    under ``<reports_dir>/seed-<seed>``, beside the profile's own run, so that several seeds
    can be summed up (:func:`dfa_lib.reporting.headline.seed_summary`).

    With ``guard_extras`` each notebook runs without the extras its install cell does not
    install (:func:`guard_for`); a notebook that needs one fails, its error naming the
    package and the extra, and the record lists each notebook's extras.
    """
    profile = load_profile(profile_name)
    data_dir, runs_dir, reports_dir = data_dir.resolve(), runs_dir.resolve(), reports_dir.resolve()
    reports_dir.mkdir(parents=True, exist_ok=True)
    dataset = dataset or profile["common"].get("dataset", "offline")
    run_name = profile_name if seed is None else f"{profile_name}-seed-{seed}"
    run_root = runs_dir / run_name / dataset.replace("/", "_")
    if seed is not None:
        reports_dir = reports_dir / f"seed-{seed}"
        reports_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        "dataset": dataset,
        "data_dir": str(data_dir),
        "runs_dir": str(run_root),
        "cache_dir": str(data_dir / "cache"),
        **({"seed": seed} if seed is not None else {}),
    }
    devices = {}
    for nb in profile["notebooks"]:  # a device that is not there fails before any work
        try:
            devices[nb["name"]] = notebook_device(profile, nb, overrides)
        except TrainingError as err:
            raise ProfileError(f"profile {profile_name!r}, notebook {nb['name']}: {err}") from err
    # Detectors built on a pretrained encoder find its converted weights here.
    os.environ.setdefault("DFA_CACHE_DIR", str(data_dir / "cache" / "models"))
    record = {
        "profile": profile_name,
        "dataset": dataset,
        "start": starting_state(data_dir, run_root, dataset),
        "timings_s": {},
        "devices": devices,
    }
    start = time.perf_counter()
    if dataset == "offline" and profile.get("data", {}).get("build", True):
        t0 = time.perf_counter()
        record["data_checksums"] = build_data(data_dir, smoke=profile["data"].get("smoke", False))
        record["timings_s"]["data"] = round(time.perf_counter() - t0, 1)
    runs = []
    for nb in profile["notebooks"]:
        name = nb["name"]
        device_type = devices[name]
        params = notebook_parameters(profile, nb, overrides, device_type)
        if device_type != "cpu" and nb.get("gpu_parameters"):
            print(f"[reports] {name} on {device_type}: {nb['gpu_parameters']}", file=sys.stderr)
        if only and name not in only:
            runs.append(NotebookRun(name=name, parameters=params, status="skipped"))
            continue
        print(f"[reports] {name} ...", file=sys.stderr, flush=True)
        executed = reports_dir / "executed" / f"{name}.ipynb"
        source = NOTEBOOKS_DIR / f"{name}.ipynb"
        blocked = guard_for(source) if guard_extras else {}
        with tempfile.TemporaryDirectory(prefix="dfa-guard-") as folder:
            env = guard_environment(blocked, folder) if guard_extras else None
            run = execute_notebook(source, executed, params, kernel, NOTEBOOKS_DIR, env)
        if guard_extras:
            record.setdefault("install_cell_extras", {})[name] = install_cell_extras(source)
            run.error = explain(run.error, blocked, name)
        if executed.exists():
            render_html(executed, reports_dir / f"{name}.html")
        print(f"[reports] {name}: {run.status} in {run.seconds:.0f} s {run.error}", file=sys.stderr)
        record["timings_s"][name] = run.seconds
        runs.append(run)
    record["timings_s"]["total"] = round(time.perf_counter() - start, 1)
    record["notebooks_run"] = [r.name for r in runs if r.status != "skipped"]
    record.update(provenance_record(packages=package_versions()))
    write_json(reports_dir / "run_record.json", record)
    append_history(reports_dir, record)
    write_index(reports_dir, runs, record, run_root, profile_name)
    failed = [r.name for r in runs if r.status == "failed"]
    if failed:
        print(f"[reports] failed notebooks: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"[reports] done: {reports_dir / 'index.html'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``python -m dfa_lib.reporting.runner``."""
    parser = argparse.ArgumentParser(prog="python -m dfa_lib.reporting.runner", description=__doc__)
    parser.add_argument(
        "--profile", default="default", help="default | smoke | reference | generalisation"
    )
    parser.add_argument("--kernel", default="dfa", help="Jupyter kernel papermill uses")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument(
        "--dataset",
        default=None,
        help="offline | for-2sec | asvspoof2019-la | asvspoof2021-la|df | asvspoof5 | in-the-wild | mlaad | <folder> | <csv>",
    )
    parser.add_argument("--only", default=None, help="comma-separated notebook names")
    parser.add_argument(
        "--guard-extras",
        action="store_true",
        help="run each notebook with the extras its install cell does not install made "
        "unimportable (what a fresh Colab runtime would lack)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="replace the profile's seed; runs go to <runs-dir>/<profile>-seed-N/<dataset>",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return run_reports(
            args.profile,
            args.kernel,
            args.data_dir,
            args.runs_dir,
            args.reports_dir,
            dataset=args.dataset,
            only=args.only.split(",") if args.only else None,
            guard_extras=args.guard_extras,
            seed=args.seed,
        )
    except ProfileError as err:
        parser.error(str(err))
    return 2


if __name__ == "__main__":
    sys.exit(main())
