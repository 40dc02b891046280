"""Teacher training and KD with real data on scikit-learn's digits (real images, CPU)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.methods import KnowledgeDistillation, TeacherTraining
from dfkd_lightning.nets import CheckpointMismatchError


def _digits() -> ClassificationDataModule:
    return ClassificationDataModule("digits", channels=1, image_size=32, batch_size=64)


def _kd(teacher_ckpt: Path | None, num_classes: int = 10, **kwargs) -> KnowledgeDistillation:
    return KnowledgeDistillation(
        "lenet5",
        "lenet5_half",
        teacher_checkpoint=teacher_ckpt,
        num_classes=num_classes,
        input_shape=(1, 32, 32),
        **kwargs,
    )


def test_digits_teacher_learns(digits_teacher_ckpt: Path, make_trainer) -> None:
    model = TeacherTraining.load_from_checkpoint(digits_teacher_ckpt, weights_only=True)
    [result] = make_trainer(1).test(model, datamodule=_digits(), verbose=False)
    assert result["test/acc"] > 0.85  # chance is 0.10


def test_lightning_checkpoint_holds_only_weights_and_primitives(digits_teacher_ckpt: Path) -> None:
    checkpoint = torch.load(digits_teacher_ckpt, map_location="cpu", weights_only=True)
    assert "net.conv1.weight" in checkpoint["state_dict"]


def test_kd_student_learns_from_frozen_teacher(digits_teacher_ckpt: Path, make_trainer) -> None:
    L.seed_everything(0)
    model = _kd(digits_teacher_ckpt, optimizer=lambda p: torch.optim.Adam(p, lr=2e-3))
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    trainer = make_trainer(4)
    trainer.fit(model, datamodule=_digits())
    assert not model.teacher.training and model.student.training
    assert all(torch.equal(v, model.teacher.state_dict()[k]) for k, v in teacher_before.items())
    [result] = trainer.test(model, datamodule=_digits(), verbose=False)
    assert result["test/acc"] > 0.6
    assert result["test/teacher_acc"] > 0.85


def test_kd_requires_a_teacher_checkpoint() -> None:
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        _kd(None)


def test_kd_teacher_with_wrong_class_count_is_a_clear_error(digits_teacher_ckpt: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match="num_classes=5") as info:
        _kd(digits_teacher_ckpt, num_classes=5)
    assert "10 classes" in str(info.value)


@pytest.mark.parametrize("module", ["teacher", "kd"])
def test_bf16_mixed_precision(module: str, digits_teacher_ckpt: Path, make_trainer) -> None:
    L.seed_everything(0)
    model = (
        TeacherTraining("lenet5", num_classes=10, input_shape=(1, 32, 32))
        if module == "teacher"
        else _kd(digits_teacher_ckpt)
    )
    trainer = make_trainer(1, precision="bf16-mixed", limit_train_batches=10, limit_val_batches=2)
    trainer.fit(model, datamodule=_digits())
    loss = trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
