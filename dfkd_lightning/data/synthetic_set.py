"""``SyntheticSetDataModule``: train on an exported synthetic set, validate and test on the
real dataset.

The train split is a set written by :func:`~dfkd_lightning.export.export_pool` or the
:class:`~dfkd_lightning.callbacks.ExportPool` callback (either format, per-rank exports
together), normalised with the real dataset's mean/std and resized to ``image_size`` when it
was synthesized at another resolution; validation and test are the real dataset's, as in
:class:`~dfkd_lightning.data.ClassificationDataModule`. So one synthesis trains many
students, and a student distilled from a set made offline (e.g. by a diffusion model) is
evaluated on real data. With ``KnowledgeDistillation``, swap the DataModule of a KD
experiment on the command line::

    dfkd fit --config configs/experiments/digits/kd_lenet5_bn_lenet5_half.yaml \\
        --data dfkd_lightning.data.SyntheticSetDataModule \\
        --data.synthetic_dir runs/digits/deepinversion/version_0/synthetic \\
        --data.dataset digits \\
        --model.init_args.teacher_checkpoint runs/digits/teacher_lenet5_bn/checkpoints/final.ckpt
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch.utils.data import DataLoader

from dfkd_lightning.data import sources
from dfkd_lightning.data.classification import ClassificationDataModule
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.export.images import resize_images
from dfkd_lightning.export.read import load_exported, read_index

__all__ = ["SyntheticSetDataModule"]


class SyntheticSetDataModule(ClassificationDataModule):
    """A :class:`ClassificationDataModule` whose train split is the exported set in
    ``synthetic_dir``; validation and test stay the real ``dataset``'s.

    ``augment`` (off by default, unlike the real data's) applies the real data's light train
    augmentation (random crop with padding, flips where the dataset allows them) to the
    synthetic images. The set's channel count and number of classes must be the dataset's
    (checked when the data are set up: ``prepare_data``, ``setup``).
    """

    def __init__(
        self,
        synthetic_dir: str | None = None,
        augment: bool = False,
        written_by_run: bool = False,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: :class:`ClassificationDataModule`'s (``dataset``, ``batch_size``, ...).
        ``written_by_run``: the run itself writes the set at the start of fit (DiffDFKD's
        generate-then-distil), so it is read and checked when the train loader is built."""
        super().__init__(augment=augment, **kwargs)
        self.written_by_run = written_by_run
        if not synthetic_dir:
            raise ConfigError(
                "SyntheticSetDataModule needs synthetic_dir: the directory an ExportPool "
                "callback or export_pool wrote (e.g. --data.synthetic_dir runs/.../synthetic)"
            )
        self.synthetic_dir = synthetic_dir
        self.synthetic_index: dict[str, Any] | None = None

    def check_synthetic_set(self) -> dict[str, Any]:
        """The set's ``index.json`` (a summary for per-rank exports), checked against the
        dataset: MissingFileError without one, ConfigError on other channels or classes."""
        index = read_index(self.synthetic_dir)
        shape = list(index.get("image_shape") or [])
        if len(shape) != 3:
            raise ConfigError(
                f"the set in {self.synthetic_dir} holds samples of shape {shape}, not images "
                "(C, H, W)"
            )
        if shape[0] != self.channels:
            raise ConfigError(
                f"the set in {self.synthetic_dir} has {shape[0]}-channel images but the "
                f"DataModule makes {self.channels}-channel ones (dataset {self.dataset!r}); "
                f"set data.channels={shape[0]} or export a set of the dataset's channels"
            )
        if int(index.get("num_classes", -1)) != self.num_classes:
            raise ConfigError(
                f"the set in {self.synthetic_dir} has {index.get('num_classes')} classes but "
                f"dataset {self.dataset!r} has {self.num_classes}; use the dataset the set was "
                "synthesized for (or export it with num_classes set)"
            )
        self.synthetic_index = index
        return index

    def prepare_data(self) -> None:
        """The real dataset's checks, and the synthetic set's (fails early)."""
        super().prepare_data()
        if not self.written_by_run:
            self.check_synthetic_set()

    def synthetic_train_set(self) -> sources.TransformedSubset:
        """The exported images at ``image_size`` with their labels, normalised (and augmented
        when ``augment``)."""
        self.check_synthetic_set()
        images, labels = load_exported(self.synthetic_dir)
        images = resize_images(images, self.image_size).clamp(0, 1).contiguous()
        base = sources.TensorImageDataset(images, labels)
        spec = dataclasses.replace(self.spec, in_memory=True)  # tensors at the right size
        transform = sources.build_transform(
            spec,
            image_size=self.image_size,
            channels=self.channels,
            mean=self.mean,
            std=self.std,
            train=True,
            augment=self.augment,
        )
        return sources.TransformedSubset(base, range(len(base)), transform)

    def build_train_set(self) -> sources.TransformedSubset | None:
        """The synthetic set (None until the loader is asked for when the run writes it)."""
        return None if self.written_by_run else self.synthetic_train_set()

    def train_dataloader(self) -> DataLoader:
        """The synthetic set's batches (read now when the run writes it at fit start)."""
        if self.train_set is None and self.train_source == "real":
            self.train_set = self.synthetic_train_set()
        return super().train_dataloader()
