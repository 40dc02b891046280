"""Latent CutMix (DiffDFKD, Qi et al. 2025): paste a box of a partner's latent into each
latent during denoising, the box and mixing weight of CutMix (Yun et al., ICCV 2019, Eq. 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from dfkd_lightning.errors import ConfigError

__all__ = ["CutMixMode", "LatentCutMix", "box_weight", "cutmix_box", "mix_latents", "partners"]

CutMixMode = Literal["none", "same_class", "cross_class"]
CUTMIX_MODES: tuple[str, ...] = ("none", "same_class", "cross_class")


def cutmix_box(
    lam: float, height: int, width: int, centre: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The CutMix box ``(top, bottom, left, right)`` (bottom/right exclusive) of relative side
    ``sqrt(1 - lam)`` centred at ``centre = (row, column)`` and clipped to the image."""
    side = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * side), int(width * side)
    row, column = centre
    top, bottom = max(row - cut_h // 2, 0), min(row + cut_h // 2, height)
    left, right = max(column - cut_w // 2, 0), min(column + cut_w // 2, width)
    return top, bottom, left, right


def box_weight(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """The share of each sample that stays its own after pasting ``box``: ``1 - area / (H W)``
    (CutMix's lambda adjusted to the clipped box)."""
    top, bottom, left, right = box
    return 1.0 - (bottom - top) * (right - left) / (height * width)


def partners(targets: torch.Tensor, mode: CutMixMode) -> torch.Tensor:
    """For each sample, the index of the partner it takes a box from: a random permutation of
    the batch (``cross_class``), or of each class's samples among themselves (``same_class``;
    a class alone in the batch keeps its own latents)."""
    n = targets.shape[0]
    if mode == "cross_class":
        return torch.randperm(n).to(targets.device)
    index = torch.arange(n)
    labels = targets.cpu()
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        index[members] = members[torch.randperm(len(members))]
    return index.to(targets.device)


def mix_latents(
    latents: torch.Tensor,
    soft_targets: torch.Tensor,
    partner: torch.Tensor,
    box: tuple[int, int, int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``latents`` with ``box`` taken from ``latents[partner]``, and the soft targets mixed by
    the box's weight: ``w * y + (1 - w) * y[partner]`` (:func:`box_weight`)."""
    top, bottom, left, right = box
    mixed = latents.clone()
    mixed[:, :, top:bottom, left:right] = latents[partner, :, top:bottom, left:right]
    weight = box_weight(box, latents.shape[-2], latents.shape[-1])
    return mixed, weight * soft_targets + (1.0 - weight) * soft_targets[partner]


@dataclass(frozen=True)
class LatentCutMix:
    """Latent CutMix every ``every`` denoising steps (DiffDFKD: every N/5 of N steps; ``None``
    here means N // 5): one box per mixing event for the whole batch, ``lam ~ Beta(alpha,
    alpha)``, partners of the same class (``same_class``, the default: the pasted box keeps
    the class's attributes) or of any class (``cross_class``: the soft targets the guidance
    aims at are mixed by the box's area). ``none``: off."""

    mode: CutMixMode = "none"
    every: int | None = None
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in CUTMIX_MODES:
            raise ConfigError(f"cutmix must be one of {list(CUTMIX_MODES)}, got {self.mode!r}")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"cutmix_every must be >= 1 or null, got {self.every}")
        if self.alpha <= 0:
            raise ConfigError(f"cutmix_alpha must be > 0, got {self.alpha}")

    def interval(self, steps: int) -> int:
        return self.every if self.every is not None else max(steps // 5, 1)

    def due(self, step: int, steps: int) -> bool:
        """Whether denoising step ``step`` (0-based, of ``steps``) starts with a mix."""
        return self.mode != "none" and step > 0 and step % self.interval(steps) == 0

    def __call__(
        self, latents: torch.Tensor, targets: torch.Tensor, soft_targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed latents and soft targets (one Beta draw, one box centre, one pairing; all from
        the global RNG, which generation seeds per round)."""
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        height, width = latents.shape[-2:]
        row, column = (int(torch.randint(0, size, ())) for size in (height, width))
        box = cutmix_box(lam, height, width, (row, column))
        return mix_latents(latents, soft_targets, partners(targets, self.mode), box)
