"""Write a data-free run's synthetic images as a reusable dataset (ImageFolder or shards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from dfkd_lightning.callbacks.base import SampleCallback, finished_epoch
from dfkd_lightning.callbacks.quality import CHUNK, image_method
from dfkd_lightning.callbacks.recent import RecentSamples
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.export.images import Storage
from dfkd_lightning.export.labels import LabelSource, choose_labels, teacher_labels
from dfkd_lightning.export.pool import FORMATS, ExportFormat, export_pool
from dfkd_lightning.synthesis.batch import NO_TARGET, SyntheticBatch
from dfkd_lightning.synthesis.pool import SyntheticPool, rank_directory

__all__ = ["ExportPool"]


class ExportPool(SampleCallback):
    """At the end of fit (and every ``every_n_epochs`` epochs when set) write the method's
    synthetic images with :func:`~dfkd_lightning.export.export_pool` to ``directory``
    (default ``<log dir>/synthetic``), replacing the previous export there.

    What is written: the pool of the pool methods (DeepInversion, CMI, FastDFKD), at the
    synthesis resolution; for the methods whose student learns from fresh samples (DAFL, DFAD,
    ZSKT, DFQ), the newest ``max_samples`` samples the callbacks saw (after the filters placed
    before this callback), or, when none passed through the callbacks (``student_samples:
    reuse``), ``max_samples`` samples drawn from the synthesizer at export time (with the
    run's RNG and the synthesizer's buffers restored afterwards). Collected samples restart
    empty on resume.

    ``labels`` (see :data:`~dfkd_lightning.export.LabelSource`): ``auto`` keeps the targets
    the images were synthesized for and uses the teacher's argmax when some have none.
    ``storage``: the ``shards`` element type (default: the pool's, float32 for collected
    samples). Under DDP every rank exports its own samples to ``directory/rank_XX``
    (:func:`~dfkd_lightning.export.load_exported` and ``SyntheticSetDataModule`` read the
    ranks together). From the command line::

        dfkd fit --config ... --trainer.callbacks+=dfkd_lightning.callbacks.ExportPool \\
            --trainer.callbacks.format shards
    """

    def __init__(
        self,
        format: ExportFormat = "imagefolder",
        directory: str | None = None,
        every_n_epochs: int | None = None,
        max_samples: int = 4096,
        labels: LabelSource = "auto",
        storage: Storage | None = None,
        shard_size: int = 4096,
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"ExportPool format must be one of {list(FORMATS)}, got {format!r}")
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ConfigError(
                f"ExportPool every_n_epochs must be >= 1 or null, got {every_n_epochs}"
            )
        if max_samples < 1 or shard_size < 1:
            raise ConfigError(
                f"ExportPool needs max_samples and shard_size >= 1, got {max_samples}, {shard_size}"
            )
        if labels not in ("auto", "target", "teacher"):
            raise ConfigError(f"ExportPool labels must be auto, target or teacher, got {labels!r}")
        self.format: ExportFormat = format
        self.directory = directory
        self.every_n_epochs = every_n_epochs
        self.max_samples = max_samples
        self.labels: LabelSource = labels
        self.storage: Storage | None = storage
        self.shard_size = shard_size
        self.recent = RecentSamples(max_samples)
        self.collect = False
        self.written: list[Path] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        module = image_method(pl_module, type(self).__name__)
        self.collect = module.student_samples != "pool"

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        if self.collect and len(batch):
            self.recent.add(batch)
        return None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, last = finished_epoch(trainer)
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and not last:
            self.export(trainer, pl_module)  # the last epoch's export is on_fit_end's

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.export(trainer, pl_module)

    def output_directory(self, trainer: Trainer) -> Path:
        """Where this rank writes (call on every rank: the log dir is broadcast)."""
        root = Path(
            self.directory or Path(trainer.log_dir or trainer.default_root_dir) / "synthetic"
        )
        return rank_directory(root, trainer.global_rank) if trainer.world_size > 1 else root

    @torch.no_grad()
    def export(self, trainer: Trainer, pl_module: LightningModule) -> Path | None:
        """Export this rank's samples now; the directory written, or None when there are
        no samples (e.g. sample filters kept none)."""
        module = image_method(pl_module, type(self).__name__)
        directory = self.output_directory(trainer)
        source, targets = self._samples(module)
        count = len(source) if isinstance(source, SyntheticPool) else source.shape[0]
        if count == 0:
            rank_zero_warn(f"ExportPool: no synthetic samples to export to {directory}")
            return None
        chosen = choose_labels(
            targets,
            self.labels,
            lambda: teacher_labels(
                module.teacher,
                source,
                lambda x: module.normalize(module.to_input_size(x)),
                batch_size=CHUNK,
            ),
        )
        storage = self.storage
        if storage is None and not isinstance(source, SyntheticPool):
            storage = "float32"
        export_pool(
            source,
            directory,
            chosen,
            format=self.format,
            num_classes=module.num_classes,
            storage=storage,
            shard_size=self.shard_size,
            overwrite=True,
            metadata={
                "method": type(module).__name__,
                "input_shape": list(module.input_shape),
                "mean": list(module.mean),
                "std": list(module.std),
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "images_synthesized": module.images_synthesized,
                "rank": trainer.global_rank,
                "labels": self.labels,
            },
        )
        self.written.append(directory)
        return directory

    def _samples(self, module: Any) -> tuple[SyntheticPool | torch.Tensor, torch.Tensor]:
        """The pool, else the collected samples, else fresh ones; with their targets."""
        if not self.collect:
            return module.pool, module.pool.targets("cpu")
        if len(self.recent):
            assert self.recent.samples is not None and self.recent.targets is not None
            return self.recent.samples.cpu(), self.recent.targets.cpu()
        return self._draw(module)

    def _draw(self, module: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``max_samples`` fresh samples from the synthesizer, leaving the run's RNG streams
        and the synthesizer's buffers (e.g. a generator's BatchNorm statistics) as they were."""
        synthesizer = module.synthesizer
        buffers = {name: b.clone() for name, b in synthesizer.named_buffers()}
        devices = [module.device] if module.device.type == "cuda" else []
        images, targets = [], []
        with torch.random.fork_rng(devices=devices):
            remaining = self.max_samples
            while remaining > 0:
                batch = synthesizer.sample(min(remaining, module.synthesis_batch_size))
                if len(batch) == 0:
                    break
                images.append(batch.samples.detach().float().clamp(0, 1).cpu())
                if batch.targets is None:
                    targets.append(torch.full((len(batch),), NO_TARGET, dtype=torch.long))
                else:
                    targets.append(batch.targets.cpu().long())
                remaining -= len(batch)
        for name, buffer in synthesizer.named_buffers():
            buffer.copy_(buffers[name])
        if not images:
            return torch.empty((0, *module.synthesis_shape)), torch.empty(0, dtype=torch.long)
        return torch.cat(images), torch.cat(targets)
