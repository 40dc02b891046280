"""A frozen pretrained diffusion model steered by the teacher (DiffDFKD; DDA's variations)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SOURCE, SOURCE_INDEX, SyntheticBatch
from dfkd_lightning.synthesis.diffusion.cutmix import CutMixMode, LatentCutMix
from dfkd_lightning.synthesis.diffusion.denoisers import to_images
from dfkd_lightning.synthesis.diffusion.guidance import GuidanceSettings, guided_sample
from dfkd_lightning.synthesis.diffusion.loading import (
    SchedulerName,
    build_scheduler,
    load_denoiser,
)
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer, random_targets
from dfkd_lightning.synthesis.synthesizers.generators import balanced_targets

__all__ = ["DiffusionSynthesizer"]


class DiffusionSynthesizer(Synthesizer):
    """A pretrained diffusers model (``pretrained``: a hub id or a ``save_pretrained``
    directory) whose denoising the method's synthesis loss steers (DiffDFKD, Qi et al. 2025):
    a latent text-to-image pipeline (Stable Diffusion: ``prompt``, ``{class}`` replaced from
    ``class_names``, classifier-free ``guidance_scale``) or a pixel-space ``UNet2DModel``
    (a ``DDPMPipeline``, e.g. the digits prior). Frozen, in its own ``dtype``, out of
    checkpoints and DDP.

    An image-variations pipeline (``StableDiffusionImageVariationPipeline``, e.g.
    lambdalabs/sd-image-variations-diffusers; its card uses ``guidance_scale: 3`` and 25 steps)
    conditions on the CLIP image embedding of a source image (resized to the encoder's 224 px
    input and normalised in torch), guided against a zero embedding: it only makes
    :meth:`vary` variations, so it belongs in the ``DiffusionVariations`` callback; generating
    from targets alone (a method's synthesizer) stops with an error.

    Each sample runs ``num_inference_steps`` of the ``ddpm`` (the paper's) or ``ddim``
    scheduler; at every step the synthesis loss of the decoded predicted clean sample moves
    the latents by ``guidance_step`` (eta, 1 in the release) times its gradient
    (:func:`~dfkd_lightning.synthesis.diffusion.guidance.guided_sample`); ``guidance_step: 0``
    samples without guidance. ``x0_gradients: false`` is the release's bug (z0 under
    ``no_grad``: nothing reaches the latents), kept to show what it breaks.

    Latent CutMix (``cutmix``: ``same_class``, the paper's, or ``cross_class`` with mixed soft
    targets; ``none`` by default as in every release script) mixes the latents every
    ``cutmix_every`` steps (N/5 when null) with ``lam ~ Beta(cutmix_alpha, cutmix_alpha)``.
    ``save_x0``: also keep the decoded z0 at steps N/5, 2N/5, 3N/5, 4N/5 as samples (the
    release's option; off). Targets are class-balanced (``targets: balanced``) or uniform.
    ``micro_batch_size`` images denoise together (all when null);
    ``gradient_checkpointing`` trades compute for memory in the UNet and VAE.
    ``local_files_only`` never asks the hub. A missing model stops the run with an error that
    names the directory and how to get it (the config that trains it, for the digits prior).
    """

    summary = "a frozen diffusion model steered by the teacher's loss (DiffDFKD)"
    pools = True
    frozen_pretrained = True

    def __init__(
        self,
        pretrained: str,
        scheduler: SchedulerName = "ddpm",
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        prompt: str = "A realistic photo.",
        class_names: Sequence[str] | None = None,
        guidance_step: float = 1.0,
        x0_gradients: bool = True,
        cutmix: CutMixMode = "none",
        cutmix_every: int | None = None,
        cutmix_alpha: float = 1.0,
        save_x0: bool = False,
        targets: Literal["balanced", "uniform"] = "balanced",
        micro_batch_size: int | None = None,
        gradient_checkpointing: bool = False,
        dtype: Literal["float32", "float16", "bfloat16"] = "float32",
        local_files_only: bool = False,
    ) -> None:
        super().__init__()
        if num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1 or null, got {micro_batch_size}")
        if targets not in ("balanced", "uniform"):
            raise ConfigError(f"targets must be balanced or uniform, got {targets!r}")
        steps = num_inference_steps
        self.settings = GuidanceSettings(
            steps=steps,
            eta=float(guidance_step),
            x0_gradients=x0_gradients,
            cutmix=LatentCutMix(cutmix, cutmix_every, cutmix_alpha),
            save_x0_at=tuple(k * steps // 5 for k in range(1, 5)) if save_x0 else (),
        )
        self.pretrained, self.targets = pretrained, targets
        self.micro_batch_size = micro_batch_size
        self.denoiser, scheduler_config = load_denoiser(
            pretrained,
            dtype=dtype,
            local_files_only=local_files_only,
            prompt=prompt,
            class_names=class_names,
            guidance_scale=guidance_scale,
        )
        self.scheduler = build_scheduler(scheduler, scheduler_config)
        if gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()
        self.loss_fn: Callable[[SyntheticBatch], torch.Tensor] | None = None

    def description(self) -> dict[str, Any]:
        """What decides the samples (recorded with a generated set)."""
        settings = self.settings
        return {
            "pretrained": self.pretrained,
            "scheduler": type(self.scheduler).__name__,
            "steps": settings.steps,
            "guidance_step": settings.eta,
            "x0_gradients": settings.x0_gradients,
            "cutmix": [settings.cutmix.mode, settings.cutmix.every, settings.cutmix.alpha],
            "save_x0_at": list(settings.save_x0_at),
            "prompt": getattr(self.denoiser, "prompt", None),
            "guidance_scale": getattr(self.denoiser, "guidance_scale", None),
            "dtype": str(self.denoiser.dtype).removeprefix("torch."),
        }

    # ----------------------------------------------------------------- the protocol
    def bind(self, spec: SampleSpec) -> None:
        if len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
            raise ConfigError(
                f"the diffusion synthesizer makes images of 1 or 3 channels, but the method "
                f"needs samples of shape {spec.shape}"
            )
        super().bind(spec)

    def attach(self, synthesis_loss: Callable[[SyntheticBatch], torch.Tensor]) -> None:
        self.loss_fn = synthesis_loss

    def draw_targets(self, n: int) -> torch.Tensor:
        classes = self.bound_spec().num_classes
        if classes < 1:
            raise ConfigError("the diffusion synthesizer aims at classes: num_classes must be > 0")
        if self.targets == "balanced":
            return balanced_targets(n, classes, self.device).sort().values
        targets = random_targets(n, classes, self.device)
        assert targets is not None
        return targets

    def render(self, n: int | None = None) -> SyntheticBatch:
        """``n`` guided samples (``synthesis_batch_size`` when None), sorted by target."""
        return self.generate(self.draw_targets(n or self.bound_spec().batch_size))

    def vary(
        self, images: torch.Tensor, targets: torch.Tensor, copies: int = 1, strength: float = 0.5
    ) -> SyntheticBatch:
        """``copies`` image-to-image variations of each of ``images`` (in [0, 1]; SDEdit at
        ``strength``: 0 keeps the image, 1 starts from pure noise), aimed at the source's
        target (guided like generation unless ``guidance_step`` is 0), image after image; an
        image-variations model is also conditioned on the source's CLIP embedding (at strength
        1 that is all it keeps, as its pipeline does). Each carries its source image (extra
        ``SOURCE``) and the source's index (``SOURCE_INDEX``).
        """
        if copies < 1 or not 0.0 < strength <= 1.0:
            raise ConfigError(
                f"copies must be >= 1 and strength in (0, 1], got {copies}, {strength}"
            )
        sources = images.to(self.device).repeat_interleave(copies, dim=0)
        aims = targets.to(self.device).repeat_interleave(copies)
        index = torch.arange(len(images), device=self.device).repeat_interleave(copies)
        varied = self._denoise(aims, sources, strength)
        shape = self.bound_spec().shape
        return varied.with_extras(**{SOURCE: to_images(sources, shape), SOURCE_INDEX: index})

    def generate(self, targets: torch.Tensor) -> SyntheticBatch:
        """Samples aimed at ``targets`` (in micro-batches), without autograd history."""
        return self._denoise(targets)

    def _denoise(
        self, targets: torch.Tensor, sources: torch.Tensor | None = None, strength: float = 1.0
    ) -> SyntheticBatch:
        """Guided sampling for ``targets`` in micro-batches, from noise or, image to image,
        from ``sources`` (one per target; their latents below ``strength`` 1, and the
        conditioning of an image-variations model)."""
        spec = self.bound_spec()
        size = self.micro_batch_size or len(targets)
        batches = []
        for first in range(0, len(targets), size):
            chunk = None if sources is None else sources[first : first + size]
            start = None
            if chunk is not None and strength < 1.0:
                with torch.no_grad():
                    start = self.denoiser.encode(chunk)
            batches.append(
                guided_sample(
                    self.denoiser,
                    self.scheduler,
                    targets[first : first + size].to(self.device),
                    spec.num_classes,
                    spec.shape,
                    self.loss_fn,
                    self.settings,
                    start_from=start,
                    strength=strength,
                    sources=chunk,
                )
            )
        return SyntheticBatch.cat(batches).detach()
