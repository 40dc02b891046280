"""Building the untransformed torch datasets, splits and transforms for every dataset name.

Every *base* dataset yields ``(image, label)``: a PIL image for file-backed datasets, a float
tensor in [0, 1] of shape ``(C, H, W)`` (already at the requested size) for in-memory ones.
Transforms are applied afterwards by :class:`TransformedSubset`, so one loaded split can
serve both the augmented train subset and the plain validation subset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dfkd_lightning.data.specs import DatasetSpec
from dfkd_lightning.data.tiny_imagenet import TinyImageNet, download_tiny_imagenet
from dfkd_lightning.errors import ConfigError, UserError

Split = Literal["train", "test"]

#: Seed of the fixed test carve-out for in-memory datasets; independent of the run's seed so
#: that models trained with different seeds are always compared on the same test images.
TEST_SPLIT_SEED = 0
TEST_FRACTION = 0.2
FAKE_DATA_SEED = 0


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The files of a dataset are missing below ``root`` and downloading was not requested."""


def dataset_dir(root: str | Path, name: str) -> Path:
    """Directory holding one dataset: ``root/<name>``."""
    return Path(root).expanduser() / name


def check_files(spec: DatasetSpec, root: str | Path) -> None:
    """Raise :class:`DatasetNotFoundError` when a file of ``spec`` is missing below ``root``."""
    directory = dataset_dir(root, spec.name)
    missing = [rel for rel in spec.files if not (directory / rel).exists()]
    if not missing:
        return
    raise DatasetNotFoundError(
        f"Dataset {spec.name!r} not found: expected {directory / missing[0]} "
        f"(dataset directory {directory}). Either set `data.download=true` to download it "
        f"there, or point `data.root` at a directory that holds '{spec.name}/{missing[0]}'."
    )


def download(spec: DatasetSpec, root: str | Path) -> None:
    """Download ``spec``'s files into ``root/<name>`` (no-op for in-memory datasets)."""
    directory = dataset_dir(root, spec.name)
    if spec.in_memory:
        return
    directory.mkdir(parents=True, exist_ok=True)
    if spec.name == "tiny_imagenet":
        download_tiny_imagenet(directory)
    else:
        _torchvision_class(spec.name)(root=str(directory), train=False, download=True)


class TensorImageDataset(Dataset):
    """In-memory ``(image, label)`` pairs from an ``(N, C, H, W)`` float tensor.

    ``source_indices`` records each sample's position in the full dataset it was carved from.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        source_indices: torch.Tensor | None = None,
    ) -> None:
        self.images = images
        self.targets = targets
        self.source_indices = (
            torch.arange(len(targets)) if source_indices is None else source_indices
        )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


class TransformedSubset(Dataset):
    """``base[indices]`` with ``transform`` applied to the image."""

    def __init__(
        self, base: Dataset, indices: Sequence[int], transform: Callable[[Any], Any] | None
    ) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[self.indices[index]]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


def targets_of(dataset: Dataset) -> np.ndarray:
    """Integer labels of a base dataset, as an array."""
    targets = dataset.targets  # type: ignore[attr-defined]
    if isinstance(targets, torch.Tensor):
        return targets.numpy().astype(np.int64)
    return np.asarray(targets, dtype=np.int64)


def split_indices(targets: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(len(targets))`` into ``(keep, held_out)``.

    ``held_out`` holds ``fraction * n`` (rounded half up) indices, stratified by label when
    possible; both parts are sorted. The result depends only on targets, fraction and seed.
    """
    n = len(targets)
    n_out = math.floor(n * fraction + 0.5)
    everything = np.arange(n)
    if n_out == 0:
        return everything, everything[:0]
    if n_out >= n:
        raise ConfigError(f"Cannot hold out {n_out} of {n} samples (fraction={fraction})")
    from sklearn.model_selection import train_test_split

    try:
        keep, out = train_test_split(
            everything, test_size=n_out, random_state=seed, shuffle=True, stratify=targets
        )
    except ValueError:  # too few samples per class to stratify
        perm = np.random.default_rng(seed).permutation(n)
        keep, out = perm[n_out:], perm[:n_out]
    return np.sort(keep), np.sort(out)


def _resize_channels(images: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    if images.shape[-1] != image_size:
        images = v2.functional.resize(images, [image_size, image_size], antialias=True)
    if images.shape[1] != channels:
        images = images.expand(-1, channels, -1, -1)
    return images.clamp(0.0, 1.0).contiguous()


@lru_cache(maxsize=4)
def _digits(image_size: int, channels: int) -> TensorImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    targets = torch.tensor(bunch.target, dtype=torch.int64)
    return TensorImageDataset(_resize_channels(images, image_size, channels), targets)


@lru_cache(maxsize=4)
def _fake(size: int, num_classes: int, image_size: int, channels: int) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(FAKE_DATA_SEED)
    prototypes = torch.rand(num_classes, channels, image_size, image_size, generator=gen)
    targets = (torch.arange(size) % num_classes)[torch.randperm(size, generator=gen)]
    noise = torch.rand(size, channels, image_size, image_size, generator=gen)
    return TensorImageDataset(0.5 * prototypes[targets] + 0.5 * noise, targets)


def _carve(full: TensorImageDataset, split: Split) -> TensorImageDataset:
    """Fixed stratified test carve-out of an in-memory dataset."""
    keep, test = split_indices(targets_of(full), TEST_FRACTION, TEST_SPLIT_SEED)
    idx = torch.as_tensor(keep if split == "train" else test)
    return TensorImageDataset(full.images[idx], full.targets[idx], full.source_indices[idx])


def _torchvision_class(name: str) -> Callable[..., Dataset]:
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST

    return {"mnist": MNIST, "cifar10": CIFAR10, "cifar100": CIFAR100}[name]


def load_split(
    spec: DatasetSpec,
    root: str | Path,
    split: Split,
    *,
    image_size: int,
    channels: int,
    fake_size: int = 256,
    fake_num_classes: int = 10,
) -> Dataset:
    """The untransformed official ``split`` of a dataset (digits/fake: fixed 20% test carve)."""
    if spec.name == "digits":
        return _carve(_digits(image_size, channels), split)
    if spec.name == "fake":
        return _carve(_fake(fake_size, fake_num_classes, image_size, channels), split)
    check_files(spec, root)
    directory = dataset_dir(root, spec.name)
    if spec.name == "tiny_imagenet":
        return TinyImageNet(directory, split=split)
    cls = _torchvision_class(spec.name)
    return cls(root=str(directory), train=split == "train", download=False)


def build_transform(
    spec: DatasetSpec,
    *,
    image_size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    augment: bool = True,
) -> v2.Compose:
    """Train (optionally augmented) or eval transform producing normalised float tensors."""
    ops: list[Callable[[Any], Any]] = []
    if not spec.in_memory:  # PIL image in, already-sized float tensors for in-memory data
        if channels == 3 and spec.channels == 1:
            ops.append(v2.RGB())
        ops.append(v2.ToImage())
        if image_size != spec.native_size:
            ops.append(v2.Resize([image_size, image_size], antialias=True))
    if train and augment:
        ops.append(v2.RandomCrop(image_size, padding=spec.padding_for(image_size)))
        if spec.flip:
            ops.append(v2.RandomHorizontalFlip())
    if not spec.in_memory:
        ops.append(v2.ToDtype(torch.float32, scale=True))
    ops += [v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]
    return v2.Compose(ops)
