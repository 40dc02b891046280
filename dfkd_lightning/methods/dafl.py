"""DAFL: Data-Free Learning of Student Networks (Chen et al., ICCV 2019)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import PersistentGenerator


class DAFL(DataFreeDistillation):
    """The teacher acts as a fixed discriminator of a generator (:class:`PersistentGenerator`)
    trained on ``L_G = oh * L_oh + act * L_a + ie * L_ie`` (Eq. 6): one-hot CE to the teacher's
    argmax (Eq. 3), minus the mean |penultimate feature| (Eq. 4), minus the entropy of the
    batch-mean prediction (Eq. 5); the student distils on generated images with KD.

    Weights: the paper's and its code's ``oh 1, act 0.1, ie 5`` (the class default and the
    configs). CMI's and Fast-Datafree's DAFL scripts use ``act 0.001`` and a balance term of 20
    (``ie: 20``); DAFL's own README runs CIFAR-10 with ``oh 0.05, act 0.01, ie 5``.

    Differences from the released code: its ``L_ie`` uses log10 while the paper uses the
    natural log (``ie: {log_base: 10}`` is the code's); the code distils on the very batch the
    generator step used (``student_samples: reuse``), the default draws fresh samples.
    """

    summary = "DAFL (ICCV 2019): generator with one-hot, activation and entropy losses"

    default_synthesizer = PersistentGenerator
    default_synthesis_loss = {"oh": 1.0, "act": 0.1, "ie": 5.0}
