"""DFAD: Data-Free Adversarial Distillation (Fang et al., 2019)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import PersistentGenerator


class DFAD(DataFreeDistillation):
    """Min-max game on the mean absolute difference of logits (Eq. 4-6): the generator
    (:class:`PersistentGenerator`; the paper's head is tanh + a non-affine BN, ``output: bn``)
    maximises ``|T(G(z)) - S(G(z))|_1`` (``adv`` = ``adv_l1``), the student minimises it
    (``l1``) on fresh samples, ``kd_steps`` (5) student steps per generator step.
    """

    summary = "DFAD (2019): min-max game on the L1 gap of the logits"

    default_synthesizer = PersistentGenerator
    default_synthesis_loss = {"adv": {"term": "adv_l1", "weight": 1.0}}
    default_student_loss = {"l1": 1.0}
