"""Supervised training of a teacher regressor on the real training split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.methods.regression_evaluation import RegressorEvaluation
from dfkd_lightning.nets.mlp import MLPRegressor
from dfkd_lightning.optim import build_optimization


def rmsprop_default(params: Any) -> torch.optim.Optimizer:
    """Zhou & Chiam's optimizer for teachers and students: RMSprop 1e-3, weight decay 1e-5."""
    return torch.optim.RMSprop(params, lr=1e-3, weight_decay=1e-5)


class RegressionTeacherTraining(RegressorEvaluation):
    """MSE training of an :class:`MLPRegressor` (the paper: one tanh layer of 500 units).

    Zhou & Chiam's recipe: RMSprop 1e-3 with weight decay 1e-5, ``ReduceLROnPlateau``
    (factor 0.5) on the validation loss, early stopping on the validation split of the
    teacher's own data (Lightning's ``EarlyStopping`` and a ``ModelCheckpoint`` monitoring
    ``val/loss`` in the experiment YAML). The trained net is the attribute ``net``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(in_features)
        record_hyperparameters(self)
        self.net = MLPRegressor(in_features, 1, hidden, activation)
        self.optimizer, self.scheduler = optimizer, scheduler

    def evaluated_net(self) -> MLPRegressor:
        return self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        inputs, targets = batch
        loss = F.mse_loss(self.net(inputs).float(), targets)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimization(
            self.net.parameters(),
            self.optimizer or rmsprop_default,
            self.scheduler,
            monitor="val/loss",
        )
