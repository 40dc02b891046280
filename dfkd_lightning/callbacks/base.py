"""The callback base class that sees every method's new synthetic samples."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch import Callback, LightningModule, Trainer

from dfkd_lightning.synthesis.batch import SyntheticBatch

if TYPE_CHECKING:
    from dfkd_lightning.methods.datafree import DataFreeDistillation

__all__ = ["SampleCallback", "finished_epoch", "run_sample_callbacks"]


class SampleCallback(Callback):
    """A Lightning callback that also sees every new :class:`SyntheticBatch` of every
    data-free method, before it reaches the pool or the student.

    When: pool methods (DeepInversion, CMI, FastDFKD) call it once per synthesis round with
    the round's pooled batch; methods whose student learns from fresh samples (DAFL, ZSKT,
    DFAD, DFQ, the tabular methods) call it once per student step with that step's batch
    (ZSKT's ``student_samples: reuse``: the generator step's batch again at each student step).
    Order: the trainer's callback order; each callback receives what the previous returned.
    No gradients: it runs under ``torch.no_grad()`` on detached samples.
    Return ``None`` to pass the batch on unchanged, or a smaller batch (a filter: confidence,
    class quota, similarity) or a larger one (augmentation, variations). Samples are images
    in image space at the synthesizer's resolution (``module.to_input_size`` resizes them to
    the network input; ``module.normalize`` makes network inputs) or feature vectors.
    """

    def on_samples_synthesized(
        self, trainer: Trainer, module: DataFreeDistillation, batch: SyntheticBatch
    ) -> SyntheticBatch | None:
        return None


def run_sample_callbacks(
    trainer: Trainer, module: LightningModule, batch: SyntheticBatch
) -> SyntheticBatch:
    """Pass ``batch`` through every :class:`SampleCallback` of ``trainer`` in order."""
    for callback in trainer.callbacks:
        if isinstance(callback, SampleCallback):
            returned = callback.on_samples_synthesized(trainer, module, batch)  # type: ignore[arg-type]
            if returned is not None:
                if not isinstance(returned, SyntheticBatch):
                    raise TypeError(
                        f"{type(callback).__name__}.on_samples_synthesized must return a "
                        f"SyntheticBatch or None, got {type(returned).__name__}"
                    )
                batch = returned
    return batch


def finished_epoch(trainer: Trainer) -> tuple[int, bool]:
    """At ``on_train_epoch_end``: the epoch just finished (from 1) and whether it is the
    run's last (``max_epochs`` reached or the trainer stopping, e.g. at ``max_time``)."""
    epoch = trainer.current_epoch + 1
    last = trainer.should_stop or (trainer.max_epochs is not None and epoch >= trainer.max_epochs)
    return epoch, last
