"""ZSKT: Zero-shot Knowledge Transfer via Adversarial Belief Matching (Micaelli & Storkey, 2019)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.synthesizers import PersistentGenerator


class ZSKT(DataFreeDistillation):
    """A generator (:class:`PersistentGenerator`) maximises ``KL(T(x) || S(x))`` (``adv`` on
    all samples, Eq. 1); the student minimises ``KL + beta * sum_l AT_l`` (Eq. 2, ``at`` with
    weight beta = 250) on matching stages, ``kd_steps`` (10) student steps per generator step.

    The KL is the paper's (per-sample KL, batch mean). Differences from the released code:
    both its KLs are ``F.kl_div(reduction="mean")``, also divided by the number of classes,
    and beta = 250 was tuned against that scale (``kd: {reduction: mean}``,
    ``adv: {reduction: mean}``); it clips the generator's and the student's gradient norms at 5
    and trains the student with Adam (lr 2e-3, cosine over the run; an ``optimizer`` in the
    config); its student is in train mode during the generator step (eval here); its AT
    compares the networks' own stage outputs as here (``at: {reduction: mean_squared}``, the
    released form; ``norm`` is the equation as printed).
    """

    summary = "ZSKT (NeurIPS 2019): adversarial generator; KD + attention transfer"

    default_synthesizer = PersistentGenerator
    default_synthesis_loss = {"adv": {"weight": 1.0, "agreeing_only": False}}
    default_student_loss = {"kd": 1.0, "at": 250.0}
