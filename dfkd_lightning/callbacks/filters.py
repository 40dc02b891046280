"""Sample filters: callbacks that pass on a subset of every new synthetic batch.

Each logs the fraction it kept of what it saw this epoch (``filter/<name>_kept``). Put them
before the monitoring callbacks in the trainer's list to monitor what reaches the pool.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer

from dfkd_lightning.callbacks.base import SampleCallback
from dfkd_lightning.callbacks.quality import image_method
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = [
    "ClassQuotaFilter",
    "ConfidenceFilter",
    "SampleFilter",
    "SimilarityFilter",
    "network_outputs",
    "teacher_outputs",
]


def teacher_outputs(module: Any, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits and penultimate features of image samples (eval mode)."""
    return network_outputs(module, module.teacher, samples)


def network_outputs(
    module: Any, net: torch.nn.Module, samples: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``net``'s logits and penultimate features of the method's image samples (eval mode)."""
    was_training = net.training
    net.eval()
    try:
        inputs = module.normalize(module.to_input_size(samples.float()))
        logits, features = net(inputs, return_features=True)
    finally:
        net.train(was_training)
    return logits.float(), features.flatten(1).float()


class SampleFilter(SampleCallback):
    """A filter: :meth:`keep` says which samples of a batch pass; it counts what it kept."""

    name = "filter"

    def __init__(self) -> None:
        self.seen = self.kept = 0

    def keep(self, module: Any, batch: SyntheticBatch) -> torch.Tensor:
        """A boolean mask over the batch."""
        raise NotImplementedError

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        image_method(pl_module, type(self).__name__)

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        mask = self.keep(module, batch)
        self.seen += len(batch)
        self.kept += int(mask.sum())
        return batch.select(mask)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.seen:
            pl_module.log(f"filter/{self.name}_kept", self.kept / self.seen)
        self.seen = self.kept = 0


class ConfidenceFilter(SampleFilter):
    """Keeps the samples whose teacher confidence (max softmax probability) is at least
    ``min_confidence``."""

    name = "confidence"

    def __init__(self, min_confidence: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self.min_confidence = min_confidence

    def keep(self, module: Any, batch: SyntheticBatch) -> torch.Tensor:
        logits, _ = teacher_outputs(module, batch.samples)
        return logits.softmax(1).max(1).values >= self.min_confidence


class ClassQuotaFilter(SampleFilter):
    """Keeps at most ``per_class`` samples of each class over the run (per rank), so the pool
    stays balanced: the class is the teacher's argmax (``label: teacher``) or the target the
    synthesizer aimed at (``label: target``). The counts are saved in checkpoints."""

    name = "class_quota"

    def __init__(self, per_class: int, label: Literal["teacher", "target"] = "teacher") -> None:
        super().__init__()
        if per_class < 1:
            raise ConfigError(f"per_class must be >= 1, got {per_class}")
        if label not in ("teacher", "target"):
            raise ConfigError(f"label must be 'teacher' or 'target', got {label!r}")
        self.per_class, self.label = per_class, label
        self.counts: torch.Tensor | None = None

    def keep(self, module: Any, batch: SyntheticBatch) -> torch.Tensor:
        if self.label == "target":
            if batch.targets is None:
                raise ConfigError(
                    "ClassQuotaFilter(label: target) needs a synthesizer that aims at classes; "
                    "use label: teacher"
                )
            classes = batch.targets
        else:
            classes = teacher_outputs(module, batch.samples)[0].argmax(1)
        num_classes = max(int(module.num_classes), int(classes.max()) + 1)
        if self.counts is None or len(self.counts) < num_classes:
            counts = torch.zeros(num_classes, dtype=torch.long, device=classes.device)
            if self.counts is not None:
                counts[: len(self.counts)] = self.counts.to(classes.device)
            self.counts = counts
        counts = self.counts.to(classes.device)
        one_hot = F.one_hot(classes.clamp_min(0), num_classes)
        rank_in_batch = (one_hot.cumsum(0) * one_hot).sum(1)  # 1 for a class's first sample
        mask = (classes >= 0) & (counts[classes.clamp_min(0)] + rank_in_batch <= self.per_class)
        self.counts = counts + torch.bincount(classes[mask], minlength=num_classes)
        return mask

    def state_dict(self) -> dict[str, Any]:
        return {"counts": None if self.counts is None else self.counts.cpu()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.counts = state_dict.get("counts")


#: What the similarity filter embeds with: a network's penultimate features or its logits.
Embedding = Literal["teacher", "teacher_logits", "student", "student_logits"]


class SimilarityFilter(SampleFilter):
    """Keeps the samples whose embedding has a cosine similarity of at least ``threshold``
    (DDA's omega: ``M_k = cos(G_k, F_syn) >= omega``) to that of its reference: the source
    image the batch carries in ``batch.extras[source_key]`` (a variation of a real or
    synthetic image). ``embedding``: the teacher's penultimate features (default), its logits
    (``teacher_logits``), or the student's (``student``, ``student_logits``). Samples that are
    their own source (the sources a variation stage passes on) pass and are not counted in
    the logged keep rate, which is the variations'. A batch without a source is an error
    naming the key."""

    name = "similarity"

    def __init__(
        self, threshold: float = 0.5, source_key: str = "source", embedding: Embedding = "teacher"
    ) -> None:
        super().__init__()
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold must lie in [-1, 1], got {threshold}")
        if embedding not in ("teacher", "teacher_logits", "student", "student_logits"):
            raise ConfigError(
                "embedding must be teacher, teacher_logits, student or student_logits, got "
                f"{embedding!r}"
            )
        self.threshold, self.source_key, self.embedding = threshold, source_key, embedding

    def embed(self, module: Any, samples: torch.Tensor) -> torch.Tensor:
        net = module.student if self.embedding.startswith("student") else module.teacher
        logits, features = network_outputs(module, net, samples)
        return logits if self.embedding.endswith("logits") else features

    def source_of(self, batch: SyntheticBatch) -> torch.Tensor:
        """The source image of every sample; an error naming the key when the batch has none."""
        source = batch.extras.get(self.source_key)
        if source is None or source.shape != batch.samples.shape:
            raise ConfigError(
                f"SimilarityFilter compares each sample with its source image, which the batch "
                f"must carry as extras[{self.source_key!r}] with the samples' shape; this "
                "method's batches do not (use it with a method that makes variations, or set "
                "source_key)"
            )
        return source

    def similarity(self, module: Any, batch: SyntheticBatch) -> torch.Tensor:
        """Each sample's cosine similarity to its source."""
        reference = self.embed(module, self.source_of(batch))
        return F.cosine_similarity(self.embed(module, batch.samples), reference, dim=1)

    def keep(self, module: Any, batch: SyntheticBatch) -> torch.Tensor:
        return self.similarity(module, batch) >= self.threshold

    def on_samples_synthesized(
        self, trainer: Trainer, module: Any, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        is_variation = ~(self.source_of(batch) == batch.samples).flatten(1).all(1)
        mask = ~is_variation
        if bool(is_variation.any()):  # only the variations are embedded and counted
            mask[is_variation] = self.keep(module, batch.select(is_variation))
        self.seen += int(is_variation.sum())
        self.kept += int((mask & is_variation).sum())
        return batch.select(mask)
