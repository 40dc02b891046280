"""DFAD: Data-Free Adversarial Distillation (Fang et al., 2019)."""

from __future__ import annotations

from typing import Any

import torch

from dfkd_lightning.methods.generative import GenerativeDistillation
from dfkd_lightning.synthesis.losses import l1_adversarial_loss, l1_distillation_loss


class DFAD(GenerativeDistillation):
    """Min-max game on the mean absolute difference of logits (Eq. 4-6): the generator
    maximises ``|T(G(z)) - S(G(z))|_1`` (its loss is ``adv * -L1``), the student
    minimises it on fresh samples, ``kd_steps`` (5 in the paper) student steps per
    generator step. The paper's generator ends in tanh + a non-affine BN layer
    (``generator_output: bn``).
    """

    def __init__(self, *args: Any, adv: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adv = adv

    def loss_weights(self) -> dict[str, float]:
        return {"adv": self.adv}

    def generator_terms(
        self, inputs: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        return {"adv": l1_adversarial_loss(self.student(inputs), self.teacher(inputs))}

    def student_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, inputs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        loss = l1_distillation_loss(student_logits, teacher_logits)
        return {"loss": loss, "loss_l1": loss}
