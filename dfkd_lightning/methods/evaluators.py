"""Evaluation of a distilled student (and, once per stage, its teacher) on the real splits."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from dfkd_lightning.methods.regression_evaluation import regression_metrics

__all__ = ["ClassifierEvaluator", "RegressorEvaluator", "build_evaluator"]

STAGES = ("val", "test")


class ClassifierEvaluator(nn.Module):
    """Logs ``<stage>/acc`` and ``<stage>/loss`` of the student and ``<stage>/teacher_acc`` (on
    the first validation and on every test). Results are those of the weights held when
    ``validate``/``test`` runs: the final epoch, never a best epoch picked on the test set."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.student_acc = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes, average="micro") for stage in STAGES}
        )
        self.teacher_acc = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes, average="micro") for stage in STAGES}
        )
        self.teacher_val_logged = False

    def evaluate(self, module: Any, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = module.student(images)
        metric = self.student_acc[stage]
        metric.update(logits, labels)
        module.log(f"{stage}/loss", F.cross_entropy(logits.float(), labels), sync_dist=True)
        module.log(f"{stage}/acc", metric, prog_bar=True)
        if stage == "test" or not self.teacher_val_logged:
            teacher_metric = self.teacher_acc[stage]
            teacher_metric.update(module.teacher(images), labels)
            module.log(f"{stage}/teacher_acc", teacher_metric)


class RegressorEvaluator(nn.Module):
    """Logs ``<stage>/rmse``, ``<stage>/r2`` and ``<stage>/loss`` (MSE) of the student and the
    teacher's ``<stage>/teacher_rmse``/``teacher_r2``, on the standardised target."""

    def __init__(self) -> None:
        super().__init__()
        self.student_metrics = nn.ModuleDict({stage: regression_metrics() for stage in STAGES})
        self.teacher_metrics = nn.ModuleDict({stage: regression_metrics() for stage in STAGES})
        self.teacher_val_logged = False

    def evaluate(self, module: Any, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        inputs, targets = batch
        predictions = module.student(inputs).float()
        self._update(module, stage, "", self.student_metrics[stage], predictions, targets)
        module.log(f"{stage}/loss", F.mse_loss(predictions, targets), sync_dist=True)
        teacher = module.teacher(inputs).float()
        self._update(module, stage, "teacher_", self.teacher_metrics[stage], teacher, targets)

    @staticmethod
    def _update(
        module: Any,
        stage: str,
        prefix: str,
        metrics: MetricCollection,
        predictions: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:
        metrics.update(predictions.squeeze(-1), targets.squeeze(-1))
        module.log_dict({f"{stage}/{prefix}{name}": metric for name, metric in metrics.items()})


def build_evaluator(num_classes: int | None) -> ClassifierEvaluator | RegressorEvaluator:
    """Accuracy for classifiers (``num_classes``), RMSE/R^2 for regressors (``None``)."""
    return ClassifierEvaluator(num_classes) if num_classes else RegressorEvaluator()
