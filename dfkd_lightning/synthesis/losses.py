"""Synthesis-side (and adversarial student-side) loss terms of the classic DFKD methods.

Every function computes in float32 (inputs are upcast, autocast is disabled inside), so the
terms stay finite and accurate when the networks run under bf16/fp16 autocast. BatchNorm
statistics matching (DeepInversion's R_feature) lives in
:mod:`dfkd_lightning.synthesis.bn_statistics` as forward hooks.

Sign convention: every function returns a quantity to be MINIMISED by whoever owns it. The
adversarial terms the synthesizer minimises to *increase* a teacher-student discrepancy
(:func:`adversarial_kl_loss`, :func:`l1_adversarial_loss`) are therefore ``<= 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Literal

import torch
import torch.nn.functional as F

from dfkd_lightning.losses import KLReduction, check_kl_reduction

__all__ = [
    "adversarial_kl_loss",
    "attention_map",
    "attention_transfer_loss",
    "competition_loss",
    "dafl_activation_loss",
    "information_entropy_loss",
    "js_divergence",
    "l1_adversarial_loss",
    "l1_distillation_loss",
    "l2_prior_loss",
    "one_hot_loss",
    "total_variation_loss",
]


def _fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x


def _no_autocast(x: torch.Tensor) -> AbstractContextManager[None]:
    return torch.autocast(device_type=x.device.type, enabled=False)


# --------------------------------------------------------------------------------------------
# Class-posterior terms
# --------------------------------------------------------------------------------------------


def one_hot_loss(
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    soft_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the teacher's prediction to hard labels (mean over the batch).

    With sampled ``targets`` this is the class-conditional term of DeepInversion (Eq. 2's
    ``L(x, y)``), DFQ and CMI/FastDFKD (``oh``). With ``targets=None`` the teacher's own argmax
    is used as the label, which is DAFL's one-hot loss (Chen et al. 2019, Eq. 3, L_oh).
    ``soft_targets`` (class distributions, e.g. of cross-class CutMix) replace the hard labels:
    ``-sum_c y_c log p_c``.
    """
    with _no_autocast(teacher_logits):
        logits = _fp32(teacher_logits)
        if soft_targets is not None:
            return F.cross_entropy(logits, soft_targets.float())
        if targets is None:
            targets = logits.detach().argmax(dim=1)
        return F.cross_entropy(logits, targets)


def adversarial_kl_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    agreeing_only: bool = True,
    reduction: KLReduction = "batchmean",
) -> torch.Tensor:
    """CMI / FastDFKD decision-adversarial term, to be minimised by the synthesizer.

    ``-mean_i( 1[argmax t_i == argmax s_i] * T^2 * KL(p_t,i || p_s,i) )`` where
    ``p = softmax(logits / T)`` and the KL is summed over classes. The mean runs over the whole
    batch (masked samples count as zeros), as in CMI's code. With ``agreeing_only=False`` the
    mask is dropped. ``reduction="mean"`` also divides by the number of classes (ZSKT's
    release). The ``T^2`` factor is that of the authors' ``kldiv`` helper; the papers use
    ``T = 1``, where it is 1. The result is ``<= 0``.
    """
    check_kl_reduction(reduction)
    with _no_autocast(student_logits):
        s = _fp32(student_logits)
        t = _fp32(teacher_logits)
        log_p_s = F.log_softmax(s / temperature, dim=1)
        log_p_t = F.log_softmax(t / temperature, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1) * temperature**2
        if agreeing_only:
            mask = (s.detach().argmax(dim=1) == t.detach().argmax(dim=1)).to(kl.dtype)
            kl = kl * mask
        if reduction == "mean":
            kl = kl / s.shape[1]
        return -kl.mean()


def js_divergence(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    temperature: float = 1.0,
    variant: Literal["paper", "deepinversion_code"] = "paper",
) -> torch.Tensor:
    """Jensen-Shannon divergence between ``softmax(a / T)`` and ``softmax(b / T)``.

    ``variant="paper"`` (default; DeepInversion Eq. 8):
    ``JS(P, Q) = 0.5 * KL(P || M) + 0.5 * KL(Q || M)``, ``M = (P + Q) / 2``, natural log,
    summed over classes and averaged over the batch; symmetric and within ``[0, ln 2]``.

    ``variant="deepinversion_code"`` reproduces NVlabs/DeepInversion (and CMI's ``jsdiv``):
    P, Q and M are clamped to ``[0.01, 0.99]`` (M formed before clamping) and the KL terms are
    taken the other way round, ``0.5 * KL(M || P) + 0.5 * KL(M || Q)`` (``nn.KLDivLoss`` with
    ``log P`` as input and ``M`` as target, ``batchmean``). Still symmetric in ``a``/``b`` but not
    a true JS divergence, and not bounded by ``ln 2``.
    """
    with _no_autocast(logits_a):
        log_p = F.log_softmax(_fp32(logits_a) / temperature, dim=1)
        log_q = F.log_softmax(_fp32(logits_b) / temperature, dim=1)
        batch = log_p.shape[0]
        if variant == "paper":
            log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
            kl_pm = (log_p.exp() * (log_p - log_m)).sum()
            kl_qm = (log_q.exp() * (log_q - log_m)).sum()
            return 0.5 * (kl_pm + kl_qm) / batch
        if variant == "deepinversion_code":
            p, q = log_p.exp(), log_q.exp()
            m = (0.5 * (p + q)).clamp(0.01, 0.99)
            p, q = p.clamp(0.01, 0.99), q.clamp(0.01, 0.99)
            kl_mp = (m * (m.log() - p.log())).sum()
            kl_mq = (m * (m.log() - q.log())).sum()
            return 0.5 * (kl_mp + kl_mq) / batch
        raise ValueError(f"unknown JS variant {variant!r}")


def competition_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 3.0,
    variant: Literal["paper", "deepinversion_code"] = "paper",
) -> torch.Tensor:
    """Adaptive DeepInversion competition term (Yin et al. 2020, Eq. 8).

    ``R_compete = 1 - clamp(JS(p_S, p_T), 0, 1)``: minimising it drives the synthesizer to
    images where student and teacher disagree. ``temperature=3`` is the value hard-coded in
    NVlabs/DeepInversion (the paper does not state one). See :func:`js_divergence` for
    ``variant``; whether to detach the student is the caller's choice (the code's
    ``detach_student`` option).
    """
    js = js_divergence(student_logits, teacher_logits, temperature=temperature, variant=variant)
    return 1.0 - js.clamp(0.0, 1.0)


def information_entropy_loss(
    teacher_logits: torch.Tensor, log_base: float = math.e
) -> torch.Tensor:
    """DAFL information-entropy loss (Chen et al. 2019, Eq. 5): ``L_ie = -H(mean_i p_T,i)``.

    ``sum_c pbar_c * log_b(pbar_c)`` with ``pbar`` the batch-mean teacher softmax; minimising
    it balances the classes in a generated batch. The paper uses the natural log (the
    default). The released DAFL code uses ``torch.log10``, i.e. ``log_base=10``, which equals the
    natural-log loss scaled by ``1 / ln 10 ~= 0.434`` -- a pure rescaling of the ``ie`` weight.
    """
    if log_base <= 0 or log_base == 1:
        raise ValueError(f"log_base must be positive and != 1, got {log_base}")
    with _no_autocast(teacher_logits):
        p_mean = F.softmax(_fp32(teacher_logits), dim=1).mean(dim=0)
        return torch.special.xlogy(p_mean, p_mean).sum() / math.log(log_base)


def dafl_activation_loss(
    features: torch.Tensor, reduction: Literal["mean", "per_sample_l1"] = "mean"
) -> torch.Tensor:
    """DAFL activation loss (Chen et al. 2019, Eq. 4, L_a) on the teacher's penultimate features.

    ``reduction="mean"`` (default): ``-features.abs().mean()`` over batch and feature
    dimensions, as in the released DAFL code (its ``a = 0.1`` weight is tuned for this).
    ``reduction="per_sample_l1"``: the equation as printed, ``-(1/n) sum_i ||f_T^i||_1``, which
    is the default times the number of features per sample.
    """
    with _no_autocast(features):
        f = _fp32(features)
        if reduction == "mean":
            return -f.abs().mean()
        if reduction == "per_sample_l1":
            return -f.abs().flatten(1).sum(dim=1).mean()
        raise ValueError(f"unknown reduction {reduction!r}")


def l1_adversarial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """DFAD generator loss (Fang et al. 2019): ``-mean |s - t|`` (``<= 0``).

    The generator maximises the mean absolute error between student and teacher logits, so
    it minimises its negative; the mean runs over batch and classes (``F.l1_loss``).
    """
    return -l1_distillation_loss(student_logits, teacher_logits)


def l1_distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> torch.Tensor:
    """DFAD student loss (Fang et al. 2019): ``mean |s - t|`` over batch and classes.

    Gradients flow into both arguments; detach the teacher logits (as DFAD's code does) when
    only the student should be updated.
    """
    with _no_autocast(student_logits):
        return F.l1_loss(_fp32(student_logits), _fp32(teacher_logits))


# --------------------------------------------------------------------------------------------
# Attention transfer (ZSKT)
# --------------------------------------------------------------------------------------------


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """Spatial attention map of Zagoruyko & Komodakis (2017) with ``p = 2``.

    ``normalize_L2( vec( mean_c a_c^2 ) )`` for a feature of shape (N, C, *spatial); returns
    (N, prod(spatial)). The channel *mean* (ZSKT Eq. 2's ``f(A) = 1/N_A sum_c a_c^2``) differs
    from AT's channel sum only by a constant that the normalisation removes.
    """
    if feature.dim() < 3:
        raise ValueError(
            f"attention_map expects (N, C, *spatial), got shape {tuple(feature.shape)}"
        )
    with _no_autocast(feature):
        am = _fp32(feature).pow(2).mean(dim=1).flatten(1)
        return F.normalize(am, p=2, dim=1)


def attention_transfer_loss(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    reduction: Literal["mean_squared", "norm"] = "mean_squared",
) -> torch.Tensor:
    """Attention-transfer term of ZSKT (Micaelli & Storkey 2019, Eq. 2), without the beta weight.

    ``reduction="mean_squared"`` (default, ZSKT's and AT's released code, which its
    ``beta = 250`` is tuned for): ``sum_l mean_{i,j} (Q_s,l[i,j] - Q_t,l[i,j])^2`` over
    batch ``i`` and spatial positions ``j`` of the normalised maps from :func:`attention_map`.

    ``reduction="norm"``: the equation as printed, ``sum_l mean_i || Q_s,l[i] - Q_t,l[i] ||_2``
    (un-squared per-sample L2 norm, averaged over the batch).

    Channel counts may differ between the paired layers but batch and spatial sizes must
    match (no resizing is done): a ``ValueError`` is raised otherwise.
    """
    if len(student_features) != len(teacher_features):
        raise ValueError(
            f"got {len(student_features)} student and {len(teacher_features)} teacher features"
        )
    if len(student_features) == 0:
        raise ValueError("attention_transfer_loss needs at least one pair of features")
    total: torch.Tensor | None = None
    for idx, (fs, ft) in enumerate(zip(student_features, teacher_features, strict=True)):
        if fs.shape[0] != ft.shape[0] or fs.shape[2:] != ft.shape[2:]:
            raise ValueError(
                f"layer {idx}: student feature {tuple(fs.shape)} and teacher feature "
                f"{tuple(ft.shape)} differ in batch or spatial size; resizing is not supported"
            )
        diff = attention_map(fs) - attention_map(ft)
        if reduction == "mean_squared":
            term = diff.pow(2).mean()
        elif reduction == "norm":
            term = torch.linalg.vector_norm(diff, dim=1).mean()
        else:
            raise ValueError(f"unknown reduction {reduction!r}")
        total = term if total is None else total + term
    assert total is not None
    return total


# --------------------------------------------------------------------------------------------
# Image priors (DeepInversion)
# --------------------------------------------------------------------------------------------


def total_variation_loss(images: torch.Tensor, norm: Literal["l1", "l2"]) -> torch.Tensor:
    """DeepInversion's total-variation prior R_TV (NVlabs ``get_image_prior_losses``).

    Differences between neighbouring pixels of an (N, C, H, W) batch along four directions:
    horizontal, vertical and the two diagonals. ``norm="l2"``: the sum of the four Frobenius
    norms of the difference tensors (over the whole batch, not per image). ``norm="l1"``: the
    sum of the four mean absolute differences (the code's ``/255 ... *255`` cancels).
    """
    if images.dim() != 4:
        raise ValueError(f"total_variation_loss expects (N, C, H, W), got {tuple(images.shape)}")
    with _no_autocast(images):
        x = _fp32(images)
        diffs = (
            x[:, :, :, :-1] - x[:, :, :, 1:],
            x[:, :, :-1, :] - x[:, :, 1:, :],
            x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
            x[:, :, :-1, :-1] - x[:, :, 1:, 1:],
        )
        if norm == "l2":
            terms = [torch.linalg.vector_norm(d) for d in diffs]
        elif norm == "l1":
            terms = [d.abs().mean() for d in diffs]
        else:
            raise ValueError(f"unknown norm {norm!r}")
        return terms[0] + terms[1] + terms[2] + terms[3]


def l2_prior_loss(
    images: torch.Tensor, reduction: Literal["batch", "per_sample_mean"] = "batch"
) -> torch.Tensor:
    """DeepInversion's ``R_l2`` image-norm prior.

    ``reduction="batch"`` (default): the L2 norm of the whole batch tensor,
    ``torch.norm(images, 2)``, as in NVlabs' CIFAR-10 script and CMI's DeepInversion.
    ``reduction="per_sample_mean"``: the mean over the batch of each image's L2 norm, as in
    NVlabs' ImageNet ``deepinversion.py``.
    """
    with _no_autocast(images):
        x = _fp32(images)
        if reduction == "batch":
            return torch.linalg.vector_norm(x)
        if reduction == "per_sample_mean":
            return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()
        raise ValueError(f"unknown reduction {reduction!r}")
