"""Model-inversion methods: each round optimises a batch from scratch and pools the best."""

from __future__ import annotations

from typing import Any

import torch

from dfkd_lightning.methods.bn_prior import BNStatisticsPrior
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.losses import adversarial_kl_loss, one_hot_loss


class ModelInversion(BNStatisticsPrior):
    """Base of DeepInversion, CMI and FastDFKD (and of any method that pools inverted data).

    A round: :meth:`reset_synthesizer`, then ``g_steps`` optimizer steps on the
    weighted :meth:`synthesis_terms` of :meth:`render` (images in [0, 1] with grad,
    class targets drawn uniformly); the batch with the lowest loss seen in the
    round goes to the pool (tracked on the device, no host sync). The shared terms
    are DeepInversion's BN-statistics loss ``bn`` (Eq. 4, hooks on the teacher's BN
    layers, with FastDFKD's ``bn_momentum`` blending), the one-hot loss ``oh`` and
    CMI's adversarial term ``adv`` (negative KL on samples where teacher and student
    agree); subclasses add theirs. The teacher sees the images after a per-image
    random crop (padding ``synthesis_crop_padding``) and flip, then normalisation.
    """

    def __init__(
        self,
        *args: Any,
        bn: float = 1.0,
        oh: float = 1.0,
        adv: float = 0.0,
        synthesis_crop_padding: int = 4,
        synthesis_flip: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.weights = {"bn": bn, "oh": oh, "adv": adv}
        self.synthesis_augmenter = BatchAugment(
            crop_padding=synthesis_crop_padding, flip=synthesis_flip
        )

    # ----------------------------------------------------------------- to override
    def reset_synthesizer(self) -> None:
        """Prepare the synthesizer for a new round (re-initialise, resample latents)."""

    def render(self) -> torch.Tensor:
        """The current synthetic batch in [0, 1], differentiable w.r.t. the synthesizer."""
        raise NotImplementedError

    def synthesis_terms(
        self, images: torch.Tensor, targets: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of ``images``; only the names in ``weights`` are needed."""
        return self.inversion_terms(
            self.normalize(self.synthesis_augmenter(images)), targets, weights
        )

    def after_synthesis_step(self, step: int) -> None:
        """Called after every synthesizer optimizer step (FastDFKD's meta gradients)."""

    def keep_with_best(self) -> dict[str, torch.Tensor]:
        """Per-sample tensors of the current step to keep along with the best batch."""
        return {}

    def end_round(self, best: dict[str, torch.Tensor]) -> None:
        """Called once the round's steps are done, with :meth:`keep_with_best` of the best
        batch (CMI's memory bank, FastDFKD's meta update)."""

    # ----------------------------------------------------------------- shared terms
    def inversion_terms(
        self, inputs: torch.Tensor, targets: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        """``oh``, ``bn`` and ``adv`` of normalised ``inputs``."""
        teacher_logits = self.teacher(inputs)
        terms = {"oh": one_hot_loss(teacher_logits, targets)}
        if "bn" in weights:
            terms["bn"] = self.bn_statistics()
        if "adv" in weights:
            terms["adv"] = self.adversarial_term(self.student(inputs), teacher_logits)
        return terms

    def adversarial_term(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        """CMI's decision-adversarial term: ``-KL(t || s)`` on agreeing samples (<= 0)."""
        return adversarial_kl_loss(student_logits, teacher_logits)

    def loss_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def needs_bn_statistics(self) -> bool:
        return self.weights["bn"] != 0

    # ----------------------------------------------------------------- the round
    def synthesize(self) -> torch.Tensor:
        optimizer = self.synthesis_optimizers()[0]
        weights = {name: w for name, w in self.loss_weights().items() if w != 0}
        targets = self.random_targets(self.synthesis_batch_size)
        self.reset_synthesizer()
        best_loss = torch.full((), float("inf"), device=self.device)
        best: dict[str, torch.Tensor] = {}
        terms: dict[str, torch.Tensor] = {}
        for step in range(self.g_steps):
            images = self.render()
            terms = self.synthesis_terms(images, targets, weights)
            loss = sum(weights[name] * terms[name] for name in weights)
            with torch.no_grad():
                better = loss.detach() < best_loss
                best_loss = torch.where(better, loss.detach(), best_loss)
                current = {"images": images.detach().float(), **self.keep_with_best()}
                best = {
                    key: value if key not in best else torch.where(better, value, best[key])
                    for key, value in current.items()
                }
            self.optimizer_step(optimizer, loss)
            self.after_synthesis_step(step)
            terms["loss"] = loss
        if not best:  # g_steps == 0: pool the initial batch
            best = {"images": self.render().detach().float()}
        self.end_of_round_statistics()
        self.end_round(best)
        if terms:
            self.log_terms("synth", terms)
        return best["images"].clamp(0, 1)
