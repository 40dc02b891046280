"""Step pacing for data-free methods: an epoch of ``steps`` placeholder batches, no real data."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from dfkd_lightning.errors import ConfigError


class StepPacer(Dataset):
    """Dataset of length ``steps`` whose items are just their indices (``0 .. steps-1``)."""

    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.steps:
            raise IndexError(index)
        return index


def step_loader(steps: int) -> DataLoader:
    """Loader yielding the step indices ``0 .. steps-1`` as plain ints, one per batch.

    It has its own ``torch.Generator``: creating its iterator every epoch must not draw
    from the global RNG, which the synthesis owns (and checkpoints restore exactly).
    """
    return DataLoader(
        StepPacer(steps),
        batch_size=None,
        shuffle=False,
        num_workers=0,
        generator=torch.Generator().manual_seed(0),
    )
