"""Generate the README's headline table (EER % by model and protocol) from evaluated runs.

Beside the main protocols, ``lofo mean`` and ``lofo worst`` sum up the leave-one-family-out
rotations (:mod:`dfa_lib.evaluation.generalisation`): each ``lofo-<family>`` detector's EER on
the family its training left out, averaged, and the worst of them with the family named.
The numbers of the front door are never typed. ``make headline`` reads every evaluated run
folder of a default run, writes the committed snapshot ``docs/results/headline.csv`` and
replaces the table between the README's markers with the CSV's table; ``--check`` only
compares the README with the CSV, so a test can tell when one was edited without the other::

    python -m dfa_lib.reporting.headline --runs-dir runs/default/offline \\
        --csv docs/results/headline.csv --readme README.md
    python -m dfa_lib.reporting.headline --csv docs/results/headline.csv --readme README.md --check
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dfa_lib.core.atomic import write_text_atomically
from dfa_lib.data.protocols import LOFO, lofo_family
from dfa_lib.evaluation.evaluate import headline_table, results_table
from dfa_lib.evaluation.generalisation import lofo_metrics, lofo_summary

START_MARKER = "<!-- headline:start -->"
END_MARKER = "<!-- headline:end -->"
# The README discusses these three first and in this order; any other protocol follows.
MAIN_PROTOCOLS = ("in-domain", "unseen-generator", "cross-source")
MISSING = "–"
# Held-out EER (%) of the lofo-* rotations: the mean over the rotations found and the worst.
LOFO_MEAN = f"{LOFO} mean"
LOFO_WORST = f"{LOFO} worst"
# Text columns of the snapshot, each the note of a number's cell in the README's table: the
# family behind the worst held-out EER, and "found/expected" rotations (noted when incomplete).
LOFO_WORST_FAMILY = f"{LOFO} worst family"
LOFO_ROTATIONS = f"{LOFO} rotations"
NOTES = {LOFO_MEAN: LOFO_ROTATIONS, LOFO_WORST: LOFO_WORST_FAMILY}
# Protocols no longer built: an older run folder's results on them stay out of the headline.
RETIRED_PROTOCOLS = ("unseen-neural",)


class HeadlineError(ValueError):
    """The headline cannot be made: no results, a malformed CSV, or a README without markers."""


def _retired(protocol: str) -> bool:
    return any(protocol == p or protocol.startswith(f"{p}-") for p in RETIRED_PROTOCOLS)


def order_protocols(protocols: list[str]) -> list[str]:
    """Return the headline's columns: the main protocols, the lofo summary, then the others.

    The others (a cross-dataset test, say) follow alphabetically; each ``lofo-<family>``
    rotation is summed up in the lofo columns rather than shown, and retired protocols
    (:data:`RETIRED_PROTOCOLS`) are left out.
    """
    first = [*MAIN_PROTOCOLS, LOFO_MEAN, LOFO_WORST, LOFO_WORST_FAMILY, LOFO_ROTATIONS]
    others = sorted(
        p for p in set(protocols) if p not in first and lofo_family(p) is None and not _retired(p)
    )
    return [*first, *others]


def headline_frame(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """Return model x protocol test EER (%) of every evaluated run folder under ``runs_dir``.

    Columns follow :func:`order_protocols` (the main three and the lofo ones are always there,
    empty where no detector was tested on them): ``lofo mean`` and ``lofo worst`` are the
    held-out EERs of :func:`~dfa_lib.evaluation.generalisation.lofo_summary`, with the text
    columns ``lofo worst family`` and ``lofo rotations`` (``found/expected``). Rows are sorted
    by ``lofo mean`` (models without lofo runs last), then by name. Raises HeadlineError when
    no run folder under ``runs_dir`` has metrics.
    """
    results = results_table(runs_dir)
    if results.empty:
        raise HeadlineError(
            f"{runs_dir}: no evaluated run folder (config.json and metrics.json); "
            "run `make reports` first, or pass the --runs-dir of a finished run"
        )
    table = headline_table(results)
    table.index = table.index.astype(str)
    lofo = lofo_summary(lofo_metrics(runs_dir))
    table[LOFO_MEAN] = lofo["held_out_mean_%"]
    table[LOFO_WORST] = lofo["held_out_worst_%"]
    columns = order_protocols(list(table.columns))
    numbers = [c for c in columns if c not in NOTES.values()]
    frame = table.reindex(columns=columns).astype(dict.fromkeys(numbers, float))
    frame[LOFO_WORST_FAMILY] = lofo["worst_family"].reindex(frame.index).fillna("")
    rotations = lofo["rotations"].astype(str) + "/" + lofo["expected"].astype(str)
    frame[LOFO_ROTATIONS] = rotations.reindex(frame.index).fillna("")
    frame.index.name = "model"
    frame.columns.name = None
    # A model tested only on retired protocols has nothing left to show.
    frame = frame[frame[numbers].notna().any(axis=1)]
    return frame.sort_index().sort_values(LOFO_MEAN, na_position="last", kind="stable")


def _cell(value: float | str) -> str:
    """One EER as the CSV and the table show it: % to 0.1, empty when missing; text as it is."""
    if isinstance(value, str):
        return value
    return "" if pd.isna(value) else f"{value:.1f}"


def write_headline_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the headline snapshot: ``model`` then one column per protocol, EER % to 0.1.

    The text columns of :data:`NOTES` are written as they are.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", *frame.columns])
    for model, row in frame.iterrows():
        writer.writerow([str(model), *(_cell(v) for v in row)])
    return write_text_atomically(path, buffer.getvalue())


def read_headline_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a snapshot written by :func:`write_headline_csv`.

    Empty EER cells become NaN; the text columns of :data:`NOTES` stay text ("" when empty).
    """
    path = Path(path)
    if not path.is_file():
        raise HeadlineError(f"{path}: no headline snapshot; write it with `make headline`")
    text = {c: str for c in NOTES.values()}
    frame = pd.read_csv(
        path, dtype={"model": str, **text}, keep_default_na=False, na_values={"model": []}
    )
    if frame.columns.empty or frame.columns[0] != "model":
        raise HeadlineError(f"{path}: the first column must be 'model'")
    frame = frame.set_index("model")
    numbers = [c for c in frame.columns if c not in text]
    try:
        frame[numbers] = frame[numbers].replace("", np.nan).astype(float)
    except ValueError as err:
        raise HeadlineError(f"{path}: every EER must be a number or empty ({err})") from err
    frame.columns.name = None
    return frame


def _note(column: str, text: str) -> str:
    """The note a text column adds to its number's cell ("" when there is nothing to say)."""
    if column == LOFO_ROTATIONS:
        found, _, expected = text.partition("/")
        return f"{found} of {expected} rotations" if found != expected else ""
    return text


def markdown_table(frame: pd.DataFrame) -> str:
    """Return ``frame`` as a Markdown table: EER to 0.1, the lowest of each column in bold.

    A text column of :data:`NOTES` is not shown as a column of its own: its value follows
    the number it describes in brackets (``41.2 (gan-vocoder)``).
    """
    numbers = [c for c in frame.columns if c not in NOTES.values()]
    columns = [str(c) for c in numbers]
    shown = {c: [_cell(v) for v in frame[c]] for c in numbers}
    # "Best" is judged on the shown digits, so ties that print alike are all bold.
    best = {c: min((float(x) for x in cells if x), default=None) for c, cells in shown.items()}
    lines = [
        "| " + " | ".join(["model", *columns]) + " |",
        "| " + " | ".join(["---"] * (len(columns) + 1)) + " |",
    ]
    for i, model in enumerate(frame.index):
        cells = []
        for column, column_cells in shown.items():
            cell = column_cells[i]
            if not cell:
                cell = MISSING
            elif float(cell) == best[column]:
                cell = f"**{cell}**"
            note = NOTES.get(column)
            value = frame[note].iloc[i] if note in frame.columns else ""
            text = _note(note, value) if isinstance(value, str) and value else ""
            if cell != MISSING and text:
                cell += f" ({text})"
            cells.append(cell)
        lines.append("| " + " | ".join([str(model), *cells]) + " |")
    return "\n".join(lines)


def _block_bounds(text: str, where: str) -> tuple[int, int]:
    """Return the slice of ``text`` between the markers (HeadlineError when they are not one pair)."""
    for marker in (START_MARKER, END_MARKER):
        count = text.count(marker)
        if count != 1:
            found = "no" if count == 0 else f"{count}"
            raise HeadlineError(
                f"{where}: {found} '{marker}' marker(s); the headline table goes between one "
                f"'{START_MARKER}' line and one '{END_MARKER}' line"
            )
    start = text.index(START_MARKER) + len(START_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise HeadlineError(f"{where}: '{END_MARKER}' comes before '{START_MARKER}'")
    return start, end


def readme_table(readme_path: str | os.PathLike) -> str:
    """Return the table that lies between the README's headline markers."""
    text = Path(readme_path).read_text(encoding="utf-8")
    start, end = _block_bounds(text, str(readme_path))
    return text[start:end].strip("\n")


def update_readme(readme_path: str | os.PathLike, table_md: str, check: bool = False) -> bool:
    """Put ``table_md`` between the README's markers; return whether the README changed.

    With ``check`` the README is left as it is and the return value says whether it would
    change, that is whether its table differs from ``table_md``.
    """
    path = Path(readme_path)
    text = path.read_text(encoding="utf-8")
    start, end = _block_bounds(text, str(path))
    updated = text[:start] + "\n" + table_md.strip("\n") + "\n" + text[end:]
    if updated == text:
        return False
    if not check:
        write_text_atomically(path, updated)
    return True


def seed_summary(run_roots: list[str | os.PathLike], confidence: float = 0.95) -> pd.DataFrame:
    """Sum up runs that differ only in their seed: each model's mean EER and its interval.

    ``run_roots`` are the run folders of one profile trained with different seeds
    (``make reports SEED=N``). Returns one row per model and protocol: ``n_seeds`` (the runs
    that tested it), ``mean_%``, ``std_%`` (over seeds, ``ddof=1``) and the Student-t
    ``confidence`` interval of the mean, ``ci_low_%`` and ``ci_high_%`` (NaN with one seed).
    The interval says how much the number moves with the seed alone (initialisation, subsets,
    crops), on the same corpus and test clips; the bootstrap intervals of ``05_evaluation``
    say how much it moves with the test clips.
    """
    if len(run_roots) < 2:
        raise HeadlineError(
            f"a seed summary needs runs of at least two seeds, got {len(run_roots)}"
        )
    frames = []
    for root in run_roots:
        numbers = headline_frame(root).drop(columns=list(NOTES.values()))
        frame = numbers.reset_index().melt(id_vars="model", var_name="protocol")
        frames.append(frame.dropna(subset=["value"]).assign(run=str(root)))
    long = pd.concat(frames, ignore_index=True)
    rows = []
    for (model, protocol), group in long.groupby(["model", "protocol"], sort=True):
        values = group["value"].to_numpy(dtype=np.float64)
        n, mean = len(values), float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else float("nan")
        half = (
            float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)) if n > 1 else np.nan
        )
        rows.append(
            {
                "model": model,
                "protocol": protocol,
                "n_seeds": n,
                "mean_%": mean,
                "std_%": std,
                "ci_low_%": mean - half,
                "ci_high_%": mean + half,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``python -m dfa_lib.reporting.headline``."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.reporting.headline",
        description="Write the headline snapshot from a run and the README's table from it.",
    )
    parser.add_argument("--runs-dir", type=Path, help="run folders of a finished `make reports`")
    parser.add_argument("--csv", type=Path, default=Path("docs/results/headline.csv"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument(
        "--check",
        action="store_true",
        help="only compare the README's table with the CSV's (exit 1 when they differ)",
    )
    parser.add_argument(
        "--seed-runs",
        type=Path,
        nargs="+",
        help="run folders of the same profile trained with different seeds: write their summary",
    )
    parser.add_argument("--seeds-csv", type=Path, default=Path("docs/results/headline_seeds.csv"))
    args = parser.parse_args(argv)
    if args.seed_runs:
        try:
            summary = seed_summary(args.seed_runs)
        except (HeadlineError, OSError) as err:
            print(f"[headline] {err}", file=sys.stderr)
            return 1
        args.seeds_csv.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.seeds_csv, summary.round(2).to_csv(index=False))
        print(f"[headline] wrote {args.seeds_csv} ({len(args.seed_runs)} seeds)", file=sys.stderr)
        return 0
    if not args.check and args.runs_dir is None:
        parser.error("--runs-dir is required unless --check or --seed-runs is given")
    try:
        if not args.check:
            write_headline_csv(headline_frame(args.runs_dir), args.csv)
        table_md = markdown_table(read_headline_csv(args.csv))
        changed = update_readme(args.readme, table_md, check=args.check)
    except (HeadlineError, OSError) as err:
        print(f"[headline] {err}", file=sys.stderr)
        return 1
    if args.check:
        if changed:
            print(
                f"[headline] {args.readme}'s headline table differs from {args.csv}; "
                "run `make headline` (or put the CSV's numbers back)",
                file=sys.stderr,
            )
            return 1
        print(f"[headline] {args.readme} matches {args.csv}", file=sys.stderr)
        return 0
    print(
        f"[headline] wrote {args.csv}; {args.readme} {'updated' if changed else 'unchanged'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
