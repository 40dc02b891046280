"""Frozen diffusers denoisers behind one small interface: a pixel-space ``UNet2DModel`` (a
``DDPMPipeline`` directory, e.g. the digits prior), a latent text-to-image pipeline (Stable
Diffusion: UNet, VAE, tokenizer and text encoder) or a latent image-variations pipeline (the
UNet conditioned on the CLIP image embedding of a source image), both latent ones with
classifier-free guidance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = [
    "Denoiser",
    "ImageVariationDenoiser",
    "LatentDenoiser",
    "LatentTextDenoiser",
    "PixelDenoiser",
    "to_images",
]

#: Luma weights (ITU-R BT.601) for a one-channel teacher fed by an RGB model.
_LUMA = (0.299, 0.587, 0.114)


def to_images(images: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Decoded images at the teacher's ``(C, H, W)``: resized with antialiasing, RGB to luma
    for a one-channel teacher, gray repeated for a three-channel one."""
    channels, height, width = shape
    if images.shape[-2:] != (height, width):
        images = F.interpolate(
            images, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    if images.shape[1] == 3 and channels == 1:
        weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
        images = (images * weights).sum(1, keepdim=True)
    elif images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return images


class Denoiser(nn.Module):
    """``prepare(targets, sources)`` once per batch, then ``predict(z, t, conditioning)`` (the
    UNet's output for ``z`` at timestep ``t``, in the UNet's parameterisation) and
    ``decode(z0)`` (images in [0, 1], float32). The modules are frozen and kept in eval mode."""

    def __init__(self, unet: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.unet = unet
        self.dtype = dtype

    def freeze(self) -> Denoiser:
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Denoiser:
        return super().train(False)  # frozen: dropout off whatever the method's mode

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return int(config.in_channels), int(height), int(width)

    def prepare(self, targets: torch.Tensor, sources: torch.Tensor | None = None) -> Any:
        """The conditioning of a batch aimed at ``targets`` (None for an unconditional model);
        ``sources``: the images a batch of variations starts from (in [0, 1], one per target),
        the conditioning of an image-variations model and ignored by the others."""
        return None

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: Any):
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (any size, 1 or 3 channels) -> latents (the inverse of
        :meth:`decode`, for image-to-image variations)."""
        raise NotImplementedError

    def to_model_images(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``images`` in [-1, 1] at the model's pixel ``size`` and channel count."""
        return to_images(images.float(), (self.image_channels, *size)) * 2 - 1

    @property
    def image_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def enable_gradient_checkpointing(self) -> None:
        for module in self.children():
            if hasattr(module, "enable_gradient_checkpointing"):
                module.enable_gradient_checkpointing()


class PixelDenoiser(Denoiser):
    """A pixel-space ``UNet2DModel``: samples live in [-1, 1] (diffusers' convention)."""

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: Any):
        return self.unet(latents.to(self.dtype), timestep).sample.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents.float() / 2 + 0.5).clamp(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.to_model_images(images, self.latent_shape[1:])


class LatentDenoiser(Denoiser):
    """A ``UNet2DConditionModel`` on VAE latents conditioned through ``encoder_hidden_states``,
    with classifier-free guidance ``eps_u + s (eps_c - eps_u)`` when ``guidance_scale > 1``
    (the conditioning is then the unconditional half, then the conditional one)."""

    def __init__(
        self, unet: nn.Module, vae: nn.Module, dtype: torch.dtype, guidance_scale: float
    ) -> None:
        super().__init__(unet, dtype)
        self.vae = vae
        self.guidance_scale = float(guidance_scale)

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, conditioning: torch.Tensor):
        latents = latents.to(self.dtype)
        if self.guidance_scale <= 1.0:
            return self.unet(latents, timestep, encoder_hidden_states=conditioning).sample.float()
        both = self.unet(
            torch.cat([latents, latents]), timestep, encoder_hidden_states=conditioning
        ).sample.float()
        unconditional, conditional = both.chunk(2)
        return unconditional + self.guidance_scale * (conditional - unconditional)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        scaled = latents.to(self.dtype) / self.vae.config.scaling_factor
        return (self.vae.decode(scaled).sample.float() / 2 + 0.5).clamp(0, 1)

    @property
    def image_channels(self) -> int:
        return int(self.vae.config.in_channels)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The VAE posterior's mean, scaled (the latent img2img starts from)."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        _, height, width = self.latent_shape
        pixels = self.to_model_images(images, (height * factor, width * factor))
        posterior = self.vae.encode(pixels.to(self.dtype)).latent_dist
        return posterior.mean.float() * self.vae.config.scaling_factor


class LatentTextDenoiser(LatentDenoiser):
    """Stable Diffusion's parts: the UNet denoises VAE latents conditioned on the text
    encoder's embedding of ``prompt`` (``{class}`` in it is replaced by the target's name from
    ``class_names``), guided against the empty prompt."""

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        tokenizer: Any,
        dtype: torch.dtype,
        prompt: str,
        class_names: Sequence[str] | None,
        guidance_scale: float,
    ) -> None:
        super().__init__(unet, vae, dtype, guidance_scale)
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        if "{class}" in prompt and not class_names:
            raise ConfigError(
                f"the prompt {prompt!r} names the class ({{class}}) but class_names is not set; "
                "give class_names (one per class) or a prompt without {class}"
            )
        self.prompt, self.class_names = prompt, list(class_names or [])

    def prompts(self, targets: torch.Tensor) -> list[str]:
        if "{class}" not in self.prompt:
            return [self.prompt] * len(targets)
        return [self.prompt.replace("{class}", self.class_names[int(t)]) for t in targets.cpu()]

    def embed(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.unet.device)
        with torch.no_grad():
            return self.text_encoder(tokens)[0].to(self.dtype)

    def prepare(self, targets: torch.Tensor, sources: torch.Tensor | None = None) -> torch.Tensor:
        text = self.embed(self.prompts(targets))
        if self.guidance_scale <= 1.0:
            return text
        return torch.cat([self.embed([""] * len(targets)), text])


class ImageVariationDenoiser(LatentDenoiser):
    """Stable Diffusion image variations (``StableDiffusionImageVariationPipeline``, e.g.
    lambdalabs/sd-image-variations-diffusers): the UNet denoises VAE latents conditioned on the
    CLIP image embedding (``image_encoder``'s ``image_embeds``, one token) of the source image,
    guided against an all-zeros embedding. The source is resized in torch to the encoder's
    ``image_size`` (bicubic; ``antialias`` off, as the model card says the model was trained)
    and normalised with the feature extractor's ``image_mean`` and ``image_std``."""

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        image_encoder: nn.Module,
        dtype: torch.dtype,
        image_size: tuple[int, int],
        image_mean: Sequence[float],
        image_std: Sequence[float],
        guidance_scale: float,
        antialias: bool = False,
    ) -> None:
        super().__init__(unet, vae, dtype, guidance_scale)
        self.image_encoder = image_encoder
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.antialias = antialias
        self.register_buffer("image_mean", _channel_vector(image_mean), persistent=False)
        self.register_buffer("image_std", _channel_vector(image_std), persistent=False)

    def clip_pixels(self, sources: torch.Tensor) -> torch.Tensor:
        """``sources`` in [0, 1] (any size, 1 or 3 channels) as the image encoder's input."""
        pixels = sources.to(self.image_mean.device, torch.float32)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        if pixels.shape[-2:] != self.image_size:
            pixels = F.interpolate(
                pixels,
                size=self.image_size,
                mode="bicubic",
                align_corners=False,
                antialias=self.antialias,
            )
        return (pixels - self.image_mean) / self.image_std

    def embed(self, sources: torch.Tensor) -> torch.Tensor:
        """The CLIP image embeddings of ``sources``, ``(B, 1, projection_dim)``."""
        with torch.no_grad():
            output = self.image_encoder(self.clip_pixels(sources).to(self.dtype))
        return output.image_embeds.unsqueeze(1).to(self.dtype)

    def prepare(self, targets: torch.Tensor, sources: torch.Tensor | None = None) -> torch.Tensor:
        if sources is None:
            raise ConfigError(
                "an image-variations model makes variations of given images and cannot generate "
                "from targets alone: use it in the DiffusionVariations callback, not as a "
                "method's synthesizer (which needs a text-to-image or pixel-space model)"
            )
        embeddings = self.embed(sources)
        if self.guidance_scale <= 1.0:
            return embeddings
        return torch.cat([torch.zeros_like(embeddings), embeddings])


def _channel_vector(values: Sequence[float]) -> torch.Tensor:
    """Per-channel statistics as a ``(1, C, 1, 1)`` float32 tensor."""
    return torch.tensor([float(v) for v in values], dtype=torch.float32).view(1, -1, 1, 1)
