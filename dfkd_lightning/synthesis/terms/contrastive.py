"""CMI's contrastive term (Fang et al., IJCAI 2021, Eq. 6-8) with its head and memory bank."""

from __future__ import annotations

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
from dfkd_lightning.synthesis.terms.context import Needs, StepContext

__all__ = ["CMI_FEATURES", "ContrastiveTerm"]

#: The extra under which the term keeps each sample's (local, global) instance features.
CMI_FEATURES = "cmi_features"


@register_term("cr")
class ContrastiveTerm(LossTerm):
    """Instance discrimination between a global view (the synthesis view) and a local view
    (random resized crop, scale ``local_scale``) of every image, embedded as the teacher's
    per-instance BN-input means and projected by a persistent MLP head (``head_dim``); the
    ``n_neg`` negatives come from a memory bank (``bank_size``) of earlier rounds' pooled
    batches. ``mode: supcon`` is the paper's objective, ``local_to_global`` what the released
    code runs. The head trains with the synthesizer's optimizer.
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
    ) -> None:
        super().__init__()
        self.temperature, self.mode = float(temperature), mode
        self.bank_size, self.n_neg, self.head_dim = int(bank_size), int(n_neg), int(head_dim)
        self.local_augmenter = BatchAugment(
            crop_padding=0, flip=True, resized_crop_scale=tuple(local_scale)
        )
        self.head: ContrastiveHead | None = None
        self.memory_bank: FeatureMemoryBank | None = None

    @property
    def needs(self) -> Needs:
        return Needs(teacher_bn=True)

    def bind(self, module: Any) -> None:
        feature_dim = sum(
            m.num_features
            for m in module.teacher.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )
        if feature_dim == 0:
            raise ConfigError("CMI's contrastive term needs a teacher with BatchNorm layers")
        self.head = ContrastiveHead(feature_dim, self.head_dim)
        self.memory_bank = FeatureMemoryBank(self.bank_size, 2 * feature_dim)

    def forward(self, ctx: StepContext) -> torch.Tensor:
        assert self.head is not None and self.memory_bank is not None
        global_features = ctx.teacher.bn_instance_features
        assert global_features is not None
        local_inputs = ctx.module.network_inputs(ctx.batch.samples, self.local_augmenter)
        local_features = ctx.module.teacher_output(local_inputs, bn=True).bn_instance_features
        assert local_features is not None
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
