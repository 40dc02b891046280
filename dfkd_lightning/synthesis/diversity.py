"""DE-DFKD's metric-learning diversity losses on the teacher's features (Liu et al., 2024; the
equations are ours: the paper's text is not public), and the mode-seeking ratio of Mao et al.
(MSGAN, CVPR 2019, Eq. 2) as an alternative spread.

Distances of :func:`intra_class_spread_loss` and :func:`class_separation_loss` are Euclidean
on the unit sphere (:func:`~dfkd_lightning.synthesis.relation.unit_distances`: features
L2-normalised, so they lie in ``[0, 2]`` and a margin means the same at every width);
:func:`mode_seeking_loss` uses MSGAN's mean absolute differences.
"""

from __future__ import annotations

import torch

from dfkd_lightning.synthesis.relation import same_label_pairs, unit_distances

__all__ = [
    "class_separation_loss",
    "intra_class_spread_loss",
    "mode_seeking_loss",
]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` where ``mask`` holds; a differentiable zero where it never does
    (no host sync)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def intra_class_spread_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """``mean over same-label pairs (i != j) of max(0, m - d(f_i, f_j))``: samples of one
    class made from different latents are pushed apart until they are ``m`` apart on the unit
    sphere (the intra-class spread; 0 when no two samples share a label)."""
    distances = unit_distances(features.flatten(1))
    return _masked_mean((margin - distances).clamp(min=0.0), same_label_pairs(labels))


def class_separation_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.2
) -> torch.Tensor:
    """The batch-hard triplet of Hermans et al. (2017): ``mean over anchors a of
    max(0, max_p d(a, p) - min_n d(a, n) + m)``, ``p`` sharing ``a``'s label, ``n`` not,
    over the anchors that have both: every class stays ``m`` clear of the others however far
    its samples spread (0 when no anchor has both)."""
    distances = unit_distances(features.flatten(1))
    positive = same_label_pairs(labels)
    negative = labels[:, None] != labels[None, :]
    hardest_positive = distances.masked_fill(~positive, float("-inf")).amax(dim=1)
    nearest_negative = distances.masked_fill(~negative, float("inf")).amin(dim=1)
    valid = positive.any(dim=1) & negative.any(dim=1)
    hinge = (hardest_positive - nearest_negative + margin).clamp(min=0.0)
    return _masked_mean(torch.where(valid, hinge, torch.zeros_like(hinge)), valid)


def mode_seeking_loss(
    features: torch.Tensor, latents: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al., CVPR 2019, Eq. 2) for every same-label pair:
    ``mean of 1 / (r_ij + eps)`` with ``r_ij = mean|f_i - f_j| / mean|z_i - z_j|``, so that
    two latents of one class map to features as far apart as the latents are (0 when no two
    samples share a label)."""
    f, z = features.flatten(1).float(), latents.flatten(1).float()
    feature_gap = torch.cdist(f, f, p=1) / f.shape[1]
    latent_gap = torch.cdist(z, z, p=1) / z.shape[1]
    pairs = same_label_pairs(labels)
    ratio = (feature_gap / latent_gap.masked_fill(~pairs, 1.0)).masked_fill(~pairs, 1.0)
    return _masked_mean(1.0 / (ratio + eps), pairs)
