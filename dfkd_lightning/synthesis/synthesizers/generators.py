"""Image generators: kept across the run (DAFL, ZSKT, DFAD, DFQ), re-initialised every round
(CMI), a meta-generator (FastDFKD) and a class-conditional generator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets.generator import Generator, GeneratorOutput
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.meta import (
    FAST_DATAFREE_REPTILE_SCALE,
    reinitialize,
    reptile_meta_gradient,
    reset_first_layer,
)
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer, random_targets

__all__ = [
    "LATENT",
    "ConditionalGenerator",
    "MetaGenerator",
    "PersistentGenerator",
    "ResetGenerator",
    "balanced_targets",
]


def _adam(
    params: Sequence[nn.Parameter],
    extra: Sequence[nn.Parameter],
    lr: float,
    betas: tuple[float, float],
) -> torch.optim.Adam:
    groups: list[dict[str, Any]] = [{"params": list(params)}]
    if extra:
        groups.append({"params": list(extra)})
    return torch.optim.Adam(groups, lr=lr, betas=betas)


def _build_generator(spec: SampleSpec, nz: int, ngf: int, output: GeneratorOutput) -> Generator:
    channels, size = spec.shape[0], spec.shape[-1]
    return Generator(nz=nz, ngf=ngf, img_size=size, nc=channels, output=output)


class PersistentGenerator(Synthesizer):
    """A DCGAN-style generator (``nz``, ``ngf``) trained against the student for the whole
    run (Adam ``lr``, ``betas``); every render draws fresh latents, and the student distils on
    fresh samples. The generator is shared by all DDP ranks (gradients averaged) while each rank
    draws its own noise.

    ``output: sigmoid`` makes images in [0, 1]; ``tanh``/``bn`` (DAFL's and DFAD's heads) make
    network inputs directly, which are rendered as images by the inverse normalisation (so they
    may leave [0, 1]). Unconditional: the batch has no targets (``oh`` uses the teacher's argmax).
    """

    summary = "a generator trained for the whole run, fresh samples (DAFL, ZSKT, DFAD, DFQ)"

    pools = False
    shared_across_ranks = True

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        output: GeneratorOutput = "sigmoid",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
    ) -> None:
        super().__init__()
        self.nz, self.ngf, self.output = nz, ngf, output
        self.lr, self.betas = lr, tuple(betas)
        self.generator: Generator | None = None
        self._last_z: torch.Tensor | None = None

    def bind(self, spec: SampleSpec) -> None:
        super().bind(spec)
        self.generator = _build_generator(spec, self.input_width(), self.ngf, self.output)

    def input_width(self) -> int:
        """The width of the generator body's input (the latent's, ``nz``)."""
        return self.nz

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.generator is not None
        return [_adam(list(self.generator.parameters()), extra_parameters, self.lr, self.betas)]

    def images(self, z: torch.Tensor) -> torch.Tensor:
        assert self.generator is not None
        out = self.generator(z)
        return out if self.output == "sigmoid" else self.bound_spec().denormalize(out)

    def render(self, n: int | None = None) -> SyntheticBatch:
        z = torch.randn(n or self.bound_spec().batch_size, self.nz, device=self.device)
        self._last_z = z
        return SyntheticBatch(self.images(z))

    def render_last(self) -> SyntheticBatch:
        """The latents of the last render, through the generator as it is now (no grad):
        ZSKT's pseudo-batch and DAFL's shared batch (``student_samples: reuse``)."""
        if self._last_z is None:
            raise RuntimeError("render_last() before any render()")
        with torch.no_grad():
            return SyntheticBatch(self.images(self._last_z))


class ResetGenerator(Synthesizer):
    """CMI (Fang et al., IJCAI 2021): every round re-initialises the generator (N(0, 0.02)
    convolutions, N(1, 0.02) BN scales) and learnable latents ``z`` and optimises both (Adam
    ``lr``, ``betas``) for uniformly drawn class targets; the Adam state of both is reset."""

    summary = "a generator and latents re-initialised every round (CMI)"

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
    ) -> None:
        super().__init__()
        self.nz, self.ngf, self.lr, self.betas = nz, ngf, lr, tuple(betas)
        self.generator: Generator | None = None
        self.z: nn.Parameter | None = None
        self.targets: torch.Tensor | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def bind(self, spec: SampleSpec) -> None:
        super().bind(spec)
        self.generator = _build_generator(spec, self.nz, self.ngf, "sigmoid")
        self.z = nn.Parameter(torch.randn(spec.batch_size, self.nz))

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.generator is not None and self.z is not None
        params = [*self.generator.parameters(), self.z]
        self._optimizer = _adam(params, extra_parameters, self.lr, self.betas)
        return [self._optimizer]

    def begin_round(self, epoch: int = 0) -> None:
        assert self.generator is not None and self.z is not None
        self.targets = random_targets(len(self.z), self.bound_spec().num_classes, self.device)
        reinitialize(self.generator)
        with torch.no_grad():
            self.z.normal_()
        if self._optimizer is not None:
            for param in [*self.generator.parameters(), self.z]:
                self._optimizer.state.pop(param, None)

    def render(self, n: int | None = None) -> SyntheticBatch:
        assert self.generator is not None
        return SyntheticBatch(self.generator(self.z), self.targets)


class MetaGenerator(Synthesizer):
    """FastDFKD (Fang et al., AAAI 2022, Eq. 5-7): a meta-generator learns a common
    initialisation across rounds. Each round copies it into a fast generator, adapts the copy
    and fresh latents ``z`` (Adam ``lr`` / ``lr_z``), then moves the meta-generator:
    first-order MAML (``meta_update: maml``, the released scripts: the fast gradients summed
    over the round) or REPTILE (``reptile``: ``(meta - fast) * reptile_scale``), one Adam step
    with ``lr * steps_per_round``. ``reset_l0`` re-draws the generator's first layer (and first
    BN, as the released fix does) once, at the first round of epoch ``reset_l0_epoch`` (counted
    from 0). The default 139 is the release's: it resets at its ``(120 + warmup)``-th round,
    counted from 1, with warmup 20 and one round per epoch.

    The meta step matches the release's FOMAML: the release adds each inner step's gradient to
    the meta-gradient and steps the meta optimizer right after the last one is added (before
    the last inner update, which changes only the discarded fast copy); here the meta step
    follows the round. Both sum the same ``g_steps`` gradients, so the meta updates are equal.
    The meta-generator is per DDP rank.
    """

    summary = "a meta-learned generator adapted a few steps per round (FastDFKD)"

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        lr: float = 4e-3,
        lr_z: float = 0.01,
        betas: tuple[float, float] = (0.5, 0.999),
        meta_update: Literal["maml", "reptile"] = "maml",
        reptile_scale: float = FAST_DATAFREE_REPTILE_SCALE,
        reset_l0: bool = True,
        reset_l0_epoch: int = 139,
    ) -> None:
        super().__init__()
        if meta_update not in ("maml", "reptile"):
            raise ConfigError(f"meta_update must be 'maml' or 'reptile', got {meta_update!r}")
        self.nz, self.ngf = nz, ngf
        self.lr, self.lr_z, self.betas = lr, lr_z, tuple(betas)
        self.meta_update, self.reptile_scale = meta_update, reptile_scale
        self.reset_l0, self.reset_l0_epoch = reset_l0, reset_l0_epoch
        self.l0_was_reset = False
        self.generator: Generator | None = None
        self.fast_generator: Generator | None = None
        self.z: nn.Parameter | None = None
        self.targets: torch.Tensor | None = None
        self._fast: torch.optim.Optimizer | None = None
        self._meta: torch.optim.Optimizer | None = None

    def bind(self, spec: SampleSpec) -> None:
        super().bind(spec)
        self.generator = _build_generator(spec, self.nz, self.ngf, "sigmoid")
        self.fast_generator = self.generator.clone()
        self.z = nn.Parameter(torch.randn(spec.batch_size, self.nz))

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.generator is not None and self.fast_generator is not None
        groups: list[dict[str, Any]] = [
            {"params": list(self.fast_generator.parameters())},
            {"params": [self.z], "lr": self.lr_z},
        ]
        if extra_parameters:
            groups.append({"params": list(extra_parameters)})
        self._fast = torch.optim.Adam(groups, lr=self.lr, betas=self.betas)
        steps = max(self.bound_spec().steps_per_round, 1)
        self._meta = torch.optim.Adam(
            self.generator.parameters(), lr=self.lr * steps, betas=self.betas
        )
        return [self._fast, self._meta]

    def begin_round(self, epoch: int = 0) -> None:
        assert self.generator is not None and self.fast_generator is not None
        assert self.z is not None
        self.targets = random_targets(len(self.z), self.bound_spec().num_classes, self.device)
        if self.reset_l0 and not self.l0_was_reset and epoch >= self.reset_l0_epoch:
            reset_first_layer(self.generator)
            self.l0_was_reset = True
        self.fast_generator.load_state_dict(self.generator.state_dict())
        with torch.no_grad():
            self.z.normal_()
        if self._fast is not None and self._meta is not None:
            self._fast.state.clear()
            self._meta.zero_grad(set_to_none=True)

    def render(self, n: int | None = None) -> SyntheticBatch:
        assert self.fast_generator is not None
        return SyntheticBatch(self.fast_generator(self.z), self.targets)

    def after_step(self) -> None:
        """First-order MAML: add the fast gradients to the meta gradients, unless one is
        non-finite (a skipped fp16 step); decided on the device, without a host sync."""
        if self.meta_update != "maml":
            return
        assert self.generator is not None and self.fast_generator is not None
        pairs = [
            (meta, fast.grad)
            for meta, fast in zip(
                self.generator.parameters(), self.fast_generator.parameters(), strict=True
            )
            if fast.grad is not None
        ]
        if not pairs:
            return
        finite = torch.stack([torch.isfinite(grad).all() for _, grad in pairs]).all()
        with torch.no_grad():
            for meta, grad in pairs:
                if meta.grad is None:
                    meta.grad = torch.zeros_like(meta)
                meta.grad.add_(torch.where(finite, grad.to(meta.grad.dtype), 0.0))

    def end_round(self, best: SyntheticBatch) -> None:
        assert self.generator is not None and self.fast_generator is not None
        if self.meta_update == "reptile":
            reptile_meta_gradient(self.generator, self.fast_generator, self.reptile_scale)
        # Meta gradients are computed, not back-propagated: step the raw optimizer so that no
        # loss scaler (16-mixed) unscales them.
        if self._meta is not None:
            self._meta.step()
            self._meta.zero_grad(set_to_none=True)

    def rank_state(self) -> dict[str, Any]:
        return {"l0_was_reset": self.l0_was_reset}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        self.l0_was_reset = bool(state.get("l0_was_reset", False))


#: The extra of a conditional generator's batch holding each sample's latent ``z``.
LATENT = "latent"
Conditioning = Literal["product", "concat"]
TargetDraw = Literal["balanced", "uniform"]


def balanced_targets(n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """``n`` class targets in equal counts: ``(i + s) mod C`` for ``i < n`` and a random start
    ``s``, so every class appears ``n // C`` or ``n // C + 1`` times (exactly ``n / C`` when
    ``C`` divides ``n``) and no class is favoured across batches."""
    start = torch.randint(0, num_classes, (), device=device)
    return (torch.arange(n, device=device) + start) % num_classes


class ConditionalGenerator(PersistentGenerator):
    """A class-conditional generator ``G(z, y)`` kept across the run (DE-DFKD's, Liu et al.
    2024): the target ``y`` passes through a learned embedding that multiplies the latent
    (``conditioning: product``, ``embedding_dim = nz``; the ACGAN/CGAN generator's input) or is
    concatenated to it (``concat``, any ``embedding_dim``), then the DCGAN generator body.
    Targets are class-balanced by construction (``targets: balanced``, equal counts per class,
    :func:`balanced_targets`) or drawn uniformly (``uniform``); they travel with the samples,
    and each sample's latent travels as the extra :data:`LATENT` (for the mode-seeking term).
    The embedding starts as ``nn.Embedding``'s N(0, 1), so the classes differ from the first
    step. The rest is :class:`PersistentGenerator`'s (Adam ``lr``, ``betas``, ``output``)."""

    summary = "a class-conditional generator G(z, y) with class-balanced batches (DE-DFKD)"

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        output: GeneratorOutput = "sigmoid",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        conditioning: Conditioning = "product",
        embedding_dim: int | None = None,
        targets: TargetDraw = "balanced",
    ) -> None:
        super().__init__(nz=nz, ngf=ngf, output=output, lr=lr, betas=betas)
        if conditioning not in ("product", "concat"):
            raise ConfigError(f"conditioning must be 'product' or 'concat', got {conditioning!r}")
        if targets not in ("balanced", "uniform"):
            raise ConfigError(f"targets must be 'balanced' or 'uniform', got {targets!r}")
        embedding_dim = nz if embedding_dim is None else embedding_dim
        if embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if conditioning == "product" and embedding_dim != nz:
            raise ConfigError(
                f"conditioning: product multiplies z by the label embedding, so embedding_dim "
                f"must equal nz ({nz}), got {embedding_dim}; use conditioning: concat for "
                "another size"
            )
        self.conditioning, self.embedding_dim, self.target_draw = (
            conditioning,
            embedding_dim,
            targets,
        )
        self.embedding: nn.Embedding | None = None
        self._last_targets: torch.Tensor | None = None

    def bind(self, spec: SampleSpec) -> None:
        if spec.num_classes < 1:
            raise ConfigError("a class-conditional generator needs classes (num_classes >= 1)")
        super().bind(spec)
        self.embedding = nn.Embedding(spec.num_classes, self.embedding_dim)

    def input_width(self) -> int:
        return self.nz if self.conditioning == "product" else self.nz + self.embedding_dim

    def configure_optimizers(
        self, extra_parameters: Sequence[nn.Parameter] = ()
    ) -> list[torch.optim.Optimizer]:
        assert self.generator is not None and self.embedding is not None
        params = [*self.generator.parameters(), *self.embedding.parameters()]
        return [_adam(params, extra_parameters, self.lr, self.betas)]

    def generator_input(self, z: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The generator body's input: ``z * e(y)`` or ``[z, e(y)]``."""
        assert self.embedding is not None
        label = self.embedding(targets)
        return z * label if self.conditioning == "product" else torch.cat([z, label], dim=1)

    def conditioned(self, z: torch.Tensor, targets: torch.Tensor) -> SyntheticBatch:
        """``G(z, y)`` with the targets and latents attached."""
        images = self.images(self.generator_input(z, targets))
        return SyntheticBatch(images, targets, {LATENT: z})

    def draw_targets(self, n: int) -> torch.Tensor:
        classes = self.bound_spec().num_classes
        if self.target_draw == "balanced":
            return balanced_targets(n, classes, self.device)
        return torch.randint(0, classes, (n,), device=self.device)

    def render(self, n: int | None = None) -> SyntheticBatch:
        n = n or self.bound_spec().batch_size
        targets = self.draw_targets(n)
        z = torch.randn(n, self.nz, device=self.device)
        self._last_z, self._last_targets = z, targets
        return self.conditioned(z, targets)

    def render_last(self) -> SyntheticBatch:
        if self._last_z is None or self._last_targets is None:
            raise RuntimeError("render_last() before any render()")
        with torch.no_grad():
            return self.conditioned(self._last_z, self._last_targets)
