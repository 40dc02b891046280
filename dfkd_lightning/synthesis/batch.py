"""``SyntheticBatch``: what a synthesizer makes and what travels to callbacks, pool and student."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["NO_TARGET", "SOFT_TARGETS", "SOURCE", "SOURCE_INDEX", "SyntheticBatch"]

#: The target stored for a sample that was synthesized without a class target.
NO_TARGET = -1

#: The extra holding per-sample class distributions ``(N, C)`` that the synthesis aims at when
#: samples mix classes (cross-class latent CutMix); ``targets`` is then each one's largest share.
SOFT_TARGETS = "soft_targets"
#: The extras of a variation: its source image (the samples' shape) and the source's index in
#: the batch it was made from.
SOURCE = "source"
SOURCE_INDEX = "source_index"


@dataclass
class SyntheticBatch:
    """A batch of synthetic samples with the class targets they were made for.

    ``samples``: images in image space (``[0, 1]`` is the valid range) at the synthesizer's
    resolution, or feature vectors for tables. ``targets``: the class each sample was
    synthesized for (``(N,)`` int64), or ``None`` when the synthesizer aims at no class.
    ``extras``: optional per-sample tensors (first dimension ``N``), e.g. embeddings or the
    index of a source image; they follow every selection of the batch.
    """

    samples: torch.Tensor
    targets: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.samples.shape[0]
        if self.targets is not None and self.targets.shape[:1] != (n,):
            raise ValueError(
                f"targets have shape {tuple(self.targets.shape)} but there are {n} samples"
            )
        for name, value in self.extras.items():
            if value.shape[:1] != (n,):
                raise ValueError(
                    f"extra {name!r} has shape {tuple(value.shape)} but there are {n} samples"
                )

    def __len__(self) -> int:
        return self.samples.shape[0]

    @property
    def device(self) -> torch.device:
        return self.samples.device

    def select(self, index: torch.Tensor | slice) -> SyntheticBatch:
        """The samples at ``index`` (a boolean mask, integer indices or a slice)."""
        return SyntheticBatch(
            self.samples[index],
            None if self.targets is None else self.targets[index],
            {name: value[index] for name, value in self.extras.items()},
        )

    def detach(self) -> SyntheticBatch:
        """The same batch without autograd history."""
        return SyntheticBatch(
            self.samples.detach(),
            None if self.targets is None else self.targets.detach(),
            {name: value.detach() for name, value in self.extras.items()},
        )

    def to(self, device: torch.device | str) -> SyntheticBatch:
        return SyntheticBatch(
            self.samples.to(device),
            None if self.targets is None else self.targets.to(device),
            {name: value.to(device) for name, value in self.extras.items()},
        )

    def with_extras(self, **extras: torch.Tensor) -> SyntheticBatch:
        """A copy with ``extras`` added (or replaced)."""
        return SyntheticBatch(self.samples, self.targets, {**self.extras, **extras})

    def where(self, condition: torch.Tensor, other: SyntheticBatch) -> SyntheticBatch:
        """``self`` where the scalar boolean ``condition`` holds, else ``other`` (no host sync).

        Both batches must have the same length and the same extras.
        """
        targets = self.targets
        if targets is not None and other.targets is not None:
            targets = torch.where(condition, targets, other.targets)
        return SyntheticBatch(
            torch.where(condition, self.samples, other.samples),
            targets,
            {
                name: torch.where(condition, value, other.extras[name])
                for name, value in self.extras.items()
            },
        )

    def targets_or_none(self) -> torch.Tensor:
        """The targets, with :data:`NO_TARGET` for every sample when there are none."""
        if self.targets is not None:
            return self.targets
        return torch.full((len(self),), NO_TARGET, dtype=torch.long, device=self.device)

    @staticmethod
    def cat(batches: Sequence[SyntheticBatch]) -> SyntheticBatch:
        """One batch of all ``batches`` in order; targets are kept when every batch has them
        (missing ones become :data:`NO_TARGET` when only some do); extras shared by every
        batch are kept."""
        if not batches:
            raise ValueError("cannot concatenate an empty list of batches")
        samples = torch.cat([batch.samples for batch in batches])
        with_targets = [batch.targets is not None for batch in batches]
        targets = None
        if any(with_targets):
            targets = torch.cat([batch.targets_or_none() for batch in batches])
        shared = set(batches[0].extras).intersection(*(batch.extras for batch in batches[1:]))
        extras = {name: torch.cat([batch.extras[name] for batch in batches]) for name in shared}
        return SyntheticBatch(samples, targets, extras)
