"""A frozen teacher and a trainable student: what every distillation method holds."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dfkd_lightning.methods.evaluation import ClassifierEvaluation
from dfkd_lightning.methods.frozen_teacher import StudentWithFrozenTeacher, load_frozen_teacher
from dfkd_lightning.nets import build_classifier


class TeacherStudentModule(StudentWithFrozenTeacher, ClassifierEvaluation):
    """Builds ``teacher`` (loaded from ``teacher_checkpoint``, frozen, always in eval mode)
    and ``student``; evaluates the student and logs the teacher's accuracy once per stage
    (``val/teacher_acc`` on the first validation, ``test/teacher_acc`` on every test).
    """

    def __init__(
        self,
        teacher: str,
        student: str,
        teacher_checkpoint: str | None,
        num_classes: int,
        input_shape: tuple[int, int, int],
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
    ) -> None:
        super().__init__(num_classes, input_shape, mean, std)
        self.teacher = load_frozen_teacher(teacher, teacher_checkpoint, num_classes, input_shape[0])
        self.student = build_classifier(
            student, num_classes=num_classes, in_channels=input_shape[0]
        )
        self.teacher_acc = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes, average="micro") for stage in ("val", "test")}
        )
        self._teacher_val_logged = False

    def _evaluate(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy
    ) -> None:
        super()._evaluate(batch, stage, metric)
        if stage == "test" or not self._teacher_val_logged:
            images, labels = batch
            teacher_metric = self.teacher_acc[stage]
            teacher_metric.update(self.teacher(images), labels)
            self.log(f"{stage}/teacher_acc", teacher_metric)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._teacher_val_logged = True
