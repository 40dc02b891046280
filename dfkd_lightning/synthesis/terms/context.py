"""The per-step context every loss term reads: computed once, with explicitly returned features.

A step (a synthesis step or a student step) runs the teacher once, and the student once when
some term needs it, on the same network inputs. What else a forward must return (penultimate
features, stage outputs, the teacher's BatchNorm statistics) is the union of what the terms of
the step declare in :class:`Needs`; each is captured during that very forward and handed over
in a :class:`NetOutput`. No term reads state that some earlier forward left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.bn_statistics import BNStatisticsLoss

if TYPE_CHECKING:
    from dfkd_lightning.methods.datafree import DataFreeDistillation

__all__ = ["Needs", "NetOutput", "StepContext", "forward_with_features", "probe_forward"]


@dataclass(frozen=True)
class Needs:
    """What a term reads beyond the teacher's logits (the union over a step's terms)."""

    student: bool = False  # the student's output on the same inputs
    teacher_features: bool = False  # the teacher's penultimate features
    student_features: bool = False
    teacher_bn: bool = False  # BN statistics of the teacher forward (synthesis steps)
    teacher_stages: tuple[str, ...] = ()  # outputs of these teacher modules
    student_stages: tuple[str, ...] = ()
    teacher_input_means: tuple[str, ...] = ()  # per-sample channel means of their inputs

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            student=self.student or other.student,
            teacher_features=self.teacher_features or other.teacher_features,
            student_features=self.student_features or other.student_features,
            teacher_bn=self.teacher_bn or other.teacher_bn,
            teacher_stages=_union(self.teacher_stages, other.teacher_stages),
            student_stages=_union(self.student_stages, other.student_stages),
            teacher_input_means=_union(self.teacher_input_means, other.teacher_input_means),
        )

    @property
    def runs_student(self) -> bool:
        return self.student or self.student_features or bool(self.student_stages)


def _union(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


@dataclass
class NetOutput:
    """One forward of a network: its output and what was captured during that forward."""

    logits: torch.Tensor
    features: torch.Tensor | None = None
    stages: dict[str, torch.Tensor] = field(default_factory=dict)
    bn_loss: torch.Tensor | None = None  # DeepInversion's R_feature of this forward
    bn_instance_features: torch.Tensor | None = None  # CMI's per-instance BN-input means
    input_means: dict[str, torch.Tensor] = field(default_factory=dict)  # (N, C) per module


def _output(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output


def _input_mean(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    """The per-sample channel means of a module's input, (N, C), in float32 (CMI's
    ``InstanceMeanHook``)."""
    x = inputs[0].float()
    return x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x


@contextmanager
def _captured(
    net: nn.Module, names: Sequence[str], what: Callable[..., torch.Tensor] = _output
) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on ``names`` for the length of the block; ``what(module, inputs, output)``
    of each lands in the dict."""
    captured: dict[str, torch.Tensor] = {}
    if not names:
        yield captured
        return
    modules = dict(net.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ConfigError(f"{type(net).__name__} has no modules {missing}")

    def keeper(name: str):
        def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            captured[name] = what(module, inputs, output)

        return keep

    handles = [modules[name].register_forward_hook(keeper(name)) for name in names]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def forward_with_features(
    net: nn.Module,
    inputs: torch.Tensor,
    *,
    features: bool = False,
    stages: Sequence[str] = (),
    bn: BNStatisticsLoss | None = None,
    input_means: Sequence[str] = (),
) -> NetOutput:
    """Run ``net`` once on ``inputs`` and return its logits with what was asked for."""
    recording = bn.recording() if bn is not None else nullcontext()
    with (
        _captured(net, stages) as captured,
        _captured(net, input_means, _input_mean) as means,
        recording,
    ):
        if features:
            logits, penultimate = net(inputs, return_features=True)
        else:
            logits, penultimate = net(inputs), None
        bn_loss = bn() if bn is not None else None
        instance = bn.instance_features() if bn is not None else None
    return NetOutput(logits, penultimate, dict(captured), bn_loss, instance, dict(means))


def probe_forward(net: nn.Module, input_shape: Sequence[int], **options: Any) -> NetOutput:
    """One forward of two zero samples of ``input_shape`` through ``net`` in eval mode without
    gradients (its training mode restored), with :func:`forward_with_features`'s ``options``:
    how wide the features a term reads are, before it builds its layers."""
    was_training = net.training
    net.eval()
    try:
        parameter = next(net.parameters(), None)
        device = parameter.device if parameter is not None else None
        with torch.no_grad():
            sample = torch.zeros(2, *input_shape, device=device)
            return forward_with_features(net, sample, **options)
    finally:
        net.train(was_training)


@dataclass
class StepContext:
    """Everything the terms of one step read.

    ``batch``: the synthetic samples (with autograd history during synthesis); ``inputs``: the
    network inputs both networks saw (resized, augmented, normalised samples); ``teacher`` and
    ``student``: their outputs (``student`` is None when no term needs it); ``phase``:
    ``"synthesis"`` or ``"student"``; ``module``: the method (progress, further forwards).
    Terms may put per-sample tensors in ``keep``; they travel with the batch as extras (e.g.
    into the round's best batch). Scalars a term puts in ``logs`` are logged next to the
    terms (``<prefix>/<name>``).
    """

    batch: SyntheticBatch
    inputs: torch.Tensor
    teacher: NetOutput
    student: NetOutput | None
    phase: str
    module: DataFreeDistillation
    keep: dict[str, torch.Tensor] = field(default_factory=dict)
    logs: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def targets(self) -> torch.Tensor | None:
        return self.batch.targets

    def student_output(self) -> NetOutput:
        """The student's output; an error naming the term's missing ``Needs`` otherwise."""
        if self.student is None:
            raise RuntimeError("this term reads the student's output: declare Needs(student=True)")
        return self.student
