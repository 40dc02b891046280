"""DFAD: Data-Free Adversarial Distillation (Fang et al., 2019)."""

from __future__ import annotations

from functools import partial

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import PersistentGenerator


class DFAD(DataFreeDistillation):
    """Min-max game on the mean absolute difference of logits (Eq. 4-6): the generator
    (:class:`PersistentGenerator`; the paper's head is tanh + a non-affine BN, ``output: bn``)
    maximises ``|T(G(z)) - S(G(z))|_1`` (``adv`` = ``adv_l1``), the student minimises it
    (``l1``) on fresh samples, ``kd_steps`` (5) student steps per generator step. The
    generator's Adam uses the release's betas (0.9, 0.999), PyTorch's defaults (CMI's and
    Fast-Datafree's generator methods use (0.5, 0.999)).

    Difference from the released code (VainF/Data-Free-Adversarial-Distillation): the student
    is in eval mode during the generator step (in train mode there: its BN layers normalise the
    adversarial batch with that batch's statistics and update their running statistics on it);
    here every synthesis step scores samples with the student as it is evaluated.
    """

    summary = "DFAD (2019): min-max game on the L1 gap of the logits"

    default_synthesizer = partial(PersistentGenerator, betas=(0.9, 0.999))
    default_synthesis_loss = {"adv": {"term": "adv_l1", "weight": 1.0}}
    default_student_loss = {"l1": 1.0}
