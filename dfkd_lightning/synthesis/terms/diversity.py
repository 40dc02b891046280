"""DE-DFKD's metric-learning term ``ml`` (Liu et al., 2024): diversity within each class and
separation between classes on the teacher's penultimate features (see
:mod:`dfkd_lightning.synthesis.diversity` for the equations, which are ours)."""

from __future__ import annotations

from typing import Literal

import torch

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.diversity import (
    class_separation_loss,
    intra_class_spread_loss,
    mode_seeking_loss,
)
from dfkd_lightning.synthesis.synthesizers.generators import LATENT
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = ["MetricLearningTerm"]

SpreadVariant = Literal["margin", "mode_seeking"]


@register_term("ml")
class MetricLearningTerm(LossTerm):
    """``L_ml = L_spread + separation * L_sep`` on the teacher's penultimate features, labelled
    by the batch's targets (the teacher's argmax when the synthesizer aims at no class).

    ``variant: margin`` (default): ``L_spread`` pushes same-class samples apart up to
    ``spread_margin`` on the unit sphere (:func:`intra_class_spread_loss`).
    ``variant: mode_seeking``: ``L_spread`` is MSGAN's ``1 / (d(f1, f2) / d(z1, z2))`` over
    same-class pairs (:func:`mode_seeking_loss`); it needs the latents of a
    :class:`ConditionalGenerator`. ``L_sep`` is the batch-hard triplet with
    ``separation_margin`` (:func:`class_separation_loss`), which keeps the classes apart while
    they spread. The parts are logged as ``ml_spread`` and ``ml_separation``.
    """

    summary = "DE-DFKD metric learning: spread each class, keep the classes apart"

    def __init__(
        self,
        variant: SpreadVariant = "margin",
        spread_margin: float = 0.5,
        separation_margin: float = 0.2,
        separation: float = 1.0,
    ) -> None:
        super().__init__()
        if variant not in ("margin", "mode_seeking"):
            raise ConfigError(f"ml: variant must be 'margin' or 'mode_seeking', got {variant!r}")
        if not 0.0 <= spread_margin <= 2.0 or not 0.0 <= separation_margin <= 2.0:
            raise ConfigError(
                "ml: spread_margin and separation_margin are distances on the unit sphere and "
                f"must lie in [0, 2], got {spread_margin} and {separation_margin}"
            )
        if separation < 0:
            raise ConfigError(f"ml: separation must be >= 0, got {separation}")
        self.variant = variant
        self.spread_margin, self.separation_margin = float(spread_margin), float(separation_margin)
        self.separation = float(separation)

    @property
    def needs(self) -> Needs:
        return Needs(teacher_features=True)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        features = ctx.teacher.features
        assert features is not None
        labels = ctx.targets
        if labels is None:
            labels = ctx.teacher.logits.detach().argmax(dim=1)
        if self.variant == "mode_seeking":
            latents = ctx.batch.extras.get(LATENT)
            if latents is None:
                raise ConfigError(
                    "ml: variant mode_seeking compares latents, but the synthesizer's batches "
                    "carry none; use the ConditionalGenerator or variant: margin"
                )
            spread = mode_seeking_loss(features, latents, labels)
        else:
            spread = intra_class_spread_loss(features, labels, self.spread_margin)
        separation = class_separation_loss(features, labels, self.separation_margin)
        ctx.logs.update(ml_spread=spread.detach(), ml_separation=separation.detach())
        return spread + self.separation * separation
