"""Gaussian noise: the sampling baseline of data-free distillation and quantization."""

from __future__ import annotations

import torch

from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.synthesizers.base import Synthesizer

__all__ = ["GaussianSampler"]


class GaussianSampler(Synthesizer):
    """``x ~ N(0, I)`` in the network's input space (images: after the dataset normalisation,
    i.e. ``mean + std * N(0, I)`` in image space; tables: the features as they are): the
    plain sampling baseline, no parameters, nothing learned, no class targets (the "Gaussian
    data" of ZeroQ's and GDFQ's comparisons; the regression paper's Gaussian sampling)."""

    summary = "x ~ N(0, I) in the network's input space, nothing learned (noise baseline)"

    pools = False

    def render(self, n: int | None = None) -> SyntheticBatch:
        spec = self.bound_spec()
        noise = torch.randn(n or spec.batch_size, *spec.shape, device=self.device)
        return SyntheticBatch(spec.denormalize(noise))
