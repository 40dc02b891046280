"""Student-side terms: what the student minimises on synthetic samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.losses import KLReduction, check_kl_reduction, kd_loss
from dfkd_lightning.synthesis import losses
from dfkd_lightning.synthesis.batch import NO_TARGET
from dfkd_lightning.synthesis.stage_outputs import default_stage_names
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = ["AttentionTransferTerm", "KDTerm", "L1DistillationTerm", "TargetCETerm"]


@register_term("kd")
class KDTerm(LossTerm):
    """Hinton et al. (2015) Eq. 2: ``T^2 KL(softmax(t/T) || softmax(s/T))``, batch mean
    (``reduction: mean`` also divides by the number of classes, as ZSKT's release does)."""

    summary = "Hinton KD: T^2 KL(teacher || student) at temperature T"

    def __init__(self, temperature: float = 1.0, reduction: KLReduction = "batchmean") -> None:
        super().__init__()
        check_kl_reduction(reduction)
        self.temperature, self.reduction = float(temperature), reduction

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return kd_loss(
            ctx.student_output().logits, ctx.teacher.logits, self.temperature, self.reduction
        )


@register_term("ce")
class TargetCETerm(LossTerm):
    """``CE(s, y)``: the student's cross-entropy to the classes the samples were synthesized
    for (a conditional synthesizer's targets; DE-DFKD's optional student term)."""

    summary = "CE of the student to the synthesized samples' targets"

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.targets is None:
            raise ConfigError(
                "the ce student term reads the samples' class targets, but this synthesizer "
                "aims at no class; use a conditional synthesizer or set ce to 0"
            )
        return F.cross_entropy(
            ctx.student_output().logits.float(), ctx.targets, ignore_index=NO_TARGET
        )


@register_term("l1")
class L1DistillationTerm(LossTerm):
    """DFAD's student loss (Eq. 6): ``mean |t - s|`` over batch and classes."""

    summary = "|teacher - student|_1 on logits (DFAD student)"

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.l1_distillation_loss(ctx.student_output().logits, ctx.teacher.logits)


@register_term("at")
class AttentionTransferTerm(LossTerm):
    """ZSKT's attention transfer (Eq. 2 without beta; beta is the weight): ``sum_l`` of the
    squared differences of the normalised spatial attention maps of paired stages (default:
    the networks' ``layer<i>``/``block<i>`` children)."""

    summary = "attention transfer between paired stages (ZSKT student)"

    def __init__(
        self,
        teacher_stages: Sequence[str] | None = None,
        student_stages: Sequence[str] | None = None,
        reduction: Literal["mean_squared", "norm"] = "mean_squared",
    ) -> None:
        super().__init__()
        self.teacher_stages = tuple(teacher_stages or ())
        self.student_stages = tuple(student_stages or ())
        self.reduction = reduction

    def bind(self, module: Any) -> None:
        self.teacher_stages = self.teacher_stages or tuple(default_stage_names(module.teacher))
        self.student_stages = self.student_stages or tuple(default_stage_names(module.student))
        if not self.teacher_stages or len(self.teacher_stages) != len(self.student_stages):
            raise ConfigError(
                f"attention transfer pairs stages one to one, but the teacher has "
                f"{list(self.teacher_stages)} and the student {list(self.student_stages)}; set "
                "the at term's teacher_stages / student_stages to lists of equal length"
            )

    @property
    def needs(self) -> Needs:
        return Needs(teacher_stages=self.teacher_stages, student_stages=self.student_stages)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        student = ctx.student_output()
        return losses.attention_transfer_loss(
            [student.stages[name] for name in self.student_stages],
            [ctx.teacher.stages[name] for name in self.teacher_stages],
            self.reduction,
        )
