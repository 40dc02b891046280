"""A frozen teacher and a trainable student: what KD with real data holds."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule

from dfkd_lightning.methods.evaluators import ClassifierEvaluator
from dfkd_lightning.methods.frozen_teacher import StudentWithFrozenTeacher, load_frozen_teacher
from dfkd_lightning.nets import build_classifier


class TeacherStudentModule(StudentWithFrozenTeacher, LightningModule):
    """Builds ``teacher`` (loaded from ``teacher_checkpoint``, frozen, always in eval mode)
    and ``student``; evaluates the student and logs the teacher's accuracy once per stage
    (``val/teacher_acc`` on the first validation, ``test/teacher_acc`` on every test), with
    the :class:`ClassifierEvaluator` the data-free methods use too.
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
        super().__init__()
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.mean, self.std = tuple(mean), tuple(std)
        self.teacher = load_frozen_teacher(teacher, teacher_checkpoint, num_classes, input_shape[0])
        self.teacher_checkpoint = teacher_checkpoint
        self.student = build_classifier(
            student, num_classes=num_classes, in_channels=input_shape[0]
        )
        self.evaluation = ClassifierEvaluator(num_classes)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation.evaluate(self, batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation.evaluate(self, batch, "test")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.evaluation.teacher_val_logged = True
