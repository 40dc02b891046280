"""Turns the optimizer / scheduler callables of a config into Lightning's return value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


def sgd_default(params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The field's CIFAR recipe: SGD, lr 0.1, momentum 0.9, weight decay 5e-4."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)


def build_optimization(
    params: Iterable[torch.nn.Parameter],
    optimizer: OptimizerCallable | None,
    scheduler: LRSchedulerCallable | None,
    interval: Literal["epoch", "step"] = "epoch",
    monitor: str | None = None,
) -> dict[str, Any]:
    """Instantiate ``optimizer`` (SGD default) and the optional ``scheduler`` on it;
    ``monitor`` names the metric a ``ReduceLROnPlateau`` scheduler watches."""
    opt = (optimizer or sgd_default)(params)
    if scheduler is None:
        return {"optimizer": opt}
    config: dict[str, Any] = {"scheduler": scheduler(opt), "interval": interval}
    if monitor is not None:
        config["monitor"] = monitor
    return {"optimizer": opt, "lr_scheduler": config}
