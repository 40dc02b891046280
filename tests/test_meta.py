"""CMI's generator re-initialisation and FastDFKD's meta-gradient helpers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dfkd_lightning.nets import Generator
from dfkd_lightning.synthesis.meta import (
    FAST_DATAFREE_REPTILE_SCALE,
    accumulate_first_order_gradient,
    reinitialize,
    reptile_meta_gradient,
    reset_first_layer,
)


def _generator(output: str = "sigmoid") -> Generator:
    torch.manual_seed(0)
    return Generator(nz=32, ngf=16, img_size=32, nc=3, output=output)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_reinitialize_follows_cmi_init() -> None:
    gen = _generator("bn")
    gen(torch.randn(8, 32))  # move the BN running statistics away from their init
    before = _snapshot(gen)
    assert reinitialize(gen) is gen
    after = gen.state_dict()
    for name, value in after.items():
        assert value.shape == before[name].shape
    for name in ("l1.0.weight", "conv_blocks.2.weight", "conv_blocks.6.weight"):
        assert not torch.equal(after[name], before[name])
    # conv / linear weights ~ N(0, 0.02), biases 0
    weights = torch.cat([gen.l1[0].weight.flatten(), gen.conv_blocks[2].weight.flatten()])
    assert abs(weights.mean().item()) < 2e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(gen.l1[0].bias) == 0
    assert torch.count_nonzero(gen.conv_blocks[9].bias) == 0
    # affine BN weights ~ N(1, 0.02), biases 0
    bn_weights = torch.cat([gen.conv_blocks[i].weight for i in (0, 3, 7)])
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.01)
    assert 0.01 < bn_weights.std().item() < 0.03
    assert all(torch.count_nonzero(gen.conv_blocks[i].bias) == 0 for i in (0, 3, 7))
    # running statistics are kept (CMI does not reset them)
    for name in ("conv_blocks.0.running_mean", "conv_blocks.3.running_var"):
        assert torch.equal(after[name], before[name])


def test_reinitialize_can_reset_running_stats_and_use_default_init() -> None:
    gen = _generator()
    gen(torch.randn(8, 32))
    reinitialize(gen, scheme="default", reset_running_stats=True)
    bn = gen.conv_blocks[3]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    # PyTorch's default linear init is uniform(+-1/sqrt(fan_in)), not N(0, 0.02)
    bound = 1 / 32**0.5
    assert gen.l1[0].weight.abs().max() <= bound
    assert gen.l1[0].weight.std().item() > 0.1
    with pytest.raises(ValueError):
        reinitialize(gen, scheme="xavier")  # type: ignore[arg-type]


def test_reinitialize_resets_other_layers_with_their_default() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(5, 4), nn.Conv1d(2, 2, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(7.0)
    reinitialize(net)
    assert all((p != 7.0).any() for p in net.parameters())


@pytest.mark.parametrize("include_input_bn", [True, False])
def test_reset_first_layer_touches_only_the_first_layers(include_input_bn: bool) -> None:
    gen = _generator()
    gen(torch.randn(8, 32))
    before = _snapshot(gen)
    reset_first_layer(gen, include_input_bn=include_input_bn)
    after = gen.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    expected = {"l1.0.weight", "l1.0.bias"}
    if include_input_bn:
        expected |= {"conv_blocks.0.weight", "conv_blocks.0.bias"}
    # biases may already be zero-equal only by coincidence; weights must change
    assert {"l1.0.weight"} <= changed <= expected
    assert torch.count_nonzero(gen.l1[0].bias) == 0
    assert gen.l1[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    if include_input_bn:
        bn_w = gen.conv_blocks[0].weight
        assert bn_w.abs().mean().item() < 0.05  # N(0, 0.02) as in the released reset_l0
        assert torch.count_nonzero(gen.conv_blocks[0].bias) == 0
    else:
        assert torch.equal(gen.conv_blocks[0].weight, before["conv_blocks.0.weight"])


def test_reset_first_layer_requires_l1() -> None:
    with pytest.raises(KeyError):
        reset_first_layer(nn.Sequential(nn.Linear(2, 2)))


def test_reptile_gradient_matches_hand_computation() -> None:
    meta = _generator()
    fast = meta.clone()
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(torch.randn_like(p))
    scale = 2.5
    reptile_meta_gradient(meta, fast, scale=scale)
    for p_meta, p_fast in zip(meta.parameters(), fast.parameters(), strict=True):
        assert p_meta.grad is not None
        torch.testing.assert_close(p_meta.grad, scale * (p_meta - p_fast))
    # a second call accumulates on top of the existing gradient
    existing = [p.grad.clone() for p in meta.parameters()]
    reptile_meta_gradient(meta, fast, scale=scale)
    for p_meta, p_fast, g in zip(meta.parameters(), fast.parameters(), existing, strict=True):
        torch.testing.assert_close(p_meta.grad, g + scale * (p_meta - p_fast))


def test_reptile_default_scale_is_fast_datafree_value() -> None:
    assert FAST_DATAFREE_REPTILE_SCALE == 67.0
    meta = nn.Linear(3, 2)
    fast = nn.Linear(3, 2)
    reptile_meta_gradient(meta, fast)
    torch.testing.assert_close(meta.weight.grad, 67.0 * (meta.weight - fast.weight))


def test_fomaml_accumulates_fast_gradients_over_calls() -> None:
    meta = _generator()
    fast = meta.clone()
    buffers_before = {k: v.clone() for k, v in meta.named_buffers()}
    optimizer = torch.optim.SGD(fast.parameters(), lr=0.1)
    expected = [torch.zeros_like(p) for p in meta.parameters()]
    for _ in range(2):
        optimizer.zero_grad()
        fast(torch.randn(8, 32)).square().mean().backward()
        for acc, p in zip(expected, fast.parameters(), strict=True):
            acc += p.grad
        accumulate_first_order_gradient(meta, fast)
        optimizer.step()
    for p_meta, acc in zip(meta.parameters(), expected, strict=True):
        torch.testing.assert_close(p_meta.grad, acc)
    for name, value in meta.named_buffers():
        assert torch.equal(value, buffers_before[name])


def test_fomaml_creates_zero_grad_when_fast_has_none() -> None:
    meta, fast = nn.Linear(3, 2), nn.Linear(3, 2)
    accumulate_first_order_gradient(meta, fast)
    assert torch.count_nonzero(meta.weight.grad) == 0


def test_mismatched_modules_are_rejected() -> None:
    with pytest.raises(ValueError):
        reptile_meta_gradient(nn.Linear(3, 2), nn.Linear(3, 4))
    with pytest.raises(ValueError):
        accumulate_first_order_gradient(nn.Linear(3, 2), nn.Sequential())
