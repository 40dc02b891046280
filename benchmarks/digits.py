"""Digits benchmark: every data-free method under the same wall-clock budget on the CPU.

    python benchmarks/digits.py --seconds 300 --threads 2 --out digits.json
    python benchmarks/digits.py --methods cmi dafl --seconds 60 --seeds 0 1 2
    python benchmarks/digits.py --monitor --out digits_monitor.json   # + teacher-FID, balance
    python benchmarks/digits.py --methods rgal cmi cmi_rgal --seeds 0 1 2 --monitor --skip-kd
    python benchmarks/digits.py --accelerator gpu --precision 16-mixed --seconds 30

Run from the repository root. Trains the LeNet-5 (BN) teacher first when its
checkpoint is missing, measures the
KD-with-real-data upper bound once, then runs each method from its
``configs/experiments/digits/<method>.yaml`` (a method, or a method with terms inserted such
as ``cmi_rgal``) for ``--seconds`` of training (Lightning's
``max_time``) and tests the final student on the real test split, once per seed. Prints
a table (with ``--seeds``, the mean and sample standard deviation over seeds, and one row
per run in the JSON) and, with ``--out``, writes the rows as JSON records. Each run's CSV
log lies under ``--work-dir``: ``dfkd results runs/benchmark_digits`` tabulates the same
figures (``images_per_s`` is images synthesized per second of fit, as that command reads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import traceback
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.methods import DATA_FREE_METHODS
from dfkd_lightning.records import StudyRecord
from dfkd_lightning.results import read_run

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments" / "digits"
DEFAULT_TEACHER = "runs/digits/teacher_lenet5_bn/checkpoints/final.ckpt"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
#: ``--monitor``: teacher-FID/KID against the validation images, class balance and diversity
#: of the newest 1024 samples every epoch, per-class grids every 10 epochs and at the end.
MONITORS = [
    {
        "class_path": "dfkd_lightning.callbacks.SampleQuality",
        "init_args": {"num_samples": 1024, "kid_subset_size": 100},
    },
    {"class_path": "dfkd_lightning.callbacks.ClassBalance", "init_args": {"num_samples": 1024}},
    {"class_path": "dfkd_lightning.callbacks.ImageGrids", "init_args": {"every_n_epochs": 10}},
]
#: The final monitoring figures a ``--monitor`` row carries (read back from the run's CSV log).
MONITORED = (
    "synth/fid",
    "synth/kid_mean",
    "synth/class_entropy",
    "synth/classes_present",
    "synth/confidence",
    "synth/intra_class_diversity",
    "synth/inter_class_separation",
    "synth/target_match",
)


def benchmarked_configs() -> list[str]:
    """Every data-free digits experiment: the methods and their variants (``cmi_rgal``...)."""
    names = sorted(path.stem for path in EXPERIMENTS.glob("*.yaml"))
    return [name for name in names if not name.startswith(("teacher_", "kd_", "diffusion_"))]


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


def distill(
    config: str, teacher_ckpt: str, out_dir: Path, *overrides: str, callbacks: list | None = None
) -> DFKDCLI:
    """Fit a distillation experiment from ``teacher_ckpt``, logging under ``out_dir``,
    without writing checkpoints, with ``callbacks`` (class_path/init_args mappings) only."""
    return fit(
        EXPERIMENTS / config,
        "--model.init_args.teacher_checkpoint",
        teacher_ckpt,
        "--trainer.logger.init_args.save_dir",
        str(out_dir),
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.callbacks",
        json.dumps(callbacks or []),
        *overrides,
    )


def kd_with_data(teacher_ckpt: str, out_dir: Path, *overrides: str) -> float:
    cli = distill("kd_lenet5_bn_lenet5_half.yaml", teacher_ckpt, out_dir, *overrides)
    return final_test_accuracy(cli)


def run_method(
    name: str, teacher_ckpt: str, seconds: int, out_dir: Path, *overrides: str, monitor: bool
) -> dict[str, Any]:
    cli = distill(
        f"{name}.yaml",
        teacher_ckpt,
        out_dir,
        *overrides,
        "--trainer.max_time",
        duration(seconds),
        "--trainer.max_epochs",
        "100000",
        callbacks=MONITORS if monitor else None,
    )
    module = cli.model
    record = next(cb for cb in cli.trainer.callbacks if isinstance(cb, StudyRecord))
    row = {
        "method": name,
        "test_acc": final_test_accuracy(cli),
        "teacher_acc": float(cli.trainer.callback_metrics["test/teacher_acc"]),
        "images": module.images_synthesized,
        "images_per_s": record.images_per_s,
        "student_steps": module.student_steps,
        "seconds": record.fit_seconds,
        "log_dir": cli.trainer.log_dir,
        "test_samples": len(cli.datamodule.test_set),
    }
    if monitor:
        figures = read_run(Path(cli.trainer.log_dir)).figures
        row.update({metric: figures.get(metric) for metric in MONITORED})
        grids = sorted(Path(cli.trainer.log_dir, "grids").glob("*.png"))
        row["grid"] = str(grids[-1]) if grids else None
    return row


def mean_and_spread(values: list[float], decimals: int) -> str:
    """``mean`` or ``mean ± sample standard deviation`` of ``values``."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per method: the mean (± standard deviation over seeds) of each figure."""
    columns = (("test_acc", 4), ("teacher_acc", 4), ("images_per_s", 1), ("seconds", 1))
    print(f"{'method':14s} {'seeds':>5s} " + " ".join(f"{name:>17s}" for name, _ in columns))
    for method in dict.fromkeys(row["method"] for row in rows):
        runs = [row for row in rows if row["method"] == method]
        cells = [mean_and_spread([r[name] for r in runs], d) for name, d in columns]
        print(f"{method:14s} {len(runs):5d} " + " ".join(f"{cell:>17s}" for cell in cells))
    for size in sorted({row["test_samples"] for row in rows}):
        print(f"One test image is {100 / size:.2f} points ({size} test images).")


#: The columns of :func:`print_monitoring`: (row key, title, decimals).
MONITOR_COLUMNS = (
    ("synth/fid", "teacher-FID", 2),
    ("synth/class_entropy", "class entropy", 3),
    ("synth/intra_class_diversity", "intra diversity", 3),
    ("synth/inter_class_separation", "inter separation", 3),
    ("synth/target_match", "target match", 3),
    ("test_acc", "test_acc", 4),
)


def print_monitoring(
    rows: list[dict[str, Any]],
    columns: tuple[tuple[str, str, int], ...] = MONITOR_COLUMNS,
    group: str = "method",
) -> None:
    """One line per ``group`` (method): the mean (± standard deviation over seeds) of final
    teacher-FID, class entropy, intra-class diversity, inter-class separation and, for methods
    that aim at classes, the target match rate (or other ``columns``)."""
    print(f"\n{group:14s} " + " ".join(f"{title:>17s}" for _, title, _ in columns))
    for method in dict.fromkeys(row[group] for row in rows):
        runs = [row for row in rows if row[group] == method]
        cells = []
        for key, _, decimals in columns:
            values = [r[key] for r in runs if r.get(key) is not None]
            cells.append(mean_and_spread(values, decimals) if values else "-")
        print(f"{method:14s} " + " ".join(f"{cell:>17s}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DATA_FREE_METHODS),
        choices=benchmarked_configs(),
        help="digits experiments (default: every method's own)",
    )
    parser.add_argument("--seconds", type=int, default=300, help="training budget per method")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="seed_everything: one run per seed"
    )
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
    parser.add_argument(
        "--skip-kd", action="store_true", help="skip the KD-with-real-data upper bound"
    )
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="add teacher-FID/KID, class balance and diversity, and image grids to every run",
    )
    parser.add_argument("--out", help="write the rows as JSON records to this file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out_dir = Path(args.work_dir)
    teacher_ckpt = args.teacher_checkpoint or DEFAULT_TEACHER
    if not Path(teacher_ckpt).is_file():
        teacher_ckpt, _ = train_teacher()
    device = ["--trainer.accelerator", args.accelerator, "--trainer.precision", args.precision]
    first_seed = ["--seed_everything", str(args.seeds[0])]
    kd_acc = None if args.skip_kd else kd_with_data(teacher_ckpt, out_dir, *device, *first_seed)

    rows, failed = [], []
    for name in args.methods:
        for seed in args.seeds:
            seeded = [*device, "--seed_everything", str(seed)]
            try:
                row = run_method(
                    name, teacher_ckpt, args.seconds, out_dir, *seeded, monitor=args.monitor
                )
            except Exception:  # one broken method must not cost the rest of a long benchmark
                traceback.print_exc()
                failed.append(f"{name} (seed {seed})")
                continue
            row.update(
                kd_with_data_acc=kd_acc,
                accelerator=args.accelerator,
                precision=args.precision,
                seed=seed,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)

    print(
        f"\nDigits, LeNet-5 (BN) -> LeNet-5-half, {args.seconds} s budget, "
        f"{args.threads} threads, {args.accelerator}, precision {args.precision}, "
        f"seeds {' '.join(map(str, args.seeds))}, KD with data {kd_acc}"
    )
    print_table(rows)
    if args.monitor:
        print_monitoring(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    if failed:
        raise SystemExit(f"failed (tracebacks above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
