"""CMI contrastive pieces: projection head, memory bank, instance-discrimination loss."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.synthesis.contrastive import (
    ContrastiveHead,
    FeatureMemoryBank,
    contrastive_loss,
)

# ------------------------------------------------------------------ head


def test_head_structure_and_unit_norm_output() -> None:
    head = ContrastiveHead(6, head_dim=4)
    layers = list(head.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert layers[0].out_features == 6  # hidden width defaults to the input width
    assert layers[2].out_features == 4
    out = head(torch.randn(5, 6))
    assert out.shape == (5, 4) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)
    assert ContrastiveHead(6, head_dim=4, hidden_dim=3).net[0].out_features == 3


# ------------------------------------------------------------------ memory bank


def _rows(start: int, stop: int) -> torch.Tensor:
    return torch.arange(start, stop, dtype=torch.float32).unsqueeze(1).repeat(1, 2)


def test_memory_bank_ring_overwrite_order() -> None:
    bank = FeatureMemoryBank(capacity=4, dim=2)
    assert len(bank) == 0
    empty = bank.sample(3)
    assert empty.shape == (0, 2)
    bank.add(_rows(0, 3))
    assert len(bank) == 3
    bank.add(_rows(3, 5))  # row 4 overwrites the oldest row (0)
    assert len(bank) == 4
    assert bank.data[:, 0].tolist() == [4.0, 1.0, 2.0, 3.0]
    assert bank.stored()[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    bank.add(_rows(5, 11))  # more rows than capacity: only the last 4 survive
    assert sorted(bank.stored()[:, 0].tolist()) == [7.0, 8.0, 9.0, 10.0]
    assert bank.stored()[:, 0].tolist() == [7.0, 8.0, 9.0, 10.0]
    with pytest.raises(ValueError):
        bank.add(torch.zeros(2, 3))


def test_memory_bank_sample() -> None:
    bank = FeatureMemoryBank(capacity=8, dim=2)
    bank.add(_rows(0, 3))
    everything = bank.sample(10)  # fewer stored than asked: all of them
    assert sorted(everything[:, 0].tolist()) == [0.0, 1.0, 2.0]
    bank.add(_rows(3, 8))
    g = torch.Generator().manual_seed(0)
    picked = bank.sample(5, generator=g)[:, 0].tolist()
    assert len(picked) == 5 and len(set(picked)) == 5
    assert set(picked) <= set(range(8))
    assert bank.sample(0).shape == (0, 2)


def test_memory_bank_detaches_and_state_round_trip() -> None:
    bank = FeatureMemoryBank(capacity=4, dim=2)
    x = _rows(0, 6).requires_grad_()
    bank.add(x * 1.0)
    assert not bank.data.requires_grad
    state = bank.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored = FeatureMemoryBank(capacity=4, dim=2)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert len(restored) == 4
    assert torch.equal(restored.stored(), bank.stored())
    restored.add(_rows(6, 7))  # continues the ring: evicts the oldest (2)
    assert restored.stored()[:, 0].tolist() == [3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError):
        FeatureMemoryBank(capacity=8, dim=2).load_state_dict(state)


# ------------------------------------------------------------------ loss


def test_contrastive_loss_orthogonal_hand_value() -> None:
    local = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    glob = local.clone()
    # every anchor: positive similarity 1, two negatives with similarity 0 (self excluded)
    for t in (1.0, 0.5):
        expected = -(1 / t - math.log(math.exp(1 / t) + 2.0))
        got = contrastive_loss(local, glob, temperature=t).item()
        assert got == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_asymmetric_hand_value() -> None:
    l1, l2 = (1.0, 0.0), (0.0, 1.0)
    g1, g2 = (0.6, 0.8), (0.8, 0.6)
    local = torch.tensor([l1, l2])
    glob = torch.tensor([g1, g2])
    e = math.exp
    # supcon, T = 1: anchors l1, l2, g1, g2; positive similarity is 0.6 for every anchor
    a_l1 = -(0.6 - math.log(e(0.0) + e(0.6) + e(0.8)))  # l2, g1, g2
    a_l2 = -(0.6 - math.log(e(0.0) + e(0.8) + e(0.6)))  # l1, g1, g2
    a_g1 = -(0.6 - math.log(e(0.6) + e(0.8) + e(0.96)))  # l1, l2, g2 (g1.g2 = 0.96)
    a_g2 = -(0.6 - math.log(e(0.8) + e(0.6) + e(0.96)))  # l1, l2, g1
    expected = (a_l1 + a_l2 + a_g1 + a_g2) / 4
    assert contrastive_loss(local, glob, temperature=1.0).item() == pytest.approx(expected)
    # SupContrast's T / base_T scale
    scaled = contrastive_loss(local, glob, temperature=1.0, base_temperature=0.5).item()
    assert scaled == pytest.approx(2.0 * expected)
    # CMI code's local->global cross-entropy: l1 vs (g1, g2), l2 vs (g1, g2)
    r1 = -(0.6 - math.log(e(0.6) + e(0.8)))
    r2 = -(0.6 - math.log(e(0.8) + e(0.6)))
    naive = contrastive_loss(local, glob, temperature=1.0, mode="local_to_global").item()
    assert naive == pytest.approx((r1 + r2) / 2)
    split = contrastive_loss(local, glob, 1.0, mode="local_to_global", num_current=1).item()
    assert split == pytest.approx(r1 + r2)  # batch mean + bank mean


def test_contrastive_loss_aligned_lower_than_shuffled() -> None:
    torch.manual_seed(0)
    local = F.normalize(torch.randn(16, 8), dim=1)
    aligned = F.normalize(local + 0.1 * torch.randn(16, 8), dim=1)
    shuffled = aligned[torch.roll(torch.arange(16), 1)]
    for mode in ("supcon", "local_to_global"):
        good = contrastive_loss(local, aligned, 0.1, mode=mode)
        bad = contrastive_loss(local, shuffled, 0.1, mode=mode)
        assert good.item() < bad.item()


def test_contrastive_loss_detaches_global_view() -> None:
    torch.manual_seed(0)
    local = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    glob = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    contrastive_loss(local, glob, 0.1).backward()
    assert local.grad is not None and local.grad.abs().sum() > 0
    assert glob.grad is None
    glob2 = glob.detach().clone().requires_grad_()
    contrastive_loss(local, glob2, 0.1, detach_global=False).backward()
    assert glob2.grad is not None
    with pytest.raises(ValueError):
        contrastive_loss(local, glob[:3], 0.1)


def test_contrastive_loss_bf16_inputs_float32_output() -> None:
    torch.manual_seed(0)
    local = F.normalize(torch.randn(6, 4), dim=1)
    glob = F.normalize(torch.randn(6, 4), dim=1)
    ref = contrastive_loss(local, glob, 0.5).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contrastive_loss(local.bfloat16(), glob.bfloat16(), 0.5)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref, rel=2e-2)
