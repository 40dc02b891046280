"""What a W&B dashboard needs to compare runs: a group, flat config keys, tags, a summary."""

from __future__ import annotations

import os
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

__all__ = ["StudyRecord", "study_keys"]


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
    """What every logger needs to compare runs: the study keys ``method``, ``dataset``,
    ``teacher``, ``student`` and ``seed`` as flat hyperparameters (W&B config keys, CSV
    ``hparams.yaml``); ``time/elapsed_s`` (seconds since fit started) with every validation,
    for accuracy-against-time plots; and at the end ``fit/seconds`` (wall-clock seconds of
    fit), ``fit/images_per_s`` (images synthesized per second of fit, data-free methods) and
    ``test/samples`` (the test split's size: one image is ``100 / test/samples`` points).
    ``dfkd results`` reads these from CSV logs; a W&B run ends with them, ``test/acc`` and
    ``test/teacher_acc`` in its summary.

    For W&B it also sets the group (the logger's ``group`` if set, else
    ``<method>_<dataset>_<teacher>_<student>``: the seeds of one experiment together) and
    tags. They go to ``wandb.init``, which Lightning calls before any callback's ``setup``:
    ``dfkd`` calls :meth:`name_runs` when it builds the trainer; in a script, call it before
    ``trainer.fit`` (or set the logger's ``group`` and ``tags`` yourself). ``dfkd`` adds this
    callback to every run."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.fit_seconds: float | None = None
        self.images_per_s: float | None = None

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
        for logger in trainer.loggers:
            logger.log_hyperparams(keys)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started is not None and not trainer.sanity_checking and trainer.state.fn == "fit":
            pl_module.log("time/elapsed_s", time.perf_counter() - self.started)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.started is None:
            return
        self.fit_seconds = time.perf_counter() - self.started
        figures = {"fit/seconds": self.fit_seconds}
        images = getattr(pl_module, "images_synthesized", None)
        if images is not None:
            self.images_per_s = images / max(self.fit_seconds, 1e-9)
            figures["fit/images_per_s"] = self.images_per_s
        self._log(trainer, figures)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        sizes = [len(loader.dataset) for loader in loaders if hasattr(loader, "dataset")]
        if sizes:
            self._log(trainer, {"test/samples": float(sum(sizes))})

    @staticmethod
    def _log(trainer: Trainer, figures: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(figures, step=trainer.global_step)
            logger.save()
