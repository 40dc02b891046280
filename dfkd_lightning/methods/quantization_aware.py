"""Quantization-aware training with the real training data: the upper bound of data-free
quantization tables."""

from __future__ import annotations

from typing import Any

from dfkd_lightning.methods.distillation import KnowledgeDistillation
from dfkd_lightning.quantization import BatchNormMode, quantized_student


class QuantizationAwareTraining(KnowledgeDistillation):
    """The teacher's fake-quantized copy (as :class:`DataFreeQuantization` builds it) fine-tuned
    on the real training images with ``kd_weight * T^2 KL + ce_weight * CE(s, y)`` from the
    full-precision teacher (KD-aided QAT; ``kd_weight: 0`` is plain QAT). ``student`` is
    ignored: the architecture is the teacher's."""

    def __init__(
        self,
        teacher: str = "resnet34",
        teacher_checkpoint: str | None = None,
        weight_bits: int = 4,
        activation_bits: int = 4,
        batch_norm: BatchNormMode = "fixed",
        ce_weight: float = 1.0,
        student: str | None = None,
        **kwargs: Any,
    ) -> None:
        # the teacher's architecture is built as the student, then replaced by its quantized copy
        super().__init__(teacher, teacher, teacher_checkpoint, ce_weight=ce_weight, **kwargs)
        self.student = quantized_student(self.teacher, weight_bits, activation_bits, batch_norm)
        self.hparams.update(
            weight_bits=weight_bits, activation_bits=activation_bits, batch_norm=batch_norm
        )
