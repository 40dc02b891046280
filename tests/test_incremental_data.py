"""ClassIncrementalDataModule: seeded class order, per-task loaders, remapped labels, errors."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from dfkd_lightning.data import ClassificationDataModule, ClassIncrementalDataModule, sources
from dfkd_lightning.errors import ConfigError

EPOCHS_PER_TASK = 2


def incremental(**kwargs) -> ClassIncrementalDataModule:
    """Digits (10 classes) as 5 tasks of 2, no augmentation."""
    options = dict(num_tasks=5, epochs_per_task=EPOCHS_PER_TASK, batch_size=64, augment=False)
    options.update(kwargs)
    return ClassIncrementalDataModule("digits", **options)


def at_epoch(dm: ClassIncrementalDataModule, epoch: int, reload_every: int = 1) -> None:
    """Attach a stand-in trainer at ``epoch``."""
    dm.trainer = SimpleNamespace(
        current_epoch=epoch, reload_dataloaders_every_n_epochs=reload_every
    )


def served(loader) -> tuple[list[int], list[int]]:
    """All labels the loader yields, and the train-split indices of its dataset."""
    labels = [int(y) for _, batch in loader for y in batch]
    return labels, list(loader.dataset.indices)


@pytest.fixture(scope="module")
def dm() -> ClassIncrementalDataModule:
    module = incremental()
    module.setup()
    return module


# --------------------------------------------------------------------------- class order
def test_class_order_is_seeded_and_a_permutation() -> None:
    first, again, other = (incremental(class_order_seed=s).class_order for s in (0, 0, 1))
    assert first == again
    assert first != other
    for order in (first, other):
        assert sorted(order) == list(range(10))
    assert first == np.random.default_rng(0).permutation(10).tolist()
    assert incremental(class_order_seed=None).class_order == list(range(10))


def test_explicit_class_order_wins_and_is_checked() -> None:
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert incremental(class_order=order, class_order_seed=3).class_order == order
    for bad in ([0] * 10, list(range(9)), [*range(9), 10], [*range(10), 0]):
        with pytest.raises(ConfigError, match="permutation"):
            incremental(class_order=bad)


def test_task_bookkeeping(dm: ClassIncrementalDataModule) -> None:
    assert dm.classes_per_task == 2 and dm.num_tasks == 5
    assert dm.max_epochs == 5 * EPOCHS_PER_TASK
    assert [dm.task_at(e) for e in range(12)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert dm.task_labels(0) == [0, 1] and dm.task_labels(3) == [6, 7]
    assert dm.seen_labels(0) == [0, 1] and dm.seen_labels(2) == [0, 1, 2, 3, 4, 5]
    fresh = incremental()
    assert fresh.trainer is None and fresh.current_task == 0
    at_epoch(fresh, 7)
    assert fresh.current_task == 3


# --------------------------------------------------------------------------- train loaders
def test_train_loader_serves_only_the_current_task(dm: ClassIncrementalDataModule) -> None:
    base_targets = sources.targets_of(dm._base("train"))
    per_task: list[set[int]] = []
    for task in range(dm.num_tasks):
        for epoch in (task * EPOCHS_PER_TASK, (task + 1) * EPOCHS_PER_TASK - 1):
            at_epoch(dm, epoch)
            labels, indices = served(dm.train_dataloader())
            assert set(labels) == set(dm.task_labels(task)), (task, epoch)
        # the underlying images belong to this task's original classes
        task_classes = dm.class_order[task * 2 : task * 2 + 2]
        assert set(base_targets[indices].tolist()) == set(task_classes)
        per_task.append(set(indices))
    for a in range(len(per_task)):
        for b in range(a + 1, len(per_task)):
            assert not per_task[a] & per_task[b], (a, b)
    train_split = dm.split_indices()["train"]
    assert sum(len(s) for s in per_task) == len(train_split)
    assert set().union(*per_task) == set(train_split)


def test_joint_serves_every_seen_class() -> None:
    joint, split = incremental(joint=True), incremental()
    previous: set[int] = set()
    for task in range(joint.num_tasks):
        at_epoch(joint, task * EPOCHS_PER_TASK)
        at_epoch(split, task * EPOCHS_PER_TASK)
        labels, indices = served(joint.train_dataloader())
        assert set(labels) == set(joint.seen_labels(task))
        assert previous < set(indices)
        new = set(indices) - previous
        assert new == set(split.train_dataloader().dataset.indices)
        previous = set(indices)
    assert previous == set(joint.split_indices()["train"])


# --------------------------------------------------------------------------- evaluation
def test_val_test_and_eval_loaders(dm: ClassIncrementalDataModule) -> None:
    val_split = set(dm.split_indices()["val"])
    for task in range(dm.num_tasks):
        at_epoch(dm, task * EPOCHS_PER_TASK)
        labels, indices = served(dm.val_dataloader())
        assert set(labels) == set(dm.seen_labels(task))
        assert set(indices) <= val_split
    assert set(indices) == val_split  # the last task sees every class
    test_labels, _ = served(dm.test_dataloader())
    assert set(test_labels) == set(range(10))
    assert len(test_labels) == len(dm._base("test"))
    loader = dm.eval_loader("test", dm.task_labels(1))
    labels, _ = served(loader)
    assert set(labels) == {2, 3}
    assert labels == served(loader)[0]  # not shuffled
    assert labels.count(2) == int(np.sum(sources.targets_of(dm._base("test")) == dm.class_order[2]))


def test_labels_are_remapped_in_arrival_order(dm: ClassIncrementalDataModule) -> None:
    assert dm.class_order != list(range(10))  # otherwise the check below proves nothing
    parent = ClassificationDataModule("digits", batch_size=64, augment=False)
    parent.setup()
    for mine, theirs in ((dm.test_set, parent.test_set), (dm.val_set, parent.val_set)):
        for i in range(0, 60, 7):
            image, label = mine[i]
            parent_image, original = theirs[i]
            assert torch.equal(image, parent_image)
            assert dm.class_order[label] == original
    for i in range(10):
        (_, label), (_, original) = dm.train_set[i], parent.train_set[i]
        assert dm.class_order[label] == original


# --------------------------------------------------------------------------- errors
def test_errors_name_the_problem_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"10 classes.*num_tasks=3.*divisor of 10"):
        incremental(num_tasks=3)
    with pytest.raises(ConfigError, match="train_source: real"):
        incremental(train_source="steps")
    dm = incremental()
    at_epoch(dm, 0, reload_every=0)
    with pytest.raises(ConfigError, match=r"reload_dataloaders_every_n_epochs: 1"):
        dm.train_dataloader()
    single = incremental(num_tasks=1)
    at_epoch(single, 0, reload_every=0)
    assert len(single.train_dataloader().dataset) == len(single.split_indices()["train"])


# --------------------------------------------------------------------------- with a Trainer
class LabelRecorder(L.LightningModule):
    """A linear classifier recording the labels it trains and validates on, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))
        self.train_labels: dict[int, set[int]] = {}
        self.val_labels: dict[int, set[int]] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_labels.setdefault(self.current_epoch, set()).update(y.tolist())
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx) -> None:
        if not self.trainer.sanity_checking:
            self.val_labels.setdefault(self.current_epoch, set()).update(batch[1].tolist())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_reloads_the_task_every_epoch(tmp_path) -> None:
    dm = incremental(epochs_per_task=1)
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        max_epochs=dm.max_epochs,
    )
    model = LabelRecorder()
    L.Trainer(reload_dataloaders_every_n_epochs=1, **options).fit(model, datamodule=dm)
    assert model.train_labels == {t: set(dm.task_labels(t)) for t in range(5)}
    assert model.val_labels == {t: set(dm.seen_labels(t)) for t in range(5)}
    with pytest.raises(ConfigError, match="reload_dataloaders_every_n_epochs"):
        L.Trainer(**options).fit(LabelRecorder(), datamodule=incremental(epochs_per_task=1))
