"""RGAL's relation losses (Liang & Fu, IJCV 2025): triplets on L2-normalised pooled embeddings
with distance-weighted negatives (Wu et al., "Sampling Matters in Deep Embedding Learning",
ICCV 2017).

Embeddings live on the unit sphere, where the pairwise distance ``d`` lies in ``[0, 2]`` and,
for points spread uniformly in dimension ``D``, has the density
``q(d) ∝ d^(D-2) (1 - d^2/4)^((D-3)/2)``. Weighting a negative by ``1 / q(d)`` (Wu et al.,
Eq. 3) draws negatives evenly over distances instead of where most of them lie:

    log w(d) = (2 - D) log d - ((D - 3) / 2) log(1 - d^2 / 4)

RGAL's *focal* weighted sampling keeps only the negatives in a window ``low < d < high``
(0.5 < d < 1.0), uniform over all negatives when none falls inside; the classic distance-weighted
sampling clamps ``d`` at ``low`` (0.5) and keeps the negatives with ``d < high`` (1.4).
Everything runs in float32 outside autocast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "TripletSign",
    "global_average",
    "inverse_density_log_weight",
    "negative_probabilities",
    "pooled_embedding",
    "sample_triplets",
    "triplet_loss",
    "same_label_pairs",
    "unit_distances",
]

#: ``ordinary``: ``max(0, d(a,p) - d(a,n) + m)`` pulls positives in and pushes negatives away;
#: ``reversed``: ``max(0, d(a,n) - d(a,p) + m)`` pushes positives away and pulls negatives in.
TripletSign = Literal["ordinary", "reversed"]

SamplingMode = Literal["focal", "distance"]


def global_average(features: torch.Tensor) -> torch.Tensor:
    """Float32 features averaged over their spatial dimensions (as they are when flat)."""
    x = features.float()
    return x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x


def pooled_embedding(features: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled (when spatial), L2-normalised float32 embedding, ``(N, C)``."""
    return F.normalize(global_average(features).flatten(1), p=2, dim=1)


def unit_distances(embedding: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances of the rows of ``embedding`` after L2 normalisation,
    ``(N, N)`` in ``[0, 2]`` with a zero diagonal; distinct rows that coincide are 1e-6 apart,
    so that the gradient stays finite everywhere."""
    e = F.normalize(embedding.float(), p=2, dim=1)
    distances = (2.0 - 2.0 * e @ e.t()).clamp(min=1e-12).sqrt()
    return distances * ~torch.eye(len(e), dtype=torch.bool, device=e.device)


def same_label_pairs(labels: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` mask of the ordered pairs ``i != j`` that share a label."""
    labels = labels.reshape(-1)
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


def inverse_density_log_weight(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(1 / q(d))`` for distances on the unit sphere in dimension ``dim`` (Wu et al.,
    Eq. 3): ``(2 - D) log d - ((D - 3) / 2) log(1 - d^2 / 4)``; ``d`` is kept inside
    ``(0, 2)`` so the logarithms stay finite."""
    d = distances.float().clamp(1e-6, 2.0 - 1e-6)
    return (2.0 - dim) * d.log() - ((dim - 3.0) / 2.0) * torch.log1p(-0.25 * d * d)


def negative_probabilities(
    distances: torch.Tensor,
    labels: torch.Tensor,
    dim: int,
    *,
    mode: SamplingMode,
    low: float,
    high: float,
) -> torch.Tensor:
    """Row ``i``: the probability of drawing each sample as the negative of anchor ``i``
    (``(N, N)``; a row without any negative is NaN). ``w`` is ``1/q(d)`` in dimension ``dim``:

    - ``focal`` (RGAL): ``w(d)`` inside ``low < d < high``, 0 outside; an anchor with no
      negative inside the window draws uniformly over all its negatives;
    - ``distance`` (Wu et al.): ``w(max(d, low))`` for ``d < high``; uniform likewise.
    """
    labels = labels.reshape(-1)
    negative = labels.unsqueeze(0) != labels.unsqueeze(1)
    if mode == "distance":
        distances = distances.clamp(min=low)
        window = negative & (distances < high)
    elif mode == "focal":
        window = negative & (distances > low) & (distances < high)
    else:
        raise ValueError(f"mode must be 'focal' or 'distance', got {mode!r}")
    log_weight = inverse_density_log_weight(distances, dim).masked_fill(~window, float("-inf"))
    uniform = torch.zeros_like(log_weight).masked_fill(~negative, float("-inf"))
    log_weight = torch.where(window.any(dim=1, keepdim=True), log_weight, uniform)
    return torch.softmax(log_weight, dim=1)


def sample_triplets(
    embedding: torch.Tensor,
    labels: torch.Tensor,
    *,
    mode: SamplingMode,
    low: float,
    high: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Triplet indices ``(anchor, positive, negative)``: every ordered pair of distinct samples
    with the same label is an (anchor, positive), and each gets one negative (another label)
    drawn by :func:`negative_probabilities` from the distances between the L2-normalised rows
    of ``embedding`` (dimension ``D``: its width). None when there is no positive pair or no
    negative (one label only). The number of pairs depends on the labels, so this waits for
    the device once per call (as the release's sampler does)."""
    with torch.no_grad():
        labels = labels.reshape(-1)
        positive_pairs = same_label_pairs(labels).nonzero()
        if positive_pairs.numel() == 0 or bool((labels == labels[0]).all()):
            return None
        anchor, positive = positive_pairs[:, 0], positive_pairs[:, 1]
        probabilities = negative_probabilities(
            unit_distances(embedding.detach()),
            labels,
            embedding.shape[1],
            mode=mode,
            low=low,
            high=high,
        )
        chosen = torch.multinomial(probabilities[anchor], 1, generator=generator).squeeze(1)
    return anchor, positive, chosen


def triplet_loss(
    embeddings: Sequence[torch.Tensor],
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    margin: float = 0.2,
    sign: TripletSign = "ordinary",
) -> torch.Tensor:
    """Mean over triplets of the sum over ``embeddings`` (each pooled and L2-normalised) of the
    hinge ``max(0, d(a,p) - d(a,n) + m)`` (``ordinary``) or ``max(0, d(a,n) - d(a,p) + m)``
    (``reversed``), with Euclidean distances (RGAL's synthesis and student triplets)."""
    anchor, positive, negative = triplets
    total = None
    for features in embeddings:
        with torch.autocast(device_type=features.device.type, enabled=False):
            e = pooled_embedding(features)
            near, far = (positive, negative) if sign == "ordinary" else (negative, positive)
            hinge = F.triplet_margin_loss(
                e[anchor], e[near], e[far], margin=margin, p=2, reduction="none"
            )
        total = hinge if total is None else total + hinge
    if total is None:
        raise ValueError("triplet_loss needs at least one embedding")
    return total.mean()
