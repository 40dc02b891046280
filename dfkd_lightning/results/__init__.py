"""``dfkd results DIR...``: one row per CSV-logged run (method, dataset, teacher, student,
final test accuracy, teacher accuracy, images/s, wall-clock seconds, seed), or per
configuration over seeds, as a table, Markdown or CSV, and a plot of accuracy over time."""

from __future__ import annotations

import argparse
from pathlib import Path

from dfkd_lightning.errors import UserError
from dfkd_lightning.results.plot import plot_accuracy_over_time
from dfkd_lightning.results.runs import Run, find_runs, read_run
from dfkd_lightning.results.table import format_rows, group_seeds, resolution_note, run_rows

__all__ = ["Run", "find_runs", "format_rows", "group_seeds", "main", "read_run", "run_rows"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfkd results",
        description="Tabulate the CSV-logged runs under one or more directories.",
    )
    parser.add_argument("directories", nargs="+", help="run directories, searched recursively")
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    parser.add_argument(
        "--group-seeds",
        action="store_true",
        help="one row per configuration: mean ± sample standard deviation over its seeds",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="draw val/acc against wall clock")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Print the results table of the runs under the given directories."""
    args = _parser().parse_args(argv)
    missing = [d for d in args.directories if not Path(d).is_dir()]
    if missing:
        raise UserError(f"no such directory: {', '.join(missing)}")
    runs = find_runs(args.directories)
    if not runs:
        raise UserError(
            f"no runs (metrics.csv of the CSV logger) under {', '.join(args.directories)}"
        )
    root = Path(args.directories[0]) if len(args.directories) == 1 else None
    rows = group_seeds(runs, root) if args.group_seeds else run_rows(runs, root)
    print(format_rows(rows, args.format))
    note = resolution_note(runs)
    if note and args.format != "csv":
        print(f"\n{note}")
    if args.plot:
        drawn = plot_accuracy_over_time(runs, args.plot, root)
        print(f"plotted {drawn} run(s) to {args.plot}")
