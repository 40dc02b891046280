"""The teacher-guided denoising loop of DiffDFKD (Qi et al. 2025; FedCADO's classifier
guidance on the predicted clean sample).

At every step t of the scheduler: the denoiser's output for ``z_t``; the predicted clean
latent ``z0 = (z_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` (``a_t`` the cumulative alpha; the
v- and sample-parameterisations likewise), computed **with gradients through the UNet**;
the images ``decode(z0)`` at the teacher's resolution; the method's synthesis loss
``L_inv`` of them; ``z_t <- z_t - eta * grad L_inv``; then the scheduler's step from the
updated ``z_t`` with the same denoiser output. Latent CutMix mixes the latents before the
steps it is due at.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dfkd_lightning.synthesis.batch import SOFT_TARGETS, SyntheticBatch
from dfkd_lightning.synthesis.diffusion.cutmix import LatentCutMix
from dfkd_lightning.synthesis.diffusion.denoisers import Denoiser, to_images

__all__ = ["GuidanceSettings", "guided_sample", "predicted_clean"]


@dataclass(frozen=True)
class GuidanceSettings:
    """``steps`` denoising steps; ``eta`` the guidance step on the latents (0: unguided
    sampling); ``x0_gradients`` False reproduces the release's bug (z0 under ``no_grad``: the
    loss is computed and nothing reaches the latents); ``cutmix``; ``save_x0_at``: the steps
    whose decoded z0 are kept as extra samples (the release's N/5, ..., 4N/5 option)."""

    steps: int = 50
    eta: float = 1.0
    x0_gradients: bool = True
    cutmix: LatentCutMix = field(default_factory=LatentCutMix)
    save_x0_at: tuple[int, ...] = ()


def predicted_clean(
    output: torch.Tensor, latents: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The clean sample the denoiser predicts (DDPM Eq. 15 for ``epsilon``; ``v_prediction``:
    ``sqrt(a) z - sqrt(1 - a) v``; ``sample``: the output itself)."""
    if prediction_type == "epsilon":
        return (latents - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * latents - (1 - alpha_bar).sqrt() * output
    if prediction_type == "sample":
        return output
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def _denoise(
    denoiser: Denoiser,
    scheduler: Any,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    conditioning: Any,
    decode: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The denoiser's output at ``timestep`` and, when ``decode``, the decoded predicted clean
    sample (differentiable in ``latents`` when grad mode is on)."""
    model_input = scheduler.scale_model_input(latents, timestep)  # the identity for DDPM/DDIM
    output = denoiser.predict(model_input, timestep, conditioning)
    if not decode:
        return output, None
    alpha_bar = scheduler.alphas_cumprod.to(latents.device)[timestep]
    clean = predicted_clean(output, latents, alpha_bar, scheduler.config.prediction_type)
    return output, denoiser.decode(clean)


def guided_sample(
    denoiser: Denoiser,
    scheduler: Any,
    targets: torch.Tensor,
    num_classes: int,
    shape: tuple[int, ...],
    loss_fn: Callable[[SyntheticBatch], torch.Tensor] | None,
    settings: GuidanceSettings,
    start_from: torch.Tensor | None = None,
    strength: float = 1.0,
    sources: torch.Tensor | None = None,
) -> SyntheticBatch:
    """A batch for ``targets`` from fresh noise (the global RNG): the final samples, then the
    saved intermediate z0 (``settings.save_x0_at``), with their targets (the class with the
    largest share after cross-class CutMix) and, when CutMix mixes classes, ``SOFT_TARGETS``.

    ``start_from`` (clean latents, :meth:`Denoiser.encode`): image-to-image (SDEdit, Meng et
    al. 2022): the latents are noised to the step ``strength`` of the way back (1: pure noise)
    and denoised from there, so the result keeps the source's layout. ``sources`` (images in
    [0, 1], one per target): what an image-variations model is conditioned on
    (:meth:`Denoiser.prepare`)."""
    n = len(targets)
    scheduler.set_timesteps(settings.steps)
    noise = torch.randn(n, *denoiser.latent_shape).to(denoiser.unet.device)
    latents = noise * scheduler.init_noise_sigma
    first = 0
    if start_from is not None:
        first = settings.steps - max(min(int(settings.steps * strength), settings.steps), 1)
        latents = scheduler.add_noise(start_from, noise, scheduler.timesteps[first : first + 1])
    soft = F.one_hot(targets, num_classes).float() if num_classes > 0 else None
    mixes_classes = soft is not None and settings.cutmix.mode == "cross_class"
    conditioning = denoiser.prepare(targets, sources)
    guided = loss_fn is not None and settings.eta != 0
    saved: list[SyntheticBatch] = []

    def batch_of(images: torch.Tensor) -> SyntheticBatch:
        extras = {SOFT_TARGETS: soft} if mixes_classes and soft is not None else {}
        return SyntheticBatch(to_images(images, shape), targets, extras)

    for step, timestep in enumerate(scheduler.timesteps[first:], start=first):
        if soft is not None and settings.cutmix.due(step, settings.steps):
            latents, soft = settings.cutmix(latents, targets, soft)
            if mixes_classes:
                targets = soft.argmax(1)
        keep = step in settings.save_x0_at
        if guided:
            assert loss_fn is not None
            with torch.enable_grad():
                leaf = latents.detach().requires_grad_(settings.x0_gradients)
                graph = nullcontext() if settings.x0_gradients else torch.no_grad()
                with graph:  # the release's bug computes this under no_grad
                    output, images = _denoise(
                        denoiser, scheduler, leaf, timestep, conditioning, decode=True
                    )
                assert images is not None
                loss = loss_fn(batch_of(images))
                if settings.x0_gradients:
                    # x n: the step per image is the same whatever the micro-batch size
                    (grad,) = torch.autograd.grad(loss * n, leaf)
                    latents = latents - settings.eta * grad.to(latents.dtype)
        else:
            with torch.no_grad():
                output, images = _denoise(
                    denoiser, scheduler, latents, timestep, conditioning, decode=keep
                )
        if keep and images is not None:
            saved.append(batch_of(images.detach()).detach())
        latents = scheduler.step(output.detach(), timestep, latents.detach()).prev_sample
    with torch.no_grad():
        final = batch_of(denoiser.decode(latents)).detach()
    return SyntheticBatch.cat([final, *saved]) if saved else final
