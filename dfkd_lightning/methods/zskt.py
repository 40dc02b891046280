"""ZSKT: Zero-shot Knowledge Transfer via Adversarial Belief Matching (Micaelli & Storkey, 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods.generative import GenerativeDistillation
from dfkd_lightning.synthesis.losses import attention_transfer_loss
from dfkd_lightning.synthesis.stage_outputs import StageOutputs


class ZSKT(GenerativeDistillation):
    """The generator maximises ``KL(T(x) || S(x))`` (loss ``adv * -KL``, Eq. 1); the
    student minimises ``KL + beta * sum_l AT_l`` (Eq. 2), attention transfer between the
    outputs of matching stages (ResNet ``layer<i>``, WRN ``block<i>``; override with
    ``teacher_stages`` / ``student_stages``), ``kd_steps`` (10) student steps per
    generator step. KL at ``temperature`` (1 in the paper).
    """

    def __init__(
        self,
        *args: Any,
        adv: float = 1.0,
        beta: float = 250.0,
        teacher_stages: Sequence[str] | None = None,
        student_stages: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.adv, self.beta = adv, beta
        self.teacher_stages = StageOutputs(self.teacher, teacher_stages)
        self.student_stages = StageOutputs(self.student, student_stages)
        if len(self.teacher_stages.names) != len(self.student_stages.names):
            raise ValueError(
                f"attention transfer pairs stages one to one, but the teacher has "
                f"{self.teacher_stages.names} and the student {self.student_stages.names}; "
                "set teacher_stages / student_stages to lists of equal length"
            )

    def loss_weights(self) -> dict[str, float]:
        return {"adv": self.adv}

    def generator_terms(
        self, inputs: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        kl = kd_loss(self.student(inputs), self.teacher(inputs), self.temperature)
        return {"adv": -kl}

    def student_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, inputs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        loss_kd = kd_loss(student_logits, teacher_logits, self.temperature)
        loss_at = attention_transfer_loss(self.student_stages.outputs, self.teacher_stages.outputs)
        return {"loss": loss_kd + self.beta * loss_at, "loss_kd": loss_kd, "loss_at": loss_at}
