"""DeepInversion BN-statistics hooks: hand-computed values, momentum blending, autocast."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from dfkd_lightning.synthesis.bn_statistics import BNStatisticsHook, BNStatisticsLoss


def _bn1d(running_mean: float = 0.0, running_var: float = 1.0, eps: float = 0.0) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(1, eps=eps)
    bn.running_mean.fill_(running_mean)
    bn.running_var.fill_(running_var)
    return bn.eval()


def test_hook_loss_hand_computed_bn2d() -> None:
    bn = nn.BatchNorm2d(2).eval()
    bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
    bn.running_var.copy_(torch.tensor([2.0, 1.0]))
    hook = BNStatisticsHook(bn)
    # (N=2, C=2, H=1, W=2): channel 0 holds 1, 3 | 5, 7; channel 1 holds 0, 0 | 2, 2
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])
    bn(x)
    # channel 0: mean 4, biased var (9 + 1 + 1 + 9) / 4 = 5; channel 1: mean 1, var 1
    expected = math.sqrt((4 - 0.5) ** 2 + (1 + 1) ** 2) + math.sqrt((5 - 2) ** 2 + (1 - 1) ** 2)
    assert hook.loss is not None
    assert hook.loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(hook.batch_mean, torch.tensor([4.0, 1.0]))
    assert torch.allclose(hook.batch_var, torch.tensor([5.0, 1.0]))
    # per-instance channel means (CMI feature): sample 0 -> (2, 0), sample 1 -> (6, 2)
    assert torch.allclose(hook.instance_mean, torch.tensor([[2.0, 0.0], [6.0, 2.0]]))
    hook.remove()


def test_hook_reads_running_stats_before_train_mode_update() -> None:
    bn = _bn1d(running_mean=0.0, running_var=1.0, eps=1e-5).train()
    hook = BNStatisticsHook(bn)
    bn(torch.tensor([[1.0], [3.0]]))  # mean 2, biased var 1
    assert hook.loss.item() == pytest.approx(2.0)  # |2 - 0| + |1 - 1| with the pre-update stats
    assert bn.running_mean.item() != 0.0  # the layer did update its running mean
    hook.remove()


def test_momentum_blending_two_updates_hand_computed() -> None:
    m = 0.25
    bn = _bn1d(running_mean=0.0, running_var=1.0)
    hook = BNStatisticsHook(bn, momentum=m)

    bn(torch.tensor([[1.0], [3.0]]))  # mean 2, var 1; no blend yet
    assert hook.loss.item() == pytest.approx(abs(2 - 0) + abs(1 - 1))
    hook.update_momentum()  # blend initialised to (2, 1)
    assert hook.mean_mmt.item() == pytest.approx(2.0)
    assert hook.var_mmt.item() == pytest.approx(1.0)

    bn(torch.tensor([[4.0], [8.0]]))  # mean 6, var 4
    mean_b = (1 - m) * 6 + m * 2  # 5
    var_b = (1 - m) * 4 + m * 1  # 3.25
    assert hook.loss.item() == pytest.approx(abs(mean_b - 0) + abs(var_b - 1))  # 7.25
    hook.update_momentum()  # blend <- m * old + (1 - m) * batch
    assert hook.mean_mmt.item() == pytest.approx(m * 2 + (1 - m) * 6)  # 5
    assert hook.var_mmt.item() == pytest.approx(m * 1 + (1 - m) * 4)  # 3.25

    bn(torch.tensor([[0.0], [0.0]]))  # mean 0, var 0
    mean_b = (1 - m) * 0 + m * 5.0  # 1.25
    var_b = (1 - m) * 0 + m * 3.25  # 0.8125
    assert hook.loss.item() == pytest.approx(abs(mean_b) + abs(var_b - 1))  # 1.4375
    hook.remove()


def test_update_momentum_detaches_statistics() -> None:
    bn = _bn1d()
    hook = BNStatisticsHook(bn, momentum=0.5)
    x = torch.tensor([[1.0], [3.0]], requires_grad=True)
    bn(x)
    hook.update_momentum()
    assert not hook.mean_mmt.requires_grad and not hook.var_mmt.requires_grad
    bn(x)
    hook.loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(RuntimeError):
        BNStatisticsHook(_bn1d()).update_momentum()


def test_first_bn_multiplier_and_len() -> None:
    net = nn.Sequential(_bn1d(), _bn1d())  # identity BNs (mean 0, var 1, eps 0, affine 1/0)
    loss = BNStatisticsLoss(net, first_bn_multiplier=10.0)
    assert len(loss) == 2
    net(torch.tensor([[1.0], [3.0]]))  # both layers see mean 2, var 1 -> 2 each
    assert loss().item() == pytest.approx(10.0 * 2.0 + 2.0)
    assert [t.item() for t in loss.layer_losses()] == pytest.approx([2.0, 2.0])
    loss.remove()


def test_loss_before_forward_raises() -> None:
    loss = BNStatisticsLoss(nn.Sequential(_bn1d()))
    with pytest.raises(RuntimeError, match="forward"):
        loss()
    with pytest.raises(RuntimeError, match="forward"):
        loss.instance_features()
    loss.remove()


def test_remove_unregisters_hooks() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    loss = BNStatisticsLoss(net)
    assert all(len(m._forward_pre_hooks) == 1 for m in net if isinstance(m, nn.BatchNorm2d))
    net(torch.randn(2, 3, 5, 5))
    loss.remove()
    assert all(len(m._forward_pre_hooks) == 0 for m in net)
    assert all(h.loss is None for h in loss.hooks)
    net(torch.randn(2, 3, 5, 5))
    assert all(h.loss is None for h in loss.hooks)


def test_instance_features_shape_and_skip_untracked_bn() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 6, 3),
        nn.BatchNorm2d(6),
        nn.BatchNorm2d(6, track_running_stats=False),
    ).eval()
    loss = BNStatisticsLoss(net)
    assert len(loss) == 2
    x = torch.randn(5, 3, 7, 7)
    net(x)
    feats = loss.instance_features()
    assert feats.shape == (5, 4 + 6)
    conv_out = net[0](x)
    assert torch.allclose(feats[:, :4], conv_out.mean(dim=(2, 3)), atol=1e-6)
    loss.remove()
    with pytest.raises(ValueError):
        BNStatisticsLoss(nn.Sequential(nn.Linear(2, 2)))


def test_sync_batchnorm_hook_runs_on_cpu() -> None:
    # SyncBatchNorm falls back to plain batch_norm without a process group, so it runs on CPU.
    bn = nn.SyncBatchNorm(2).eval()
    bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
    bn.running_var.copy_(torch.tensor([2.0, 1.0]))
    loss = BNStatisticsLoss(nn.Sequential(bn))
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])
    bn(x)
    expected = math.sqrt(3.5**2 + 2.0**2) + 3.0
    assert loss().item() == pytest.approx(expected, rel=1e-6)
    loss.remove()


def _small_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
    )
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_statistics_under_bf16_autocast_close_to_fp32() -> None:
    net = _small_net()
    loss = BNStatisticsLoss(net)
    x = torch.randn(4, 3, 8, 8)
    net(x)
    ref = loss().item()
    ref_feats = loss.instance_features()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
        value = loss()
        feats = loss.instance_features()
    assert value.dtype == torch.float32 and feats.dtype == torch.float32
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(ref, rel=3e-2)
    assert torch.allclose(feats, ref_feats, atol=5e-2, rtol=5e-2)
    loss.remove()


def test_state_dict_round_trip_weights_only() -> None:
    net = _small_net()
    loss = BNStatisticsLoss(net, momentum=0.9)
    assert loss.state_dict() == {}
    net(torch.randn(4, 3, 8, 8))
    loss.update_momentum()
    state = loss.state_dict()
    assert set(state) == {"1.mean_mmt", "1.var_mmt", "4.mean_mmt", "4.var_mmt"}
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored = torch.load(buf, weights_only=True)

    x = torch.randn(4, 3, 8, 8)
    net(x)
    expected = loss().item()
    loss.remove()

    fresh = BNStatisticsLoss(net, momentum=0.9)
    fresh.load_state_dict(restored)
    net(x)
    assert fresh().item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(KeyError):
        fresh.load_state_dict({"nope.mean_mmt": torch.zeros(8)})
    fresh.load_state_dict({})  # resets the blends
    assert fresh.state_dict() == {}
    fresh.remove()
