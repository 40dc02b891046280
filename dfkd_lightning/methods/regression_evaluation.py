"""Shared validation / test logic of regressors: RMSE and R^2 on the real splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanSquaredError, R2Score


def regression_metrics() -> MetricCollection:
    """RMSE and R^2 of one output (torchmetrics)."""
    return MetricCollection({"rmse": MeanSquaredError(squared=False), "r2": R2Score()})


class RegressorEvaluation(LightningModule):
    """Logs ``val/rmse``, ``val/r2``, ``val/loss`` (MSE) and the same under ``test/`` for
    :meth:`evaluated_net`, on the (standardised) target of the real splits.

    ``in_features`` comes from the DataModule (linked by the CLI). Results are those of the
    weights the module holds when ``validate``/``test`` runs: the final epoch.
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.metrics = nn.ModuleDict({stage: regression_metrics() for stage in ("val", "test")})

    def evaluated_net(self) -> nn.Module:
        raise NotImplementedError

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        inputs, targets = batch
        predictions = self.evaluated_net()(inputs).float()
        metrics = self.metrics[stage]
        metrics.update(predictions.squeeze(-1), targets.squeeze(-1))
        self.log(f"{stage}/loss", F.mse_loss(predictions, targets), sync_dist=True)
        self.log_dict({f"{stage}/{name}": metric for name, metric in metrics.items()})

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")
