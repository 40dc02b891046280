"""Building the frozen, pretrained teacher every distillation method starts from."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dfkd_lightning.nets import build_classifier, load_classifier_weights


def load_frozen_teacher(
    arch: str, checkpoint: str | Path | None, num_classes: int, in_channels: int
) -> nn.Module:
    """Build ``arch``, load ``checkpoint`` (weights only), freeze it and set eval mode."""
    if checkpoint is None:
        raise ValueError(
            f"a distillation run needs a trained teacher but teacher_checkpoint is not set; "
            f"set model.init_args.teacher_checkpoint to a {arch} checkpoint (ours, a "
            "Fast-Datafree/CMI file or a raw state dict), or train one first, e.g. "
            "`dfkd fit --config configs/experiments/digits/teacher_lenet5.yaml`"
        )
    teacher = build_classifier(arch, num_classes=num_classes, in_channels=in_channels)
    load_classifier_weights(teacher, checkpoint)
    teacher.requires_grad_(False)
    return teacher.eval()
