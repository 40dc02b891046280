"""Cosine learning-rate decay over a wall-clock budget (``--trainer.max_time``)."""

from __future__ import annotations

import math
from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Timer


class TimeBudgetCosineLR(Callback):
    """Anneal learning rates to ``min_factor`` of their initial values along a cosine over
    the fraction of ``--trainer.max_time`` spent so far.

    A fixed-time comparison (``benchmarks/digits.py``) cannot size an epoch-based cosine
    schedule in advance: methods differ tenfold in steps per second. This decays every
    method's learning rate to the same end point when the time is up, so the final epoch
    is not caught at the top of a constant learning rate. ``scope="student"`` anneals the
    first optimizer only (the student's in every module of the suite); ``"all"`` anneals
    the synthesizers' optimizers too (as DFAD's step schedule does for its generator).
    The schedule follows the clock, so a run that uses it does not resume bit-exactly.
    """

    def __init__(self, min_factor: float = 0.0, scope: Literal["student", "all"] = "student"):
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"min_factor must lie in [0, 1], got {min_factor}")
        if scope not in ("student", "all"):
            raise ValueError(f"scope must be 'student' or 'all', got {scope!r}")
        self.min_factor, self.scope = min_factor, scope
        self._timer: Timer | None = None
        self._initial_lrs: list[list[float]] = []

    def _optimizers(self, trainer: pl.Trainer) -> list:
        return trainer.optimizers[:1] if self.scope == "student" else trainer.optimizers

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        timers = [cb for cb in trainer.callbacks if isinstance(cb, Timer)]
        if not timers or timers[0].time_remaining("train") is None:
            raise ValueError(
                "TimeBudgetCosineLR decays over the wall-clock budget: set "
                "--trainer.max_time (e.g. 00:00:05:00)"
            )
        self._timer = timers[0]
        self._initial_lrs = [
            [group["lr"] for group in optimizer.param_groups]
            for optimizer in self._optimizers(trainer)
        ]

    def factor(self, fraction: float) -> float:
        """The learning-rate multiplier after ``fraction`` of the budget."""
        fraction = min(max(fraction, 0.0), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return self.min_factor + (1.0 - self.min_factor) * cosine

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int
    ) -> None:
        assert self._timer is not None
        elapsed = self._timer.time_elapsed("train")
        remaining = self._timer.time_remaining("train") or 0.0
        scale = self.factor(elapsed / max(elapsed + remaining, 1e-9))
        optimizers = self._optimizers(trainer)
        for optimizer, initial in zip(optimizers, self._initial_lrs, strict=True):
            for group, lr in zip(optimizer.param_groups, initial, strict=True):
                group["lr"] = lr * scale
        pl_module.log("lr/student", optimizers[0].param_groups[0]["lr"])
