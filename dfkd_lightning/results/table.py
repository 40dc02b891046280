"""The rows of ``dfkd results``: one per run or per configuration over seeds, as text."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable
from pathlib import Path

from dfkd_lightning.results.runs import Run

__all__ = ["COLUMNS", "format_rows", "group_seeds", "resolution_note", "run_rows"]

#: (header, study key or metric name, decimals; None: text).
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("run", "run", None),
    ("method", "method", None),
    ("dataset", "dataset", None),
    ("teacher", "teacher", None),
    ("student", "student", None),
    ("test_acc", "test/acc", 4),
    ("teacher_acc", "test/teacher_acc", 4),
    ("images_per_s", "fit/images_per_s", 1),
    ("seconds", "fit/seconds", 1),
    ("seed", "seed", None),
)
NUMERIC = tuple(metric for _, metric, decimals in COLUMNS if decimals is not None)

Row = dict[str, object]


def run_rows(runs: Iterable[Run], root: Path | None = None) -> list[Row]:
    """One row per run: its study keys and final figures (missing ones are ``None``)."""
    rows = []
    for run in runs:
        name = run.path.relative_to(root) if root and run.path.is_relative_to(root) else run.path
        row: Row = {"run": str(name), **run.keys}
        row.update({metric: run.figures.get(metric) for metric in NUMERIC})
        rows.append(row)
    return rows


def group_seeds(runs: list[Run], root: Path | None = None) -> list[Row]:
    """One row per configuration: the mean of every figure over its seeds, the sample
    standard deviation as ``<metric>_std``, the seeds and their count ``n``."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.configuration(), []).append(run)
    rows = []
    for members in groups.values():
        first = run_rows(members[:1], root)[0]
        row: Row = {key: first.get(key) for key in ("method", "dataset", "teacher", "student")}
        row["run"] = first["run"] if len(members) == 1 else f"{first['run']} (+{len(members) - 1})"
        row["seed"] = ",".join(str(m.keys.get("seed", "-")) for m in members)
        row["n"] = len(members)
        for metric in NUMERIC:
            values = [m.figures[metric] for m in members if metric in m.figures]
            row[metric] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(row)
    return rows


def _cell(row: Row, metric: str, decimals: int | None) -> str:
    value = row.get(metric)
    if value is None:
        return "-"
    if decimals is None:
        return str(value)
    text = f"{float(value):.{decimals}f}"  # type: ignore[arg-type]
    spread = row.get(f"{metric}_std")
    return f"{text} ± {float(spread):.{decimals}f}" if spread is not None else text  # type: ignore[arg-type]


def format_rows(rows: list[Row], style: str = "table") -> str:
    """``table`` (aligned text), ``markdown`` or ``csv`` (full precision, ``*_std`` columns)."""
    grouped = any("n" in row for row in rows)
    columns = [*COLUMNS, ("n", "n", None)] if grouped else list(COLUMNS)
    if style == "csv":
        names = [metric for _, metric, _ in columns]
        if grouped:
            names += [f"{metric}_std" for metric in NUMERIC]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    headers = [header for header, _, _ in columns]
    cells = [[_cell(row, metric, decimals) for _, metric, decimals in columns] for row in rows]
    if style == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join([*lines, *("| " + " | ".join(line) + " |" for line in cells)])
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=False)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)) for line in lines
    )


def resolution_note(runs: Iterable[Run]) -> str | None:
    """The smallest accuracy difference each test split in ``runs`` can show."""
    sizes = sorted(
        {int(run.figures["test/samples"]) for run in runs if "test/samples" in run.figures}
    )
    if not sizes:
        return None
    parts = [f"{100 / size:.2f} points ({size} test images)" for size in sizes]
    return "One test image is " + ", ".join(parts) + ": smaller differences are not resolved."
