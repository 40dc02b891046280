"""Supervised training of a teacher classifier on the real training split."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from dfkd_lightning.methods.evaluation import ClassifierEvaluation
from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.optim import build_optimization


class TeacherTraining(ClassifierEvaluation):
    """Cross-entropy training of ``arch`` (the recipe lives in the experiment YAML).

    CIFAR recipe used by the DFKD papers: SGD lr 0.1, momentum 0.9, weight decay
    5e-4, cosine or multistep schedule, 200 epochs, random crop + flip. The trained
    network is the attribute ``net``; its checkpoint loads as a teacher anywhere.
    """

    def __init__(
        self,
        arch: str = "resnet34",
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, input_shape, mean, std)
        record_hyperparameters(self)
        self.net = build_classifier(arch, num_classes=num_classes, in_channels=input_shape[0])
        self.optimizer = optimizer
        self.scheduler = scheduler

    def evaluated_net(self) -> nn.Module:
        return self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        logits = self.net(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean())
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimization(
            self.net.parameters(), self.optimizer, self.scheduler, self.hparams.scheduler_interval
        )
