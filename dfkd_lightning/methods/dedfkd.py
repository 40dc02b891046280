"""DE-DFKD: diversity-enhanced data-free knowledge distillation with a conditional generator
and metric learning (Liu et al., Multimedia Tools and Applications 2024,
doi 10.1007/s11042-024-20193-z)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import ConditionalGenerator


class DEDFKD(DataFreeDistillation):
    """A class-conditional generator ``G(z, y)`` (:class:`ConditionalGenerator`: class-balanced
    batches by construction, the targets travel with the samples) trained against the student
    on ``oh * CE(T(G(z, y)), y) + bn * R_BN + adv * (-KL(T || S)) + ml * L_ml``: the teacher
    must recognise the class asked for, match its BN statistics, disagree with the student, and
    the metric-learning term (``ml``, :class:`~dfkd_lightning.synthesis.terms.diversity.
    MetricLearningTerm`) spreads the samples of each class on the teacher's features while a
    triplet keeps the classes apart. The student distils on fresh class-balanced batches with
    KD, alternating with generator steps like DFQ (``kd_steps`` student steps per ``g_steps``
    generator steps); ``student_loss: {ce: w}`` adds CE to the targets (off by default).

    Only the paper's abstract is public (no code): the two faults it names (class imbalance,
    one distribution per class) and its two remedies (a conditional generator, metric
    learning). The generator loss, the form of ``L_ml`` and every weight and schedule here are
    our design, following the conditional-generator DFKD line (DFQ's adversarial loop, CGDD's
    label embedding); the README lists each choice. A teacher without BatchNorm: set ``bn: 0``.
    """

    summary = "DE-DFKD (MTAP 2024): conditional generator, class-balanced, metric learning"

    default_synthesizer = ConditionalGenerator
    default_synthesis_loss = {
        "oh": 1.0,
        "bn": 1.0,
        "adv": {"weight": 1.0, "agreeing_only": False},
        "ml": 1.0,
    }
    default_student_loss = {"kd": 1.0, "ce": 0.0}
