"""The distillation loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd_lightning.losses import kd_loss


def _two_class_kl(p_teacher: float) -> float:
    """KL(teacher || uniform) for two classes."""
    return p_teacher * math.log(2 * p_teacher) + (1 - p_teacher) * math.log(2 * (1 - p_teacher))


def test_kd_loss_matches_hand_computed_kl() -> None:
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax -> (0.75, 0.25)
    student = torch.zeros(1, 2)  # softmax -> (0.5, 0.5)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(_two_class_kl(0.75), rel=1e-5)
    # T = 2: teacher probabilities sqrt(3) : 1, loss scaled by T^2 = 4.
    p = math.sqrt(3) / (1 + math.sqrt(3))
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * _two_class_kl(p), rel=1e-5)


def test_kd_loss_is_batch_mean_and_zero_when_equal() -> None:
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    student = torch.zeros(2, 2)
    assert kd_loss(student, teacher).item() == pytest.approx(_two_class_kl(0.75) / 2, rel=1e-5)
    logits = torch.randn(4, 10)
    assert kd_loss(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_is_finite_for_half_precision_logits() -> None:
    student = torch.tensor([[60000.0, -60000.0]], dtype=torch.float16)
    teacher = torch.tensor([[-60000.0, 60000.0]], dtype=torch.float16)
    loss = kd_loss(student, teacher, 4.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
