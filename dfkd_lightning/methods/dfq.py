"""DFQ: Data-Free Network Quantization with Adversarial Knowledge Distillation (Choi et al.,
CVPRW 2020)."""

from __future__ import annotations

from typing import Any

import torch

from dfkd_lightning.methods.bn_prior import BNStatisticsPrior
from dfkd_lightning.methods.generative import GenerativeDistillation
from dfkd_lightning.synthesis.losses import (
    adversarial_kl_loss,
    information_entropy_loss,
    one_hot_loss,
)


class DFQ(BNStatisticsPrior, GenerativeDistillation):
    """A generator trained against the student with
    ``bn * R_BN + oh * CE + adv * (-KL(t || s)) + balance * L_balance``: the teacher's BN
    statistics matched (Eq. 5), confident teacher predictions (one-hot CE to its argmax),
    the adversarial KL maximised on all samples (Eq. 3) and classes kept balanced (negative
    entropy of the batch-mean prediction); the student distils on fresh samples with KD at
    ``temperature``.
    """

    def __init__(
        self,
        *args: Any,
        bn: float = 1.0,
        oh: float = 1.0,
        adv: float = 1.0,
        balance: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights = {"bn": bn, "oh": oh, "adv": adv, "balance": balance}

    def loss_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def needs_bn_statistics(self) -> bool:
        return self.weights["bn"] != 0

    def generator_terms(
        self, inputs: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        teacher_logits = self.teacher(inputs)
        terms = {
            "oh": one_hot_loss(teacher_logits),
            "balance": information_entropy_loss(teacher_logits),
        }
        if "bn" in weights:
            terms["bn"] = self.bn_statistics()
        if "adv" in weights:
            terms["adv"] = adversarial_kl_loss(
                self.student(inputs), teacher_logits, agreeing_only=False
            )
        return terms
