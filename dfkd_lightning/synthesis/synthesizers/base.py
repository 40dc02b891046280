"""The synthesizer protocol: what makes the samples a data-free method learns from.

A synthesizer is a plain ``torch.nn.Module`` usable without a Trainer::

    synthesizer.bind(SampleSpec(shape=(3, 32, 32), num_classes=10, batch_size=256))
    optimizers = synthesizer.configure_optimizers()
    synthesizer.begin_round(epoch=0)
    for _ in range(g_steps):
        batch = synthesizer.render()          # differentiable SyntheticBatch with targets
        loss = objective(batch)
        optimizers[0].zero_grad(); loss.backward(); optimizers[0].step()
        synthesizer.after_step()
    synthesizer.end_round(best_batch)
    student_batch = synthesizer.sample(128)   # no gradients

Kinds: a batch optimised from scratch each round and pooled (``pools = True``: learnable
pixels, a generator re-initialised each round, a meta-generator), a generator kept across the
run whose fresh samples feed the student (``pools = False``), samplers without parameters
(tables), and frozen pretrained synthesizers (``frozen_pretrained = True``: no optimizer, kept
out of checkpoints and DDP, moved to the device by the method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = ["SampleSpec", "Synthesizer", "random_targets"]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class SampleSpec:
    """What a synthesizer must make: one sample's ``shape`` (images: ``(C, H, W)`` at the
    synthesis resolution; tables: ``(features,)``), the number of classes (0 for regression),
    the synthesis batch size, the optimizer steps of a round (``g_steps``), and the dataset
    normalisation (image space <-> network inputs)."""

    shape: tuple[int, ...]
    num_classes: int = 0
    batch_size: int = 256
    steps_per_round: int = 1
    normalize: Callable[[torch.Tensor], torch.Tensor] = _identity
    denormalize: Callable[[torch.Tensor], torch.Tensor] = _identity


def random_targets(n: int, num_classes: int, device: torch.device) -> torch.Tensor | None:
    """Uniformly drawn class targets, sorted (as CMI draws them); None without classes."""
    if num_classes < 1:
        return None
    return torch.randint(0, num_classes, (n,), device=device).sort().values


class Synthesizer(nn.Module):
    """Base class of every synthesizer (see the module docstring for the protocol)."""

    #: Whether each round's batch goes into the pool (else the student samples fresh).
    pools: bool = True
    #: Frozen pretrained synthesizers have no optimizer and stay out of checkpoints and DDP.
    frozen_pretrained: bool = False
    #: Whether the rendered samples are drawn from persistent weights shared by all DDP ranks
    #: (gradients averaged across ranks), as opposed to each rank's own batch.
    shared_across_ranks: bool = False
    #: One-line summary shown by ``dfkd list``; defaults to the docstring's first line.
    summary: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.spec: SampleSpec | None = None
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    # ----------------------------------------------------------------- the protocol
    def bind(self, spec: SampleSpec) -> None:
        """Build the networks/parameters for samples of ``spec`` (called once)."""
        self.spec = spec

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        """The optimizers; the first steps on the synthesis loss and also trains
        ``extra_parameters`` (terms' parameters, e.g. CMI's head) as a second group."""
        return []

    def begin_round(self, epoch: int = 0) -> None:
        """Prepare a synthesis round (re-initialise, resample latents and targets)."""

    def render(self, n: int | None = None) -> SyntheticBatch:
        """A differentiable batch (``n`` samples; the round's own batch when ``None``)."""
        raise NotImplementedError

    def render_last(self) -> SyntheticBatch:
        """The last render's latents through the current weights, without gradients
        (``student_samples: reuse``); only generators have latents to reuse."""
        raise ValueError(f"{type(self).__name__} cannot re-render its last batch")

    def attach(self, synthesis_loss: Callable[[SyntheticBatch], torch.Tensor]) -> None:
        """Receive the method's synthesis loss of a batch (synthesizers that optimise their
        samples inside :meth:`sample`, such as direct input optimisation, need it)."""

    def sample(self, n: int) -> SyntheticBatch:
        """``n`` samples for a student step, without gradients."""
        with torch.no_grad():
            return self.render(n).detach()

    def after_step(self) -> None:
        """After every optimizer step of a round (FastDFKD's meta-gradient)."""

    def end_round(self, best: SyntheticBatch) -> None:
        """After a round, with the batch that goes on (FastDFKD's meta step)."""

    def rank_state(self) -> dict[str, Any]:
        """Per-rank state beyond the parameters (tensors and primitives) for checkpoints."""
        return {}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`rank_state`."""

    # ----------------------------------------------------------------- helpers
    @property
    def trains(self) -> bool:
        """Whether rounds optimise anything (samplers and frozen synthesizers do not)."""
        return not self.frozen_pretrained and any(p.requires_grad for p in self.parameters())

    def bound_spec(self) -> SampleSpec:
        if self.spec is None:
            raise RuntimeError(f"{type(self).__name__} is not bound: call bind(spec) first")
        return self.spec

    def __repr__(self) -> str:
        return super().__repr__() if self.spec is not None else f"{type(self).__name__}()"
