"""A small pixel-space diffusion prior trained with DDPM on unlabelled images (the offline
stand-in for a pretrained diffusion model on digits)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from dfkd_lightning.data.specs import denormalize
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.optim import build_optimization

if TYPE_CHECKING:
    from diffusers import DDPMPipeline

__all__ = ["DiffusionPriorTraining"]


def adamw_default(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


class DiffusionPriorTraining(L.LightningModule):
    """DDPM training (Ho et al., 2020, Eq. 14: ``||eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t)
    eps, t)||^2``) of a diffusers ``UNet2DModel`` on the training images, resized (with
    antialiasing) to ``sample_size`` and scaled to [-1, 1]. The labels are not used, except to
    keep only ``classes`` (a prior that has never seen the other classes). At the end of fit
    the UNet and its ``DDPMScheduler`` are written with ``save_pretrained`` as a
    ``DDPMPipeline`` directory (``save_dir``, default ``<log dir>/prior``), which diffusers'
    ``from_pretrained`` reads like any pretrained model.

    The UNet: ``block_out_channels`` levels, ``layers_per_block`` ResNet blocks each,
    self-attention at the lowest resolution; ``num_train_timesteps`` DDPM steps with a
    linear beta schedule.
    """

    def __init__(
        self,
        sample_size: int = 16,
        block_out_channels: Sequence[int] = (32, 64),
        layers_per_block: int = 1,
        num_train_timesteps: int = 1000,
        classes: Sequence[int] | None = None,
        save_dir: str | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        record_hyperparameters(self)
        levels = len(block_out_channels)
        if sample_size < 1 or sample_size % (2 ** (levels - 1)) != 0:
            raise ConfigError(
                f"sample_size {sample_size} must be divisible by 2^(levels - 1) = "
                f"{2 ** (levels - 1)} for {levels} UNet levels"
            )
        if classes is not None and not all(0 <= c < num_classes for c in classes):
            raise ConfigError(f"classes must lie in [0, {num_classes}), got {list(classes)}")
        channels = input_shape[0]
        from diffusers import DDPMScheduler, UNet2DModel  # here: diffusers loads slowly

        self.unet = UNet2DModel(
            sample_size=sample_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            norm_num_groups=min(8, *block_out_channels),
        )
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
        self.sample_size = sample_size
        self.classes = None if classes is None else torch.tensor(list(classes))
        self.save_dir = save_dir
        self.mean, self.std = tuple(mean), tuple(std)
        self.optimizer, self.scheduler = optimizer, scheduler

    def clean_images(self, inputs: torch.Tensor) -> torch.Tensor:
        """Network inputs (normalised) -> images in [-1, 1] at ``sample_size``."""
        images = denormalize(inputs.float(), self.mean, self.std).clamp(0.0, 1.0)
        if images.shape[-1] != self.sample_size:
            size = [self.sample_size, self.sample_size]
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
        return images * 2.0 - 1.0

    def denoising_loss(self, clean: torch.Tensor) -> torch.Tensor:
        """Ho et al. Eq. 14 for one batch of clean images in [-1, 1]."""
        noise = torch.randn_like(clean)
        steps = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (len(clean),), device=clean.device)
        noisy = self.noise_scheduler.add_noise(clean, noise, t)
        return F.mse_loss(self.unet(noisy, t).sample.float(), noise.float())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        inputs, labels = batch
        if self.classes is not None:
            keep = torch.isin(labels, self.classes.to(labels.device))
            inputs = inputs[keep]
            if len(inputs) == 0:
                return None
        loss = self.denoising_loss(self.clean_images(inputs))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.denoising_loss(self.clean_images(batch[0])))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("test/loss", self.denoising_loss(self.clean_images(batch[0])))

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimization(
            self.unet.parameters(), self.optimizer or adamw_default, self.scheduler
        )

    def pipeline(self) -> DDPMPipeline:
        """The prior as a diffusers pipeline (the trained UNet and its scheduler)."""
        from diffusers import DDPMPipeline

        return DDPMPipeline(unet=self.unet, scheduler=self.noise_scheduler)

    def output_dir(self) -> Path:
        if self.save_dir is not None:
            return Path(self.save_dir)
        log_dir = self.trainer.log_dir if self._trainer is not None else None
        return Path(log_dir or ".") / "prior"

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.pipeline().save_pretrained(self.output_dir())
