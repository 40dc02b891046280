"""The callback that writes a run's provenance into its loggers and checkpoints."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from dfkd_lightning.records.provenance import provenance

__all__ = ["RunRecord"]

#: Checkpoint key of the provenance record.
CHECKPOINT_KEY = "dfkd_provenance"


class RunRecord(Callback):
    """Logs the model's and the DataModule's hyperparameters (under ``model`` and ``data``)
    and the ``provenance`` (code, library versions, pretrained sources) to every logger at
    the start of fit, validate and test, and stores the provenance in every checkpoint
    (``checkpoint["dfkd_provenance"]``). Modules name what they loaded in a
    ``pretrained_sources`` dict (``{"teacher": pretrained_source(path)}``). ``dfkd`` adds it
    to every run."""

    def __init__(self) -> None:
        self._records: dict[int, dict[str, Any]] = {}

    def record(self, module: LightningModule) -> dict[str, Any]:
        """The module's provenance, computed once (it hashes the pretrained files)."""
        if id(module) not in self._records:
            self._records[id(module)] = provenance(getattr(module, "pretrained_sources", None))
        return self._records[id(module)]

    def _log(self, trainer: Trainer, module: LightningModule) -> None:
        record: dict[str, Any] = {"model": dict(module.hparams)}
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            record["data"] = dict(datamodule.hparams)
        record["provenance"] = self.record(module)
        for logger in trainer.loggers:
            logger.log_hyperparams(record)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._log(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "test":
            self._log(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.record(pl_module)
