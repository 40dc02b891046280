"""The newest synthetic samples a callback has seen, kept on the device (a ring buffer)."""

from __future__ import annotations

import torch

from dfkd_lightning.synthesis.batch import NO_TARGET, SyntheticBatch

__all__ = ["RecentSamples"]


class RecentSamples:
    """Up to ``capacity`` of the newest samples (images in [0, 1]) with their targets
    (``NO_TARGET`` where a synthesizer aimed at no class)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.samples: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.samples is None else len(self.samples)

    def add(self, batch: SyntheticBatch) -> None:
        samples = batch.samples.detach().float().clamp(0, 1)
        targets = batch.targets
        if targets is None:
            targets = torch.full((len(batch),), NO_TARGET, dtype=torch.long, device=batch.device)
        if self.samples is None or self.targets is None:
            self.samples, self.targets = samples[-self.capacity :], targets[-self.capacity :]
            return
        self.samples = torch.cat([self.samples, samples])[-self.capacity :]
        self.targets = torch.cat([self.targets, targets.to(self.targets.device)])[-self.capacity :]

    def clear(self) -> None:
        self.samples = self.targets = None
