"""Data-free distillation of regression networks (Zhou & Chiam, ESWA 2023, arXiv 2301.04338)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.methods.frozen_teacher import freeze_pretrained
from dfkd_lightning.methods.regression_teacher import rmsprop_default
from dfkd_lightning.nets.mlp import MLPRegressor
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import DirectOptimization, Synthesizer, TabularGenerator
from dfkd_lightning.synthesis.terms.regression import GAUSSIAN


def load_frozen_regressor(
    checkpoint: str | Path | None, in_features: int, hidden: Sequence[int], activation: str
) -> MLPRegressor:
    """An :class:`MLPRegressor` with the weights of ``checkpoint``, frozen, in eval mode."""
    return freeze_pretrained(
        MLPRegressor(in_features, 1, hidden, activation),
        checkpoint,
        "train one first, e.g. `dfkd fit --config "
        "configs/experiments/regression/teacher_diabetes.yaml`, and set "
        "model.init_args.teacher_checkpoint to its checkpoint",
    )


class DataFreeRegression(DataFreeDistillation):
    """A student regressor trained on inputs where it disagrees with the teacher by a large but
    bounded amount (Zhou & Chiam, 2023).

    Every epoch (``steps_per_epoch`` = ``kd_steps`` = 10 paced steps): ``g_steps`` (1)
    synthesizer steps, then one student step per paced step on ``batch_size`` (50) synthetic
    inputs ``x_g`` and as many Gaussian inputs ``x_p ~ N(0, I)`` with ``L_S``
    (``student_loss: {mixed_mse: {alpha: decreasing}}``). The synthesizer chooses ``x_g``
    (the paper's four strategies):

    * :class:`~dfkd_lightning.synthesis.synthesizers.TabularGenerator` (``generator``): an MLP
      50 -> 500 tanh -> d trained on ``L_G = disagreement + beta * input_norm + gamma *
      student_norm`` (the ``synthesis_loss`` weights 1, beta, gamma);
    * :class:`~dfkd_lightning.synthesis.synthesizers.DirectOptimization` (``direct``): fresh
      ``x ~ N(0, I)`` per student step, 2 RMSprop steps (lr 0.1, weight decay beta) on
      ``disagreement + gamma * student_norm``;
    * :class:`~dfkd_lightning.synthesis.synthesizers.GaussianSampler` (``gaussian``);
    * :class:`~dfkd_lightning.synthesis.synthesizers.LatinHypercubeSampler`
      (``latin_hypercube``) in a box of +-3 standard deviations.

    Loss terms are logged as epoch means. Differences from the released code: the student
    reported is the final one (the code keeps the epoch with the best loss on real validation
    data, a leak in a data-free setting); ``input_norm`` is per sample as in the paper
    (``{penalty: batch}`` is the code's sum over the batch); inputs and target are standardised
    on the training split only.
    """

    summary = "Zhou & Chiam (ESWA 2023): data-free distillation of regressors"

    default_synthesizer = TabularGenerator
    default_synthesis_loss = {"disagreement": 1.0, "input_norm": 1e-5, "student_norm": 1e-5}
    #: The default with :class:`DirectOptimization`, whose weight decay is the beta bound.
    direct_synthesis_loss = {"disagreement": 1.0, "student_norm": 1e-5}
    default_student_loss = {"mixed_mse": {"alpha": "decreasing"}}

    def __init__(
        self,
        in_features: int,
        teacher_checkpoint: str | None = None,
        teacher_hidden: Sequence[int] = (500,),
        student_hidden: Sequence[int] = (25,),
        activation: str = "tanh",
        synthesizer: Synthesizer | None = None,
        synthesis_loss: dict[str, float | dict[str, Any]] | None = None,
        student_loss: dict[str, float | dict[str, Any]] | None = None,
        batch_size: int = 50,
        kd_steps: int = 10,
        g_steps: int = 1,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        if synthesis_loss is None and isinstance(synthesizer, DirectOptimization):
            # beta bounds ||x||^2 through the optimizer's weight decay, not input_norm as well
            synthesis_loss = dict(self.direct_synthesis_loss)
        # Read by build_networks during the base constructor.
        self._layout = (tuple(teacher_hidden), tuple(student_hidden), activation)
        super().__init__(
            teacher="mlp",
            student="mlp",
            teacher_checkpoint=teacher_checkpoint,
            num_classes=0,
            input_shape=(in_features,),
            mean=(0.0,),
            std=(1.0,),
            synthesizer=synthesizer,
            synthesis_loss=synthesis_loss,
            student_loss=student_loss,
            batch_size=batch_size,
            synthesis_batch_size=batch_size,
            kd_steps=kd_steps,
            g_steps=g_steps,
            student_samples="fresh",
            student_augment=False,
            log_terms_every="epoch",
            pool_storage="float32",
            optimizer=optimizer or rmsprop_default,
        )
        self.in_features = in_features

    def build_networks(
        self, teacher: str, student: str, teacher_checkpoint: str | None
    ) -> tuple[nn.Module, nn.Module]:
        teacher_hidden, student_hidden, activation = self._layout
        in_features = self.input_shape[0]
        return (
            load_frozen_regressor(teacher_checkpoint, in_features, teacher_hidden, activation),
            MLPRegressor(in_features, 1, student_hidden, activation),
        )

    def student_batch(self) -> tuple[SyntheticBatch, bool]:
        """``x_g`` from the synthesizer and as many ``x_p ~ N(0, I)``, marked :data:`GAUSSIAN`."""
        synthetic, _ = super().student_batch()
        gaussian = torch.randn_like(synthetic.samples)
        marks = torch.zeros(2 * len(synthetic), dtype=torch.bool, device=gaussian.device)
        marks[len(synthetic) :] = True
        batch = SyntheticBatch(torch.cat([synthetic.samples, gaussian]), extras={GAUSSIAN: marks})
        return batch, False
