"""Knowledge distillation with the real training data: the upper-bound row of DFKD tables."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.methods.teacher_student import TeacherStudentModule
from dfkd_lightning.optim import build_optimization


class KnowledgeDistillation(TeacherStudentModule):
    """Hinton et al. (2015): ``kd_weight * T^2 KL(t/T || s/T) + ce_weight * CE(s, y)``.

    The teacher is loaded from ``teacher_checkpoint`` (our Lightning checkpoints,
    the shared Fast-Datafree/CMI ``{'state_dict': ...}`` files, or a raw state
    dict), frozen and kept in eval mode. ``ce_weight=0`` (the default) distils from
    the teacher alone, as the data-free methods must; set it for classic KD.
    """

    def __init__(
        self,
        teacher: str = "resnet34",
        student: str = "resnet18",
        teacher_checkpoint: str | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        temperature: float = 4.0,
        kd_weight: float = 1.0,
        ce_weight: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__(teacher, student, teacher_checkpoint, num_classes, input_shape, mean, std)
        if temperature <= 0 or kd_weight < 0 or ce_weight < 0:
            raise ConfigError(
                f"temperature must be > 0 and kd_weight, ce_weight >= 0, got {temperature}, "
                f"{kd_weight}, {ce_weight}"
            )
        record_hyperparameters(self)
        self.optimizer = optimizer
        self.scheduler = scheduler

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        student_logits = self.student(images)
        loss_kd = kd_loss(student_logits, teacher_logits, self.hparams.temperature)
        loss_ce = F.cross_entropy(student_logits.float(), labels)
        loss = self.hparams.kd_weight * loss_kd + self.hparams.ce_weight * loss_ce
        self.log_dict({"train/loss_kd": loss_kd, "train/loss_ce": loss_ce})
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimization(
            self.student.parameters(),
            self.optimizer,
            self.scheduler,
            self.hparams.scheduler_interval,
        )
