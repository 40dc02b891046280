"""Per-dataset facts (classes, sizes, normalisation constants, file layout) and tensor helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dfkd_lightning.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one image-classification dataset.

    ``mean``/``std`` are per native channel; grayscale datasets (``channels == 1``) may be
    replicated to 3 channels, in which case the constants are replicated too.
    """

    name: str
    num_classes: int
    channels: int
    native_size: int  # side of the images as stored
    image_size: int  # default side fed to the networks
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips are label-preserving
    crop_padding: int | None  # RandomCrop padding; None -> image_size // 8
    files: tuple[str, ...] = ()  # paths that must exist below ``root/<name>``
    in_memory: bool = False  # kept as a tensor dataset, needs no files
    url: str | None = None
    description: str = ""

    def padding_for(self, image_size: int) -> int:
        """RandomCrop padding used for an image side of ``image_size``."""
        return self.crop_padding if self.crop_padding is not None else image_size // 8


_CIFAR10_FILES = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + (
    "cifar-10-batches-py/test_batch",
    "cifar-10-batches-py/batches.meta",
)
_CIFAR100_FILES = (
    "cifar-100-python/train",
    "cifar-100-python/test",
    "cifar-100-python/meta",
)
_MNIST_FILES = (
    "MNIST/raw/train-images-idx3-ubyte",
    "MNIST/raw/train-labels-idx1-ubyte",
    "MNIST/raw/t10k-images-idx3-ubyte",
    "MNIST/raw/t10k-labels-idx1-ubyte",
)
_TINY_FILES = (
    "tiny-imagenet-200/wnids.txt",
    "tiny-imagenet-200/train",
    "tiny-imagenet-200/val/images",
    "tiny-imagenet-200/val/val_annotations.txt",
)

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        num_classes=10,
        channels=1,
        native_size=8,
        image_size=32,
        # Computed once from all 1797 images (values / 16, bilinear-resized to 32x32).
        mean=(0.3053,),
        std=(0.3236,),
        flip=False,
        crop_padding=2,
        in_memory=True,
        description="scikit-learn's bundled 8x8 handwritten digits (1797 images, offline)",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        num_classes=10,
        channels=1,
        native_size=28,
        image_size=32,
        mean=(0.1307,),
        std=(0.3081,),
        flip=False,
        crop_padding=2,
        files=_MNIST_FILES,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        description="MNIST handwritten digits (torchvision)",
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        num_classes=10,
        channels=3,
        native_size=32,
        image_size=32,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        flip=True,
        crop_padding=None,
        files=_CIFAR10_FILES,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        description="CIFAR-10 (torchvision)",
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        num_classes=100,
        channels=3,
        native_size=32,
        image_size=32,
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
        flip=True,
        crop_padding=None,
        files=_CIFAR100_FILES,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        description="CIFAR-100 (torchvision)",
    ),
    "tiny_imagenet": DatasetSpec(
        name="tiny_imagenet",
        num_classes=200,
        channels=3,
        native_size=64,
        image_size=64,
        mean=(0.4802, 0.4481, 0.3975),
        std=(0.2302, 0.2265, 0.2262),
        flip=True,
        crop_padding=None,
        files=_TINY_FILES,
        url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        description="Tiny-ImageNet-200 (official val split used as test split)",
    ),
    "fake": DatasetSpec(
        name="fake",
        num_classes=10,  # overridden by ``fake_num_classes``
        channels=3,
        native_size=32,
        image_size=32,
        # Images are 0.5 * prototype + 0.5 * noise with both uniform on [0, 1].
        mean=(0.5, 0.5, 0.5),
        std=(0.2041, 0.2041, 0.2041),
        flip=True,
        crop_padding=None,
        in_memory=True,
        description="seeded random images for tests (no files)",
    ),
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`get_spec` and ``ClassificationDataModule(dataset=...)``."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """Look up a dataset spec; unknown names raise a ``ValueError`` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(available_datasets())
        raise ConfigError(f"Unknown dataset {name!r}; known datasets: {known}") from None


def _stats_like(x: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    return torch.as_tensor(tuple(values), dtype=x.dtype, device=x.device).view(-1, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Map images in [0, 1] (``(..., C, H, W)``) to network inputs: ``(x - mean) / std``."""
    return (x - _stats_like(x, mean)) / _stats_like(x, std)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``x * std + mean`` (back to the [0, 1] image range)."""
    return x * _stats_like(x, std) + _stats_like(x, mean)
