"""The rotation self-supervised head of DDA's release (the CSD code it is built on): a head on
the student's penultimate features predicts class and rotation jointly (4C ways); the student
objective trains it, the synthesis objective makes samples that defeat it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import NO_TARGET
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import (
    StepContext,
    forward_with_features,
    probe_forward,
)

__all__ = ["RotationAdversarialTerm", "RotationHeadTerm", "rotated_views"]

#: The four rotations by multiples of 90 degrees.
ROTATIONS = 4


def rotated_views(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image rotated by 0, 90, 180 and 270 degrees (the four views of an image side by
    side) and the joint labels ``4 y + k`` of view ``k`` of an image of class ``y``."""
    if inputs.shape[-1] != inputs.shape[-2]:
        raise ConfigError(
            f"the rotation head rotates images by 90 degrees and needs square inputs, got "
            f"{tuple(inputs.shape[-2:])}"
        )
    views = torch.stack([torch.rot90(inputs, k, (2, 3)) for k in range(ROTATIONS)], 1)
    labels = torch.stack([targets * ROTATIONS + k for k in range(ROTATIONS)], 1)
    return views.flatten(0, 1), labels.flatten()


class _RotationHead(nn.Module):
    """Linear-ReLU-linear to ``4 C`` outputs, L2-normalised (the release's ``MLPHead``)."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(), nn.Linear(width, ROTATIONS * num_classes)
        )

    def reset(self) -> None:
        """The release's re-initialisation: weights ~ N(0, 0.02), biases 0."""
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, 0.0, 0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.layers(features.flatten(1).float()), dim=1)


def _classes(ctx: StepContext) -> torch.Tensor:
    """The samples' targets; the teacher's argmax where a sample has none."""
    argmax = ctx.teacher.logits.detach().argmax(1)
    if ctx.targets is None:
        return argmax
    return torch.where(ctx.targets == NO_TARGET, argmax, ctx.targets)


def _rotation_loss(
    head: _RotationHead, student: nn.Module, ctx: StepContext, *, student_grad: bool
) -> torch.Tensor:
    """``CE(head(f_S(rot_k x)), 4 y + k)`` over the four rotations of every input."""
    views, labels = rotated_views(ctx.inputs, _classes(ctx))
    if student_grad:
        features = forward_with_features(student, views, features=True).features
    else:  # the release: the student in eval mode, its features detached
        was_training = student.training
        student.eval()
        try:
            with torch.no_grad():
                features = forward_with_features(student, views, features=True).features
        finally:
            student.train(was_training)
    assert features is not None
    return F.cross_entropy(head(features), labels)


@register_term("rotation")
class RotationHeadTerm(LossTerm):
    """Student side: ``CE(h(f_S(rot_k x)), 4 y + k)`` (the release's ``train_head``), the
    cross-entropy of a head ``h`` on the student's penultimate features to the joint class-
    rotation label of each of the four rotations of every student input. As released the head
    learns on detached features of the student in eval mode (``detach_student: true``: the
    student's weights do not see this term; false: the student learns the rotation task too,
    self-supervised label augmentation) and is re-initialised after every synthesis round
    (``reset_every_round``). Its output is L2-normalised, so its logits lie in [-1, 1]. The
    head trains with the student's optimizer (the release gives it its own SGD of the same
    settings without the schedule)."""

    summary = "rotation head: CE of a 4C-way class x rotation head on student features (DDA)"

    def __init__(self, detach_student: bool = True, reset_every_round: bool = True) -> None:
        super().__init__()
        self.detach_student, self.reset_every_round = detach_student, reset_every_round
        self.head: _RotationHead | None = None
        self.student: nn.Module | None = None

    def bind(self, module: Any) -> None:
        if module.num_classes < 1:
            raise ConfigError("the rotation term predicts class and rotation: num_classes >= 1")
        output = probe_forward(module.student, module.input_shape, features=True)
        assert output.features is not None
        self.head = _RotationHead(int(output.features.flatten(1).shape[1]), module.num_classes)
        self.head.reset()
        self.__dict__["student"] = module.student  # a reference, not a submodule

    def forward(self, ctx: StepContext) -> torch.Tensor:
        assert self.head is not None and self.student is not None, "bind() first"
        return _rotation_loss(self.head, self.student, ctx, student_grad=not self.detach_student)

    def end_round(self, best: Any) -> None:
        if self.reset_every_round and self.head is not None:
            self.head.reset()


@register_term("rotation_adv")
class RotationAdversarialTerm(LossTerm):
    """Synthesis side: ``-CE(h(f_S(rot_k x)), 4 y + k)``, samples on which the student's
    rotation head fails (the release's ``loss_dda``, weight 10 in its scripts). The head is the
    student objective's ``rotation`` term's; gradients pass through the student (eval mode) to
    the samples."""

    summary = "rotation adversary: samples that defeat the student's rotation head (DDA release)"

    def __init__(self) -> None:
        super().__init__()
        self.module: Any = None

    def bind(self, module: Any) -> None:
        self.__dict__["module"] = module
        self.head_term()  # the student objective exists (unbound) when the synthesis one binds

    def head_term(self) -> RotationHeadTerm:
        objective = self.module.student_objective
        heads = [
            term
            for name, term in objective.terms.items()
            if isinstance(term, RotationHeadTerm) and objective.weights[name] != 0
        ]
        if not heads:
            raise ConfigError(
                "rotation_adv attacks the student's rotation head: add the rotation term to "
                "student_loss (e.g. rotation: 1.0) or set rotation_adv to 0"
            )
        return heads[0]

    def forward(self, ctx: StepContext) -> torch.Tensor:
        head = self.head_term()
        assert head.head is not None
        return -_rotation_loss(head.head, self.module.student, ctx, student_grad=True)
