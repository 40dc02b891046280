"""What every manually optimised method shares: precise optimizer steps, finite-loss checks
and the RNG state that makes a resumed run draw what the uninterrupted one would."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.core.optimizer import LightningOptimizer

from dfkd_lightning.errors import UserError


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss term became NaN or infinite."""


class ManualSteps(LightningModule):
    """Mixin for modules with ``automatic_optimization = False``."""

    def optimizer_step(self, optimizer: LightningOptimizer, loss: torch.Tensor) -> None:
        """zero_grad, backward (precision-aware) and step of one optimizer."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def check_finite(self, prefix: str, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The terms as one detached float vector; raise if any is NaN or infinite."""
        values = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
        if not torch.isfinite(values).all():  # one device sync for all terms
            bad = [
                name for name, value in zip(terms, values, strict=True) if not torch.isfinite(value)
            ]
            raise NonFiniteLossError(
                f"{prefix} loss terms {bad} became NaN/inf at epoch {self.current_epoch}, "
                f"step {self.global_step}. Lower the learning rates (the student's optimizer, the "
                "synthesizer's lr) or the weights of those terms, or use bf16-mixed or 32-true "
                "instead of 16-mixed"
            )
        return values

    def rng_state(self) -> dict[str, torch.Tensor]:
        """The global torch RNG state of this process (CPU, and CUDA when on a GPU)."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def restore_rng_state(self, rng: dict[str, torch.Tensor]) -> None:
        """Set the RNG state saved by :meth:`rng_state` (call it at train start)."""
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
