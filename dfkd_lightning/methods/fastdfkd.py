"""FastDFKD: Up to 100x Faster Data-free Knowledge Distillation (Fang et al., AAAI 2022)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.methods.inversion import ModelInversion
from dfkd_lightning.nets.generator import Generator
from dfkd_lightning.synthesis.meta import (
    FAST_DATAFREE_REPTILE_SCALE,
    accumulate_first_order_gradient,
    reptile_meta_gradient,
    reset_first_layer,
)


class FastDFKD(ModelInversion):
    """A meta-generator learns a common initialisation across rounds (Eq. 5-7): each round
    copies it into a fast generator, adapts the copy and fresh latents ``z`` for a few
    ``g_steps`` (Adam ``lr_g`` / ``lr_z``) on ``bn * R_feature + oh * CE + adv * L_adv``
    with the BN statistics blended across rounds (``bn_momentum``), pools the best batch,
    then moves the meta-generator: first-order MAML (``meta_update: maml``, the released
    scripts' choice: the fast gradients summed over the round) or REPTILE
    (``meta_update: reptile``, ``(meta - fast) * reptile_scale``), one Adam step with
    ``lr_g * g_steps``. ``reset_l0`` re-draws the generator's first layer (and first BN, as
    the released fix does) once, at the first round of epoch ``reset_l0_epoch`` (the scripts:
    round 120 after a 20-epoch warmup with one round per epoch, i.e. epoch 140). The
    adversarial term starts after ``warmup``.

    Differences from the released code: its FOMAML meta step comes before the last inner
    step (so that step's gradient joins the next round's meta step); here the meta step
    follows the round. The meta-generator is per DDP rank, like every inversion synthesizer.
    """

    def __init__(
        self,
        *args: Any,
        nz: int = 256,
        ngf: int = 64,
        lr_g: float = 4e-3,
        lr_z: float = 0.01,
        g_betas: tuple[float, float] = (0.5, 0.999),
        meta_update: Literal["maml", "reptile"] = "maml",
        reptile_scale: float = FAST_DATAFREE_REPTILE_SCALE,
        reset_l0: bool = True,
        reset_l0_epoch: int = 140,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        channels, size, _ = self.synthesis_shape
        self.generator = Generator(nz=nz, ngf=ngf, img_size=size, nc=channels)
        self.fast_generator = self.generator.clone()
        self.z = nn.Parameter(torch.randn(self.synthesis_batch_size, nz))
        self.lr_g, self.lr_z, self.g_betas = lr_g, lr_z, tuple(g_betas)
        self.meta_update, self.reptile_scale = meta_update, reptile_scale
        self.reset_l0, self.reset_l0_epoch = reset_l0, reset_l0_epoch
        self.l0_was_reset = False

    def configure_synthesis_optimizers(self) -> list[torch.optim.Optimizer]:
        fast = torch.optim.Adam(
            [
                {"params": self.fast_generator.parameters()},
                {"params": [self.z], "lr": self.lr_z},
            ],
            lr=self.lr_g,
            betas=self.g_betas,
        )
        meta = torch.optim.Adam(
            self.generator.parameters(), lr=self.lr_g * self.g_steps, betas=self.g_betas
        )
        return [fast, meta]

    def reset_synthesizer(self) -> None:
        if self.reset_l0 and not self.l0_was_reset and self.current_epoch >= self.reset_l0_epoch:
            reset_first_layer(self.generator)
            self.l0_was_reset = True
        self.fast_generator.load_state_dict(self.generator.state_dict())
        with torch.no_grad():
            self.z.normal_()
        fast, meta = self.synthesis_optimizers()
        fast.optimizer.state.clear()
        meta.optimizer.zero_grad(set_to_none=True)

    def render(self) -> torch.Tensor:
        return self.to_input_size(self.fast_generator(self.z))

    def after_synthesis_step(self, step: int) -> None:
        if self.meta_update == "maml" and all(
            p.grad is None or torch.isfinite(p.grad).all() for p in self.fast_generator.parameters()
        ):
            accumulate_first_order_gradient(self.generator, self.fast_generator)

    def end_round(self, best: dict[str, torch.Tensor]) -> None:
        if self.meta_update == "reptile":
            reptile_meta_gradient(self.generator, self.fast_generator, self.reptile_scale)
        # Meta gradients are computed, not back-propagated: step the raw optimizer so that
        # no loss scaler (16-mixed) unscales them.
        meta = self.synthesis_optimizers()[1].optimizer
        meta.step()
        meta.zero_grad(set_to_none=True)

    def extra_rank_state(self) -> dict[str, Any]:
        return {**super().extra_rank_state(), "l0_was_reset": self.l0_was_reset}

    def load_extra_rank_state(self, state: dict[str, Any]) -> None:
        super().load_extra_rank_state(state)
        self.l0_was_reset = bool(state.get("l0_was_reset", False))

    def loss_weights(self) -> dict[str, float]:
        """The adversarial term joins once the student trains (after ``warmup``), as released."""
        weights = super().loss_weights()
        if self.current_epoch < self.warmup:
            weights["adv"] = 0.0
        return weights
