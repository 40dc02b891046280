"""Shared validation / test logic: top-1 accuracy of a classifier on the real splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class ClassifierEvaluation(LightningModule):
    """Logs ``val/acc``, ``val/loss``, ``test/acc`` and ``test/loss`` of :meth:`evaluated_net`.

    ``num_classes``, ``input_shape`` and the normalisation ``mean``/``std`` come from the
    DataModule (linked by the CLI). Subclasses build their networks and say which one is
    being evaluated (the
    teacher for teacher training, the student for every distillation method).
    Results are those of the weights the module holds when ``validate``/``test``
    runs: the final epoch, never a best epoch picked on the test set.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.mean, self.std = tuple(mean), tuple(std)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def evaluated_net(self) -> nn.Module:
        raise NotImplementedError

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy
    ) -> None:
        images, labels = batch
        logits = self.evaluated_net()(images)
        metric.update(logits, labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits.float(), labels), sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)
