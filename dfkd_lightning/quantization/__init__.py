"""Fake quantization for data-free quantization: quantized copies of a trained network."""

from dfkd_lightning.quantization.fake_quant import (
    ActivationQuantizer,
    QuantConv2d,
    QuantLinear,
    calibrate_activations,
    fake_quantize,
    quantize_weights_per_channel,
    quantized_copy,
)

__all__ = [
    "ActivationQuantizer",
    "QuantConv2d",
    "QuantLinear",
    "calibrate_activations",
    "fake_quantize",
    "quantize_weights_per_channel",
    "quantized_copy",
]
