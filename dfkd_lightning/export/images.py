"""Image tensors for export: storage dtypes, quantisation, resizing, chunked iteration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.pool import Storage, SyntheticPool

__all__ = [
    "DTYPES",
    "Storage",
    "chunks",
    "image_shape",
    "quantize",
    "resize_images",
    "storage_of",
    "to_float",
    "to_storage",
]

#: The storage dtypes of a pool (:data:`~dfkd_lightning.synthesis.pool.Storage`) by name.
DTYPES: dict[str, torch.dtype] = {
    "uint8": torch.uint8,
    "float16": torch.float16,
    "float32": torch.float32,
}


def resize_images(images: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` float images to ``size`` (antialiased when
    shrinking); the same tensor when the size already matches."""
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(images.shape[-2:]) == hw:
        return images
    shrink = hw[0] < images.shape[-2] or hw[1] < images.shape[-1]
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False, antialias=shrink)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8 ``round(x * 255)`` (uint8 input as it is)."""
    if images.dtype == torch.uint8:
        return images
    return images.float().clamp(0, 1).mul(255).round_().to(torch.uint8)


def to_storage(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Images (float in [0, 1] or uint8 0..255) in the storage ``dtype``, as a new CPU tensor."""
    images = images.detach().cpu()
    if dtype == torch.uint8:
        return quantize(images).clone()
    if images.dtype == torch.uint8:
        return images.to(dtype).div_(255)
    return images.to(dtype, copy=True)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Stored images -> float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255)
    return images.to(torch.float32)


def storage_of(source: SyntheticPool | torch.Tensor, storage: Storage | None) -> str:
    if storage is not None:
        if storage not in DTYPES:
            raise ConfigError(f"storage must be one of {sorted(DTYPES)}, got {storage!r}")
        return storage
    if isinstance(source, SyntheticPool):
        return source.storage
    names = {dtype: name for name, dtype in DTYPES.items()}
    return names.get(source.dtype, "float32")


def chunks(source: SyntheticPool | torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """The source's images in order, ``size`` at a time (pools: float32 in [0, 1])."""
    if isinstance(source, SyntheticPool):
        yield from source.iter_images(size, device="cpu")
        return
    for start in range(0, source.shape[0], size):
        yield source[start : start + size]


def image_shape(source: SyntheticPool | torch.Tensor) -> tuple[int, ...]:
    if isinstance(source, SyntheticPool):
        if source.image_shape is None:
            return ()
        return tuple(source.image_shape)
    return tuple(source.shape[1:])
