"""Diffusion variations of every new synthetic batch (DDA's augmentation stage)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from dfkd_lightning.callbacks.base import SampleCallback
from dfkd_lightning.callbacks.filters import teacher_outputs
from dfkd_lightning.callbacks.quality import image_method
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SOURCE, SOURCE_INDEX, SyntheticBatch
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec
from dfkd_lightning.synthesis.synthesizers.diffusion import DiffusionSynthesizer

__all__ = ["DiffusionVariations"]


class DiffusionVariations(SampleCallback):
    """Adds ``copies`` variations of every new sample (DDA, Li et al. 2024: a diffusion model
    re-draws each synthetic image with fresh noise) made by ``synthesizer`` image to image
    (SDEdit at ``strength``; any model :class:`DiffusionSynthesizer` loads, the offline digits
    prior included), aimed at the source's target (the teacher's argmax when it has none)
    and guided by the method's synthesis loss unless the synthesizer's ``guidance_step`` is 0
    (DDA's variations are not guided: set it to 0 for them). Each variation carries its source
    image (extra ``source``, what :class:`~dfkd_lightning.callbacks.SimilarityFilter` compares
    with; place the filter after this callback) and the source's index in the batch
    (``source_index``); the sources pass on too (``keep_sources``), their own source."""

    def __init__(
        self,
        synthesizer: DiffusionSynthesizer,
        copies: int = 1,
        strength: float = 0.5,
        keep_sources: bool = True,
    ) -> None:
        if copies < 1 or not 0.0 < strength <= 1.0:
            raise ConfigError(
                f"DiffusionVariations needs copies >= 1 and strength in (0, 1], got {copies} "
                f"and {strength}"
            )
        self.synthesizer, self.copies, self.strength = synthesizer, copies, strength
        self.keep_sources = keep_sources

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        module = image_method(pl_module, type(self).__name__)
        if self.synthesizer.spec is None:
            self.synthesizer.bind(
                SampleSpec(
                    shape=module.synthesis_shape,
                    num_classes=module.num_classes,
                    batch_size=module.synthesis_batch_size,
                )
            )
        if self.synthesizer.settings.eta != 0:
            self.synthesizer.attach(
                lambda batch: module.synthesis_context(batch, module.synthesis_weights())[0]
            )

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.synthesizer.to(pl_module.device)

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        if len(batch) == 0:
            return None
        targets = batch.targets
        if targets is None:
            targets = teacher_outputs(module, batch.samples)[0].argmax(1)
        variations = self.synthesizer.vary(batch.samples, targets, self.copies, self.strength)
        if not self.keep_sources:
            return variations
        index = torch.arange(len(batch), device=batch.device)
        sources = SyntheticBatch(
            batch.samples, targets, {SOURCE: batch.samples, SOURCE_INDEX: index}
        )
        return SyntheticBatch.cat([sources, variations.to(batch.device)])
