"""The trainable fake-quantized copy of a pretrained network (the quantization student)."""

from __future__ import annotations

from torch import nn

from dfkd_lightning.quantization.batch_norm import BatchNormMode, fix_batch_norm_statistics
from dfkd_lightning.quantization.fake_quant import quantized_copy

__all__ = ["quantized_student"]


def quantized_student(
    net: nn.Module, weight_bits: int, activation_bits: int, batch_norm: BatchNormMode = "fixed"
) -> nn.Module:
    """A trainable fake-quantized copy of ``net`` (``net`` untouched), its BatchNorm on the
    pretrained statistics (``fixed``) or re-estimating them (``reestimate``)."""
    student = quantized_copy(net, weight_bits, activation_bits)
    fix_batch_norm_statistics(student, batch_norm)
    return student.requires_grad_(True).train()
