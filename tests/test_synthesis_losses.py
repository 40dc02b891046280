"""Synthesis loss terms against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd_lightning.synthesis.losses import (
    adversarial_kl_loss,
    attention_map,
    attention_transfer_loss,
    competition_loss,
    dafl_activation_loss,
    information_entropy_loss,
    js_divergence,
    l1_adversarial_loss,
    l1_distillation_loss,
    l2_prior_loss,
    one_hot_loss,
    total_variation_loss,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


# ------------------------------------------------------------------ one-hot


def test_one_hot_loss_hand_value_and_argmax_default() -> None:
    logits = torch.tensor([[LN3, 0.0], [LN3, 0.0]])  # softmax (0.75, 0.25)
    targets = torch.tensor([0, 1])
    expected = (-math.log(0.75) - math.log(0.25)) / 2
    assert one_hot_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # DAFL: the teacher's own argmax (class 0 for both rows) is the target
    assert one_hot_loss(logits).item() == pytest.approx(-math.log(0.75), rel=1e-6)


# ------------------------------------------------------------------ adversarial KL


def test_adversarial_kl_hand_value_and_mask() -> None:
    # row 0: student (2/3, 1/3), teacher (3/4, 1/4) -> both argmax 0 (agree)
    # row 1: student argmax 1, teacher argmax 0 (disagree)
    student = torch.tensor([[LN2, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[LN3, 0.0], [1.0, 0.0]])
    kl0 = _kl([0.75, 0.25], [2 / 3, 1 / 3])
    e = math.e
    kl1 = (e - 1) / (e + 1)  # KL(softmax(1,0) || softmax(0,1)) = p0 - p1
    masked = adversarial_kl_loss(student, teacher)
    assert masked.item() == pytest.approx(-kl0 / 2, rel=1e-5)
    unmasked = adversarial_kl_loss(student, teacher, agreeing_only=False)
    assert unmasked.item() == pytest.approx(-(kl0 + kl1) / 2, rel=1e-5)
    assert masked.item() <= 0 and unmasked.item() <= 0


def test_adversarial_kl_temperature_scaling() -> None:
    # logits doubled with T = 2 give the same distributions as above; T^2 = 4 multiplies KL
    student = torch.tensor([[2 * LN2, 0.0]])
    teacher = torch.tensor([[2 * LN3, 0.0]])
    expected = -4 * _kl([0.75, 0.25], [2 / 3, 1 / 3])
    assert adversarial_kl_loss(student, teacher, temperature=2.0).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_adversarial_kl_all_disagree_is_zero_and_sign_random() -> None:
    student = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    teacher = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert adversarial_kl_loss(student, teacher).item() == 0.0
    torch.manual_seed(0)
    s, t = torch.randn(16, 10), torch.randn(16, 10)
    assert adversarial_kl_loss(s, t, agreeing_only=False).item() <= 0


# ------------------------------------------------------------------ JS / competition


def test_js_divergence_hand_value_paper() -> None:
    a = torch.tensor([[0.0, 0.0]])  # P = (0.5, 0.5)
    b = torch.tensor([[LN3, 0.0]])  # Q = (0.75, 0.25)
    p, q, m = [0.5, 0.5], [0.75, 0.25], [0.625, 0.375]
    expected = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    assert js_divergence(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert competition_loss(a, b, temperature=1.0).item() == pytest.approx(1 - expected, rel=1e-6)


def test_js_divergence_hand_value_code_variant() -> None:
    a = torch.tensor([[0.0, 0.0]])
    b = torch.tensor([[LN3, 0.0]])
    p, q, m = [0.5, 0.5], [0.75, 0.25], [0.625, 0.375]  # all inside [0.01, 0.99]
    expected = 0.5 * _kl(m, p) + 0.5 * _kl(m, q)  # reversed KL direction
    got = js_divergence(a, b, variant="deepinversion_code").item()
    assert got == pytest.approx(expected, rel=1e-5)
    # clamping: P ~ (1, 0) -> (0.99, 0.01); Q = (0.5, 0.5); M = (0.75, 0.25) before clamping
    a2 = torch.tensor([[50.0, 0.0]])
    pc, qc, mc = [0.99, 0.01], [0.5, 0.5], [0.75, 0.25]
    expected2 = 0.5 * _kl(mc, pc) + 0.5 * _kl(mc, qc)
    got2 = js_divergence(a2, torch.zeros(1, 2), variant="deepinversion_code").item()
    assert got2 == pytest.approx(expected2, rel=1e-5)


def test_js_symmetry_and_bounds() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(8, 5) * 3, torch.randn(8, 5) * 3
    for variant in ("paper", "deepinversion_code"):
        ab = js_divergence(a, b, temperature=2.0, variant=variant)
        ba = js_divergence(b, a, temperature=2.0, variant=variant)
        assert ab.item() == pytest.approx(ba.item(), rel=1e-6)
    js = js_divergence(a, b).item()
    assert 0.0 <= js <= LN2
    assert js_divergence(a, a).item() == pytest.approx(0.0, abs=1e-6)
    far = js_divergence(torch.tensor([[100.0, 0.0]]), torch.tensor([[0.0, 100.0]])).item()
    assert far == pytest.approx(LN2, rel=1e-5)  # disjoint supports reach ln 2
    comp = competition_loss(a, b)
    assert 0.0 <= comp.item() <= 1.0
    with pytest.raises(ValueError):
        js_divergence(a, b, variant="nope")  # type: ignore[arg-type]


# ------------------------------------------------------------------ DAFL


def test_information_entropy_hand_value_and_log_base() -> None:
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0]])  # rows (0.5, 0.5), (0.75, 0.25)
    pbar = [0.625, 0.375]
    expected = sum(p * math.log(p) for p in pbar)  # negative entropy, natural log
    assert information_entropy_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    expected10 = sum(p * math.log10(p) for p in pbar)  # the released code's log10
    got10 = information_entropy_loss(logits, log_base=10.0).item()
    assert got10 == pytest.approx(expected10, rel=1e-6)
    assert got10 == pytest.approx(expected / math.log(10), rel=1e-6)
    # a perfectly balanced batch reaches the minimum -ln(C)
    balanced = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert information_entropy_loss(balanced).item() == pytest.approx(-LN2, rel=1e-6)
    # a zero probability (underflow) stays finite
    assert torch.isfinite(information_entropy_loss(torch.tensor([[1000.0, 0.0]])))


def test_dafl_activation_loss() -> None:
    f = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    assert dafl_activation_loss(f).item() == pytest.approx(-(1 + 2 + 3 + 4) / 4)
    assert dafl_activation_loss(f, reduction="per_sample_l1").item() == pytest.approx(
        -((1 + 2) + (3 + 4)) / 2
    )


# ------------------------------------------------------------------ DFAD


def test_l1_losses_hand_value_and_sign() -> None:
    s = torch.tensor([[1.0, 2.0]])
    t = torch.tensor([[0.0, 4.0]])
    assert l1_distillation_loss(s, t).item() == pytest.approx((1 + 2) / 2)
    assert l1_adversarial_loss(s, t).item() == pytest.approx(-(1 + 2) / 2)
    torch.manual_seed(0)
    assert l1_adversarial_loss(torch.randn(4, 3), torch.randn(4, 3)).item() <= 0


# ------------------------------------------------------------------ attention transfer


def test_attention_map_hand_value_and_normalisation() -> None:
    # (N=1, C=2, H=1, W=2): channel 0 = (1, 2), channel 1 = (3, 0)
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    # mean over channels of squares: ((1 + 9) / 2, (4 + 0) / 2) = (5, 2)
    expected = torch.tensor([[5.0, 2.0]]) / math.sqrt(5**2 + 2**2)
    assert torch.allclose(attention_map(f), expected)
    torch.manual_seed(0)
    am = attention_map(torch.randn(3, 4, 5, 6))
    assert am.shape == (3, 30)
    assert torch.allclose(am.norm(dim=1), torch.ones(3), atol=1e-6)


def test_attention_transfer_loss_hand_value() -> None:
    fs = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # map (5, 2) / sqrt(29)
    ft = torch.tensor([[[[1.0, 1.0]]]])  # one channel, map (1, 1) / sqrt(2)
    d0 = 5 / math.sqrt(29) - 1 / math.sqrt(2)
    d1 = 2 / math.sqrt(29) - 1 / math.sqrt(2)
    one_layer = (d0**2 + d1**2) / 2  # mean over batch x spatial
    got = attention_transfer_loss([fs, fs], [ft, ft]).item()
    assert got == pytest.approx(2 * one_layer, rel=1e-5)  # summed over layers
    got_norm = attention_transfer_loss([fs], [ft], reduction="norm").item()
    assert got_norm == pytest.approx(math.sqrt(d0**2 + d1**2), rel=1e-5)
    assert attention_transfer_loss([fs], [fs]).item() == pytest.approx(0.0, abs=1e-12)


def test_attention_transfer_loss_errors() -> None:
    a = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="spatial"):
        attention_transfer_loss([a], [torch.randn(2, 3, 2, 2)])
    with pytest.raises(ValueError):
        attention_transfer_loss([a, a], [a])
    with pytest.raises(ValueError):
        attention_transfer_loss([], [])


# ------------------------------------------------------------------ image priors


def test_total_variation_constant_image_is_zero() -> None:
    img = torch.full((2, 3, 5, 4), 0.7)
    assert total_variation_loss(img, "l1").item() == 0.0
    assert total_variation_loss(img, "l2").item() == 0.0


def test_total_variation_2x2_hand_value() -> None:
    img = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])  # a=1 b=2 / c=3 d=5
    # horizontal (a-b, c-d) = (-1, -2); vertical (a-c, b-d) = (-2, -3);
    # anti-diagonal c-b = 1; diagonal a-d = -4
    l2 = math.sqrt(1 + 4) + math.sqrt(4 + 9) + 1 + 4
    l1 = (1 + 2) / 2 + (2 + 3) / 2 + 1 + 4
    assert total_variation_loss(img, "l2").item() == pytest.approx(l2, rel=1e-6)
    assert total_variation_loss(img, "l1").item() == pytest.approx(l1, rel=1e-6)
    with pytest.raises(ValueError):
        total_variation_loss(img, "l3")  # type: ignore[arg-type]


def test_l2_prior_loss() -> None:
    imgs = torch.tensor([[[[3.0, 4.0]]], [[[6.0, 8.0]]]])
    assert l2_prior_loss(imgs).item() == pytest.approx(math.sqrt(9 + 16 + 36 + 64))
    assert l2_prior_loss(imgs, reduction="per_sample_mean").item() == pytest.approx((5 + 10) / 2)


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    s32, t32 = torch.randn(4, 5), torch.randn(4, 5)
    s, t = s32.to(dtype), t32.to(dtype)
    img = torch.randn(2, 3, 4, 4).to(dtype)
    feats = torch.randn(2, 3, 4, 4).to(dtype)
    outs = {
        "oh": one_hot_loss(t),
        "adv": adversarial_kl_loss(s, t, agreeing_only=False),
        "js": js_divergence(s, t),
        "comp": competition_loss(s, t),
        "ie": information_entropy_loss(t),
        "act": dafl_activation_loss(t),
        "l1adv": l1_adversarial_loss(s, t),
        "at": attention_transfer_loss([feats], [feats.flip(0)]),
        "tv": total_variation_loss(img, "l2"),
        "l2": l2_prior_loss(img),
    }
    for name, value in outs.items():
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value), name
    ref = js_divergence(s.float(), t.float())
    assert outs["js"].item() == pytest.approx(ref.item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert adversarial_kl_loss(s32, t32).dtype == torch.float32
        assert total_variation_loss(img.float(), "l1").dtype == torch.float32
