"""``ClassificationDataModule``: one LightningDataModule for every image-classification dataset."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dfkd_lightning.data import sources
from dfkd_lightning.data.pacing import step_loader
from dfkd_lightning.data.specs import DatasetSpec, denormalize, get_spec, normalize
from dfkd_lightning.errors import ConfigError


class ClassificationDataModule(L.LightningDataModule):
    """Train/val/test loaders for ``digits``, ``mnist``, ``cifar10``, ``cifar100``,
    ``tiny_imagenet`` and ``fake``.

    Files live in ``root/<dataset>``. The validation set is a seeded, stratified
    ``val_fraction`` of the official train split (same ``seed`` -> same split on every run and
    rank; ``val_fraction=0`` -> no validation); the test set is the official test split
    (Tiny-ImageNet: the official val set; digits/fake: a fixed 20% carve-out).

    ``train_part``: the whole official train split (``all``), or one of two disjoint, seeded
    (``part_seed``), stratified parts of it: ``public`` (``public_fraction`` of it) and
    ``private`` (the rest). A teacher trained on the private part and a generative prior
    trained on the public part never share an image; the validation set is then carved from
    the chosen part, and the test split is unchanged.

    With ``train_source="steps"`` the train loader yields ``steps_per_epoch`` step indices
    (plain ints) for data-free methods and never reads the training images.

    ``num_classes``, ``input_shape`` (C, H, W), ``mean`` and ``std`` are set by ``__init__``
    without touching any file.
    """

    def __init__(
        self,
        dataset: str = "digits",
        root: str = "data",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        image_size: int | None = None,
        channels: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        download: bool = False,
        augment: bool = True,
        train_source: Literal["real", "steps"] = "real",
        steps_per_epoch: int = 100,
        fake_size: int = 256,
        fake_num_classes: int = 10,
        train_part: Literal["all", "private", "public"] = "all",
        public_fraction: float = 0.5,
        part_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # logged under data by RunRecord
        self.spec: DatasetSpec = get_spec(dataset)
        self.dataset = dataset
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.download = download
        self.augment = augment
        self.train_source = train_source
        self.steps_per_epoch = steps_per_epoch
        self.fake_size = fake_size
        self.fake_num_classes = fake_num_classes
        self.train_part, self.public_fraction, self.part_seed = (
            train_part,
            public_fraction,
            part_seed,
        )

        self._validate(image_size, channels)
        is_fake = self.spec.name == "fake"
        self.image_size: int = image_size or self.spec.image_size
        self.channels: int = channels or self.spec.channels
        self.num_classes: int = fake_num_classes if is_fake else self.spec.num_classes
        self.input_shape: tuple[int, int, int] = (self.channels, self.image_size, self.image_size)
        self.mean: tuple[float, ...] = self._per_channel(self.spec.mean)
        self.std: tuple[float, ...] = self._per_channel(self.spec.std)

        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._bases: dict[str, Dataset] = {}
        self._split: dict[str, list[int]] = {}

    def _per_channel(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """Spec constants for ``self.channels`` (grayscale constants replicated to RGB)."""
        return values if len(values) == self.channels else (values[0],) * self.channels

    def _validate(self, image_size: int | None, channels: int | None) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("batch_size and eval_batch_size must be >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        if channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        if channels == 1 and self.spec.channels == 3 and self.spec.name != "fake":
            raise ConfigError(f"dataset {self.spec.name!r} is RGB; channels=1 is not supported")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.train_source not in ("real", "steps"):
            raise ConfigError(f"train_source must be 'real' or 'steps', got {self.train_source!r}")
        if self.train_part not in ("all", "private", "public"):
            raise ConfigError(
                f"train_part must be 'all', 'private' or 'public', got {self.train_part!r}"
            )
        if not 0.0 < self.public_fraction < 1.0:
            raise ConfigError(f"public_fraction must be in (0, 1), got {self.public_fraction}")
        if self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.spec.name == "fake" and (self.fake_size < 2 or self.fake_num_classes < 1):
            raise ConfigError("fake_size must be >= 2 and fake_num_classes >= 1")

    # ------------------------------------------------------------------ data preparation
    def prepare_data(self) -> None:
        """Download (only when ``download=True``); otherwise fail early when files are missing."""
        if self.download:
            sources.download(self.spec, self.root)
        if self.train_source == "real" or self.val_fraction > 0:  # fit reads the train split
            sources.check_files(self.spec, self.root)

    def _base(self, split: sources.Split) -> Dataset:
        if split not in self._bases:
            self._bases[split] = sources.load_split(
                self.spec,
                self.root,
                split,
                image_size=self.image_size,
                channels=self.channels,
                fake_size=self.fake_size,
                fake_num_classes=self.fake_num_classes,
            )
        return self._bases[split]

    def _transform(self, train: bool) -> Any:
        return sources.build_transform(
            self.spec,
            image_size=self.image_size,
            channels=self.channels,
            mean=self.mean,
            std=self.std,
            train=train,
            augment=self.augment,
        )

    def split_indices(self) -> dict[str, list[int]]:
        """``{"train": [...], "val": [...]}`` indices into the official train split (into
        its ``train_part``)."""
        if not self._split:
            targets = sources.targets_of(self._base("train"))
            part = self.part_indices(targets)
            train, val = sources.split_indices(targets[part], self.val_fraction, self.seed)
            self._split = {"train": part[train].tolist(), "val": part[val].tolist()}
        return self._split

    def part_indices(self, targets: np.ndarray) -> np.ndarray:
        """The indices of ``train_part`` in the official train split of labels ``targets``."""
        everything = np.arange(len(targets))
        if self.train_part == "all":
            return everything
        private, public = sources.split_indices(targets, self.public_fraction, self.part_seed)
        return public if self.train_part == "public" else private

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs (``None``: all of them)."""
        if stage in (None, "fit") and self.train_source == "real" and self.train_set is None:
            self.train_set = self.build_train_set()
        needs_val = stage in (None, "fit", "validate") and self.val_fraction > 0
        if needs_val and self.val_set is None:
            self.val_set = sources.TransformedSubset(
                self._base("train"), self.split_indices()["val"], self._transform(train=False)
            )
        if stage in (None, "test", "predict") and self.test_set is None:
            test = self._base("test")
            self.test_set = sources.TransformedSubset(
                test, range(len(test)), self._transform(train=False)
            )

    def build_train_set(self) -> Dataset | None:
        """The train split (None: not available yet, built when the loader is asked for)."""
        return sources.TransformedSubset(
            self._base("train"), self.split_indices()["train"], self._transform(train=True)
        )

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) >= batch_size,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled real batches (``drop_last``), or ``steps_per_epoch`` step indices."""
        if self.train_source == "steps":
            return step_loader(self.steps_per_epoch)
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation batches; ``[]`` (no validation) when ``val_fraction == 0``."""
        if self.val_fraction == 0:
            return []
        if self.val_set is None:
            self.setup("validate")
        assert self.val_set is not None
        return self._loader(self.val_set, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of the official test split."""
        if self.test_set is None:
            self.setup("test")
        assert self.test_set is not None
        return self._loader(self.test_set, self.eval_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        """Same batches as :meth:`test_dataloader`."""
        return self.test_dataloader()

    # ------------------------------------------------------------------ helpers
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> network inputs with this dataset's mean/std."""
        return normalize(x, self.mean, self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs -> [0, 1] images with this dataset's mean/std."""
        return denormalize(x, self.mean, self.std)
