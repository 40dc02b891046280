"""Fake quantization for data-free quantization: quantized copies of a trained network."""

from dfkd_lightning.quantization.batch_norm import (
    BATCH_NORM_MODES,
    BatchNormMode,
    FixedStatisticsBatchNorm1d,
    FixedStatisticsBatchNorm2d,
    fix_batch_norm_statistics,
)
from dfkd_lightning.quantization.fake_quant import (
    ActivationQuantizer,
    QuantConv2d,
    QuantLinear,
    calibrate_activations,
    fake_quantize,
    quantize_weights_per_channel,
    quantized_copy,
)
from dfkd_lightning.quantization.student import quantized_student

__all__ = [
    "BATCH_NORM_MODES",
    "BatchNormMode",
    "FixedStatisticsBatchNorm1d",
    "FixedStatisticsBatchNorm2d",
    "fix_batch_norm_statistics",
    "quantized_student",
    "ActivationQuantizer",
    "QuantConv2d",
    "QuantLinear",
    "calibrate_activations",
    "fake_quantize",
    "quantize_weights_per_channel",
    "quantized_copy",
]
