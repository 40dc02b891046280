"""Fake quantization: the quantized copy of a network (data-free quantization's student)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import quick_trainer, small_method_options
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.quantization import (
    QuantConv2d,
    QuantLinear,
    calibrate_activations,
    fake_quantize,
    quantize_weights_per_channel,
    quantized_copy,
)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_each_channel_takes_at_most_two_to_the_bits_values(bits: int) -> None:
    torch.manual_seed(0)
    net = quantized_copy(build_classifier("lenet5_bn", 10, 1), bits, 8)
    layers = [m for m in net.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert len(layers) == 5  # LeNet-5: 2 convolutions, 3 linear layers
    for layer in layers:
        quantized = quantize_weights_per_channel(layer.weight, bits)
        for channel, weights in zip(quantized, layer.weight, strict=True):
            values = channel.unique()
            assert len(values) <= 2**bits
            # symmetric: integer multiples of one step, the channel's largest weight exact
            step = weights.abs().max() / (2 ** (bits - 1) - 1)
            torch.testing.assert_close(values / step, (values / step).round())
            assert torch.isclose(channel.abs().max(), weights.abs().max())


def test_activations_take_at_most_two_to_the_bits_values_over_their_range() -> None:
    x = torch.linspace(-1.0, 3.0, 1000)
    quantized = fake_quantize(x, torch.tensor(-1.0), torch.tensor(3.0), 4)
    assert len(quantized.unique()) <= 16
    assert (quantized == 0).any()  # zero stays exact
    assert (quantized - x).abs().max() <= 4.0 / 15 / 2 + 1e-6  # half a step


def test_at_eight_bits_the_logits_stay_close_to_the_float_networks() -> None:
    torch.manual_seed(0)
    net = build_classifier("lenet5_bn", 10, 1).eval()
    x = torch.randn(64, 1, 32, 32)
    eight_bit, four_bit = quantized_copy(net, 8, 8), quantized_copy(net, 4, 4)
    for quantized in (eight_bit, four_bit):
        calibrate_activations(quantized, x)  # the ranges from one batch, BN untouched
        assert not quantized.training
    with torch.no_grad():
        reference, eight, four = net(x), eight_bit(x), four_bit(x)
    error = (eight - reference).abs().max() / reference.abs().max()
    assert error < 0.05, error
    assert (four - reference).abs().max() > (eight - reference).abs().max()
    assert (eight.argmax(1) == reference.argmax(1)).float().mean() > 0.9


def test_gradients_pass_straight_through_and_ranges_follow_the_data() -> None:
    torch.manual_seed(0)
    layer = QuantLinear.from_float(nn.Linear(4, 3), weight_bits=4, activation_bits=4)
    x = torch.randn(8, 4, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    assert layer.weight.grad.abs().sum() > 0
    low, high = layer.input_quantizer.low.item(), layer.input_quantizer.high.item()
    assert (low, high) == pytest.approx((x.min().item(), x.max().item()))
    layer(x * 10)  # the next batch moves the range by the momentum (0.1)
    assert layer.input_quantizer.high.item() == pytest.approx(0.9 * high + 0.1 * 10 * high)
    layer.eval()
    layer(x * 100)
    assert layer.input_quantizer.high.item() == pytest.approx(0.9 * high + 0.1 * 10 * high)
    state = layer.state_dict()
    assert {"input_quantizer.low", "input_quantizer.high"} <= state.keys()


def test_bad_bit_widths_are_refused() -> None:
    with pytest.raises(ConfigError, match="weight_bits"):
        quantized_copy(nn.Linear(2, 2), 1, 8)
    with pytest.raises(ConfigError, match="activation_bits"):
        quantized_copy(nn.Linear(2, 2), 8, 32)


def test_the_quantization_method_fine_tunes_a_quantized_copy_of_the_teacher(
    fake_teacher: Path, tmp_path: Path
) -> None:
    from dfkd_lightning.data import ClassificationDataModule
    from dfkd_lightning.methods.quantization import DataFreeQuantization

    data = ClassificationDataModule("digits", channels=1, train_source="steps", steps_per_epoch=4)
    options = small_method_options(fake_teacher, data, kd_steps=2, g_steps=1, student="ignored")
    model = DataFreeQuantization(**options, weight_bits=4, activation_bits=8)
    # the student is the teacher's architecture and weights, quantized and trainable
    assert type(model.student) is type(model.teacher)
    layers = [m for m in model.student.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert len(layers) == 5 and all(layer.weight_bits == 4 for layer in layers)
    torch.testing.assert_close(layers[0].weight, model.teacher.conv1.weight)
    assert all(p.requires_grad for p in model.student.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert model.hparams["weight_bits"] == 4
    before = layers[0].weight.detach().clone()
    quick_trainer(tmp_path, max_epochs=1, limit_val_batches=1).fit(model, datamodule=data)
    assert model.student_steps == 4
    assert not torch.equal(before, layers[0].weight)  # fine-tuned
    assert layers[0].input_quantizer.initialised  # its activation range was set
    assert torch.equal(model.teacher.conv1.weight, before)  # the teacher is untouched
