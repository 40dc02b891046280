"""The data-free loop and the seven classic methods, run from their YAML configs."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import (
    DIGITS_EXPERIMENTS,
    QUIET,
    SMALL_BANK,
    TINY,
    fit_with_cpu_ddp,
    quick_trainer,
    small_method_options,
    tiny_fake_run,
)

from dfkd_lightning.callbacks import SampleCallback
from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.methods import DATA_FREE_METHODS, DataFreeDistillation, NonFiniteLossError
from dfkd_lightning.synthesis.augment import RandomJitter
from dfkd_lightning.synthesis.batch import SyntheticBatch

DIGITS = DIGITS_EXPERIMENTS


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    monkeypatch.chdir(tmp_path)


def _hooks_left(net: torch.nn.Module) -> list[str]:
    """The modules of ``net`` that still carry a forward, pre-forward or backward hook."""
    return [
        name or type(net).__name__
        for name, module in net.named_modules()
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
    ]


@pytest.mark.parametrize("method", sorted(DATA_FREE_METHODS))
def test_every_method_runs_from_its_yaml_on_fake_data(method: str, fake_teacher: Path) -> None:
    cli = tiny_fake_run(method, fake_teacher)
    model = cli.model
    assert isinstance(model, DATA_FREE_METHODS[method])
    # nothing is left on the networks after fit (ZSKT's attention hooks, the BN recorder)
    assert _hooks_left(model.teacher) == [] and _hooks_left(model.student) == []
    assert model.student_steps == 4
    assert model.images_synthesized > 0
    pooled = model.student_samples == "pool"
    assert len(model.pool) == (16 if pooled else 0)  # 2 rounds x 8 images
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["synth/loss"]) and torch.isfinite(metrics["train/loss"])
    [result] = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert {"test/acc", "test/teacher_acc"} <= result.keys()


def _digits_run(method: str, teacher: Path, *overrides: str) -> DFKDCLI:
    return DFKDCLI(
        args=[
            "fit",
            "--config",
            str(DIGITS / f"{method}.yaml"),
            *QUIET,
            "--model.init_args.teacher_checkpoint",
            str(teacher),
            *overrides,
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        (
            "deepinversion",
            [
                "--trainer.max_epochs",
                "3",
                "--data.init_args.steps_per_epoch",
                "60",
                "--model.init_args.kd_steps",
                "20",
                "--model.init_args.g_steps",
                "60",
            ],
        ),
        (
            "dafl",
            [
                "--trainer.max_epochs",
                "3",
                "--data.init_args.steps_per_epoch",
                "100",
            ],
        ),
        (
            "dedfkd",
            [
                "--trainer.max_epochs",
                "4",
                "--data.init_args.steps_per_epoch",
                "200",
            ],
        ),
    ],
)
def test_short_digits_run_beats_chance(
    method: str, overrides: list[str], digits_bn_teacher_ckpt: Path
) -> None:
    cli = _digits_run(method, digits_bn_teacher_ckpt, *overrides)
    assert cli.trainer.callback_metrics["test/teacher_acc"] > 0.85
    assert cli.trainer.callback_metrics["test/acc"] > 0.5  # chance is 0.1


class KeepEveryOther(SampleCallback):
    """A sample filter: keeps every other synthesized image."""

    def on_samples_synthesized(self, trainer, module, batch: SyntheticBatch) -> SyntheticBatch:
        return batch.select(slice(None, None, 2))


def _deepinversion(teacher: Path, **kwargs) -> DataFreeDistillation:
    data = ClassificationDataModule("digits", channels=1, train_source="steps", steps_per_epoch=6)
    options = small_method_options(
        teacher,
        data,
        batch_size=16,
        kd_steps=3,
        synthesis_augment=RandomJitter(2),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    )
    options.update(kwargs)
    return DATA_FREE_METHODS["deepinversion"](**options), data


def _synthesizer_output_size(model: DataFreeDistillation) -> int:
    """Side length of what the synthesizer itself produces, before upsampling."""
    with torch.no_grad():
        return model.synthesizer.render(model.synthesis_batch_size).samples.shape[-1]


@pytest.mark.parametrize("method", ["dfad", "deepinversion", "cmi", "fastdfkd"])
def test_synthesis_at_a_smaller_size_is_upsampled_to_the_input(
    method: str, fake_teacher: Path
) -> None:
    cli = tiny_fake_run(method, fake_teacher, "--model.init_args.synthesis_size", "8")
    model = cli.model
    assert model.synthesis_shape == (1, 8, 8)
    assert _synthesizer_output_size(model) == 8
    assert model.student_steps == 4
    batch, _ = model.student_batch()
    assert batch.samples.shape[1:] == (1, 8, 8)  # the pool keeps what the synthesizer made
    assert model.network_inputs(batch.samples, None).shape[1:] == (1, 32, 32)


def test_upsampling_matches_the_datamodule_resize(fake_teacher: Path) -> None:
    """Synthesized 8x8 images reach the teacher the way the digits images do (bilinear)."""
    from torchvision.transforms import v2

    model, _ = _deepinversion(fake_teacher, synthesis_size=8)
    small = torch.rand(3, 1, 8, 8)
    expected = v2.functional.resize(small, [32, 32], antialias=True)
    torch.testing.assert_close(model.to_input_size(small), expected)
    assert model.to_input_size(expected) is expected
    with pytest.raises(ValueError, match="synthesis_size"):
        _deepinversion(fake_teacher, synthesis_size=0)


def test_sample_callbacks_filter_what_reaches_the_pool(fake_teacher: Path, tmp_path: Path) -> None:
    model, data = _deepinversion(fake_teacher)
    quick_trainer(tmp_path, 1, callbacks=[KeepEveryOther()], limit_val_batches=0).fit(
        model, datamodule=data
    )
    assert len(model.pool) == 2 * 4  # 2 rounds of 8 images, half kept


def test_non_finite_loss_is_a_clear_error(fake_teacher: Path) -> None:
    model, _ = _deepinversion(fake_teacher)
    with pytest.raises(NonFiniteLossError, match=r"\['bn'\].*synthesizer's lr"):
        model.log_terms("synth", {"bn": torch.tensor(float("nan")), "oh": torch.tensor(1.0)})


@pytest.mark.parametrize("method", ["deepinversion", "dafl", "rgal", "dedfkd"])
def test_interrupted_and_resumed_run_matches_uninterrupted(
    method: str, fake_teacher: Path, tmp_path: Path
) -> None:
    """Checkpoints hold the student, synthesizer, optimizers, pool and RNG state."""
    args = [
        "--config",
        str(DIGITS / f"{method}.yaml"),
        *QUIET[:4],
        *TINY[2:],
        "--model.init_args.teacher_checkpoint",
        str(fake_teacher),
        "--trainer.logger",
        "false",
        "--trainer.limit_val_batches",
        "0",
        "--test_after_fit",
        "false",
    ]

    def run(max_epochs: int, ckpt: Path | None = None, save: Path | None = None) -> DFKDCLI:
        L.seed_everything(0)
        extra = ["--trainer.max_epochs", str(max_epochs)]
        extra += ["--ckpt_path", str(ckpt)] if ckpt else []
        cli = DFKDCLI(
            args=[
                "fit",
                *args,
                *extra,
                "--trainer.callbacks",
                "[]",
                "--trainer.enable_checkpointing",
                "false",
            ]
        )
        if save:
            cli.trainer.save_checkpoint(save, weights_only=False)
        return cli

    straight = run(2)
    ckpt = tmp_path / "epoch1.ckpt"
    run(1, save=ckpt)
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["datafree_ranks"]
    resumed = run(2, ckpt=ckpt)
    for key, value in straight.model.student.state_dict().items():
        torch.testing.assert_close(
            resumed.model.student.state_dict()[key], value, rtol=0, atol=0, msg=key
        )
    assert len(resumed.model.pool) == len(straight.model.pool)
    torch.testing.assert_close(resumed.model.pool.images(), straight.model.pool.images())
    assert resumed.model.student_steps == straight.model.student_steps


@pytest.mark.parametrize("method", ["cmi", "dfq"])
def test_bf16_mixed_precision(method: str, fake_teacher: Path) -> None:
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(DIGITS / f"{method}.yaml"),
            *QUIET,
            *TINY,
            *SMALL_BANK.get(method, []),
            "--trainer.precision",
            "bf16-mixed",
            "--model.init_args.teacher_checkpoint",
            str(fake_teacher),
            "--test_after_fit",
            "false",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["synth/loss"]) and torch.isfinite(metrics["train/loss"])
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())


@pytest.mark.slow
def test_two_process_cpu_ddp_keeps_a_pool_per_rank(fake_teacher: Path, tmp_path: Path) -> None:
    fit_with_cpu_ddp(
        [
            "--config",
            str(DIGITS / "cmi.yaml"),
            *TINY,
            *SMALL_BANK["cmi"],
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger",
            "false",
            "--model.init_args.teacher_checkpoint",
            str(fake_teacher),
        ],
        tmp_path,
        "ddp_find_unused_parameters_true",
    )
    checkpoint = torch.load(
        tmp_path / "runs/digits/cmi/checkpoints/final.ckpt", map_location="cpu", weights_only=True
    )
    ranks = checkpoint["datafree_ranks"]
    assert len(ranks) == 2
    pools = [rank["pool"] for rank in ranks]
    images = [pool["data"] for pool in pools]
    # The step pacer is split across ranks like a dataset: 2 steps, 1 round of 8 each.
    assert images[0].shape == images[1].shape == (8, 1, 32, 32)
    assert not torch.equal(images[0], images[1])  # each rank synthesized its own images
