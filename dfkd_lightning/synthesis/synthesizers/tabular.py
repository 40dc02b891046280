"""Synthesizers of feature vectors for data-free regression (Zhou & Chiam, ESWA 2023)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets.mlp import MLPRegressor
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.regression import latin_hypercube
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer

__all__ = ["DirectOptimization", "LatinHypercubeSampler", "TabularGenerator"]


def _features(spec: SampleSpec) -> int:
    if len(spec.shape) != 1:
        raise ConfigError(
            f"tabular synthesizers make feature vectors, got sample shape {spec.shape}"
        )
    return spec.shape[0]


class TabularGenerator(Synthesizer):
    """A generator MLP ``nz -> hidden (tanh) -> features`` (linear output) trained against the
    student for the whole run (RMSprop ``lr``, ``weight_decay``); fresh samples every render.
    The paper's generator: 50 -> 500 -> d."""

    summary = "an MLP generator of feature vectors (regression)"

    pools = False
    shared_across_ranks = True

    def __init__(
        self,
        nz: int = 50,
        hidden: Sequence[int] = (500,),
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
    ) -> None:
        super().__init__()
        self.nz, self.hidden = nz, tuple(hidden)
        self.lr, self.weight_decay = lr, weight_decay
        self.generator: MLPRegressor | None = None

    def bind(self, spec: SampleSpec) -> None:
        super().bind(spec)
        self.generator = MLPRegressor(self.nz, _features(spec), self.hidden, "tanh")

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.generator is not None
        groups: list[dict] = [{"params": list(self.generator.parameters())}]
        if extra_parameters:
            groups.append({"params": list(extra_parameters)})
        return [torch.optim.RMSprop(groups, lr=self.lr, weight_decay=self.weight_decay)]

    def render(self, n: int | None = None) -> SyntheticBatch:
        assert self.generator is not None
        n = n or self.bound_spec().batch_size
        return SyntheticBatch(self.generator(torch.randn(n, self.nz, device=self.device)))


class LatinHypercubeSampler(Synthesizer):
    """Latin-hypercube samples in the box ``box`` (per standardised feature).

    No released counterpart: the release draws Latin-hypercube samples (bounded by the
    training data's min/max) but multiplies them by alpha = 0, so none reaches the student.
    This sampler is our data-free reading of the strategy: the box is a setting (default +-3
    standard deviations), since a data-free run cannot know the data's range."""

    summary = "Latin-hypercube samples in a box (regression)"

    pools = False

    def __init__(self, box: tuple[float, float] = (-3.0, 3.0)) -> None:
        super().__init__()
        if box[0] >= box[1]:
            raise ConfigError(f"box must be (low, high) with low < high, got {box}")
        self.box = (float(box[0]), float(box[1]))

    def render(self, n: int | None = None) -> SyntheticBatch:
        d = _features(self.bound_spec())
        low, high = torch.full((d,), self.box[0]), torch.full((d,), self.box[1])
        n = n or self.bound_spec().batch_size
        return SyntheticBatch(latin_hypercube(n, low, high).to(self.device))


class DirectOptimization(Synthesizer):
    """Direct input optimisation: fresh ``x ~ N(0, I)`` for every student batch, moved by
    ``steps`` RMSprop steps (``lr``, weight decay ``weight_decay``: the paper's beta bound on
    ``||x||^2``) on the method's synthesis loss (``mean[-(T - S)^2 + gamma S^2]``)."""

    summary = "fresh Gaussian inputs optimised a few steps per student batch (regression)"

    pools = False

    def __init__(self, steps: int = 2, lr: float = 0.1, weight_decay: float = 1e-5) -> None:
        super().__init__()
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self._loss: Callable[[SyntheticBatch], torch.Tensor] | None = None

    def attach(self, synthesis_loss: Callable[[SyntheticBatch], torch.Tensor]) -> None:
        self._loss = synthesis_loss

    def render(self, n: int | None = None) -> SyntheticBatch:
        spec = self.bound_spec()
        return SyntheticBatch(torch.randn(n or spec.batch_size, *spec.shape, device=self.device))

    def sample(self, n: int) -> SyntheticBatch:
        if self._loss is None:
            raise RuntimeError("DirectOptimization needs the method's loss: call attach() first")
        inputs = self.render(n).samples.requires_grad_(True)
        optimizer = torch.optim.RMSprop([inputs], lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.steps):
            (grad,) = torch.autograd.grad(self._loss(SyntheticBatch(inputs)), inputs)
            inputs.grad = grad
            optimizer.step()
        return SyntheticBatch(inputs.detach())
