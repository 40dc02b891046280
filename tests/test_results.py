"""``dfkd results``: the table of the digits benchmark's runs gives the benchmark's own
figures; seeds group into mean and spread; the accuracy-over-time plot is drawn."""

from __future__ import annotations

import csv
import io
import json
import runpy
import statistics
import sys
from pathlib import Path

import pytest

from dfkd_lightning.cli import main as dfkd_main

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "digits.py"


@pytest.fixture(scope="module")
def benchmark_runs(
    digits_bn_teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict]]:
    """Two seeds of DAFL in the digits benchmark, 3 seconds each: its JSON rows and runs."""
    work = tmp_path_factory.mktemp("benchmark")
    out = work / "rows.json"
    argv = [
        str(BENCHMARK),
        *("--methods", "dafl", "--seconds", "3", "--seeds", "0", "1", "--skip-kd"),
        *("--teacher-checkpoint", str(digits_bn_teacher_ckpt)),
        *("--work-dir", str(work / "runs"), "--out", str(out)),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        runpy.run_path(str(BENCHMARK), run_name="__main__")
    return work / "runs", json.loads(out.read_text())


def results(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    dfkd_main(["results", *args])
    return capsys.readouterr().out


def test_results_table_gives_the_benchmark_figures_of_the_same_runs(
    benchmark_runs: tuple[Path, list[dict]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, rows = benchmark_runs
    table = list(csv.DictReader(io.StringIO(results(capsys, str(root), "--format", "csv"))))
    by_run = {row["run"]: row for row in table}
    assert len(rows) == 2 and len(table) == 2
    for row in rows:
        line = by_run[str(Path(row["log_dir"]).relative_to(root))]
        assert (line["method"], line["dataset"], line["seed"]) == (
            "DAFL",
            "digits",
            str(row["seed"]),
        )
        assert (line["teacher"], line["student"]) == ("lenet5_bn", "lenet5_half")
        assert float(line["test/acc"]) == pytest.approx(row["test_acc"], rel=1e-6)
        assert float(line["test/teacher_acc"]) == pytest.approx(row["teacher_acc"], rel=1e-6)
        assert float(line["fit/images_per_s"]) == pytest.approx(row["images_per_s"], rel=1e-9)
        assert float(line["fit/seconds"]) == pytest.approx(row["seconds"], rel=1e-9)

    text = results(capsys, str(root))
    assert "One test image is 0.28 points (359 test images)" in text


def test_seeds_group_into_mean_and_standard_deviation_and_time_is_plotted(
    benchmark_runs: tuple[Path, list[dict]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root, rows = benchmark_runs
    plot = tmp_path / "accuracy.png"
    text = results(capsys, str(root), "--group-seeds", "--format", "markdown", "--plot", str(plot))
    accuracies = [row["test_acc"] for row in rows]
    mean, spread = statistics.fmean(accuracies), statistics.stdev(accuracies)
    [line] = [line for line in text.splitlines() if "| DAFL |" in line]
    assert f"| {mean:.4f} ± {spread:.4f} |" in line and line.endswith("| 0,1 | 2 |")
    assert "plotted 2 run(s)" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_without_runs_says_what_it_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        dfkd_main(["results", str(tmp_path)])
    assert stop.value.code == 2
    assert "no runs (metrics.csv of the CSV logger) under" in capsys.readouterr().err
