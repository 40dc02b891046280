"""Tiny-ImageNet-200 as a torch dataset reading the official ``tiny-imagenet-200.zip`` layout.

Layout below ``root``::

    tiny-imagenet-200/wnids.txt
    tiny-imagenet-200/train/<wnid>/images/*.JPEG
    tiny-imagenet-200/val/images/*.JPEG
    tiny-imagenet-200/val/val_annotations.txt   (file<TAB>wnid<TAB>bbox...)

The official test set has no labels, so ``split="test"`` reads the official *val* set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from torch.utils.data import Dataset

from dfkd_lightning.errors import ConfigError

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def download_tiny_imagenet(root: str | Path) -> None:
    """Download and extract the official zip into ``root`` (no-op when already extracted)."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    if (root / FOLDER / "wnids.txt").is_file():
        return
    download_and_extract_archive(URL, download_root=str(root), md5=ZIP_MD5)


class TinyImageNet(Dataset):
    """Tiny-ImageNet images as ``(PIL RGB image, label)``; labels follow sorted wnids.

    Sorted wnids match ``torchvision.datasets.ImageFolder`` on the ``train`` folder, so
    teachers trained with either loader agree on the class indices.
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "test"] = "train",
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        self.base = Path(root) / FOLDER
        self.split = split
        self.transform = transform
        wnids = (self.base / "wnids.txt").read_text().split()
        self.classes: list[str] = sorted(set(wnids))
        self.class_to_idx = {wnid: i for i, wnid in enumerate(self.classes)}
        self.samples = self._train_samples() if split == "train" else self._val_samples()
        self.targets = [label for _, label in self.samples]

    def _train_samples(self) -> list[tuple[Path, int]]:
        samples = []
        for wnid in self.classes:
            folder = self.base / "train" / wnid / "images"
            label = self.class_to_idx[wnid]
            samples += [(path, label) for path in sorted(folder.glob("*.JPEG"))]
        return samples

    def _val_samples(self) -> list[tuple[Path, int]]:
        val = self.base / "val"
        samples = []
        for line in (val / "val_annotations.txt").read_text().splitlines():
            fields = line.strip().split("\t")
            if len(fields) < 2:
                continue
            samples.append((val / "images" / fields[0], self.class_to_idx[fields[1]]))
        return sorted(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        with Image.open(path) as img:
            image = img.convert("RGB")  # a few Tiny-ImageNet JPEGs are grayscale
        if self.transform is not None:
            image = self.transform(image)
        return image, label
