"""Per-class grids of the newest synthetic images, to the loggers and as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from dfkd_lightning.callbacks.base import SampleCallback, finished_epoch
from dfkd_lightning.callbacks.quality import CHUNK, image_method
from dfkd_lightning.callbacks.recent import RecentSamples
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = ["ImageGrids"]


class ImageGrids(SampleCallback):
    """Every ``every_n_epochs`` epochs (and at the last), a grid of the newest
    ``per_class`` images of each of the first ``max_classes`` classes among the newest
    ``4 * per_class * max_classes`` samples, one row per class (the class a sample was made
    for, else the teacher's argmax, computed when the grid is drawn), drawn with torchvision's
    ``make_grid``. Written to ``<log dir>/grids/epoch_<e>.png`` (``directory`` to choose)
    and logged as ``synth/grid`` to every logger that takes images (W&B's ``log_image``,
    TensorBoard's ``add_image``). Rank 0's samples."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        per_class: int = 8,
        max_classes: int = 10,
        directory: str | None = None,
    ) -> None:
        if every_n_epochs < 1 or per_class < 1 or max_classes < 1:
            raise ConfigError(
                "ImageGrids needs every_n_epochs, per_class and max_classes >= 1, got "
                f"{every_n_epochs}, {per_class}, {max_classes}"
            )
        self.every_n_epochs, self.per_class, self.max_classes = (
            every_n_epochs,
            per_class,
            max_classes,
        )
        self.directory = directory
        # The newest samples, enough for full rows when classes are about balanced.
        self.recent = RecentSamples(4 * per_class * max_classes)
        self.written: list[Path] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        image_method(pl_module, type(self).__name__)

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        if trainer.global_rank == 0 and len(batch):
            self.recent.add(batch)  # classified only when a grid is drawn
        return None

    @torch.no_grad()
    def _classes(self, module: Any) -> torch.Tensor:
        """The class of each kept sample: its target, else the teacher's argmax."""
        assert self.recent.samples is not None and self.recent.targets is not None
        classes = self.recent.targets.clone()
        unknown = classes < 0
        if unknown.any():
            was_training = module.teacher.training
            module.teacher.eval()
            logits = [
                module.teacher(module.normalize(module.to_input_size(chunk)))
                for chunk in self.recent.samples[unknown].split(CHUNK)
            ]
            module.teacher.train(was_training)
            classes[unknown] = torch.cat(logits).argmax(1).to(classes.device)
        return classes

    def grid(self, module: Any) -> torch.Tensor | None:
        """The current grid, (C, H, W) in [0, 1] (None before any sample)."""
        if not len(self.recent):
            return None
        samples, classes = self.recent.samples.cpu(), self._classes(module).cpu()
        shape = samples.shape[1:]
        rows = []
        for label in range(self.max_classes):
            row = samples[classes == label][-self.per_class :]
            blank = torch.zeros(self.per_class - len(row), *shape)
            rows.append(torch.cat([row, blank]))
        return make_grid(torch.cat(rows), nrow=self.per_class, padding=1, pad_value=1.0)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, last = finished_epoch(trainer)
        if epoch % self.every_n_epochs == 0 or last:
            # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes.
            log_dir = trainer.log_dir or trainer.default_root_dir
            self.write(trainer, pl_module, epoch, Path(self.directory or Path(log_dir) / "grids"))

    @rank_zero_only
    def write(self, trainer: Trainer, module: Any, epoch: int, root: Path) -> None:
        grid = self.grid(module)
        if grid is None:
            return
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"epoch_{epoch:04d}.png"
        save_image(grid, path)
        self.written.append(path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="synth/grid", images=[grid], step=trainer.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):
                logger.experiment.add_image("synth/grid", grid, trainer.global_step)
