"""DeepInversion: Dreaming to Distill (Yin et al., CVPR 2020)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.data.specs import denormalize
from dfkd_lightning.methods.inversion import ModelInversion
from dfkd_lightning.synthesis.augment import random_jitter
from dfkd_lightning.synthesis.losses import (
    competition_loss,
    l2_prior_loss,
    total_variation_loss,
)


class DeepInversion(ModelInversion):
    """Optimises the pixels of a batch from noise every round (Adam ``lr_g``) with
    ``oh * CE + bn * R_feature + tv * R_TV + l2 * R_l2 + adv * R_compete`` (Eq. 2-4, 8):
    one-hot loss to drawn targets, BN-statistics loss, total-variation and L2 priors
    (``tv_norm``) and, for Adaptive DeepInversion, the competition term
    ``1 - JS(student, teacher)`` at ``competition_temperature`` (3 in NVlabs' code).

    The pixels live in normalised input space, initialised from N(0, 1) (the priors are
    taken there, as in NVlabs' code); the pool stores them mapped back to [0, 1]. With a
    ``synthesis_size`` below the input size the pixels (and the TV/L2 priors) are at that
    size and the teacher sees them upsampled. As in the
    paper the teacher sees them after a random roll by up to ``jitter`` pixels and a
    random flip; ``jitter: 0`` uses the crop + flip of the base class instead.
    ``clip_pixels`` projects the pixels back into the valid image range after every step.

    Differences from the released code: Fast-Datafree/CMI use ``-JS`` (same gradient as the
    paper's ``1 - JS``) with probabilities clamped to [0.01, 0.99] (``js_variant``:
    ``deepinversion_code``), and also subtract 0.001 x the student's BN loss; Fast-Datafree
    hard-codes ``tv = 0``.
    """

    def __init__(
        self,
        *args: Any,
        tv: float = 1e-4,
        tv_norm: Literal["l1", "l2"] = "l2",
        l2: float = 1e-5,
        jitter: int = 2,
        lr_g: float = 0.1,
        g_betas: tuple[float, float] = (0.5, 0.9),
        competition_temperature: float = 3.0,
        js_variant: Literal["paper", "deepinversion_code"] = "paper",
        clip_pixels: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights.update(tv=tv, l2=l2)
        self.tv_norm, self.jitter = tv_norm, jitter
        self.lr_g, self.g_betas = lr_g, tuple(g_betas)
        self.competition_temperature = competition_temperature
        self.clip_pixels = clip_pixels
        self.js_variant = js_variant
        self.pixels = nn.Parameter(torch.randn(self.synthesis_batch_size, *self.synthesis_shape))

    def configure_synthesis_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam([self.pixels], lr=self.lr_g, betas=self.g_betas)]

    def reset_synthesizer(self) -> None:
        with torch.no_grad():
            self.pixels.normal_()
        optimizer = self.synthesis_optimizers()[0].optimizer
        optimizer.state.clear()

    def after_synthesis_step(self, step: int) -> None:
        """Keep the pixels inside the valid image range (Fast-Datafree, NVlabs ImageNet)."""
        if self.clip_pixels:
            with torch.no_grad():
                self.pixels.copy_(self.normalize(self._pixel_images().clamp(0, 1)))

    def _pixel_images(self) -> torch.Tensor:
        """The pixels as images in [0, 1] at ``synthesis_size``."""
        return denormalize(self.pixels, self.mean, self.std)

    def render(self) -> torch.Tensor:
        return self.to_input_size(self._pixel_images())

    def adversarial_term(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        """Adaptive DeepInversion's competition ``1 - JS(student, teacher)`` (Eq. 8)."""
        return competition_loss(
            student_logits, teacher_logits, self.competition_temperature, self.js_variant
        )

    def synthesis_terms(
        self, images: torch.Tensor, targets: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        if self.jitter > 0:
            # normalize(render()) without the round trip: resizing commutes with the affine map
            view = random_jitter(self.to_input_size(self.pixels), self.jitter, flip=True)
        else:
            view = self.normalize(self.synthesis_augmenter(images))
        terms = self.inversion_terms(view, targets, weights)
        if "tv" in weights:
            terms["tv"] = total_variation_loss(self.pixels, self.tv_norm)
        if "l2" in weights:
            terms["l2"] = l2_prior_loss(self.pixels)
        return terms
