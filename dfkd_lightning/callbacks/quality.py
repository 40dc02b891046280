"""FID and KID of the synthetic samples against real images (torchmetrics)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from dfkd_lightning.callbacks.base import SampleCallback, finished_epoch
from dfkd_lightning.callbacks.features import FeatureKind, build_feature_extractor
from dfkd_lightning.callbacks.recent import RecentSamples
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = ["SampleQuality", "image_method"]

CHUNK = 256


def image_method(module: LightningModule, callback: str) -> Any:
    """``module`` if it is a data-free method on images; a :class:`ConfigError` otherwise."""
    from dfkd_lightning.methods.datafree import DataFreeDistillation

    if not isinstance(module, DataFreeDistillation) or not module.is_image:
        raise ConfigError(
            f"{callback} watches the synthetic images of a data-free method on images; "
            f"{type(module).__name__} has none (remove the callback from this run)"
        )
    return module


class SampleQuality(SampleCallback):
    """FID and KID of the newest ``num_samples`` synthetic images against up to
    ``num_samples`` real images of the ``real`` split, every ``every_n_epochs`` epochs and at
    the last; logged as ``synth/fid``, ``synth/kid_mean``, ``synth/kid_std``.

    ``feature``: ``teacher`` (the teacher's penultimate features: "teacher-FID", offline),
    ``inception`` (torchmetrics' 2048-d Inception; needs torch-fidelity and its weights file,
    ``weights`` or torch hub's cache: a missing file is an error saying where to put it) or
    ``torchvision`` (``torchvision_model`` with the local state dict ``weights``). Images are
    compared at the network's input size. Under DDP every rank adds its own samples (the
    metric states are summed across ranks); each rank adds its share of the real images, once.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 1024,
        real: Literal["val", "test"] = "val",
        feature: FeatureKind = "teacher",
        weights: str | None = None,
        torchvision_model: str | None = None,
        kid_subset_size: int = 1000,
    ) -> None:
        if every_n_epochs < 1 or num_samples < 2 or kid_subset_size < 2:
            raise ConfigError(
                "SampleQuality needs every_n_epochs >= 1, num_samples >= 2 and "
                f"kid_subset_size >= 2; got {every_n_epochs}, {num_samples}, {kid_subset_size}"
            )
        if real not in ("val", "test"):
            raise ConfigError(f"SampleQuality real must be 'val' or 'test', got {real!r}")
        self.every_n_epochs, self.num_samples, self.real = every_n_epochs, num_samples, real
        self.feature, self.weights, self.torchvision_model = feature, weights, torchvision_model
        self.kid_subset_size = kid_subset_size
        self.recent = RecentSamples(num_samples)
        self.fid: FrechetInceptionDistance | None = None
        self.kid: KernelInceptionDistance | None = None
        self.real_count = 0
        self.last: dict[str, float] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        image_method(pl_module, type(self).__name__)
        if self.feature not in ("teacher", "inception", "torchvision"):
            raise ConfigError(
                f"SampleQuality feature must be teacher, inception or torchvision, got "
                f"{self.feature!r}"
            )

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = image_method(pl_module, type(self).__name__)
        extractor = build_feature_extractor(
            self.feature,
            module.input_shape,
            teacher=module.teacher,
            normalize=module.normalize,
            weights=self.weights,
            torchvision_model=self.torchvision_model,
        )
        options = {"normalize": True, "reset_real_features": False, "sync_on_compute": True}
        self.fid = FrechetInceptionDistance(feature=extractor, **options).to(module.device)
        self.kid = KernelInceptionDistance(
            feature=extractor, subset_size=self.kid_subset_size, **options
        ).to(module.device)
        self.real_count = 0
        self.recent.clear()

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        self.recent.add(batch)
        return None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, last = finished_epoch(trainer)
        if epoch % self.every_n_epochs == 0 or last:
            values = self.evaluate(trainer, pl_module)
            if values:
                pl_module.log_dict(values)

    def _real_images(self, trainer: Trainer, module: Any) -> Iterator[torch.Tensor]:
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ConfigError("SampleQuality compares with real images: run it with a DataModule")
        loader = datamodule.val_dataloader() if self.real == "val" else datamodule.test_dataloader()
        if isinstance(loader, list | tuple):
            loader = loader[0]
        for inputs, *_ in loader:
            yield module.denormalize(inputs.to(module.device).float()).clamp(0, 1)

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """FID/KID of the newest samples now (empty before any sample)."""
        module = image_method(pl_module, type(self).__name__)
        if self.fid is None or self.kid is None or self.recent.samples is None:
            return {}
        if self.real_count == 0:  # once; every rank adds its share, the total is known to all
            rank, world = trainer.global_rank, trainer.world_size
            for images in self._real_images(trainer, module):
                images = images[: self.num_samples - self.real_count]
                share = torch.arange(self.real_count, self.real_count + len(images)) % world == rank
                if share.any():
                    self.fid.update(images[share.to(images.device)], real=True)
                    self.kid.update(images[share.to(images.device)], real=True)
                self.real_count += len(images)
                if self.real_count >= self.num_samples:
                    break
        self.fid.reset()
        self.kid.reset()
        for chunk in self.recent.samples.split(CHUNK):
            fake = module.to_input_size(chunk)
            self.fid.update(fake, real=False)
            self.kid.update(fake, real=False)
        fake_count = len(self.recent) * trainer.world_size
        self.kid.subset_size = min(self.kid_subset_size, fake_count, self.real_count)
        fid = float(self.fid.compute())
        kid_mean, kid_std = self.kid.compute()
        self.last = {
            "synth/fid": fid,
            "synth/kid_mean": float(kid_mean),
            "synth/kid_std": float(kid_std),
        }
        return self.last
