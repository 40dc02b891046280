"""Batched on-device augmentation of synthesized images, with per-image random parameters.

``torchvision.transforms.v2`` applied to a batch tensor draws one set of parameters for the whole
batch. DeepInversion's successors (CMI, Fast-Datafree) augment every synthesized image on its own
(a dataset-style ``RandomCrop`` / ``RandomResizedCrop`` / ``RandomHorizontalFlip`` per image).
:class:`BatchAugment` does that for a whole ``(N, C, H, W)`` batch in a few batched ops, without
a Python loop over the images, and differentiably so the synthesizer can backpropagate through it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from dfkd_lightning.errors import ConfigError

__all__ = ["BatchAugment", "crop_boxes", "random_jitter"]


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.randint(high, shape, generator=generator, device=device)


def crop_boxes(
    images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Crop box ``boxes[i] = (x1, y1, x2, y2)`` (pixel edges) of image ``i`` and resize it
    bilinearly to ``size`` (default: the input size), all images in one ``roi_align`` call.

    With ``aligned=True`` output pixel ``j`` samples the input at ``x1 + (j + 0.5) * (x2 - x1) /
    W - 0.5``, torchvision's ``resize(..., antialias=False)`` convention (``align_corners=False``);
    for an integer box of exactly the output size this is ``x1 + j``, so the crop is pixel-exact.
    Near the box edges the interpolation uses the real neighbouring pixels instead of clamping.
    Half / bfloat16 inputs are computed in float32; the result has the input dtype.
    """
    n, _, h, w = images.shape
    size = (h, w) if size is None else size
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    index = torch.arange(n, device=images.device, dtype=work.dtype)[:, None]
    rois = torch.cat([index, boxes.to(device=images.device, dtype=work.dtype)], dim=1)
    with torch.autocast(images.device.type, enabled=False):
        out = roi_align(work, rois, size, spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return out.to(images.dtype)


class BatchAugment(nn.Module):
    """Per-image random augmentation of a ``(N, C, H, W)`` batch.

    Args:
        crop_padding: if > 0 (and no ``resized_crop_scale``), a random crop of the original size
            out of the image padded by ``crop_padding`` on every side, like CIFAR's
            ``RandomCrop(32, padding=4)``. Pixel-exact (a gather of padded pixels).
        flip: horizontal flip with probability 0.5.
        resized_crop_scale: if set, ``RandomResizedCrop(size=(H, W), scale, ratio)`` instead of
            the padded crop (CMI's local view uses ``(0.25, 1.0)``); bilinear, via ``roi_align``.
        resized_crop_ratio: aspect-ratio range of the resized crop.
        padding_mode: ``"constant"`` (zeros) or ``"reflect"`` padding for the padded crop.

    Every image draws its own crop and flip. Parameters come from ``generator`` (drawn on its
    device) or the global RNG of the images' device. Differentiable with respect to the images;
    the output has the input's dtype (also under ``torch.autocast``).
    """

    def __init__(
        self,
        crop_padding: int = 4,
        flip: bool = True,
        resized_crop_scale: tuple[float, float] | None = None,
        resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        padding_mode: Literal["constant", "reflect"] = "constant",
    ) -> None:
        super().__init__()
        if crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {crop_padding}")
        if padding_mode not in ("constant", "reflect"):
            raise ConfigError(f"padding_mode must be 'constant' or 'reflect', got {padding_mode!r}")
        if resized_crop_scale is not None:
            low, high = resized_crop_scale
            if not 0 < low <= high:
                raise ConfigError(
                    f"resized_crop_scale must satisfy 0 < min <= max, got {low, high}"
                )
        if not 0 < resized_crop_ratio[0] <= resized_crop_ratio[1]:
            raise ConfigError(
                f"resized_crop_ratio must satisfy 0 < min <= max: {resized_crop_ratio}"
            )
        self.crop_padding = int(crop_padding)
        self.flip = flip
        self.resized_crop_scale = resized_crop_scale
        self.resized_crop_ratio = resized_crop_ratio
        self.padding_mode = padding_mode

    def extra_repr(self) -> str:
        if self.resized_crop_scale is not None:
            crop = f"resized_crop_scale={self.resized_crop_scale}, ratio={self.resized_crop_ratio}"
        else:
            crop = f"crop_padding={self.crop_padding}, padding_mode={self.padding_mode!r}"
        return f"{crop}, flip={self.flip}"

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Augment every image of ``images`` with its own random parameters."""
        if images.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
        n, _, h, w = images.shape
        if n == 0:
            return images
        device = generator.device if generator is not None else images.device
        if self.resized_crop_scale is not None:
            top, left, height, width = self.resized_crop_params(n, h, w, generator, device)
            boxes = torch.stack([left, top, left + width, top + height], dim=1)
            out = crop_boxes(images, boxes)
            if self.flip:
                flipped = _rand((n,), generator, device) < 0.5
                mask = flipped.to(images.device).view(n, 1, 1, 1)
                out = torch.where(mask, out.flip(-1), out)
            return out
        if self.crop_padding == 0 and not self.flip:
            return images
        return self._padded_crop_flip(images, generator, device)

    def _padded_crop_flip(
        self, images: torch.Tensor, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """Random padded crop and flip as one gather from the padded batch."""
        n, c, h, w = images.shape
        p = self.crop_padding
        offsets = _randint(2 * p + 1, (2, n), generator, device).to(images.device)
        flipped = (_rand((n,), generator, device) < 0.5).to(images.device)
        if p:
            images = F.pad(images, (p, p, p, p), mode=self.padding_mode)
        hp, wp = h + 2 * p, w + 2 * p
        rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (N, W)
        if self.flip:
            cols = torch.where(flipped[:, None], cols.flip(-1), cols)
        index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        return images.reshape(n, c, hp * wp).gather(2, index).view(n, c, h, w)

    def resized_crop_params(
        self,
        n: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``RandomResizedCrop.get_params`` for ``n`` images at once: integer tensors
        ``(top, left, crop_height, crop_width)`` of shape ``(n,)``.

        Like torchvision: up to 10 tries of area ``U(scale) * H * W`` and log-uniform aspect
        ratio, the first crop that fits wins, else the central crop of the clamped ratio.
        """
        assert self.resized_crop_scale is not None
        device = torch.device(device) if device is not None else torch.device("cpu")
        if generator is not None:
            device = generator.device
        tries = 10
        low, high = self.resized_crop_scale
        area = height * width * (low + (high - low) * _rand((n, tries), generator, device))
        log_low, log_high = (
            math.log(self.resized_crop_ratio[0]),
            math.log(self.resized_crop_ratio[1]),
        )
        aspect = torch.exp(log_low + (log_high - log_low) * _rand((n, tries), generator, device))
        crop_w = torch.round(torch.sqrt(area * aspect)).long()
        crop_h = torch.round(torch.sqrt(area / aspect)).long()
        ok = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
        first = ok.long().argmax(dim=1, keepdim=True)  # first fitting try (0 if none)
        crop_w = crop_w.gather(1, first).squeeze(1)
        crop_h = crop_h.gather(1, first).squeeze(1)
        # fallback: central crop with the aspect ratio clamped into the range
        in_ratio = width / height
        if in_ratio < self.resized_crop_ratio[0]:
            fallback_w, fallback_h = width, int(round(width / self.resized_crop_ratio[0]))
        elif in_ratio > self.resized_crop_ratio[1]:
            fallback_w, fallback_h = int(round(height * self.resized_crop_ratio[1])), height
        else:
            fallback_w, fallback_h = width, height
        found = ok.any(dim=1)
        crop_w = torch.where(found, crop_w, torch.full_like(crop_w, fallback_w))
        crop_h = torch.where(found, crop_h, torch.full_like(crop_h, fallback_h))
        u = _rand((2, n), generator, device)
        top = torch.floor(u[0] * (height - crop_h + 1)).long().clamp_(max=height - crop_h)
        left = torch.floor(u[1] * (width - crop_w + 1)).long().clamp_(max=width - crop_w)
        top = torch.where(found, top, (height - crop_h) // 2)
        left = torch.where(found, left, (width - crop_w) // 2)
        return top, left, crop_h, crop_w


def random_jitter(
    images: torch.Tensor,
    max_shift: int,
    generator: torch.Generator | None = None,
    *,
    flip: bool = True,
) -> torch.Tensor:
    """DeepInversion's jitter: roll the batch by ``(dy, dx)`` in ``[-max_shift, max_shift]``
    and, if ``flip``, flip it horizontally with probability 0.5.

    As in NVlabs' DeepInversion (``torch.roll(inputs, shifts=(off1, off2), dims=(2, 3))`` with
    Python-random offsets), ONE offset and one flip decision are drawn for the whole batch;
    rolled-out pixels wrap around. Use :class:`BatchAugment` for per-image parameters. The draws
    come from ``generator`` or the global CPU RNG (no device synchronisation).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator, device=device)
    coin = torch.rand((), generator=generator, device=device)
    dy, dx = draws.tolist()
    out = torch.roll(images, shifts=(dy, dx), dims=(-2, -1)) if max_shift else images
    if flip and coin.item() < 0.5:
        out = out.flip(-1)
    return out


class RandomJitter(nn.Module):
    """:func:`random_jitter` as a module (DeepInversion's view of the synthesized batch): one
    roll by up to ``max_shift`` pixels and one flip (``flip``) for the whole batch."""

    def __init__(self, max_shift: int = 2, flip: bool = True) -> None:
        super().__init__()
        if max_shift < 0:
            raise ConfigError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift, self.flip = int(max_shift), flip

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, flip={self.flip}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return random_jitter(images, self.max_shift, flip=self.flip)
