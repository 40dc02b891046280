"""The synthesis-side terms of the classic methods (DAFL, ZSKT, DFAD, DFQ, DeepInversion, CMI,
FastDFKD), each a thin wrapper of a loss function of :mod:`dfkd_lightning.synthesis.losses`."""

from __future__ import annotations

import math
from typing import Literal

import torch

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.losses import KLReduction, check_kl_reduction
from dfkd_lightning.synthesis import losses
from dfkd_lightning.synthesis.batch import SOFT_TARGETS
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = [
    "ActivationTerm",
    "AdversarialKLTerm",
    "AdversarialL1Term",
    "BNStatisticsTerm",
    "CompetitionTerm",
    "InformationEntropyTerm",
    "L2PriorTerm",
    "OneHotTerm",
    "TotalVariationTerm",
]


@register_term("oh")
class OneHotTerm(LossTerm):
    """Cross-entropy of the teacher to the batch's targets, or to its own argmax when the
    synthesizer aims at no class (DeepInversion Eq. 2; DAFL Eq. 3), or to the batch's
    :data:`~dfkd_lightning.synthesis.batch.SOFT_TARGETS` when its samples mix classes."""

    summary = "CE of the teacher to the targets (or its argmax)"

    def forward(self, ctx: StepContext) -> torch.Tensor:
        soft = ctx.batch.extras.get(SOFT_TARGETS)
        return losses.one_hot_loss(ctx.teacher.logits, ctx.targets, soft)


@register_term("bn")
class BNStatisticsTerm(LossTerm):
    """DeepInversion's feature-statistics prior R_feature (Eq. 4) on the teacher's BN layers,
    with FastDFKD's blend of earlier rounds' statistics (``momentum``, Eq. 6) and NVlabs'
    ``first_bn_multiplier``. The hooks record only during synthesis steps."""

    summary = "teacher BN statistics match (DeepInversion R_feature; FastDFKD momentum)"

    def __init__(self, momentum: float = 0.0, first_bn_multiplier: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"bn momentum must lie in [0, 1), got {momentum}")
        self.momentum, self.first_bn_multiplier = float(momentum), float(first_bn_multiplier)

    @property
    def needs(self) -> Needs:
        return Needs(teacher_bn=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        if ctx.teacher.bn_loss is None:
            raise RuntimeError("the bn term runs on synthesis steps only")
        return ctx.teacher.bn_loss


@register_term("adv")
class AdversarialKLTerm(LossTerm):
    """The synthesizer's adversarial term ``-T^2 KL(p_t || p_s)`` at ``temperature``, averaged
    over the batch: on the samples where teacher and student agree (CMI Eq. 4, FastDFKD;
    ``agreeing_only``) or on all of them (DFQ Eq. 3; ZSKT Eq. 1). ``reduction: mean`` also
    divides by the number of classes (ZSKT's release)."""

    summary = "-KL(teacher || student): seek disagreement (CMI, DFQ, ZSKT)"

    def __init__(
        self,
        temperature: float = 1.0,
        agreeing_only: bool = True,
        reduction: KLReduction = "batchmean",
    ) -> None:
        super().__init__()
        check_kl_reduction(reduction)
        self.temperature, self.agreeing_only = float(temperature), agreeing_only
        self.reduction = reduction

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.adversarial_kl_loss(
            ctx.student_output().logits,
            ctx.teacher.logits,
            temperature=self.temperature,
            agreeing_only=self.agreeing_only,
            reduction=self.reduction,
        )


@register_term("adv_l1")
class AdversarialL1Term(LossTerm):
    """DFAD's generator loss ``-mean |t - s|`` (Eq. 4-5): maximise the logits' L1 gap."""

    summary = "-|teacher - student|_1 on logits (DFAD)"

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.l1_adversarial_loss(ctx.student_output().logits, ctx.teacher.logits)


@register_term("competition")
class CompetitionTerm(LossTerm):
    """Adaptive DeepInversion's competition ``1 - JS(p_s, p_t)`` at ``temperature`` (Eq. 8).
    ``js_variant: deepinversion_code`` is the released code's clamped form."""

    summary = "1 - JS(student, teacher) (Adaptive DeepInversion)"

    def __init__(
        self,
        temperature: float = 3.0,
        js_variant: Literal["paper", "deepinversion_code"] = "paper",
    ) -> None:
        super().__init__()
        self.temperature, self.js_variant = float(temperature), js_variant

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.competition_loss(
            ctx.student_output().logits, ctx.teacher.logits, self.temperature, self.js_variant
        )


def _prior_view(ctx: StepContext) -> torch.Tensor:
    """The samples at the synthesizer's resolution in normalised input space (where
    DeepInversion's image priors are taken, as in NVlabs' code)."""
    return ctx.module.normalize(ctx.batch.samples)


@register_term("tv")
class TotalVariationTerm(LossTerm):
    """DeepInversion's total-variation prior R_TV (Eq. 3), ``norm`` l2 or l1, on the samples
    at the synthesizer's resolution in normalised space."""

    summary = "total-variation image prior (DeepInversion)"

    def __init__(self, norm: Literal["l1", "l2"] = "l2") -> None:
        super().__init__()
        self.norm = norm

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.total_variation_loss(_prior_view(ctx), self.norm)


@register_term("l2")
class L2PriorTerm(LossTerm):
    """DeepInversion's image-norm prior R_l2 (Eq. 3) on the samples in normalised space."""

    summary = "L2 image-norm prior (DeepInversion)"

    def __init__(self, reduction: Literal["batch", "per_sample_mean"] = "batch") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.l2_prior_loss(_prior_view(ctx), self.reduction)


@register_term("act")
class ActivationTerm(LossTerm):
    """DAFL's activation loss L_a (Eq. 4): minus the mean |feature| of the teacher's
    penultimate layer (``reduction: per_sample_l1`` is the equation as printed)."""

    summary = "-mean |teacher penultimate feature| (DAFL)"

    def __init__(self, reduction: Literal["mean", "per_sample_l1"] = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    @property
    def needs(self) -> Needs:
        return Needs(teacher_features=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        assert ctx.teacher.features is not None
        return losses.dafl_activation_loss(ctx.teacher.features, self.reduction)


@register_term("ie")
class InformationEntropyTerm(LossTerm):
    """DAFL's information-entropy loss L_ie (Eq. 5): minus the entropy of the batch-mean
    teacher prediction (class balance; DFQ's ``balance``). ``log_base`` 10 is DAFL's code."""

    summary = "-entropy of the batch-mean prediction: class balance (DAFL, DFQ)"

    def __init__(self, log_base: float = math.e) -> None:
        super().__init__()
        self.log_base = float(log_base)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return losses.information_entropy_loss(ctx.teacher.logits, self.log_base)
