"""The class labels of an exported set: the synthesis targets or the teacher's argmax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.export.images import chunks, to_float
from dfkd_lightning.synthesis.batch import NO_TARGET
from dfkd_lightning.synthesis.pool import SyntheticPool

__all__ = ["LabelSource", "check_targets", "choose_labels", "teacher_labels"]

#: Where the exported labels come from: the targets the images were synthesized for
#: (``target``), the teacher's argmax (``teacher``), or the targets when every image has one,
#: else the teacher (``auto``).
LabelSource = Literal["auto", "target", "teacher"]


@torch.no_grad()
def teacher_labels(
    teacher: nn.Module,
    images: SyntheticPool | torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """The teacher's argmax class of every image (int64, on the CPU), in order.

    ``images``: a pool or ``[N, C, H, W]`` images in [0, 1] (uint8: 0..255).
    ``preprocess`` maps a chunk of [0, 1] images to the teacher's inputs: normalise with the
    dataset's mean/std and resize to the input size (e.g. ``lambda x:
    module.normalize(module.to_input_size(x))``); ``None`` feeds them as they are. The
    teacher runs in eval mode on the device of its parameters, ``batch_size`` at a time.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    parameter = next(iter(teacher.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = teacher.training
    teacher.eval()
    labels = []
    try:
        for chunk in chunks(images, batch_size):
            inputs = to_float(chunk).to(device)
            if preprocess is not None:
                inputs = preprocess(inputs)
            labels.append(teacher(inputs).argmax(1).cpu())
    finally:
        teacher.train(was_training)
    if not labels:
        return torch.empty((0,), dtype=torch.long)
    return torch.cat(labels).long()


def check_targets(targets: torch.Tensor, count: int, num_classes: int | None) -> torch.Tensor:
    """Validated int64 CPU labels, one per image, none unknown."""
    if tuple(targets.shape) != (count,):
        raise ConfigError(
            f"targets have shape {tuple(targets.shape)} but there are {count} images: pass one "
            "class label per image"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ConfigError(f"targets must be integer class labels, got {targets.dtype}")
    targets = targets.detach().to("cpu", torch.long)
    unknown = int((targets == NO_TARGET).sum())
    if unknown:
        raise ConfigError(
            f"{unknown} of the {count} images have no class target (NO_TARGET: they were "
            "synthesized for no class), and an exported set needs a label per image. Label "
            "them with the teacher: export_pool(..., targets=teacher_labels(teacher, images, "
            "preprocess=...)) (the ExportPool callback does this with labels='auto')"
        )
    if count and int(targets.min()) < 0:
        raise ConfigError(f"targets must be >= 0, got {int(targets.min())}")
    if num_classes is not None and count and int(targets.max()) >= num_classes:
        raise ConfigError(
            f"target {int(targets.max())} is out of range for num_classes={num_classes}"
        )
    return targets


def choose_labels(
    targets: torch.Tensor, source: LabelSource, teacher: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The labels to export by ``source`` (see :data:`LabelSource`): ``targets`` or
    ``teacher()`` (called only when needed)."""
    if source not in ("auto", "target", "teacher"):
        raise ConfigError(f"labels must be auto, target or teacher, got {source!r}")
    if source == "teacher" or (source == "auto" and bool((targets == NO_TARGET).any())):
        return teacher()
    return targets
