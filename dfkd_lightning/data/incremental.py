"""``ClassIncrementalDataModule``: the classes of a classification dataset, arriving in tasks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import DataLoader

from dfkd_lightning.data import sources
from dfkd_lightning.data.classification import ClassificationDataModule
from dfkd_lightning.errors import ConfigError


class RelabeledSubset(sources.TransformedSubset):
    """``base[indices]`` through ``transform``, with the label ``y`` served as ``label_map[y]``.

    ``indices`` (positions in ``base``) stay public, so one can check which images are served.
    """

    def __init__(
        self,
        base: Any,
        indices: Sequence[int],
        transform: Callable[[Any], Any] | None,
        label_map: np.ndarray,
    ) -> None:
        super().__init__(base, indices, transform)
        self.label_map = label_map

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = super().__getitem__(index)
        return image, int(self.label_map[label])

    def restricted(self, labels: Sequence[int]) -> RelabeledSubset:
        """The samples whose (remapped) label is in ``labels``, in the same order."""
        targets = self.label_map[sources.targets_of(self.base)[self.indices]]
        keep = np.isin(targets, np.asarray(labels, dtype=np.int64))
        kept = np.asarray(self.indices, dtype=np.int64)[keep]
        return RelabeledSubset(self.base, kept.tolist(), self.transform, self.label_map)


class ClassIncrementalDataModule(ClassificationDataModule):
    """Non-exemplar class-incremental learning: the classes arrive in ``num_tasks`` tasks of
    ``classes_per_task`` classes, each trained for ``epochs_per_task`` epochs.

    Labels are remapped in arrival order: original class ``class_order[i]`` is served as label
    ``i`` in every split, so task ``t`` holds labels ``[t * k, (t + 1) * k)``. The train loader
    of task ``t`` yields only the real images of task ``t``'s classes (``joint=True``, the upper
    bound: of every class seen up to ``t``); the val loader holds the seen classes and the test
    loader all of them. The task follows ``trainer.current_epoch``, so the Trainer needs
    ``reload_dataloaders_every_n_epochs=1`` and ``max_epochs=`` :attr:`max_epochs`.

    ``class_order``: an explicit permutation of ``range(num_classes)``; otherwise a permutation
    drawn with ``numpy.random.default_rng(class_order_seed)`` (``None``: natural order).
    """

    def __init__(
        self,
        dataset: str = "digits",
        num_tasks: int = 5,
        class_order_seed: int | None = 0,
        class_order: list[int] | None = None,
        epochs_per_task: int = 10,
        joint: bool = False,
        **kwargs: Any,
    ) -> None:
        """``kwargs``: :class:`ClassificationDataModule`'s (``batch_size``, ``seed``, ...)."""
        super().__init__(dataset=dataset, **kwargs)
        if self.train_source != "real":
            raise ConfigError(
                f"class-incremental learning trains on the real images, got "
                f"train_source={self.train_source!r}; set data.train_source: real"
            )
        if num_tasks < 1 or epochs_per_task < 1:
            raise ConfigError(
                f"num_tasks and epochs_per_task must be >= 1, got {num_tasks} and {epochs_per_task}"
            )
        if self.num_classes % num_tasks:
            raise ConfigError(
                f"{self.num_classes} classes cannot be split into num_tasks={num_tasks} equal "
                f"tasks; set data.num_tasks to a divisor of {self.num_classes}"
            )
        self.num_tasks = num_tasks
        self.epochs_per_task = epochs_per_task
        self.joint = joint
        self.classes_per_task: int = self.num_classes // num_tasks
        self.class_order: list[int] = self._class_order(class_order, class_order_seed)
        self.label_map = np.empty(self.num_classes, dtype=np.int64)  # original -> remapped
        self.label_map[self.class_order] = np.arange(self.num_classes)

    def _class_order(self, order: list[int] | None, seed: int | None) -> list[int]:
        if order is None:
            if seed is None:
                return list(range(self.num_classes))
            return np.random.default_rng(seed).permutation(self.num_classes).tolist()
        if sorted(int(c) for c in order) != list(range(self.num_classes)):
            raise ConfigError(
                f"class_order must be a permutation of 0..{self.num_classes - 1} (every class "
                f"exactly once), got {list(order)}; fix it or drop it to use class_order_seed"
            )
        return [int(c) for c in order]

    # ------------------------------------------------------------------ tasks
    @property
    def max_epochs(self) -> int:
        """Epochs of the whole run: ``num_tasks * epochs_per_task``."""
        return self.num_tasks * self.epochs_per_task

    def task_at(self, epoch: int) -> int:
        """The task trained at ``epoch`` (the last task after the schedule ends)."""
        return min(epoch // self.epochs_per_task, self.num_tasks - 1)

    def task_labels(self, task: int) -> list[int]:
        """The (remapped) labels that arrive with ``task``."""
        k = self.classes_per_task
        return list(range(task * k, (task + 1) * k))

    def seen_labels(self, task: int) -> list[int]:
        """The (remapped) labels seen up to and including ``task``."""
        return list(range((task + 1) * self.classes_per_task))

    @property
    def current_task(self) -> int:
        """The task at the attached trainer's current epoch; 0 without a trainer."""
        trainer = self.trainer
        return 0 if trainer is None else self.task_at(trainer.current_epoch)

    # ------------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        """The parent's datasets, with every split's labels remapped to arrival order."""
        super().setup(stage)
        for name in ("train_set", "val_set", "test_set"):
            subset = getattr(self, name)
            if isinstance(subset, sources.TransformedSubset) and not isinstance(
                subset, RelabeledSubset
            ):
                relabeled = RelabeledSubset(
                    subset.base, subset.indices, subset.transform, self.label_map
                )
                setattr(self, name, relabeled)

    def _split_set(self, split: Literal["train", "val", "test"]) -> RelabeledSubset:
        if split == "val" and self.val_fraction == 0:
            raise ConfigError("there is no validation split (val_fraction=0); set val_fraction>0")
        name = f"{split}_set"
        if getattr(self, name) is None:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        subset = getattr(self, name)
        assert isinstance(subset, RelabeledSubset)
        return subset

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        """Shuffled real batches of the current task's classes (``joint``: of the seen ones)."""
        trainer = self.trainer
        reload_every = getattr(trainer, "reload_dataloaders_every_n_epochs", 1)
        if trainer is not None and self.num_tasks > 1 and reload_every != 1:
            raise ConfigError(
                f"class-incremental training changes the train loader at every task, but the "
                f"Trainer has reload_dataloaders_every_n_epochs={reload_every}; set "
                f"trainer.reload_dataloaders_every_n_epochs: 1"
            )
        task = self.current_task
        labels = self.seen_labels(task) if self.joint else self.task_labels(task)
        return self._loader(
            self._split_set("train").restricted(labels), self.batch_size, train=True
        )

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation batches of the labels seen so far; ``[]`` when ``val_fraction == 0``."""
        if self.val_fraction == 0:
            return []
        return self.eval_loader("val", self.seen_labels(self.current_task))

    def test_dataloader(self) -> DataLoader:
        """Batches of the whole test split (every class, remapped labels)."""
        return self._loader(self._split_set("test"), self.eval_batch_size, train=False)

    def eval_loader(self, split: Literal["val", "test"], labels: Sequence[int]) -> DataLoader:
        """Unshuffled batches of ``split`` restricted to the (remapped) ``labels``."""
        subset = self._split_set(split).restricted(labels)
        return self._loader(subset, self.eval_batch_size, train=False)
