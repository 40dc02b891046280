"""CMI's contrastive term (Fang et al., IJCAI 2021, Eq. 6-8) with its head and memory bank."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.contrastive import (
    ContrastiveHead,
    FeatureMemoryBank,
    contrastive_loss,
)
from dfkd_lightning.synthesis.terms.base import LossTerm, register_term
from dfkd_lightning.synthesis.terms.context import (
    Needs,
    NetOutput,
    StepContext,
    probe_forward,
)

__all__ = ["CMI_FEATURES", "ContrastiveTerm"]

#: The extra under which the term keeps each sample's (local, global) instance features.
CMI_FEATURES = "cmi_features"


@register_term("cr")
class ContrastiveTerm(LossTerm):
    """Instance discrimination between a global view (the synthesis view) and a local view
    (random resized crop, scale ``local_scale``) of every image, embedded as the teacher's
    per-instance feature means and projected by a persistent MLP head (``head_dim``); the
    ``n_neg`` negatives come from a memory bank (``bank_size``) of earlier rounds' pooled
    batches. ``mode: supcon`` is the paper's objective, ``local_to_global`` what the released
    code runs. The head trains with the synthesizer's optimizer, in its own parameter group
    with Adam ``head_betas`` (the release's separate head optimizer uses Adam's defaults).

    ``feature_layers``: whose inputs' channel means make the instance feature. ``bn``: every
    BatchNorm layer's (the release's synthesizer default); a list of teacher module names;
    ``auto`` (default): ``layer1``-``layer4`` when the teacher has them (a ResNet), else
    ``bn``. The release's script passes ``layer1``-``layer4`` for its ResNet-34 teacher only
    (512 values instead of 8,512, a 512x512 head instead of 8512x8512); extending it to every
    ResNet teacher is our choice.
    """

    summary = "contrastive instance discrimination with a memory bank (CMI)"

    def __init__(
        self,
        temperature: float = 0.1,
        mode: Literal["supcon", "local_to_global"] = "supcon",
        bank_size: int = 40960,
        n_neg: int = 4096,
        head_dim: int = 128,
        local_scale: tuple[float, float] = (0.25, 1.0),
        feature_layers: Sequence[str] | Literal["auto", "bn"] = "auto",
        head_betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        super().__init__()
        self.temperature, self.mode = float(temperature), mode
        self.bank_size, self.n_neg, self.head_dim = int(bank_size), int(n_neg), int(head_dim)
        self.local_augmenter = BatchAugment(
            crop_padding=0, flip=True, resized_crop_scale=tuple(local_scale)
        )
        if isinstance(feature_layers, str) and feature_layers not in ("auto", "bn"):
            raise ConfigError(
                f"cr feature_layers must be 'auto', 'bn' or a list of teacher module names, "
                f"got {feature_layers!r}"
            )
        self.feature_layers: tuple[str, ...] | str = (
            feature_layers if isinstance(feature_layers, str) else tuple(feature_layers)
        )
        self.head_betas = (float(head_betas[0]), float(head_betas[1]))
        self.head: ContrastiveHead | None = None
        self.memory_bank: FeatureMemoryBank | None = None

    def parameter_group_options(self) -> dict[str, Any]:
        return {"betas": self.head_betas}

    @property
    def layers(self) -> tuple[str, ...]:
        """The modules whose input means are the feature (empty: every BN layer's)."""
        return () if isinstance(self.feature_layers, str) else self.feature_layers

    @property
    def needs(self) -> Needs:
        if self.layers:
            return Needs(teacher_input_means=self.layers)
        return Needs(teacher_bn=True)

    def bind(self, module: Any) -> None:
        teacher: nn.Module = module.teacher
        if self.feature_layers == "auto":
            children = {name for name, _ in teacher.named_children()}
            stages = tuple(f"layer{i}" for i in range(1, 5))
            self.feature_layers = stages if set(stages) <= children else "bn"
        if self.layers:
            feature_dim = _input_channels(teacher, self.layers, module.input_shape)
        else:
            feature_dim = sum(
                m.num_features
                for m in teacher.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)
            )
            if feature_dim == 0:
                raise ConfigError(
                    "CMI's contrastive term needs a teacher with BatchNorm layers, or "
                    "feature_layers naming the teacher modules whose inputs to use"
                )
        self.head = ContrastiveHead(feature_dim, self.head_dim)
        self.memory_bank = FeatureMemoryBank(self.bank_size, 2 * feature_dim)

    def instance_features(self, output: NetOutput) -> torch.Tensor:
        """The instance feature of every sample of one teacher forward, (N, feature_dim)."""
        if self.layers:
            return torch.cat([output.input_means[name] for name in self.layers], dim=1)
        assert output.bn_instance_features is not None
        return output.bn_instance_features

    def forward(self, ctx: StepContext) -> torch.Tensor:
        assert self.head is not None and self.memory_bank is not None
        global_features = self.instance_features(ctx.teacher)
        local_inputs = ctx.module.network_inputs(ctx.batch.samples, self.local_augmenter)
        local_output = ctx.module.teacher_output(
            local_inputs, bn=not self.layers, input_means=self.layers
        )
        local_features = self.instance_features(local_output)
        ctx.keep[CMI_FEATURES] = torch.cat([local_features, global_features], dim=1).detach()
        if self.memory_bank.device != local_features.device:
            self.memory_bank.data = self.memory_bank.data.to(local_features.device)
        cached = self.memory_bank.sample(self.n_neg).to(local_features)
        cached_local, cached_global = cached.chunk(2, dim=1)
        projected = self.head(
            torch.cat([local_features, cached_local, global_features, cached_global])
        )
        local_proj, global_proj = projected.chunk(2)
        return contrastive_loss(
            local_proj,
            global_proj,
            self.temperature,
            mode=self.mode,
            num_current=len(ctx.batch),
        )

    def end_round(self, best: SyntheticBatch) -> None:
        if self.memory_bank is not None and CMI_FEATURES in best.extras:
            self.memory_bank.add(best.extras[CMI_FEATURES])

    def rank_state(self) -> dict[str, Any]:
        if self.memory_bank is None:
            return {}
        return {"memory_bank": self.memory_bank.state_dict()}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        if self.memory_bank is not None and "memory_bank" in state:
            self.memory_bank.load_state_dict(state["memory_bank"])


def _input_channels(net: nn.Module, names: Sequence[str], input_shape: Sequence[int]) -> int:
    """The summed channel count of the inputs of ``names``."""
    output = probe_forward(net, input_shape, input_means=names)
    return sum(int(output.input_means[name].shape[1]) for name in names)
