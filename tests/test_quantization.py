"""Fake quantization: the quantized copy of a network (data-free quantization's student)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DIGITS_EXPERIMENTS, quick_trainer, small_method_options, tiny_fake_run
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.quantization import (
    ActivationQuantizer,
    FixedStatisticsBatchNorm1d,
    FixedStatisticsBatchNorm2d,
    QuantConv2d,
    QuantLinear,
    calibrate_activations,
    fake_quantize,
    quantize_weights_per_channel,
    quantized_copy,
    quantized_student,
)
from dfkd_lightning.synthesis.synthesizers import GaussianSampler, SampleSpec


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


def _shifted_batch() -> torch.Tensor:
    return torch.randn(32, 1, 32, 32) * 3 + 2  # far from the statistics the BN layers hold


def test_fixed_batch_norm_keeps_the_pretrained_statistics_while_training() -> None:
    torch.manual_seed(0)
    net = build_classifier("lenet5_bn", 10, 1).eval()
    fixed = quantized_student(net, 8, 8, "fixed")
    reestimated = quantized_student(net, 8, 8, "reestimate")
    assert fixed.training and reestimated.training
    # the same state-dict keys as the float network, plus each layer's activation range
    assert set(net.state_dict()) <= set(fixed.state_dict())
    layers = [m for m in fixed.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert layers and all(
        isinstance(m, FixedStatisticsBatchNorm1d | FixedStatisticsBatchNorm2d) for m in layers
    )
    assert all(not m.training for m in layers)
    before = {k: v.clone() for k, v in fixed.state_dict().items() if "running" in k}
    x = _shifted_batch()
    fixed(x).sum().backward()
    reestimated(x)
    for key, value in before.items():
        assert torch.equal(fixed.state_dict()[key], value), key
    assert any(
        not torch.equal(reestimated.state_dict()[key], value) for key, value in before.items()
    )
    # the affine parameters of fixed BN layers still learn
    assert all(m.weight.grad is not None for m in layers if m.affine)
    # in train mode a fixed network normalises as in eval mode (activation ranges frozen)
    fixed_eval = copy.deepcopy(fixed).eval()
    for quantizer in fixed.modules():
        if isinstance(quantizer, ActivationQuantizer):
            quantizer.eval()
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), fixed_eval(x))
    with pytest.raises(ConfigError, match="batch_norm"):
        quantized_student(net, 8, 8, "fold")  # type: ignore[arg-type]


def test_gaussian_noise_is_standard_normal_after_the_dataset_normalisation() -> None:
    mean, std = (0.3,), (0.2,)
    spec = SampleSpec(
        shape=(1, 32, 32),
        num_classes=10,
        batch_size=64,
        normalize=lambda x: (x - mean[0]) / std[0],
        denormalize=lambda x: x * std[0] + mean[0],
    )
    sampler = GaussianSampler()
    sampler.bind(spec)
    torch.manual_seed(0)
    batch = sampler.sample(256)
    assert batch.samples.shape == (256, 1, 32, 32) and batch.targets is None
    inputs = spec.normalize(batch.samples)
    assert abs(inputs.mean().item()) < 0.01 and abs(inputs.std().item() - 1) < 0.01
    assert abs(batch.samples.mean().item() - 0.3) < 0.01  # image space: mean + std * N(0, 1)


def test_quantization_aware_training_fine_tunes_the_quantized_copy_on_real_data(
    fake_teacher: Path, tmp_path: Path
) -> None:
    from dfkd_lightning.data import ClassificationDataModule
    from dfkd_lightning.methods import QuantizationAwareTraining

    data = ClassificationDataModule("digits", channels=1, batch_size=32)
    model = QuantizationAwareTraining(
        teacher="lenet5_bn",
        teacher_checkpoint=str(fake_teacher),
        num_classes=10,
        input_shape=data.input_shape,
        weight_bits=3,
        activation_bits=3,
    )
    layers = [m for m in model.student.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert len(layers) == 5 and all(layer.weight_bits == 3 for layer in layers)
    assert model.hparams["ce_weight"] == 1.0 and model.hparams["weight_bits"] == 3
    before = layers[0].weight.detach().clone()
    quick_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1).fit(
        model, datamodule=data
    )
    assert not torch.equal(before, layers[0].weight)
    assert torch.equal(model.teacher.conv1.weight, before)


QUANTIZATION_CONFIGS = [
    "quant_noise",
    "quant_bn_inversion",
    "quant_gdfq",
    "quant_cmi",
    "quant_cmi_rgal",
]


@pytest.mark.parametrize("name", QUANTIZATION_CONFIGS)
def test_each_data_source_runs_from_its_config(name: str, fake_teacher: Path) -> None:
    cli = tiny_fake_run(
        name,
        fake_teacher,
        "--model.init_args.weight_bits",
        "2",
        "--model.init_args.activation_bits",
        "8",
    )
    model = cli.model
    assert model.student_steps == 4
    layers = [m for m in model.student.modules() if isinstance(m, QuantConv2d | QuantLinear)]
    assert all(layer.weight_bits == 2 for layer in layers)
    assert all(layer.input_quantizer.initialised for layer in layers)
    written = yaml.safe_load((DIGITS_EXPERIMENTS / f"{name}.yaml").read_text())
    synthesizer = written["model"]["init_args"]["synthesizer"]["class_path"].rsplit(".", 1)[1]
    assert type(model.synthesizer).__name__ == synthesizer
