"""What a W&B dashboard needs to compare runs: a group, flat config keys, tags, a summary."""

from __future__ import annotations

import os
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

__all__ = ["StudyRecord", "study_keys"]

#: The metrics copied into the W&B summary after testing (when logged).
SUMMARY_METRICS = ("test/acc", "test/teacher_acc", "test/loss")


def study_keys(module: LightningModule, datamodule: Any = None) -> dict[str, Any]:
    """``method``, ``dataset``, ``teacher``, ``student`` (or ``arch``) and ``seed`` of a run."""
    hparams = dict(module.hparams)
    data = dict(datamodule.hparams) if datamodule is not None else {}
    keys: dict[str, Any] = {"method": type(module).__name__}
    dataset = data.get("dataset", getattr(datamodule, "dataset", None))
    if isinstance(dataset, str):
        keys["dataset"] = dataset
    for name in ("teacher", "student", "arch"):
        if isinstance(hparams.get(name), str):
            keys[name] = hparams[name]
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        keys["seed"] = int(seed)
    return keys


def default_group(keys: dict[str, Any]) -> str:
    """Runs of one experiment (any seed) share a group: method, dataset, teacher, student."""
    parts = [keys.get(name) for name in ("method", "dataset", "teacher", "student", "arch")]
    return "_".join(str(part) for part in parts if part).lower()


class StudyRecord(Callback):
    """For every :class:`~lightning.pytorch.loggers.WandbLogger` of a run: the W&B group (the
    logger's ``group`` if set, else ``<method>_<dataset>_<teacher>_<student>``: seeds of one
    experiment together), tags and flat config keys ``method``, ``dataset``, ``teacher``,
    ``student``, ``seed``, and a summary at the end: ``test/acc``, ``test/teacher_acc``,
    ``synth/images_per_s`` (images synthesized per second of fit) and ``time/fit_seconds``.
    A dashboard table of a project's runs then compares methods without custom code. Other
    loggers are left alone. ``dfkd`` adds it to every run.

    The group and tags go to ``wandb.init``, which Lightning calls before any callback's
    ``setup``: ``dfkd`` calls :meth:`name_runs` when it builds the trainer; in a script, call
    it before ``trainer.fit`` (or set the logger's ``group`` and ``tags`` yourself)."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.fit_seconds: float | None = None

    @staticmethod
    def _wandb(trainer: Trainer) -> list[WandbLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def name_runs(self, trainer: Trainer, module: LightningModule, datamodule: Any = None) -> None:
        """Give every W&B run of ``trainer`` not yet started its group and tags."""
        keys = study_keys(module, datamodule)
        tags = [
            str(keys[name]) for name in ("method", "dataset", "teacher", "student") if name in keys
        ]
        for logger in self._wandb(trainer):
            if logger._experiment is None:  # wandb.init has not run: group and tags go there
                init = logger._wandb_init
                init["group"] = init.get("group") or default_group(keys)
                init["tags"] = sorted({*(init.get("tags") or []), *tags})
                if init.get("dir"):  # W&B's service process resolves paths from its own cwd
                    init["dir"] = os.path.abspath(init["dir"])

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        keys = study_keys(pl_module, getattr(trainer, "datamodule", None))
        for logger in self._wandb(trainer):
            logger.experiment.config.update(keys, allow_val_change=True)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started is not None:
            self.fit_seconds = time.perf_counter() - self.started
        self._summarise(trainer, pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._summarise(trainer, pl_module)

    def _summarise(self, trainer: Trainer, module: LightningModule) -> None:
        loggers = self._wandb(trainer)
        if not loggers or trainer.global_rank != 0:
            return
        summary: dict[str, float] = {
            name: float(trainer.callback_metrics[name])
            for name in SUMMARY_METRICS
            if name in trainer.callback_metrics
        }
        if self.fit_seconds is not None:
            summary["time/fit_seconds"] = self.fit_seconds
            images = getattr(module, "images_synthesized", None)
            if images is not None:
                summary["synth/images_per_s"] = images / max(self.fit_seconds, 1e-9)
        for logger in loggers:
            logger.experiment.summary.update(summary)
