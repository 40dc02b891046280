"""Fake-quantized convolutions and linear layers on torch's core fake-quantization ops.

Weights: symmetric, per output channel, ``scale_c = max |W_c| / (2^(b-1) - 1)``, integers in
``[-2^(b-1), 2^(b-1) - 1]`` (``torch.fake_quantize_per_channel_affine``). Activations (each
layer's input): asymmetric, per tensor, over a running min/max range (an exponential moving
average during training, frozen in eval), integers in ``[0, 2^b - 1]``
(``torch.fake_quantize_per_tensor_affine``). Both ops pass gradients straight through inside
the range (the straight-through estimator), so the quantized network trains by KD.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = [
    "ActivationQuantizer",
    "QuantConv2d",
    "QuantLinear",
    "fake_quantize",
    "quantize_weights_per_channel",
    "calibrate_activations",
    "quantized_copy",
]


def _check_bits(bits: int, name: str) -> None:
    if not 2 <= bits <= 16:
        raise ConfigError(f"{name} must be between 2 and 16 bits, got {bits}")


def quantize_weights_per_channel(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` fake-quantized symmetrically per output channel (axis 0) to ``bits``."""
    _check_bits(bits, "weight_bits")
    levels = 2 ** (bits - 1) - 1
    flat = weight.detach().flatten(1).abs().amax(1).float()
    scale = (flat / levels).clamp_min(1e-8)
    zero_point = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(
        weight.float(), scale, zero_point, 0, -levels - 1, levels
    ).to(weight.dtype)


def fake_quantize(
    x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, bits: int
) -> torch.Tensor:
    """``x`` fake-quantized asymmetrically per tensor over ``[low, high]`` (0 kept exact)."""
    low, high = low.clamp(max=0.0), high.clamp(min=0.0)
    top = 2**bits - 1
    scale = ((high - low) / top).clamp_min(1e-8).float()
    zero_point = (-low / scale).round().clamp(0, top).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, top).to(x.dtype)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantization of a layer's input over a running min/max range
    (``momentum`` EMA while training; the first batch sets it; frozen in eval mode)."""

    def __init__(self, bits: int, momentum: float = 0.1) -> None:
        super().__init__()
        _check_bits(bits, "activation_bits")
        self.bits, self.momentum = bits, momentum
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                low, high = x.detach().min().float(), x.detach().max().float()
                keep = self.initialised.float() * (1 - self.momentum)
                self.low.copy_(keep * self.low + (1 - keep) * low)
                self.high.copy_(keep * self.high + (1 - keep) * high)
                self.initialised.fill_(True)
        return fake_quantize(x, self.low, self.high, self.bits)


class _FakeQuantized:
    """What a fake-quantized layer adds to its float base class: the bit width of its weights
    and the quantizer of its input."""

    weight: nn.Parameter

    def _init_quantization(self, weight_bits: int, activation_bits: int) -> None:
        _check_bits(weight_bits, "weight_bits")
        self.weight_bits = weight_bits
        self.input_quantizer = ActivationQuantizer(activation_bits)

    def _load_float(self, layer: nn.Module) -> Any:
        """This layer on ``layer``'s device and dtype, with its weights and bias."""
        quantized = self.to(layer.weight.device, layer.weight.dtype)  # type: ignore[attr-defined]
        quantized.load_state_dict(layer.state_dict(), strict=False)  # quantizers: fresh
        return quantized

    def quantized_weight(self) -> torch.Tensor:
        return quantize_weights_per_channel(self.weight, self.weight_bits)


class QuantConv2d(_FakeQuantized, nn.Conv2d):
    """An ``nn.Conv2d`` whose weights and input are fake-quantized (see the module doc)."""

    def __init__(self, *args, weight_bits: int = 8, activation_bits: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_quantization(weight_bits, activation_bits)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, weight_bits: int, activation_bits: int) -> QuantConv2d:
        return cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            weight_bits=weight_bits,
            activation_bits=activation_bits,
        )._load_float(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(x), self.quantized_weight(), self.bias)


class QuantLinear(_FakeQuantized, nn.Linear):
    """An ``nn.Linear`` whose weights and input are fake-quantized (see the module doc)."""

    def __init__(self, *args, weight_bits: int = 8, activation_bits: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_quantization(weight_bits, activation_bits)

    @classmethod
    def from_float(cls, linear: nn.Linear, weight_bits: int, activation_bits: int) -> QuantLinear:
        return cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            weight_bits=weight_bits,
            activation_bits=activation_bits,
        )._load_float(linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(x), self.quantized_weight(), self.bias)


def _quantized(module: nn.Module, weight_bits: int, activation_bits: int) -> nn.Module | None:
    if isinstance(module, QuantConv2d | QuantLinear):
        return None
    if isinstance(module, nn.Conv2d):
        return QuantConv2d.from_float(module, weight_bits, activation_bits)
    if isinstance(module, nn.Linear):
        return QuantLinear.from_float(module, weight_bits, activation_bits)
    return None


def quantized_copy(net: nn.Module, weight_bits: int, activation_bits: int) -> nn.Module:
    """A copy of ``net`` with every ``nn.Conv2d`` and ``nn.Linear`` replaced by its fake-
    quantized counterpart (the same weights); other layers (BatchNorm included) stay float."""
    _check_bits(weight_bits, "weight_bits")
    _check_bits(activation_bits, "activation_bits")
    copied = copy.deepcopy(net)
    root = _quantized(copied, weight_bits, activation_bits)
    if root is not None:
        return root
    for module in list(copied.modules()):
        for name, child in list(module.named_children()):
            replacement = _quantized(child, weight_bits, activation_bits)
            if replacement is not None:
                setattr(module, name, replacement)
    return copied


@torch.no_grad()
def calibrate_activations(net: nn.Module, inputs: torch.Tensor) -> None:
    """Set every activation range of ``net`` from one forward of ``inputs`` (the min and max
    each layer sees), with everything else in eval mode (BN statistics untouched)."""
    was_training = net.training
    net.eval()
    quantizers = [m for m in net.modules() if isinstance(m, ActivationQuantizer)]
    for quantizer in quantizers:
        quantizer.initialised.fill_(False)
        quantizer.train()
    try:
        net(inputs)
    finally:
        net.train(was_training)
