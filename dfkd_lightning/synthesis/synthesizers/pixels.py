"""Learnable pixels: DeepInversion's batch optimised from noise every round."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer, random_targets

__all__ = ["LearnablePixels"]


class LearnablePixels(Synthesizer):
    """DeepInversion (Yin et al., CVPR 2020): the pixels of a batch, initialised from N(0, 1)
    in normalised input space and optimised with Adam (``lr``, ``betas``) every round for
    uniformly drawn class targets. ``clip`` projects them back into the valid image range after
    every step (Fast-Datafree, NVlabs' ImageNet code). Renders the pixels as images at the
    synthesis resolution."""

    summary = "a batch of pixels optimised from noise every round (DeepInversion)"

    def __init__(
        self, lr: float = 0.1, betas: tuple[float, float] = (0.5, 0.9), clip: bool = True
    ) -> None:
        super().__init__()
        self.lr, self.betas, self.clip = lr, tuple(betas), clip
        self.pixels: nn.Parameter | None = None
        self.targets: torch.Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def bind(self, spec: SampleSpec) -> None:
        super().bind(spec)
        self.pixels = nn.Parameter(torch.randn(spec.batch_size, *spec.shape))

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.pixels is not None
        groups: list[dict] = [{"params": [self.pixels]}]
        if extra_parameters:
            groups.append({"params": list(extra_parameters)})
        self._optimizer = torch.optim.Adam(groups, lr=self.lr, betas=self.betas)
        return [self._optimizer]

    def begin_round(self, epoch: int = 0) -> None:
        assert self.pixels is not None
        spec = self.bound_spec()
        self.targets = random_targets(len(self.pixels), spec.num_classes, self.pixels.device)
        with torch.no_grad():
            self.pixels.normal_()
        if self._optimizer is not None:
            for param in [self.pixels]:
                self._optimizer.state.pop(param, None)

    def render(self, n: int | None = None) -> SyntheticBatch:
        assert self.pixels is not None
        return SyntheticBatch(self.bound_spec().denormalize(self.pixels), self.targets)

    def after_step(self) -> None:
        if self.clip:
            assert self.pixels is not None
            spec = self.bound_spec()
            with torch.no_grad():
                self.pixels.copy_(spec.normalize(spec.denormalize(self.pixels).clamp(0, 1)))
