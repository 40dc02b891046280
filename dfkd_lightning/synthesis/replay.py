"""Synthetic replay of old classes for non-exemplar class-incremental learning."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.bn_statistics import BNStatisticsLoss
from dfkd_lightning.synthesis.relation import sample_triplets, triplet_loss
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer
from dfkd_lightning.synthesis.synthesizers.pixels import LearnablePixels

__all__ = ["InversionReplay"]


class InversionReplay(nn.Module):
    """Old-class images inverted from the previous task's model (the data-free replay of ABD,
    Smith et al. ICCV 2021, and R-DFCIL, Gao et al. ECCV 2022), made once at the start of each
    task after the first and kept in memory (no real image is kept).

    ``images_per_class`` images of every old class on average: rounds of ``batch_size`` images
    (targets drawn uniformly among the old classes) until there are at least
    ``images_per_class * old``, each round ``steps`` optimizer steps of ``synthesizer``
    (default DeepInversion's learnable pixels) on
    ``oh * CE(P(x)_old, y) + bn * R_BN(P) + triplet * L_tri``: CE of the previous model ``P``'s
    old-class logits to the round's targets, DeepInversion's BN-statistics loss (Eq. 4) on
    ``P``, and RGAL's synthesis triplet (the paper's sign, ``max(0, d(a,n) - d(a,p) + m)`` on
    ``P``'s L2-normalised penultimate features, focal negatives in ``0.5 < d < 1``; RGAL,
    Liang & Fu IJCV 2025, Sec. 3.2). The synthesizer is bound afresh for each task, so its
    targets are drawn among the old classes."""

    def __init__(
        self,
        synthesizer: Synthesizer | None = None,
        images_per_class: int = 64,
        batch_size: int = 64,
        steps: int = 100,
        oh: float = 1.0,
        bn: float = 1.0,
        triplet: float = 0.0,
        margin: float = 0.2,
    ) -> None:
        super().__init__()
        if images_per_class < 1 or batch_size < 2 or steps < 1:
            raise ConfigError(
                "replay needs images_per_class >= 1, batch_size >= 2 and steps >= 1, got "
                f"{images_per_class}, {batch_size}, {steps}"
            )
        if min(oh, bn, triplet) < 0:
            raise ConfigError(
                f"replay weights must be >= 0, got oh {oh}, bn {bn}, triplet {triplet}"
            )
        self.synthesizer = synthesizer if synthesizer is not None else LearnablePixels(lr=0.1)
        self.images_per_class, self.batch_size, self.steps = images_per_class, batch_size, steps
        self.oh, self.bn, self.triplet, self.margin = oh, bn, triplet, margin

    def loss(
        self,
        previous: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        old: int,
        bn_statistics: BNStatisticsLoss | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The inversion loss of one batch of network inputs (``bn_statistics``: the BN
        recorder hooked on ``previous``, when ``bn`` is on)."""
        logits, features = previous(inputs, return_features=True)
        values = {"oh": F.cross_entropy(logits[:, :old].float(), targets)}
        values["bn"] = bn_statistics() if bn_statistics is not None else logits.new_zeros(())
        if self.triplet:
            triplets = sample_triplets(features, targets, mode="focal", low=0.5, high=1.0)
            values["triplet"] = (
                triplet_loss([features], triplets, margin=self.margin, sign="reversed")
                if triplets is not None
                else features.sum() * 0.0
            )
        total = self.oh * values["oh"] + self.bn * values["bn"]
        if self.triplet:
            total = total + self.triplet * values["triplet"]
        return total, {name: float(value.detach()) for name, value in values.items()}

    @torch.enable_grad()
    def synthesize(
        self,
        previous: nn.Module,
        old: int,
        shape: tuple[int, ...],
        normalize: Callable[[torch.Tensor], torch.Tensor],
        denormalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[SyntheticBatch, dict[str, float]]:
        """At least ``images_per_class * old`` images (in image space, ``[0, 1]``) of the ``old``
        first classes, whole rounds, inverted from ``previous`` (in eval mode, its weights
        untouched), with the last step's loss terms."""
        device = next(previous.parameters()).device
        spec = SampleSpec(shape, old, self.batch_size, self.steps, normalize, denormalize)
        self.synthesizer.bind(spec)
        self.synthesizer.to(device)
        optimizers = self.synthesizer.configure_optimizers()
        recorder = BNStatisticsLoss(previous) if self.bn else None
        was_training = previous.training
        previous.eval()
        requires_grad = [p.requires_grad for p in previous.parameters()]
        previous.requires_grad_(False)
        batches: list[SyntheticBatch] = []
        values: dict[str, float] = {}
        try:
            needed = self.images_per_class * old
            while sum(len(batch) for batch in batches) < needed:
                self.synthesizer.begin_round()
                for _ in range(self.steps):
                    batch = self.synthesizer.render(self.batch_size)
                    if batch.targets is None:
                        raise ConfigError(
                            f"the replay synthesizer {type(self.synthesizer).__name__} makes no "
                            "class targets; use LearnablePixels or a conditional generator"
                        )
                    inputs = normalize(batch.samples)
                    loss, values = self.loss(previous, inputs, batch.targets, old, recorder)
                    for optimizer in optimizers:
                        optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    for optimizer in optimizers:
                        optimizer.step()
                    self.synthesizer.after_step()
                with torch.no_grad():
                    last = self.synthesizer.render(self.batch_size).detach()
                batches.append(SyntheticBatch(last.samples.float().clamp(0, 1), last.targets))
        finally:
            if recorder is not None:
                recorder.remove()
            for parameter, flag in zip(previous.parameters(), requires_grad, strict=True):
                parameter.requires_grad_(flag)
            previous.train(was_training)
        return SyntheticBatch.cat(batches), values
