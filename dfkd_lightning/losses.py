"""Distillation losses shared by every method (plain torch)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dfkd_lightning.errors import ConfigError

#: How a KL divergence over a batch of class distributions is reduced: ``batchmean`` (the KL
#: of each sample, summed over classes, averaged over the batch: the divergence the papers
#: write) or ``mean`` (``F.kl_div``'s elementwise mean: also divided by the number of classes,
#: as ZSKT's release computes it).
KLReduction = Literal["batchmean", "mean"]
KL_REDUCTIONS = ("batchmean", "mean")


def check_kl_reduction(reduction: str) -> None:
    """A :class:`ConfigError` naming the choices when ``reduction`` is not a KLReduction."""
    if reduction not in KL_REDUCTIONS:
        raise ConfigError(f"reduction must be one of {list(KL_REDUCTIONS)}, got {reduction!r}")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: KLReduction = "batchmean",
) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss, Eq. (2) with the T^2 gradient scaling.

    ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over the batch (``batchmean``), or
    also over the classes (``mean``). Computed in float32 so that it stays finite under fp16
    autocast.
    """
    check_kl_reduction(reduction)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    if reduction == "mean":
        kl = kl / student_logits.shape[1]
    return kl * temperature**2
