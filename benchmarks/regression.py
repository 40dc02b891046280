"""Regression benchmark (Zhou & Chiam, 2023): teacher RMSE and the student RMSE of every
synthesis strategy on each offline dataset, over several seeds.

    python benchmarks/regression.py --out regression.json
    python benchmarks/regression.py --datasets diabetes --seeds 0 --epochs 200

Run from the repository root. For each dataset and seed it trains the teacher from
``configs/experiments/regression/teacher_<dataset>.yaml`` (split and training seeded with
the seed), then distils a student with each strategy from
``configs/experiments/regression/<dataset>_<strategy>.yaml`` and tests the final student
on the real test split. RMSE is on the standardised target (a constant predictor scores
about 1). Prints a table of means and standard deviations and, with ``--out``, writes one
JSON record per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data.tables import OFFLINE_TABLES

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments" / "regression"
#: The paper's strategies: each is a synthesizer in ``<dataset>_<strategy>.yaml``.
STRATEGIES = ("generator", "direct", "gaussian", "latin_hypercube")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(config: Path, seed: int, work_dir: Path, *overrides: str) -> DFKDCLI:
    """``dfkd fit`` in-process with the split and the run seeded by ``seed``."""
    return DFKDCLI(
        args=[
            "fit",
            "--config",
            str(config),
            *QUIET,
            "--seed_everything",
            str(seed),
            "--data.init_args.split_seed",
            str(seed),
            "--data.init_args.seed",
            str(seed),
            "--trainer.logger.init_args.save_dir",
            str(work_dir),
            *overrides,
        ]
    )


def train_teacher(dataset: str, seed: int, work_dir: Path) -> str:
    """Train the teacher of ``dataset`` with ``seed``; return its best-validation checkpoint."""
    config = EXPERIMENTS / f"teacher_{dataset}.yaml"
    callbacks = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    for callback in callbacks:  # keep each seed's checkpoint apart
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["dirpath"] = str(work_dir / f"teacher_{dataset}_seed{seed}")
    cli = fit(
        config,
        seed,
        work_dir,
        "--trainer.callbacks",
        json.dumps(callbacks),
        "--test_after_fit",
        "false",
    )
    return cli.trainer.checkpoint_callback.best_model_path


def distil(
    dataset: str, strategy: str, seed: int, teacher: str, work_dir: Path, epochs: int | None
) -> dict[str, Any]:
    overrides = [
        "--model.init_args.teacher_checkpoint",
        teacher,
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.callbacks",
        "[]",
    ]
    if epochs is not None:
        overrides += ["--trainer.max_epochs", str(epochs)]
    cli = fit(EXPERIMENTS / f"{dataset}_{strategy}.yaml", seed, work_dir, *overrides)
    metrics = cli.trainer.callback_metrics
    return {
        "dataset": dataset,
        "strategy": strategy,
        "seed": seed,
        "teacher_rmse": float(metrics["test/teacher_rmse"]),
        "student_rmse": float(metrics["test/rmse"]),
        "student_r2": float(metrics["test/r2"]),
        "student_steps": cli.model.student_steps,
    }


def summary(rows: list[dict[str, Any]], datasets: list[str], strategies: list[str]) -> str:
    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    lines = [" | ".join(["dataset", "teacher", *strategies])]
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        teacher = cell([r["teacher_rmse"] for r in mine if r["strategy"] == strategies[0]])
        students = [
            cell([r["student_rmse"] for r in mine if r["strategy"] == s]) for s in strategies
        ]
        lines.append(" | ".join([dataset, teacher, *students]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(OFFLINE_TABLES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="student epochs (default: the configs')")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--work-dir", default="runs/benchmark_regression")
    parser.add_argument("--out", help="write one JSON record per run to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            teacher = train_teacher(dataset, seed, work_dir)
            for strategy in args.strategies:
                row = distil(dataset, strategy, seed, teacher, work_dir, args.epochs)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nTest RMSE (standardised target), mean ± std over seeds {args.seeds}")
    print(summary(rows, args.datasets, args.strategies))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
