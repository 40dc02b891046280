"""DAFL: Data-Free Learning of Student Networks (Chen et al., ICCV 2019)."""

from __future__ import annotations

import math
from typing import Any

import torch

from dfkd_lightning.methods.generative import GenerativeDistillation
from dfkd_lightning.synthesis.losses import (
    dafl_activation_loss,
    information_entropy_loss,
    one_hot_loss,
)


class DAFL(GenerativeDistillation):
    """The teacher acts as a fixed discriminator. Generator loss (Eq. 6):
    ``L_G = oh * L_oh + act * L_a + ie * L_ie`` — one-hot CE to the teacher's own argmax
    (Eq. 3), negative mean |feature| of the teacher's penultimate layer (Eq. 4) and the
    negative entropy of the batch-mean prediction (Eq. 5); the student distils on the
    generated images with KD at ``temperature`` (1 in the paper).

    Differences from the released code: its ``L_ie`` uses log10 while the paper uses the
    natural log (``ie_log_base`` chooses; with the default e, the code's ``ie`` weight
    corresponds to ``ie / ln 10``); the code distils on the very batch the generator step
    used, this loop draws fresh samples for the student (``kd_steps`` steps per round).
    """

    def __init__(
        self,
        *args: Any,
        oh: float = 1.0,
        act: float = 0.1,
        ie: float = 5.0,
        ie_log_base: float = math.e,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights = {"oh": oh, "act": act, "ie": ie}
        self.ie_log_base = ie_log_base

    def loss_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def generator_terms(
        self, inputs: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        logits, features = self.teacher(inputs, return_features=True)
        return {
            "oh": one_hot_loss(logits),
            "act": dafl_activation_loss(features),
            "ie": information_entropy_loss(logits, log_base=self.ie_log_base),
        }
