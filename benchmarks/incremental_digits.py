"""Non-exemplar class-incremental learning on digits: 5 tasks of 2 classes, every strategy.

    python benchmarks/incremental_digits.py --seeds 0 1 2 --out incremental_digits.json
    python benchmarks/incremental_digits.py --rows finetune replay --seeds 0

Run from the repository root. Each row is ``configs/experiments/incremental/digits_<row>.yaml``
(LeNet-5 (BN) from scratch, the classes in a seeded order: ``--seed`` draws the order too),
all five tasks in one fit, tested on the real test split after every task. Prints, per row,
the final accuracy over the 10 classes, the accuracy on the classes of the first four
tasks after the last, and the average incremental accuracy (the mean over the five tasks of
the accuracy on the classes seen so far), mean ± standard deviation over seeds, with the
seconds of each run; ``--out`` writes one JSON record per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from digits import QUIET, mean_and_spread

from dfkd_lightning.cli import DFKDCLI

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments" / "incremental"
ROWS = ["finetune", "lwf", "replay", "replay_rgal", "joint"]
FIGURES = {
    "final_acc": "incremental/acc",
    "old_acc": "incremental/old_acc",
    "average_incremental_acc": "incremental/average_acc",
}


def run(row: str, seed: int, out_dir: Path) -> dict[str, Any]:
    """One row and seed: every task in one fit; the figures logged after the last task."""
    start = time.perf_counter()
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(EXPERIMENTS / f"digits_{row}.yaml"),
            *QUIET,
            "--seed_everything",
            str(seed),
            "--data.init_args.class_order_seed",
            str(seed),
            "--trainer.logger.init_args.save_dir",
            str(out_dir),
            "--trainer.enable_checkpointing",
            "false",
            "--trainer.callbacks",
            "[]",
            "--test_after_fit",
            "false",
        ]
    )
    metrics = cli.trainer.callback_metrics
    return {
        "row": row,
        "seed": seed,
        **{name: float(metrics[key]) for name, key in FIGURES.items()},
        "class_order": list(cli.datamodule.class_order),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--work-dir", default="runs/benchmark_incremental")
    parser.add_argument("--out", help="write the rows as JSON records to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for row in args.rows:
        for seed in args.seeds:
            record = run(row, seed, Path(args.work_dir))
            print(json.dumps(record), flush=True)
            rows.append(record)
            if args.out:
                Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"{'row':<14}{'final acc':>18}{'old classes':>18}{'avg incremental':>18}{'s':>8}")
    for row in args.rows:
        runs = [r for r in rows if r["row"] == row]
        cells = [mean_and_spread([100 * r[name] for r in runs], 2) for name in FIGURES]
        seconds = max(r["seconds"] for r in runs)
        print(f"{row:<14}" + "".join(f"{cell:>18}" for cell in cells) + f"{seconds:>8.0f}")


if __name__ == "__main__":
    main()
