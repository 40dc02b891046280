"""DFQ: Data-Free Network Quantization with Adversarial Knowledge Distillation (Choi et al.,
CVPRW 2020)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import PersistentGenerator


class DFQ(DataFreeDistillation):
    """A generator (:class:`PersistentGenerator`) trained against the student with
    ``bn * R_BN + oh * CE + adv * (-KL(t || s)) + balance * L_balance``: the teacher's BN
    statistics matched (Eq. 5), confident teacher predictions (CE to its argmax), the
    adversarial KL on all samples (Eq. 3) and balanced classes (``balance``: the information
    entropy term); the student distils on fresh samples with KD.

    Each term has its own temperature: the adversarial KL's is ``adv: {temperature: T}`` (the
    paper's and the configs' T = 1), the student's ``kd: {temperature: T}``. The releases of
    Fast-Datafree/CMI accept ``--T`` for DFQ but use T = 1 in the generator's KL.
    """

    summary = "DFQ (CVPRW 2020): adversarial generator with BN statistics and class balance"

    default_synthesizer = PersistentGenerator
    default_synthesis_loss = {
        "bn": 1.0,
        "oh": 1.0,
        "adv": {"weight": 1.0, "agreeing_only": False},
        "balance": {"term": "ie", "weight": 0.0},
    }
