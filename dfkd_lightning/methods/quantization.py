"""Data-free quantization: a fake-quantized copy of the teacher, fine-tuned by KD from the
full-precision teacher on synthetic data (the GDFQ / Qimera setting)."""

from __future__ import annotations

from typing import Any

from torch import nn

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.methods.frozen_teacher import load_frozen_teacher
from dfkd_lightning.quantization import BatchNormMode, quantized_student
from dfkd_lightning.synthesis.synthesizers import ConditionalGenerator


class DataFreeQuantization(DataFreeDistillation):
    """The student is the teacher itself, fake-quantized (``weight_bits`` per output channel,
    ``activation_bits`` per tensor on every convolution's and linear layer's input;
    :mod:`dfkd_lightning.quantization`), and learns from the full-precision teacher on the
    synthesizer's samples. ``student`` is ignored: the architecture is the teacher's.

    BatchNorm is not folded. ``batch_norm: fixed`` (default): it normalises with the teacher's
    running statistics throughout, its affine parameters fine-tune (GDFQ, Xu et al. ECCV 2020:
    "fine-tuning with fixed BNS", paper and release); ``reestimate``: it normalises with the
    synthetic batch's statistics while training and re-estimates the running statistics on
    the synthetic data.

    Default data source: GDFQ's class-conditional generator on
    ``oh * CE(T(G(z, y)), y) + bn * R_BN`` (oh 1, bn 0.1); the student learns ``kd + ce`` on
    the generator's fresh batches (GDFQ's Eq. 8; its release's ``loss_fn_kd`` is the same
    sum, KD at T 20). Any synthesizer and terms of the suite swap in by YAML (noise,
    BN-statistics inversion, CMI, CMI + RGAL: ``configs/experiments/digits/quant_*.yaml``)."""

    summary = "data-free quantization (GDFQ, ECCV 2020): the teacher fake-quantized, tuned by KD"

    default_synthesizer = ConditionalGenerator
    default_synthesis_loss = {"oh": 1.0, "bn": 0.1}
    default_student_loss = {"kd": 1.0, "ce": 1.0}

    def __init__(
        self,
        *args: Any,
        weight_bits: int = 4,
        activation_bits: int = 4,
        batch_norm: BatchNormMode = "fixed",
        **kwargs: Any,
    ):
        self.weight_bits, self.activation_bits = weight_bits, activation_bits
        self.batch_norm = batch_norm
        super().__init__(*args, **kwargs)
        self.hparams.update(
            weight_bits=weight_bits, activation_bits=activation_bits, batch_norm=batch_norm
        )

    def build_networks(
        self, teacher: str, student: str, teacher_checkpoint: str | None
    ) -> tuple[nn.Module, nn.Module]:
        """The frozen teacher and its fake-quantized, trainable copy."""
        channels = self.input_shape[0]
        frozen = load_frozen_teacher(teacher, teacher_checkpoint, self.num_classes, channels)
        quantized = quantized_student(
            frozen, self.weight_bits, self.activation_bits, self.batch_norm
        )
        return frozen, quantized
