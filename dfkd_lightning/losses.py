"""Distillation losses shared by every method (plain torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss, Eq. (2) with the T^2 gradient scaling.

    ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over the batch
    (``batchmean``). Computed in float32 so that it stays finite under fp16 autocast.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2
