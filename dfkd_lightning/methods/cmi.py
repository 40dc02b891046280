"""CMI: Contrastive Model Inversion (Fang et al., IJCAI 2021)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.methods.inversion import ModelInversion
from dfkd_lightning.nets.generator import Generator
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.contrastive import (
    ContrastiveHead,
    FeatureMemoryBank,
    contrastive_loss,
)
from dfkd_lightning.synthesis.meta import reinitialize


class CMI(ModelInversion):
    """Every round re-initialises the generator and learnable latents ``z`` and optimises
    both (Adam ``lr_g``) on ``bn * R_feature + oh * CE + adv * L_adv + cr * L_cr``:
    DeepInversion's terms, CMI's decision-adversarial term on agreeing samples, and the
    contrastive loss (Eq. 6-8) between a global view (crop + flip) and a local view
    (random resized crop, scale ``local_scale``) of every image, both embedded as the
    teacher's per-instance BN-input means and projected by a persistent MLP head; the
    ``n_neg`` negatives come from a memory bank (``bank_size``) of earlier rounds' best
    batches. The contrastive form: ``cr_mode: supcon`` (the paper's instance-discrimination
    objective, SupContrast-style) or ``local_to_global`` (what the released code runs).
    """

    def __init__(
        self,
        *args: Any,
        cr: float = 0.8,
        cr_temperature: float = 0.1,
        cr_mode: Literal["supcon", "local_to_global"] = "supcon",
        bank_size: int = 40960,
        n_neg: int = 4096,
        head_dim: int = 128,
        local_scale: tuple[float, float] = (0.25, 1.0),
        nz: int = 256,
        ngf: int = 64,
        lr_g: float = 1e-3,
        g_betas: tuple[float, float] = (0.5, 0.999),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights["cr"] = cr
        self.cr_temperature, self.cr_mode = cr_temperature, cr_mode
        self.bank_size, self.n_neg = bank_size, n_neg
        self.lr_g, self.g_betas = lr_g, tuple(g_betas)
        channels, size, _ = self.synthesis_shape
        self.generator = Generator(nz=nz, ngf=ngf, img_size=size, nc=channels)
        self.z = nn.Parameter(torch.randn(self.synthesis_batch_size, nz))
        self.local_augmenter = BatchAugment(
            crop_padding=0, flip=True, resized_crop_scale=tuple(local_scale)
        )
        feature_dim = self._teacher_feature_dim()
        self.head = ContrastiveHead(feature_dim, head_dim)
        self.memory_bank = FeatureMemoryBank(bank_size, 2 * feature_dim)
        self._round_features: torch.Tensor | None = None

    def _teacher_feature_dim(self) -> int:
        """Width of CMI's instance feature: the channels of all teacher BN layers."""
        return sum(
            m.num_features
            for m in self.teacher.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )

    def needs_bn_statistics(self) -> bool:
        return True

    def configure_synthesis_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(
                [
                    {"params": [*self.generator.parameters(), self.z]},
                    {"params": self.head.parameters()},
                ],
                lr=self.lr_g,
                betas=self.g_betas,
            )
        ]

    def reset_synthesizer(self) -> None:
        reinitialize(self.generator)
        with torch.no_grad():
            self.z.normal_()
        optimizer = self.synthesis_optimizers()[0].optimizer
        for param in [*self.generator.parameters(), self.z]:
            optimizer.state.pop(param, None)
        if self.memory_bank.device != self.device:
            self.memory_bank.data = self.memory_bank.data.to(self.device)

    def render(self) -> torch.Tensor:
        return self.to_input_size(self.generator(self.z))

    def synthesis_terms(
        self, images: torch.Tensor, targets: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        terms = self.inversion_terms(
            self.normalize(self.synthesis_augmenter(images)), targets, weights
        )
        global_features = self.bn_statistics.instance_features()
        self.teacher(self.normalize(self.local_augmenter(images)))
        local_features = self.bn_statistics.instance_features()
        self._round_features = torch.cat([local_features, global_features], dim=1).detach()
        if "cr" in weights:
            cached = self.memory_bank.sample(self.n_neg).to(local_features)
            cached_local, cached_global = cached.chunk(2, dim=1)
            projected = self.head(
                torch.cat([local_features, cached_local, global_features, cached_global])
            )
            local_proj, global_proj = projected.chunk(2)
            terms["cr"] = contrastive_loss(
                local_proj,
                global_proj,
                self.cr_temperature,
                mode=self.cr_mode,
                num_current=len(images),
            )
        return terms

    def keep_with_best(self) -> dict[str, torch.Tensor]:
        return {"features": self._round_features}

    def end_round(self, best: dict[str, torch.Tensor]) -> None:
        self.memory_bank.add(best["features"])

    def extra_rank_state(self) -> dict[str, Any]:
        state = super().extra_rank_state()
        state["memory_bank"] = {
            k: v.cpu() if torch.is_tensor(v) else v
            for k, v in self.memory_bank.state_dict().items()
        }
        return state

    def load_extra_rank_state(self, state: dict[str, Any]) -> None:
        super().load_extra_rank_state(state)
        if "memory_bank" in state:
            self.memory_bank.load_state_dict(state["memory_bank"])
