"""The DCGAN-style generator: shapes, output ranges, module names and cloning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dfkd_lightning.nets import Generator


@pytest.mark.parametrize("img_size", [28, 32, 64])
@pytest.mark.parametrize("output", ["sigmoid", "tanh", "bn"])
def test_output_shape_and_range(img_size: int, output: str) -> None:
    torch.manual_seed(0)
    gen = Generator(nz=16, ngf=8, img_size=img_size, nc=3, output=output)
    images = gen(torch.randn(6, 16))
    assert images.shape == (6, 3, img_size, img_size)
    assert torch.isfinite(images).all()
    if output == "sigmoid":
        assert images.min() >= 0.0 and images.max() <= 1.0
    elif output == "tanh":
        assert images.min() >= -1.0 and images.max() <= 1.0
    else:  # non-affine BN on the batch: per-channel zero mean, unit variance
        mean = images.mean(dim=(0, 2, 3))
        var = images.var(dim=(0, 2, 3), unbiased=False)
        assert torch.allclose(mean, torch.zeros(3), atol=1e-4)
        assert torch.allclose(var, torch.ones(3), atol=1e-2)


def test_single_channel_and_latent_with_trailing_dims() -> None:
    gen = Generator(nz=10, ngf=4, img_size=28, nc=1).eval()
    z = torch.randn(2, 10)
    assert gen(z).shape == (2, 1, 28, 28)
    # DFAD feeds z as (B, nz, 1, 1)
    assert torch.equal(gen(z.view(2, 10, 1, 1)), gen(z))


def test_fast_datafree_layout() -> None:
    gen = Generator(nz=256, ngf=64, img_size=32, nc=3)
    names = dict(gen.named_parameters())
    assert "l1.0.weight" in names and "l1.0.bias" in names
    assert names["l1.0.weight"].shape == (128 * 8 * 8, 256)
    assert any(n.startswith("conv_blocks.") for n in names)
    assert isinstance(gen.conv_blocks[0], nn.BatchNorm2d)
    assert gen.conv_blocks[2].bias is None and gen.conv_blocks[6].bias is None
    assert gen.conv_blocks[9].bias is not None
    assert isinstance(gen.conv_blocks[10], nn.Sigmoid)
    # Same state-dict keys as Fast-Datafree's Generator (the sigmoid head has no state).
    expected = {"l1.0.weight", "l1.0.bias"}
    for i in (0, 3, 7):
        expected |= {
            f"conv_blocks.{i}.{k}"
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        }
    expected |= {"conv_blocks.2.weight", "conv_blocks.6.weight"}
    expected |= {"conv_blocks.9.weight", "conv_blocks.9.bias"}
    assert set(gen.state_dict()) == expected


def test_bn_head_is_tanh_then_non_affine_bn() -> None:
    gen = Generator(nz=8, ngf=4, output="bn")
    assert isinstance(gen.conv_blocks[10], nn.Tanh)
    head = gen.conv_blocks[11]
    assert isinstance(head, nn.BatchNorm2d) and not head.affine


@pytest.mark.parametrize("kwargs", [{"img_size": 30}, {"output": "relu"}])
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Generator(nz=8, ngf=4, **kwargs)


def test_clone_has_equal_weights_but_independent_storage() -> None:
    torch.manual_seed(0)
    gen = Generator(nz=8, ngf=4, img_size=32, output="bn").double().eval()
    gen(torch.randn(4, 8, dtype=torch.double))  # eval: no running-stat change, but exercise it
    twin = gen.clone()
    assert isinstance(twin, Generator) and twin is not gen
    assert twin.hparams == gen.hparams
    assert not twin.training
    for (name, a), (name_b, b) in zip(
        gen.state_dict().items(), twin.state_dict().items(), strict=True
    ):
        assert name == name_b
        assert a.dtype == b.dtype and a.device == b.device
        assert torch.equal(a, b)
        if a.numel():
            assert a.data_ptr() != b.data_ptr()
    z = torch.randn(3, 8, dtype=torch.double)
    assert torch.equal(gen(z), twin(z))
    with torch.no_grad():
        twin.l1[0].weight.add_(1.0)
    assert not torch.equal(gen.l1[0].weight, twin.l1[0].weight)
    assert twin.l1[0].weight.grad is None
