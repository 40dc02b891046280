"""Throughput benchmark: synthesis and student speed of every data-free method on CIFAR shapes.

    python benchmarks/throughput.py --threads 2 --out benchmarks/results/throughput_cpu.json
    python benchmarks/throughput.py --methods cmi dafl --pairs wrn_40_2_wrn_16_2 --rounds 2
    python benchmarks/throughput.py --accelerator gpu --precision bf16-mixed --batch-size 256

Run from the repository root. Each method runs from its
``configs/experiments/cifar10/<method>_<pair>.yaml`` on in-memory fake 3x32x32 images (10
classes) with a randomly initialised teacher (speed only, no accuracy), for ``--rounds``
synthesis rounds of ``--g-steps`` synthesizer steps each, ``--kd-steps`` student steps apart
(one epoch of ``rounds * kd_steps`` loop steps). No validation, test, logger or checkpoint.

Every loop step is timed. A step whose index is a multiple of ``kd_steps`` runs a synthesis
round and one student step, the others one student step. The first round is warm-up and
dropped. ``student_steps_per_s`` is 1 / median(student-only step time); the round time is
median(round step time) - median(student-only step time), and ``synth_images_per_s`` is the
images a round synthesizes (read from the module's ``images_synthesized`` counter, less what
a student step adds to it) over that time. Prints a table and, with ``--out``, writes the rows
as JSON records (after every run, so an interrupted benchmark keeps what it measured).

CPU figures are only as good as the machine is idle: every row records the 1-minute load
average before and after its run (the ``load`` column).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.methods import DATA_FREE_METHODS
from dfkd_lightning.nets import build_classifier

ROOT = Path(__file__).resolve().parents[1]
#: Teacher architecture of each teacher/student pair.
PAIRS: dict[str, str] = {"resnet34_resnet18": "resnet34", "wrn_40_2_wrn_16_2": "wrn_40_2"}
NUM_CLASSES = 10
CALIBRATION_BATCHES = 4
QUIET = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.logger",
    "false",
    "--trainer.enable_checkpointing",
    "false",
    "--trainer.callbacks",
    "[]",
    "--trainer.limit_val_batches",
    "0",
    "--trainer.num_sanity_val_steps",
    "0",
    "--test_after_fit",
    "false",
]


def experiment_config(method: str, pair: str) -> Path:
    """The experiment file of ``method`` on the CIFAR-10 teacher/student ``pair``."""
    return ROOT / "configs" / "experiments" / "cifar10" / f"{method}_{pair}.yaml"


def method_overrides(method: str, batch_size: int) -> list[str]:
    """Extra options a method needs at benchmark sizes."""
    if method == "cmi":
        # The config's 40960-row bank of ResNet-34 features (2 x 8512 floats a row) costs
        # 2.8 GB; keep the config's bank/negatives-to-batch ratios (160 and 16) instead.
        bank, negatives = 160 * batch_size, 16 * batch_size
        return [
            "--model.init_args.synthesis_loss.cr",
            f"{{weight: 0.8, temperature: 0.1, head_dim: 256, bank_size: {bank}, "
            f"n_neg: {negatives}}}",
        ]
    return []


def save_random_teacher(arch: str, directory: Path, seed: int = 0) -> Path:
    """A randomly initialised ``arch`` saved as a raw state dict.

    Its BatchNorm running statistics are first estimated on a few batches of noise: with the
    initial ones (mean 0, variance 1) the activations of a deep random net grow layer after
    layer in eval mode until the synthesis losses overflow (DAFL on WRN-40-2 reaches inf in its
    second round), which would time inf/NaN arithmetic rather than the method.
    """
    torch.manual_seed(seed)
    net = build_classifier(arch, NUM_CLASSES)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(CALIBRATION_BATCHES):
            net(torch.randn(64, 3, 32, 32))
    path = directory / f"{arch}_random.pt"
    torch.save(net.state_dict(), path)
    return path


class StepTimer(Callback):
    """Wall time and ``images_synthesized`` increase of every training batch.

    With ``sync_debug`` on a GPU, every batch from ``sync_debug_from`` on runs under
    ``torch.cuda.set_sync_debug_mode("error")``: a host synchronisation inside a synthesis
    round or a student step raises.
    """

    def __init__(self, sync_debug: bool = False, sync_debug_from: int = 0) -> None:
        self.steps: list[tuple[int, float, int]] = []  # (batch index, seconds, new images)
        self.threads = 0
        self.sync_debug, self.sync_debug_from = sync_debug, sync_debug_from
        self._start = 0.0
        self._images = 0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def _debugging(self, pl_module: L.LightningModule, batch_idx: int) -> bool:
        return (
            self.sync_debug
            and pl_module.device.type == "cuda"
            and batch_idx >= self.sync_debug_from
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.threads = torch.get_num_threads()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        self._images = pl_module.images_synthesized
        self._start = time.perf_counter()
        if self._debugging(pl_module, batch_idx):
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._debugging(pl_module, batch_idx):
            torch.cuda.set_sync_debug_mode("default")
        self._sync(pl_module)
        seconds = time.perf_counter() - self._start
        self.steps.append((batch_idx, seconds, pl_module.images_synthesized - self._images))


def summarize(steps: list[tuple[int, float, int]], kd_steps: int) -> dict[str, float]:
    """Rates from the timed steps, the first round (steps ``0 .. kd_steps-1``) dropped."""
    measured = [s for s in steps if s[0] >= kd_steps]
    rounds = [s for s in measured if s[0] % kd_steps == 0]
    student = [s for s in measured if s[0] % kd_steps != 0]
    if not rounds or not student:
        raise RuntimeError(
            f"need a synthesis round and a student-only step after the warm-up round, got "
            f"{len(rounds)} and {len(student)} (raise --rounds or --kd-steps)"
        )
    student_s = statistics.median(s[1] for s in student)
    student_images = statistics.median(s[2] for s in student)
    round_s = statistics.median(s[1] for s in rounds) - student_s
    round_images = statistics.median(s[2] for s in rounds) - student_images
    return {
        "synth_images_per_s": round_images / round_s if round_s > 0 else float("nan"),
        "student_steps_per_s": 1.0 / student_s,
        "round_s": round_s,
        "student_step_s": student_s,
        "round_step_s_min": min(s[1] for s in rounds),
        "student_step_s_min": min(s[1] for s in student),
        "images_per_round": round_images,
        "images_per_student_step": student_images,
        "measured_rounds": len(rounds),
        "measured_student_steps": len(student),
    }


def device_name(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return accelerator


def run(
    method: str, pair: str, teacher: Path, args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Time ``rounds`` synthesis rounds of ``method`` on ``pair``."""
    b, k = str(args.batch_size), args.kd_steps
    timer = StepTimer(sync_debug=args.sync_debug, sync_debug_from=k)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(experiment_config(method, pair)),
            *QUIET,
            "--data.init_args.dataset",
            "fake",
            "--data.init_args.fake_num_classes",
            str(NUM_CLASSES),
            "--data.init_args.download",
            "false",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.val_fraction",
            "0",
            "--data.init_args.batch_size",
            b,
            # max_steps would count every optimizer step (the synthesizer's too): pace by
            # one epoch of rounds * kd_steps loop steps instead.
            "--data.init_args.steps_per_epoch",
            str(args.rounds * k),
            "--trainer.max_epochs",
            "1",
            "--trainer.max_steps",
            "-1",
            "--trainer.accelerator",
            args.accelerator,
            "--trainer.devices",
            "1",
            "--trainer.precision",
            args.precision,
            "--model.init_args.teacher_checkpoint",
            str(teacher),
            "--model.init_args.batch_size",
            b,
            "--model.init_args.synthesis_batch_size",
            b,
            "--model.init_args.g_steps",
            str(args.g_steps),
            "--model.init_args.kd_steps",
            str(k),
            "--model.init_args.warmup",
            "0",
            *method_overrides(method, args.batch_size),
        ],
        trainer_defaults={"callbacks": [timer]},
        save_config_callback=None,  # no logger: it would write config.yaml into the cwd
    )
    wall = time.perf_counter() - start
    if len(timer.steps) != args.rounds * k:
        raise RuntimeError(f"expected {args.rounds * k} timed steps, got {len(timer.steps)}")
    row: dict[str, Any] = {
        "method": method,
        "pair": pair,
        "device": device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        **summarize(timer.steps, k),
        "g_steps": args.g_steps,
        "kd_steps": k,
        "rounds": args.rounds,
        "threads": timer.threads,
        "images_synthesized": cli.model.images_synthesized,
        "student_steps": cli.model.student_steps,
        "wall_s": wall,
        # 1-minute load average before and after: other processes on the machine skew CPU runs
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    del cli
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, device: str) -> None:
    print(
        f"\nThroughput, fake CIFAR-10 3x32x32, random teachers, {device}, {args.threads} "
        f"threads, precision {args.precision}, batch {args.batch_size}, g_steps {args.g_steps}, "
        f"kd_steps {args.kd_steps}, {args.rounds} rounds (first dropped)"
    )
    print(
        f"{'method':14s} {'pair':18s} {'synth img/s':>11s} {'img/round':>9s} {'round s':>8s} "
        f"{'student st/s':>12s} {'student ms':>10s} {'wall s':>7s} {'load':>9s}"
    )
    for r in rows:
        print(
            f"{r['method']:14s} {r['pair']:18s} {r['synth_images_per_s']:11.2f} "
            f"{r['images_per_round']:9.0f} {r['round_s']:8.3f} {r['student_steps_per_s']:12.2f} "
            f"{1000 * r['student_step_s']:10.1f} {r['wall_s']:7.1f} "
            f"{r['load_avg'][0]:4.1f}-{r['load_avg'][1]:<4.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(DATA_FREE_METHODS), choices=list(DATA_FREE_METHODS)
    )
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--batch-size", type=int, default=16, help="student and synthesis batch")
    parser.add_argument("--g-steps", type=int, default=5, help="synthesizer steps per round")
    parser.add_argument("--kd-steps", type=int, default=5, help="loop steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="synthesis rounds (first dropped)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu")
    parser.add_argument(
        "--precision", default="32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--sync-debug",
        action="store_true",
        help="GPU: run every step after the first round under "
        "torch.cuda.set_sync_debug_mode('error') (a host synchronisation raises)",
    )
    parser.add_argument("--out", help="write the rows as JSON records to this file")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # LightningCLI warns when given args besides a command line
    if args.rounds < 2 or args.kd_steps < 2:
        parser.error("--rounds and --kd-steps must be >= 2 (the first round is warm-up)")

    torch.set_num_threads(args.threads)
    device = device_name(args.accelerator)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dfkd_throughput_") as tmp:
        teachers = {pair: save_random_teacher(PAIRS[pair], Path(tmp)) for pair in args.pairs}
        for pair in args.pairs:
            for method in args.methods:
                try:
                    row = run(method, pair, teachers[pair], args, device)
                except Exception:  # one broken method must not cost the rest of the table
                    traceback.print_exc()
                    failed.append(f"{method}/{pair}")
                    continue
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")

    print_table(rows, args, device)
    print(f"total {time.perf_counter() - total:.1f} s")
    if failed:
        raise SystemExit(f"failed (tracebacks above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
