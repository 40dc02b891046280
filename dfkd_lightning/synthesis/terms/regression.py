"""The terms of data-free regression distillation (Zhou & Chiam, ESWA 2023).

Notation of the paper: ``T`` teacher, ``S`` student, ``x_g`` synthetic inputs chosen where
they disagree, ``x_p ~ N(0, I)`` plain Gaussian inputs. The generator objective
``L_G = mean[-(T - S)^2 + beta ||x||^2 + gamma S^2]`` is three terms weighted 1, beta and
gamma; the student objective ``L_S`` is :class:`MixedMSETerm`.
"""

from __future__ import annotations

from typing import Literal

import torch

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = ["GAUSSIAN", "DisagreementTerm", "InputNormTerm", "MixedMSETerm", "StudentNormTerm"]

#: The extra marking the student batch's plain Gaussian inputs ``x_p``.
GAUSSIAN = "gaussian"


def _squared_gap(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    return (teacher.float() - student.float()).pow(2).flatten(1).sum(1)


@register_term("disagreement")
class DisagreementTerm(LossTerm):
    """``-mean_i (T(x_i) - S(x_i))^2``: the synthesizer seeks inputs where they disagree."""

    summary = "-(T - S)^2: seek inputs where teacher and student disagree"

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return -_squared_gap(ctx.teacher.logits, ctx.student_output().logits).mean()


@register_term("input_norm")
class InputNormTerm(LossTerm):
    """``mean_i ||x_i||^2`` (weight: the paper's beta). ``penalty: batch`` is the released
    code's ``sum_j ||x_j||^2`` added to every sample (the paper's scaled by the batch size)."""

    summary = "||x||^2 bound on synthetic inputs (beta)"

    def __init__(self, penalty: Literal["sample", "batch"] = "sample") -> None:
        super().__init__()
        if penalty not in ("sample", "batch"):
            raise ConfigError(f"input_norm penalty must be 'sample' or 'batch', got {penalty!r}")
        self.penalty = penalty

    def forward(self, ctx: StepContext) -> torch.Tensor:
        norms = ctx.batch.samples.float().flatten(1).pow(2).sum(1)
        return norms.sum() if self.penalty == "batch" else norms.mean()


@register_term("student_norm")
class StudentNormTerm(LossTerm):
    """``mean_i S(x_i)^2`` (weight: the paper's gamma): keeps the disagreement finite."""

    summary = "S(x)^2 bound on the student's output (gamma)"

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return ctx.student_output().logits.float().pow(2).flatten(1).sum(1).mean()


@register_term("mixed_mse")
class MixedMSETerm(LossTerm):
    """The student objective ``L_S = a mean (T(x_g) - S(x_g))^2 + (1 - a) mean (T(x_p) -
    S(x_p))^2`` over a batch whose :data:`GAUSSIAN` extra marks the ``x_p``. ``alpha`` is a
    number or ``decreasing``: ``1 - (epoch + 1) / max_epochs``, the released code's rule."""

    summary = "student MSE on synthetic and Gaussian inputs, mixed by alpha"

    def __init__(self, alpha: float | Literal["decreasing"] = "decreasing") -> None:
        super().__init__()
        if isinstance(alpha, str) and alpha != "decreasing":
            raise ConfigError(f"alpha must be a number in [0, 1] or 'decreasing', got {alpha!r}")
        if not isinstance(alpha, str) and not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha = alpha

    @property
    def needs(self) -> Needs:
        return Needs(student=True)

    def current_alpha(self, epoch: int, max_epochs: int | None) -> float:
        if self.alpha != "decreasing":
            return float(self.alpha)
        if max_epochs is None or max_epochs < 1:
            raise ConfigError("alpha='decreasing' needs --trainer.max_epochs (it reaches 0 there)")
        return max(0.0, 1.0 - (epoch + 1) / max_epochs)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        gap = _squared_gap(ctx.teacher.logits, ctx.student_output().logits)
        gaussian = ctx.batch.extras[GAUSSIAN]
        alpha = self.current_alpha(ctx.module.current_epoch, ctx.module.trainer.max_epochs)
        weight_p = gaussian.to(gap.dtype)  # masks, not boolean indexing: no host sync
        on_p = (gap * weight_p).sum() / weight_p.sum().clamp(min=1)
        on_g = (gap * (1 - weight_p)).sum() / (1 - weight_p).sum().clamp(min=1)
        ctx.logs.update(mse_synthetic=on_g, mse_gaussian=on_p, alpha=on_g.new_full((), alpha))
        return alpha * on_g + (1 - alpha) * on_p
