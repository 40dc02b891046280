"""Data-free quantization on digits: each data source and bit width, next to the
full-precision teacher and quantization-aware training with the real training data.

    python benchmarks/quantization_digits.py --seeds 0 1 2 --out quantization_digits.json
    python benchmarks/quantization_digits.py --sources gdfq cmi --bits 4/4 2/2 --seeds 0
    python benchmarks/quantization_digits.py --quick            # one seed, 100 steps, W4A4

Run from the repository root. Trains the LeNet-5 (BN) teacher first when its checkpoint is
missing. Every run fine-tunes the teacher's fake-quantized copy (W/A bits per channel / per
tensor, BN on the teacher's statistics) for the same number of student steps of 128 images
(``--steps``, 300 by default) from ``configs/experiments/digits/quant_<source>.yaml``
(``qat_real_data``: the real digits train split, same steps and optimizer) and tests it on
the real test split, once per seed. ``calibration_only`` quantizes the teacher without
fine-tuning, its activation ranges set from 256 real training images (a reference, not a
data-free row). Prints the top-1 table (mean ± standard deviation over seeds) and, with
``--out``, writes one JSON record per run (accuracy, steps, seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from digits import DEFAULT_TEACHER, EXPERIMENTS, distill, mean_and_spread, train_teacher

from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.methods.frozen_teacher import load_frozen_teacher
from dfkd_lightning.quantization import calibrate_activations, quantized_student

SOURCES = ["noise", "bn_inversion", "gdfq", "cmi", "cmi_rgal"]
BITS = ["8/8", "4/8", "4/4", "3/3", "2/2"]
STEPS_PER_EPOCH = 100  # the quant_* configs' steps_per_epoch


def bit_widths(text: str) -> tuple[int, int]:
    weights, activations = text.split("/")
    return int(weights), int(activations)


def run_source(
    source: str, bits: str, seed: int, steps: int, teacher: str, out_dir: Path
) -> dict[str, Any]:
    """Fine-tune the quantized teacher for ``steps`` student steps on ``source``'s data."""
    weights, activations = bit_widths(bits)
    budget = (
        ["--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1"]
        if source == "qat_real_data"
        else ["--trainer.max_epochs", str(max(1, steps // STEPS_PER_EPOCH))]
    )
    if source != "qat_real_data" and steps < STEPS_PER_EPOCH:
        budget += ["--data.init_args.steps_per_epoch", str(steps)]
    start = time.perf_counter()
    cli = distill(
        f"quant_{source}.yaml",
        teacher,
        out_dir,
        "--seed_everything",
        str(seed),
        "--model.init_args.weight_bits",
        str(weights),
        "--model.init_args.activation_bits",
        str(activations),
        *budget,
    )
    model = cli.model
    return {
        "source": source,
        "bits": f"W{weights}A{activations}",
        "seed": seed,
        "test_acc": float(cli.trainer.callback_metrics["test/acc"]),
        "teacher_acc": float(cli.trainer.callback_metrics["test/teacher_acc"]),
        "student_steps": getattr(model, "student_steps", cli.trainer.global_step),
        "seconds": time.perf_counter() - start,
    }


def calibration_only(bits: str, teacher: str) -> dict[str, Any]:
    """The quantized teacher without fine-tuning, its activation ranges from real images."""
    weights, activations = bit_widths(bits)
    data = ClassificationDataModule("digits", channels=1, image_size=32, batch_size=256)
    data.setup("fit")
    data.setup("test")
    net = load_frozen_teacher("lenet5_bn", teacher, 10, 1)
    quantized = quantized_student(net, weights, activations)
    torch.manual_seed(0)
    calibrate_activations(quantized, next(iter(data.train_dataloader()))[0])
    quantized.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in data.test_dataloader():
            correct += int((quantized(images).argmax(1) == labels).sum())
            total += len(labels)
    return {
        "source": "calibration_only",
        "bits": f"W{weights}A{activations}",
        "seed": 0,
        "test_acc": correct / total,
    }


def print_table(rows: list[dict[str, Any]], bits: list[str]) -> None:
    columns = [f"W{w}A{a}" for w, a in map(bit_widths, bits)]
    sources = list(dict.fromkeys(row["source"] for row in rows))
    print(f"{'data':<18}" + "".join(f"{column:>16}" for column in columns))
    for source in sources:
        cells = []
        for column in columns:
            values = [
                100 * r["test_acc"] for r in rows if r["source"] == source and r["bits"] == column
            ]
            cells.append(mean_and_spread(values, 2) if values else "-")
        print(f"{source:<18}" + "".join(f"{cell:>16}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", nargs="+", default=[*SOURCES, "qat_real_data"])
    parser.add_argument("--bits", nargs="+", default=BITS, help="W/A pairs, e.g. 4/4")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=300, help="student steps per run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="one seed, 100 steps, W4A4")
    parser.add_argument("--work-dir", default="runs/benchmark_quantization")
    parser.add_argument("--out", help="write the rows as JSON records to this file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.bits = [0], 100, ["4/4"]
    torch.set_num_threads(args.threads)
    teacher = DEFAULT_TEACHER
    if not Path(teacher).exists():
        teacher, _ = train_teacher()
    rows = [calibration_only(bits, teacher) for bits in args.bits]
    for source in args.sources:
        if source != "qat_real_data" and not (EXPERIMENTS / f"quant_{source}.yaml").exists():
            parser.error(f"no config configs/experiments/digits/quant_{source}.yaml")
        for bits in args.bits:
            for seed in args.seeds:
                row = run_source(source, bits, seed, args.steps, teacher, Path(args.work_dir))
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.out:
                    Path(args.out).write_text(json.dumps(rows, indent=1))
    teacher_acc = next((r["teacher_acc"] for r in rows if "teacher_acc" in r), None)
    if teacher_acc is not None:
        print(f"full-precision teacher: {100 * teacher_acc:.2f}%")
    print_table(rows, args.bits)


if __name__ == "__main__":
    main()
