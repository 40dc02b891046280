"""DeepInversion's BN-statistics prior on the teacher, attached for the length of a fit."""

from __future__ import annotations

from typing import Any

import torch

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.bn_statistics import BNStatisticsLoss


class BNStatisticsPrior(DataFreeDistillation):
    """Adds ``self.bn_statistics``: hooks on every BN layer of the teacher (Yin et al. 2020,
    Eq. 4), with FastDFKD's momentum blending (``bn_momentum``) carried across rounds and
    checkpoints. The hooks are attached in ``on_fit_start``, after Lightning may have
    replaced the layers (``sync_batchnorm``), and removed when the fit ends.
    """

    def __init__(
        self, *args: Any, bn_momentum: float = 0.0, first_bn_multiplier: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.bn_momentum, self.first_bn_multiplier = bn_momentum, first_bn_multiplier
        self.bn_statistics: BNStatisticsLoss | None = None
        self._pending_bn_state: dict[str, torch.Tensor] | None = None

    def needs_bn_statistics(self) -> bool:
        """Whether this configuration uses the hooks (a zero ``bn`` weight may not)."""
        return True

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.needs_bn_statistics() and self.bn_statistics is None:
            self.bn_statistics = BNStatisticsLoss(
                self.teacher,
                momentum=self.bn_momentum,
                first_bn_multiplier=self.first_bn_multiplier,
            )
        if self.bn_statistics is not None and self._pending_bn_state is not None:
            self.bn_statistics.load_state_dict(self._pending_bn_state)
            self._pending_bn_state = None

    def on_fit_end(self) -> None:
        super().on_fit_end()
        if self.bn_statistics is not None:
            self.bn_statistics.remove()
            self.bn_statistics = None

    def end_of_round_statistics(self) -> None:
        """Fold this round's batch statistics into the momentum blend (FastDFKD)."""
        if self.bn_statistics is not None and self.bn_momentum > 0:
            self.bn_statistics.update_momentum()

    def extra_rank_state(self) -> dict[str, Any]:
        state = super().extra_rank_state()
        if self.bn_statistics is not None:
            state["bn_statistics"] = {
                key: value.cpu() for key, value in self.bn_statistics.state_dict().items()
            }
        return state

    def load_extra_rank_state(self, state: dict[str, Any]) -> None:
        super().load_extra_rank_state(state)
        self._pending_bn_state = state.get("bn_statistics")
