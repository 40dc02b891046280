"""Diffusion benchmark on digits: DiffDFKD's and DDA's rows and FastDFKD with the same teacher.

    python benchmarks/diffusion_digits.py --seeds 0 1 2 --out diffusion_digits.json
    python benchmarks/diffusion_digits.py --rows dda_inversion dda_omega_0.7 --seeds 0 1 2
    python benchmarks/diffusion_digits.py --quick        # the whole pipeline, reduced

Run from the repository root. Makes what is missing first, each once: the DDPM prior on
the public half of the digits train split (``configs/experiments/digits/diffusion_prior.yaml``)
and the LeNet-5 (BN) teacher on the private half (``teacher_lenet5_bn_private.yaml``), cached
under ``runs/digits`` (``--quick``: a shorter prior and teacher under ``--work-dir``). Then,
once per seed, every row with the same budget:

- the diffusion rows (``configs/experiments/digits/diffdfkd*.yaml``): a generated set of
  ``--images-per-class`` images per class (``--steps`` DDPM steps each), then the student
  distils on it for ``--student-steps`` steps of 128 images (KD, T = 30, Adam 1e-3);
- FastDFKD (``fastdfkd.yaml``) with the private-half teacher: its own loop (one warmup
  epoch of synthesis, then 100 student steps of 128 images per epoch) for the same number
  of student steps; its pool is what it makes in that time.
- the DDA rows (``dda.yaml``, ``dda_release.yaml``): the same number of student steps of
  128 pool images, a round of 64 inverted images every 25 steps (the same pool before
  variations in every DDA row): the inversion alone; + one img2img variation of every new
  image by the prior (strength ``--variation-strength``, unguided) without a filter; + the
  cosine filter at each omega of ``--omegas`` (rows ``dda_omega_<omega>``); the release's
  synthesis (rotation-head adversary, no variations). The filter's keep rate is the share
  of variations it kept over the run.

Every run carries the monitoring callbacks (teacher-FID/KID against the validation images,
class balance, diversity, on the newest 1024 samples); for the diffusion rows the figures
are then computed again on the whole generated set (``whole_set_figures``: the set is made
class after class, so its newest 1024 samples are its last classes). Prints the student's
test accuracy and those figures (mean ± standard deviation over seeds) and, with ``--out``,
writes one JSON record per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from digits import MONITORED, MONITORS, fit, mean_and_spread, print_monitoring
from torchmetrics.image.fid import FrechetInceptionDistance

from dfkd_lightning.callbacks.balance import balance_entropy, intra_class_diversity
from dfkd_lightning.callbacks.features import build_feature_extractor
from dfkd_lightning.export.read import load_exported
from dfkd_lightning.results import read_run

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "configs" / "experiments" / "digits"
PRIOR = "runs/digits/diffusion_prior/pipeline"
TEACHER = "runs/digits/teacher_lenet5_bn_private/checkpoints/final.ckpt"
#: Row name -> digits experiment config.
ROWS: dict[str, str] = {
    "unguided": "diffdfkd_unguided",
    "guided": "diffdfkd",
    "guided_cutmix": "diffdfkd_cutmix",
    "no_grad_x0": "diffdfkd_no_grad_x0",
    "fastdfkd": "fastdfkd",
    "dda_inversion": "dda",
    "dda_variations": "dda",
    "dda_omega_0.5": "dda",
    "dda_omega_0.7": "dda",
    "dda_omega_0.9": "dda",
    "dda_release": "dda_release",
}
#: The rows that run the data-free loop (a pool filled every kd_steps), not a generated set.
POOL_ROWS = ("fastdfkd", *(row for row in ROWS if row.startswith("dda")))
DDA_STEPS_PER_EPOCH = 100
STUDENT_BATCH = 128
FASTDFKD_STEPS_PER_EPOCH = 100
#: ``--quick``: sizes of the reduced pipeline (prior and teacher epochs, set and student).
QUICK = {
    "prior_epochs": 30,
    "teacher_epochs": 10,
    "images_per_class": 30,
    "steps": 20,
    "student_steps": 300,
    "variation_steps": 20,
}


def _quiet_run(work_dir: Path, name: str) -> list[str]:
    return [
        "--trainer.logger.init_args.save_dir",
        str(work_dir),
        "--trainer.logger.init_args.name",
        name,
        "--trainer.enable_checkpointing",
        "false",
    ]


def prerequisites(args: argparse.Namespace) -> tuple[str, str]:
    """The prior's directory and the private-half teacher's checkpoint, made if missing."""
    if not args.quick:
        prior, teacher = PRIOR, TEACHER
        if not Path(prior, "model_index.json").is_file():
            fit(EXPERIMENTS / "diffusion_prior.yaml")
        if not Path(teacher).is_file():
            fit(EXPERIMENTS / "teacher_lenet5_bn_private.yaml")
        return prior, teacher
    prior = str(args.work_dir / "prior" / "pipeline")
    teacher_dir = args.work_dir / "teacher" / "checkpoints"
    teacher = str(teacher_dir / "final.ckpt")
    if not Path(prior, "model_index.json").is_file():
        fit(
            EXPERIMENTS / "diffusion_prior.yaml",
            *_quiet_run(args.work_dir, "prior"),
            "--trainer.max_epochs",
            str(QUICK["prior_epochs"]),
            "--trainer.callbacks",
            "[]",
            "--model.init_args.save_dir",
            prior,
        )
    if not Path(teacher).is_file():
        epochs = QUICK["teacher_epochs"]
        fit(
            EXPERIMENTS / "teacher_lenet5_bn_private.yaml",
            "--trainer.logger.init_args.save_dir",
            str(args.work_dir),
            "--trainer.logger.init_args.name",
            "teacher",
            "--trainer.max_epochs",
            str(epochs),
            "--model.init_args.scheduler.init_args.T_max",
            str(epochs),
            "--trainer.callbacks",
            json.dumps(
                [
                    {
                        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"dirpath": str(teacher_dir), "filename": "final"},
                    }
                ]
            ),
        )
    return prior, teacher


def run_row(
    row: str, seed: int, prior: str, teacher: str, args: argparse.Namespace
) -> dict[str, Any]:
    """One row and seed: fit (generation included for the diffusion rows), then test."""
    name = f"{row}_seed{seed}"
    common = [
        *_quiet_run(args.work_dir, name),
        "--seed_everything",
        str(seed),
        "--model.init_args.teacher_checkpoint",
        teacher,
        "--trainer.callbacks",
        json.dumps([*variation_stage(row, prior, args), *MONITORS]),
    ]
    if row == "fastdfkd":
        epochs = 1 + math.ceil(args.student_steps / FASTDFKD_STEPS_PER_EPOCH)
        overrides = ["--trainer.max_epochs", str(epochs)]
    elif row in POOL_ROWS:
        epochs = math.ceil(args.student_steps / DDA_STEPS_PER_EPOCH)
        overrides = ["--trainer.max_epochs", str(epochs)]
    else:
        images = args.images_per_class * 10
        steps_per_epoch = images // STUDENT_BATCH if images >= STUDENT_BATCH else 1
        overrides = [
            "--model.init_args.images_per_class",
            str(args.images_per_class),
            "--model.init_args.generation_seed",
            str(seed),
            "--model.init_args.synthesizer.init_args.pretrained",
            prior,
            "--model.init_args.synthesizer.init_args.num_inference_steps",
            str(args.steps),
            "--data.init_args.synthetic_dir",
            str(args.work_dir / name / "synthetic"),
            "--data.init_args.batch_size",
            str(STUDENT_BATCH),
            "--trainer.max_epochs",
            str(math.ceil(args.student_steps / steps_per_epoch)),
        ]
    start = time.perf_counter()
    cli = fit(EXPERIMENTS / f"{ROWS[row]}.yaml", *common, *overrides)
    seconds = time.perf_counter() - start
    metrics = cli.trainer.callback_metrics
    figures = read_run(Path(cli.trainer.log_dir)).figures
    if row not in POOL_ROWS:
        synthetic = args.work_dir / name / "synthetic"
        figures = {**figures, **whole_set_figures(cli.model, cli.datamodule, synthetic)}
    return {
        "row": row,
        "seed": seed,
        "test_acc": float(metrics["test/acc"]),
        "teacher_acc": float(metrics["test/teacher_acc"]),
        "student_steps": cli.model.student_steps,
        "images": args.images_per_class * 10 if row not in POOL_ROWS else len(cli.model.pool),
        "keep_rate": logged_mean(Path(cli.trainer.log_dir), "filter/similarity_kept"),
        "seconds": seconds,
        "log_dir": cli.trainer.log_dir,
        **{metric: figures.get(metric) for metric in MONITORED},
    }


def variation_stage(row: str, prior: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The callbacks a DDA row puts before the monitors: one unguided img2img variation of
    every new image by the prior, then (``dda_omega_<omega>``) the cosine filter."""
    if row not in ("dda_variations", *(r for r in ROWS if r.startswith("dda_omega_"))):
        return []
    stage: list[dict[str, Any]] = [
        {
            "class_path": "dfkd_lightning.callbacks.DiffusionVariations",
            "init_args": {
                "synthesizer": {
                    "class_path": "dfkd_lightning.synthesis.synthesizers.DiffusionSynthesizer",
                    "init_args": {
                        "pretrained": prior,
                        "num_inference_steps": args.variation_steps,
                        "guidance_step": 0.0,
                    },
                },
                "copies": 1,
                "strength": args.variation_strength,
            },
        }
    ]
    if row.startswith("dda_omega_"):
        omega = float(row.removeprefix("dda_omega_"))
        similarity = "dfkd_lightning.callbacks.SimilarityFilter"
        stage.append({"class_path": similarity, "init_args": {"threshold": omega}})
    return stage


def logged_mean(log_dir: Path, name: str) -> float | None:
    """The mean of a metric's logged values (a filter's per-epoch keep rate over the run)."""
    path = log_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as file:
        values = [float(v) for row in csv.DictReader(file) if (v := row.get(name))]
    return sum(values) / len(values) if values else None


@torch.no_grad()
def whole_set_figures(module: Any, datamodule: Any, directory: Path) -> dict[str, float]:
    """The monitoring figures of a whole generated set (the monitors see only the newest
    1,024 samples, which for a set made class after class are its last classes): teacher-FID
    against the validation images, class entropy and intra-class diversity of the teacher's
    predictions, and the share of images the teacher gives the set's label (target match)."""
    images, labels = load_exported(directory)
    inputs = module.normalize(module.to_input_size(images.to(module.device)))
    logits, features = module.teacher(inputs, return_features=True)
    predicted = logits.argmax(1)
    extractor = build_feature_extractor(
        "teacher", module.input_shape, teacher=module.teacher, normalize=module.normalize
    )
    fid = FrechetInceptionDistance(feature=extractor, normalize=True).to(module.device)
    for real, _ in datamodule.val_dataloader():
        fid.update(module.denormalize(real.to(module.device)).clamp(0, 1), real=True)
    fid.update(module.to_input_size(images.to(module.device)), real=False)
    return {
        "synth/fid": float(fid.compute()),
        "synth/class_entropy": float(balance_entropy(predicted, logits.shape[1])),
        "synth/intra_class_diversity": float(intra_class_diversity(features.flatten(1), predicted)),
        "synth/target_match": float((predicted.cpu() == labels).float().mean()),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = (
        ("test_acc", "test acc", 4),
        ("synth/fid", "teacher-FID", 2),
        ("synth/class_entropy", "class entropy", 3),
        ("synth/intra_class_diversity", "intra diversity", 3),
        ("synth/target_match", "target match", 3),
        ("keep_rate", "keep rate", 3),
        ("seconds", "seconds", 0),
    )
    print_monitoring(rows, columns, group="row")
    teacher = mean_and_spread([r["teacher_acc"] for r in rows], 4)
    print(f"Teacher (private half) test accuracy: {teacher}.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--images-per-class", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per image")
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--variation-steps", type=int, default=50, help="the prior's steps")
    parser.add_argument("--variation-strength", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="a reduced pipeline, one seed")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, help="write the rows as JSON")
    args = parser.parse_args()
    if args.quick:
        args.images_per_class = QUICK["images_per_class"]
        args.steps = QUICK["steps"]
        args.student_steps = QUICK["student_steps"]
        args.variation_steps = QUICK["variation_steps"]
        args.seeds = args.seeds[:1]
    default_dir = "runs/benchmark_diffusion" + ("_quick" if args.quick else "")
    args.work_dir = args.work_dir or Path(default_dir)

    torch.set_num_threads(args.threads)
    prior, teacher = prerequisites(args)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for row in args.rows:
            rows.append(run_row(row, seed, prior, teacher, args))
            print(f"{row} seed {seed}: test acc {rows[-1]['test_acc']:.4f}", flush=True)
    print(
        f"\nSizes: {args.images_per_class} images per class, {args.steps} denoising steps, "
        f"{args.student_steps} student steps of {STUDENT_BATCH}; DDA: 64 inverted images every "
        f"25 student steps, variations at strength {args.variation_strength} of "
        f"{args.variation_steps} prior steps."
    )
    print_table(rows)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
