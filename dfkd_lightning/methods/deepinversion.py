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
    subtract 0.001 x the student's BN loss; CMI hard-codes ``tv = 1e-3`` on the L1 mean of the
    pixel differences (``tv: {weight: 1.0e-3, norm: l1}``, the CIFAR configs), Fast-Datafree
    ``tv = 0``; NVlabs' default is the L2 norm (``norm: l2``, the term's default). They pool
    the last iterate (their ``best_inputs`` aliases the optimised pixels, so the lowest-loss
    batch is never what is kept); the default here pools the round's lowest-loss batch,
    ``keep: last`` the last step's batch (the release's up to its final update).
    """

    summary = "DeepInversion (CVPR 2020): pixels optimised with BN statistics and image priors"

    default_synthesizer = LearnablePixels
    default_synthesis_loss = {"bn": 1.0, "oh": 1.0, "tv": 1e-4, "l2": 1e-5}
    default_synthesis_augment = RandomJitter
