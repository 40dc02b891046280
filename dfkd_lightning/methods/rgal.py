"""RGAL: Relation-Guided Adversarial Learning for data-free knowledge transfer (Liang & Fu,
IJCV 2025, arXiv 2412.11380)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.synthesizers import ResetGenerator


class RGAL(DataFreeDistillation):
    """CMI's re-initialised generator and latents (:class:`ResetGenerator`) without the
    contrastive term, optimised on ``bn * R_feature + oh * CE + adv * L_adv + triplet *
    L_tri``; the student learns ``kd * KD + cd * L_cd + striplet * L_stri`` on paired views of
    the pool (``paired_views``). The synthesis triplet spreads the samples of a class and
    pulls the classes together (focal weighted negatives); the student triplet does the
    opposite. The terms (:mod:`dfkd_lightning.synthesis.terms.relation`) insert into any
    method's objectives by YAML (``configs/experiments/*/cmi_rgal*.yaml``,
    ``fastdfkd_rgal*.yaml``).

    Paper and release differ in the synthesis triplet's sign (``triplet: {sign: paper}``, the
    default, pushes positives away; ``sign: release`` is the release's ordinary triplet) and in
    the network it embeds with (the paper's figure: the teacher, the default; the release's
    script: the student's ``layer3``-``layer4``, ``network: student``). The release's README
    passes ``--act 0.001``, which its RGAL synthesizer never reads.
    """

    summary = "RGAL (IJCV 2025): triplet relations, spread within classes and confuse across"

    default_synthesizer = ResetGenerator
    default_synthesis_loss = {"bn": 1.0, "oh": 1.0, "adv": 1.0, "triplet": 0.1}
    default_student_loss = {"kd": 1.0, "cd": 0.1, "striplet": 0.1}
    default_synthesis_augment = BatchAugment
    default_paired_views = True
