"""Building the frozen, pretrained teacher every distillation method starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets import build_classifier, load_classifier_weights
from dfkd_lightning.records.provenance import pretrained_source

Net = TypeVar("Net", bound=nn.Module)


def freeze_pretrained(net: Net, checkpoint: str | Path | None, hint: str) -> Net:
    """Load ``checkpoint`` (weights only) into ``net``, freeze it and set eval mode.

    ``hint`` ends the error raised when no checkpoint is given: what to pass or train.
    """
    if checkpoint is None:
        raise ConfigError(
            f"a distillation run needs a trained teacher but teacher_checkpoint is not set; {hint}"
        )
    load_classifier_weights(net, checkpoint)
    net.requires_grad_(False)
    return net.eval()


def load_frozen_teacher(
    arch: str, checkpoint: str | Path | None, num_classes: int, in_channels: int
) -> nn.Module:
    """Build ``arch`` and load it frozen from ``checkpoint``."""
    return freeze_pretrained(
        build_classifier(arch, num_classes=num_classes, in_channels=in_channels),
        checkpoint,
        f"set model.init_args.teacher_checkpoint to a {arch} checkpoint (ours, a "
        "Fast-Datafree/CMI file or a raw state dict), or train one first, e.g. "
        "`dfkd fit --config configs/experiments/digits/teacher_lenet5.yaml`",
    )


class StudentWithFrozenTeacher:
    """Mixin for a LightningModule holding ``teacher`` and ``student``: the student is what
    is evaluated and what ``forward`` runs; ``train()`` never takes the teacher out of eval
    mode (its BatchNorm statistics and dropout stay fixed)."""

    teacher: nn.Module
    student: nn.Module
    teacher_checkpoint: str | Path | None = None

    @property
    def pretrained_sources(self) -> dict[str, dict[str, Any]]:
        """The teacher's checkpoint file and its SHA-256 (for the run's provenance)."""
        checkpoint = self.teacher_checkpoint
        return {"teacher": pretrained_source(checkpoint)} if checkpoint else {}

    def evaluated_net(self) -> nn.Module:
        return self.student

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def train(self, mode: bool = True) -> StudentWithFrozenTeacher:
        super().train(mode)  # type: ignore[misc]
        self.teacher.eval()
        return self
