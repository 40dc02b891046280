"""Digits benchmark: every data-free method under the same wall-clock budget on the CPU.

    python benchmarks/digits.py --seconds 300 --threads 2 --out digits.json
    python benchmarks/digits.py --methods cmi dafl --seconds 60 --seed 1
    python benchmarks/digits.py --accelerator gpu --precision 16-mixed --seconds 30

Run from the repository root. Trains the LeNet-5 (BN) teacher first when its
checkpoint is missing, measures the
KD-with-real-data upper bound once, then runs each method from its
``configs/experiments/digits/<method>.yaml`` for ``--seconds`` of training (Lightning's
``max_time``) and tests the final student on the real test split. Prints a table and,
with ``--out``, writes the rows as JSON records.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.methods import DATA_FREE_METHODS

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments" / "digits"
DEFAULT_TEACHER = "runs/digits/teacher_lenet5_bn/checkpoints/final.ckpt"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(config: Path, *overrides: str) -> DFKDCLI:
    """``dfkd fit --config config overrides...`` in-process (fit, then test)."""
    return DFKDCLI(args=["fit", "--config", str(config), *QUIET, *overrides])


def duration(seconds: int) -> str:
    """Lightning's ``max_time`` format, DD:HH:MM:SS."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours // 24:02d}:{hours % 24:02d}:{minutes:02d}:{secs:02d}"


def final_test_accuracy(cli: DFKDCLI) -> float:
    return float(cli.trainer.callback_metrics["test/acc"])


def train_teacher() -> tuple[str, float]:
    cli = fit(EXPERIMENTS / "teacher_lenet5_bn.yaml")
    checkpoint = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ModelCheckpoint))
    return checkpoint.best_model_path, final_test_accuracy(cli)


def distill(config: str, teacher_ckpt: str, out_dir: Path, *overrides: str) -> DFKDCLI:
    """Fit a distillation experiment from ``teacher_ckpt``, logging under ``out_dir``,
    without writing checkpoints."""
    return fit(
        EXPERIMENTS / config,
        "--model.init_args.teacher_checkpoint",
        teacher_ckpt,
        "--trainer.logger.init_args.save_dir",
        str(out_dir),
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.callbacks",
        "[]",
        *overrides,
    )


def kd_with_data(teacher_ckpt: str, out_dir: Path, *overrides: str) -> float:
    cli = distill("kd_lenet5_bn_lenet5_half.yaml", teacher_ckpt, out_dir, *overrides)
    return final_test_accuracy(cli)


def run_method(
    name: str, teacher_ckpt: str, seconds: int, out_dir: Path, *overrides: str
) -> dict[str, Any]:
    start = time.perf_counter()
    cli = distill(
        f"{name}.yaml",
        teacher_ckpt,
        out_dir,
        *overrides,
        "--trainer.max_time",
        duration(seconds),
        "--trainer.max_epochs",
        "100000",
    )
    elapsed = time.perf_counter() - start
    module = cli.model
    return {
        "method": name,
        "test_acc": final_test_accuracy(cli),
        "teacher_acc": float(cli.trainer.callback_metrics["test/teacher_acc"]),
        "images": module.images_synthesized,
        "images_per_s": module.images_synthesized / elapsed,
        "student_steps": module.student_steps,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(DATA_FREE_METHODS), choices=list(DATA_FREE_METHODS)
    )
    parser.add_argument("--seconds", type=int, default=300, help="training budget per method")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed_everything of every run")
    parser.add_argument(
        "--teacher-checkpoint",
        help=f"a trained lenet5_bn digits teacher (default: {DEFAULT_TEACHER}, "
        "trained first when missing)",
    )
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu")
    parser.add_argument(
        "--precision", default="32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed"
    )
    parser.add_argument("--work-dir", default="runs/benchmark_digits")
    parser.add_argument("--out", help="write the rows as JSON records to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out_dir = Path(args.work_dir)
    teacher_ckpt = args.teacher_checkpoint or DEFAULT_TEACHER
    if not Path(teacher_ckpt).is_file():
        teacher_ckpt, _ = train_teacher()
    device = [
        *("--trainer.accelerator", args.accelerator, "--trainer.precision", args.precision),
        *("--seed_everything", str(args.seed)),
    ]
    kd_acc = kd_with_data(teacher_ckpt, out_dir, *device)

    rows, failed = [], []
    for name in args.methods:
        try:
            row = run_method(name, teacher_ckpt, args.seconds, out_dir, *device)
        except Exception:  # one broken method must not cost the rest of a long benchmark
            traceback.print_exc()
            failed.append(name)
            continue
        row.update(
            kd_with_data_acc=kd_acc,
            accelerator=args.accelerator,
            precision=args.precision,
            seed=args.seed,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)

    header = (
        f"{'method':14s} {'test_acc':>8s} {'teacher':>8s} {'kd_data':>8s} "
        f"{'images':>9s} {'img/s':>8s} {'steps':>7s} {'seconds':>8s}"
    )
    print(
        f"\nDigits, LeNet-5 (BN) -> LeNet-5-half, {args.seconds} s budget, "
        f"{args.threads} threads, {args.accelerator}, precision {args.precision}\n{header}"
    )
    for r in rows:
        print(
            f"{r['method']:14s} {r['test_acc']:8.4f} {r['teacher_acc']:8.4f} "
            f"{r['kd_with_data_acc']:8.4f} {r['images']:9d} {r['images_per_s']:8.1f} "
            f"{r['student_steps']:7d} {r['seconds']:8.1f}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    if failed:
        raise SystemExit(f"failed (tracebacks above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
