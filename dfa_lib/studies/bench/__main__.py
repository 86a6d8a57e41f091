"""``make bench``: measure the speed of every stage into ``<out>/bench.json`` and ``bench.html``.

Example::

    python -m dfa_lib.studies.bench --data-dir data --runs-dir runs --out reports
    python -m dfa_lib.studies.bench --quick --stage loading --stage training   # seconds, for a look
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfa_lib.core.provenance import write_json
from dfa_lib.studies.bench.report import write_html
from dfa_lib.studies.bench.stages import STAGE_NAMES, BenchConfig, figures, run_all


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the stages, write the JSON record and its page."""
    parser = argparse.ArgumentParser(
        prog="python -m dfa_lib.studies.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("reports"), help="folder of the outputs")
    parser.add_argument("--profile", default="default", help="whose detectors and settings")
    parser.add_argument("--quick", action="store_true", help="every stage tiny (seconds)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (>= 3)")
    parser.add_argument("--backbone", help="encoder of the pretrained-features stage")
    parser.add_argument(
        "--stage", action="append", choices=STAGE_NAMES, help="run only these stages"
    )
    args = parser.parse_args(argv)
    overrides = dict(
        data_dir=args.data_dir,
        runs_dir=args.runs_dir,
        reports_dir=args.out,
        profile=args.profile,
        repeats=args.repeats,
    )
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.stage:
        overrides["stages"] = tuple(args.stage)
    try:
        config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
    except ValueError as err:
        parser.error(str(err))
    report = run_all(config, progress=True)
    json_path = write_json(args.out / "bench.json", report)
    html_path = write_html(json_path, args.out / "bench.html")
    width = max((len(k) for k in figures(report)), default=0)
    for name, value in figures(report).items():
        print(f"{name:<{width}}  {value:12.3f}")
    print(f"wrote {json_path} and {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
