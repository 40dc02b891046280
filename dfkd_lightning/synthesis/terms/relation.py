"""RGAL's terms (Liang & Fu, IJCV 2025): the synthesis triplet (``triplet``), the student
triplet (``striplet``) and the channel-distillation feature loss (``cd``); they insert into any
method's objectives (see :class:`dfkd_lightning.methods.RGAL`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.relation import (
    SamplingMode,
    TripletSign,
    global_average,
    pooled_embedding,
    sample_triplets,
    triplet_loss,
)
from dfkd_lightning.synthesis.stage_outputs import default_stage_names
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import (
    Needs,
    NetOutput,
    StepContext,
    probe_forward,
)

__all__ = ["ChannelDistillationTerm", "RelationTripletTerm", "StudentTripletTerm"]

Network = Literal["teacher", "student"]
#: ``auto``: the network's stages ``[2:4]`` (``layer3``-``layer4`` of a ResNet, ``block3`` of a
#: WRN), or its penultimate features when it has no stages (LeNet); ``penultimate``; or names.
FeatureChoice = Literal["auto", "penultimate"] | Sequence[str]
PENULTIMATE = "penultimate"


def _check_window(low: float, high: float, name: str) -> None:
    if not 0.0 <= low < high <= 2.0:
        raise ConfigError(
            f"{name}: the sampling window needs 0 <= low < high <= 2 (distances on the unit "
            f"sphere), got low {low}, high {high}"
        )


class _TripletTerm(LossTerm):
    """Triplets on pooled, L2-normalised features of one network, labelled by the teacher's
    argmax, negatives drawn by :func:`~dfkd_lightning.synthesis.relation.sample_triplets`."""

    sign: TripletSign = "ordinary"

    def __init__(
        self,
        network: Network,
        features: FeatureChoice,
        sample_on: Literal["embedding", "logits"],
        sampling: SamplingMode,
        low: float,
        high: float,
        margin: float,
        labels: Literal["teacher", "targets"],
    ) -> None:
        super().__init__()
        if network not in ("teacher", "student"):
            raise ConfigError(f"{self._name}: network must be teacher or student: {network!r}")
        if sample_on not in ("embedding", "logits"):
            raise ConfigError(f"{self._name}: sample_on must be embedding or logits")
        if sampling not in ("focal", "distance"):
            raise ConfigError(f"{self._name}: sampling must be focal or distance: {sampling!r}")
        if labels not in ("teacher", "targets"):
            raise ConfigError(f"{self._name}: labels must be teacher or targets: {labels!r}")
        _check_window(float(low), float(high), self._name)
        if margin < 0:
            raise ConfigError(f"{self._name}: the margin must be >= 0, got {margin}")
        self.network, self.sample_on, self.sampling = network, sample_on, sampling
        self.low, self.high, self.margin, self.labels = (
            float(low),
            float(high),
            float(margin),
            labels,
        )
        self.feature_choice = features if isinstance(features, str) else tuple(features)
        self.stages: tuple[str, ...] = ()

    @property
    def _name(self) -> str:
        return self.registered_name or type(self).__name__

    def bind(self, module: Any) -> None:
        net: nn.Module = getattr(module, self.network)
        if self.feature_choice == "auto":
            self.stages = tuple(default_stage_names(net)[2:4])
        elif self.feature_choice == PENULTIMATE:
            self.stages = ()
        elif isinstance(self.feature_choice, str):
            raise ConfigError(
                f"{self._name}: features must be auto, penultimate or a list of "
                f"{self.network} module names, got {self.feature_choice!r}"
            )
        else:
            self.stages = tuple(self.feature_choice)

    @property
    def needs(self) -> Needs:
        on_student = self.network == "student"
        needs = Needs(
            student=on_student and self.sample_on == "logits",
            teacher_features=not on_student and not self.stages,
            student_features=on_student and not self.stages,
        )
        if on_student:
            return needs | Needs(student_stages=self.stages)
        return needs | Needs(teacher_stages=self.stages)

    def embeddings(self, ctx: StepContext) -> list[torch.Tensor]:
        """The features the hinge is summed over, one tensor per block."""
        output = ctx.student_output() if self.network == "student" else ctx.teacher
        if self.stages:
            return [output.stages[name] for name in self.stages]
        assert output.features is not None
        return [output.features]

    def forward(self, ctx: StepContext) -> torch.Tensor:
        embeddings = self.embeddings(ctx)
        if self.labels == "targets" and ctx.targets is not None:
            labels = ctx.targets
        else:
            labels = ctx.teacher.logits.detach().argmax(dim=1)
        if self.sample_on == "logits":
            output: NetOutput = ctx.student_output() if self.network == "student" else ctx.teacher
            space = output.logits
        else:
            space = torch.cat([pooled_embedding(e.detach()) for e in embeddings], dim=1)
        triplets = sample_triplets(space, labels, mode=self.sampling, low=self.low, high=self.high)
        if triplets is None:  # one label only, or no two samples share one
            return embeddings[0].float().sum() * 0.0
        return triplet_loss(embeddings, triplets, margin=self.margin, sign=self.sign)


@register_term("triplet")
class RelationTripletTerm(_TripletTerm):
    """RGAL's synthesis triplet (Sec. 3.2): on the teacher's pooled features of the samples
    with the teacher's argmax as label, every same-label (anchor, positive) pair and one
    negative by focal weighted sampling (``0.5 < d < 1.0``, inverse-density weights).

    ``sign: paper`` (default) is the paper's text, ``mean max(0, d(a,n) - d(a,p) + m)``: push
    same-class samples apart (intra-class diversity) and pull other classes in (inter-class
    confusion). ``sign: release`` is what the authors' code adds to the generator loss, the
    ordinary ``max(0, d(a,p) - d(a,n) + m)``, the opposite. ``network: student`` with
    ``features: auto`` and ``sample_on: logits`` is the release's script (``--triplet_target
    student --start_layer 2``, negatives drawn on the normalised logits); the paper's figure
    samples on the teacher's pooled embeddings (the default). Several blocks: the hinge is
    summed over them and the sampling space is their concatenated normalised embeddings (our
    choice for ``sample_on: embedding``).
    """

    summary = "RGAL synthesis triplet: spread each class, pull classes together (focal sampling)"

    def __init__(
        self,
        sign: Literal["paper", "release"] = "paper",
        network: Network = "teacher",
        features: FeatureChoice = "auto",
        sample_on: Literal["embedding", "logits"] = "embedding",
        low: float = 0.5,
        high: float = 1.0,
        margin: float = 0.2,
        labels: Literal["teacher", "targets"] = "teacher",
    ) -> None:
        super().__init__(network, features, sample_on, "focal", low, high, margin, labels)
        if sign not in ("paper", "release"):
            raise ConfigError(f"triplet: sign must be 'paper' or 'release', got {sign!r}")
        self.sign_choice = sign
        self.sign = "reversed" if sign == "paper" else "ordinary"


@register_term("striplet")
class StudentTripletTerm(_TripletTerm):
    """RGAL's student triplet (Sec. 3.3): the ordinary ``max(0, d(a,p) - d(a,n) + m)`` on the
    student's pooled penultimate features (the release's ``--striplet_feature global``),
    labelled by the teacher's argmax, negatives by distance-weighted sampling on the student's
    normalised logits (``d`` clamped at 0.5, ``d < 1.4``), as the release draws them: the
    student pulls each class together and pushes classes apart, against the synthesis
    triplet."""

    summary = "RGAL student triplet: pull each class together, push classes apart"

    def __init__(
        self,
        features: FeatureChoice = PENULTIMATE,
        sample_on: Literal["embedding", "logits"] = "logits",
        low: float = 0.5,
        high: float = 1.4,
        margin: float = 0.2,
        labels: Literal["teacher", "targets"] = "teacher",
    ) -> None:
        super().__init__("student", features, sample_on, "distance", low, high, margin, labels)


@register_term("cd")
class ChannelDistillationTerm(LossTerm):
    """RGAL's feature loss (the release's channel distillation): ``sum_l MSE(GAP(conv1x1(S_l)),
    GAP(T_l))`` over paired stages (default: every ``layer<i>``/``block<i>`` of both networks,
    or their penultimate features when they have none). GAP commutes with a 1x1 convolution,
    so each adapter is the equivalent linear map on the pooled student features (a 1x1 conv's
    initialisation); the adapters train with the student's optimizer. ``penultimate: true``
    compares only the penultimate features through one linear head: DDA's release's
    alignment head, ``MSE(align(S_feat), T_feat)`` (weight 30 there)."""

    summary = "RGAL feature loss: MSE of pooled, 1x1-adapted student stages to the teacher's"

    def __init__(
        self,
        teacher_stages: Sequence[str] | None = None,
        student_stages: Sequence[str] | None = None,
        penultimate: bool = False,
    ) -> None:
        super().__init__()
        if penultimate and (teacher_stages or student_stages):
            raise ConfigError("cd compares stages or, with penultimate: true, features: not both")
        self.teacher_stages = tuple(teacher_stages or ())
        self.student_stages = tuple(student_stages or ())
        self.adapters = nn.ModuleList()
        self.penultimate = self.features_only = penultimate

    def bind(self, module: Any) -> None:
        teacher, student = module.teacher, module.student
        if not self.features_only:
            self.teacher_stages = self.teacher_stages or tuple(default_stage_names(teacher))
            self.student_stages = self.student_stages or tuple(default_stage_names(student))
        if len(self.teacher_stages) != len(self.student_stages):
            raise ConfigError(
                f"cd pairs stages one to one, but the teacher has {list(self.teacher_stages)} "
                f"and the student {list(self.student_stages)}; set the cd term's "
                "teacher_stages / student_stages to lists of equal length"
            )
        self.penultimate = not self.teacher_stages
        shape = module.input_shape
        teacher_widths = _widths(teacher, self.teacher_stages, shape)
        student_widths = _widths(student, self.student_stages, shape)
        # nn.Linear's default initialisation is a 1x1 nn.Conv2d's (the same fan-in).
        self.adapters = nn.ModuleList(
            nn.Linear(s, t) for s, t in zip(student_widths, teacher_widths, strict=True)
        )

    @property
    def needs(self) -> Needs:
        if self.penultimate:
            return Needs(teacher_features=True, student_features=True)
        return Needs(teacher_stages=self.teacher_stages, student_stages=self.student_stages)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        student = ctx.student_output()
        if self.penultimate:
            assert student.features is not None and ctx.teacher.features is not None
            pairs = [(student.features, ctx.teacher.features)]
        else:
            pairs = [
                (student.stages[s], ctx.teacher.stages[t])
                for s, t in zip(self.student_stages, self.teacher_stages, strict=True)
            ]
        total = None
        for adapter, (s, t) in zip(self.adapters, pairs, strict=True):
            mse = F.mse_loss(adapter(global_average(s)), global_average(t).detach())
            total = mse if total is None else total + mse
        assert total is not None
        return total


def _widths(net: nn.Module, stages: Sequence[str], input_shape: Sequence[int]) -> list[int]:
    """The channel count of each stage's output (of the penultimate features without stages)."""
    output = probe_forward(net, input_shape, features=not stages, stages=stages)
    if not stages:
        assert output.features is not None
        return [int(output.features.shape[1])]
    return [int(output.stages[name].shape[1]) for name in stages]
