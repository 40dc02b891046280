"""DeepInversion: Dreaming to Distill (Yin et al., CVPR 2020)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.augment import RandomJitter
from dfkd_lightning.synthesis.synthesizers import LearnablePixels


class DeepInversion(DataFreeDistillation):
    """Optimises the pixels of a batch from noise every round (:class:`LearnablePixels`, Adam
    0.1) on ``oh * CE + bn * R_feature + tv * R_TV + l2 * R_l2`` (Eq. 2-4) and, for Adaptive
    DeepInversion, ``competition`` ``1 - JS(student, teacher)`` at temperature 3 (Eq. 8). The
    teacher sees the batch after a random roll by up to 2 pixels and a random flip
    (:class:`RandomJitter`); the round's lowest-loss batch is pooled.

    Differences from the released code: Fast-Datafree/CMI use ``-JS`` with probabilities
    clamped to [0.01, 0.99] (``competition: {js_variant: deepinversion_code}``) and also
    subtract 0.001 x the student's BN loss; Fast-Datafree hard-codes ``tv = 0``.
    """

    summary = "DeepInversion (CVPR 2020): pixels optimised with BN statistics and image priors"

    default_synthesizer = LearnablePixels
    default_synthesis_loss = {"bn": 1.0, "oh": 1.0, "tv": 1e-4, "l2": 1e-5}
    default_synthesis_augment = RandomJitter
