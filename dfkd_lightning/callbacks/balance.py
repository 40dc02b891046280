"""Class balance and diversity of the synthetic samples, as the teacher sees them."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer

from dfkd_lightning.callbacks.base import SampleCallback, finished_epoch
from dfkd_lightning.callbacks.quality import CHUNK, image_method
from dfkd_lightning.callbacks.recent import RecentSamples
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = [
    "ClassBalance",
    "balance_entropy",
    "inter_class_separation",
    "intra_class_diversity",
]


def balance_entropy(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Entropy of the histogram of ``predictions`` divided by ``log(num_classes)``: 1 for
    perfectly balanced classes, 0 when every sample is one class."""
    fractions = torch.bincount(predictions, minlength=num_classes).float() / len(predictions)
    entropy = -(fractions * fractions.clamp_min(1e-12).log()).sum()
    return entropy / math.log(num_classes)


def intra_class_diversity(features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The mean pairwise Euclidean distance of the L2-normalised ``features`` of the samples
    of each class (pairs i != j), averaged over the classes with two or more samples
    (NaN when none has)."""
    unit = F.normalize(features.float(), dim=1)
    means = []
    for label in classes.unique():
        members = unit[classes == label]
        n = len(members)
        if n >= 2:
            means.append(torch.cdist(members, members).sum() / (n * (n - 1)))
    return torch.stack(means).mean() if means else features.new_tensor(float("nan"))


def inter_class_separation(features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The mean distance from each L2-normalised feature to the nearest centroid of another
    class (NaN with fewer than two classes)."""
    unit = F.normalize(features.float(), dim=1)
    labels = classes.unique()
    if len(labels) < 2:
        return features.new_tensor(float("nan"))
    centroids = torch.stack([unit[classes == label].mean(0) for label in labels])
    distances = torch.cdist(unit, centroids)
    own = classes.unsqueeze(1) == labels.unsqueeze(0)
    return distances.masked_fill(own, float("inf")).min(dim=1).values.mean()


class ClassBalance(SampleCallback):
    """Every ``every_n_epochs`` epochs and at the last, on the newest ``num_samples``
    synthetic images (the teacher's argmax as their class): ``synth/class_entropy`` (the
    predicted classes' entropy / log C), ``synth/classes_present``, ``synth/target_match``
    (predictions equal to the class the synthesizer aimed at, when it aims),
    ``synth/confidence`` (mean max probability), ``synth/intra_class_diversity`` and
    ``synth/inter_class_separation`` (teacher penultimate features, see the functions
    above), and the fraction of each class (``synth/class_fraction/<c>``) when there are at
    most ``max_logged_classes`` classes.
    Under DDP each rank's figures are averaged.
    """

    def __init__(
        self, every_n_epochs: int = 1, num_samples: int = 1024, max_logged_classes: int = 20
    ) -> None:
        if every_n_epochs < 1 or num_samples < 2:
            raise ConfigError(
                f"ClassBalance needs every_n_epochs >= 1 and num_samples >= 2, got "
                f"{every_n_epochs} and {num_samples}"
            )
        self.every_n_epochs, self.max_logged_classes = every_n_epochs, max_logged_classes
        self.recent = RecentSamples(num_samples)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        image_method(pl_module, type(self).__name__)

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        self.recent.add(batch)
        return None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch, last = finished_epoch(trainer)
        if epoch % self.every_n_epochs == 0 or last:
            values = self.evaluate(pl_module)
            if values:
                pl_module.log_dict(values, sync_dist=True)

    @torch.no_grad()
    def evaluate(self, pl_module: LightningModule) -> dict[str, torch.Tensor]:
        """The figures for the newest samples now (empty before any sample)."""
        module = image_method(pl_module, type(self).__name__)
        if self.recent.samples is None or self.recent.targets is None:
            return {}
        logits, features = [], []
        was_training = module.teacher.training
        module.teacher.eval()
        for chunk in self.recent.samples.split(CHUNK):
            out, feat = module.teacher(
                module.normalize(module.to_input_size(chunk)), return_features=True
            )
            logits.append(out.float())
            features.append(feat.flatten(1).float())
        module.teacher.train(was_training)
        logit, feature = torch.cat(logits), torch.cat(features)
        predicted = logit.argmax(1)
        num_classes = logit.shape[1]
        values = {
            "synth/class_entropy": balance_entropy(predicted, num_classes),
            "synth/classes_present": predicted.unique().numel()
            + torch.zeros((), device=logit.device),
            "synth/confidence": logit.softmax(1).max(1).values.mean(),
            "synth/intra_class_diversity": intra_class_diversity(feature, predicted),
            "synth/inter_class_separation": inter_class_separation(feature, predicted),
        }
        aimed = self.recent.targets >= 0
        if aimed.any():
            values["synth/target_match"] = (
                (predicted[aimed] == self.recent.targets[aimed]).float().mean()
            )
        if num_classes <= self.max_logged_classes:
            fractions = torch.bincount(predicted, minlength=num_classes).float() / len(predicted)
            values.update({f"synth/class_fraction/{c}": f for c, f in enumerate(fractions)})
        return {name: value.float() for name, value in values.items()}
