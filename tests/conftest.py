"""Shared fixtures: the repository's configs and a quickly trained digits teacher."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.methods import TeacherTraining
from dfkd_lightning.nets import build_classifier

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
#: CLI overrides for a silent run that writes nothing (no logger, callbacks or checkpoints).
QUIET = [
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.logger",
    "false",
    "--trainer.callbacks",
    "[]",
    "--trainer.enable_checkpointing",
    "false",
]


def quick_trainer(root: Path, max_epochs: int, **kwargs) -> L.Trainer:
    """A silent CPU trainer writing under ``root``."""
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def train_digits_teacher(root: Path, arch: str, epochs: int = 6) -> Path:
    """Train ``arch`` for a few epochs on digits and save a Lightning checkpoint."""
    L.seed_everything(0)
    data = ClassificationDataModule("digits", channels=1, image_size=32, batch_size=64)
    model = TeacherTraining(
        arch,
        num_classes=data.num_classes,
        input_shape=data.input_shape,
        optimizer=lambda params: torch.optim.Adam(params, lr=2e-3),
    )
    trainer = quick_trainer(root, max_epochs=epochs)
    trainer.fit(model, datamodule=data)
    path = root / f"{arch}.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    return path


@pytest.fixture(scope="session")
def digits_teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 trained for a few epochs on digits."""
    return train_digits_teacher(tmp_path_factory.mktemp("digits_teacher"), "lenet5")


@pytest.fixture(scope="session")
def digits_bn_teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 with BatchNorm (what the BN-statistics methods need) trained on digits."""
    return train_digits_teacher(tmp_path_factory.mktemp("digits_bn_teacher"), "lenet5_bn")


@pytest.fixture()
def make_trainer(tmp_path: Path):
    """``make_trainer(max_epochs, **trainer_kwargs)``: a silent CPU trainer in ``tmp_path``."""
    return lambda max_epochs, **kwargs: quick_trainer(tmp_path, max_epochs, **kwargs)


def fit_with_cpu_ddp(args: list[str], cwd: Path, strategy: str) -> subprocess.CompletedProcess:
    """``dfkd fit ARGS`` as 2 CPU processes (gloo) in ``cwd``; fails the test if it fails."""
    command = [
        sys.executable,
        "-m",
        "dfkd_lightning.cli",
        "fit",
        *args,
        "--trainer.strategy",
        strategy,
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


DIGITS_EXPERIMENTS = CONFIGS / "experiments/digits"
#: Tiny loop sizes for smoke runs of the data-free methods (a few steps).
TINY = [
    "--trainer.max_epochs",
    "1",
    "--data.init_args.steps_per_epoch",
    "4",
    "--model.init_args.kd_steps",
    "2",
    "--model.init_args.g_steps",
    "2",
    "--model.init_args.warmup",
    "0",
    "--model.init_args.batch_size",
    "8",
    "--model.init_args.synthesis_batch_size",
    "8",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "1",
]


def few_batches(train: int, val: int = 1, test: int = 1) -> list[str]:
    """CLI overrides for one epoch of ``train`` batches, ``val`` and ``test`` batches."""
    return [
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        str(train),
        "--trainer.limit_val_batches",
        str(val),
        "--trainer.limit_test_batches",
        str(test),
    ]


#: CMI's memory bank at smoke-run size.
SMALL_BANK = {
    method: ["--model.init_args.synthesis_loss.cr", "{weight: 0.8, bank_size: 64, n_neg: 16}"]
    for method in ("cmi", "dda", "quant_cmi", "quant_cmi_rgal")
}


@pytest.fixture(scope="session")
def fake_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LeNet-5 (BN) as a raw state dict: enough to exercise every code path."""
    path = tmp_path_factory.mktemp("fake_teacher") / "lenet5_bn.pt"
    torch.save(build_classifier("lenet5_bn", 10, 1).state_dict(), path)
    return path


def tiny_fake_args(method: str, teacher: Path | str, *overrides: str, quiet=QUIET) -> list[str]:
    """``dfkd fit`` arguments for a few steps of ``method``'s digits YAML on fake 32x32 images,
    without testing (``quiet``: the options that keep it from writing)."""
    return [
        "fit",
        "--config",
        str(DIGITS_EXPERIMENTS / f"{method}.yaml"),
        *quiet,
        *TINY,
        *SMALL_BANK.get(method, []),
        "--data.init_args.dataset",
        "fake",
        "--data.init_args.channels",
        "1",
        "--model.init_args.teacher_checkpoint",
        str(teacher),
        "--test_after_fit",
        "false",
        *overrides,
    ]


def tiny_fake_run(method: str, teacher: Path, *overrides: str) -> DFKDCLI:
    """A few steps of ``method``'s digits YAML on fake 32x32 images, without testing."""
    return DFKDCLI(args=tiny_fake_args(method, teacher, *overrides))


def small_method_options(teacher: Path, data: ClassificationDataModule, **overrides) -> dict:
    """Keyword arguments of a LeNet-5 (BN) -> LeNet-5-half data-free method on ``data``."""
    options = dict(
        teacher="lenet5_bn",
        student="lenet5_half",
        teacher_checkpoint=str(teacher),
        num_classes=10,
        input_shape=data.input_shape,
        mean=data.mean,
        std=data.std,
        batch_size=8,
        synthesis_batch_size=8,
        kd_steps=2,
        g_steps=3,
    )
    options.update(overrides)
    return options


def write_fake_mnist(root: Path, train: int, test: int) -> None:
    """Random 28x28 digits and labels as MNIST's raw idx files under ``root/MNIST/raw``
    (what torchvision reads without downloading)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">I", (0x08 << 8) | array.ndim)  # unsigned bytes
            header += struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
