"""FastDFKD: Up to 100x Faster Data-free Knowledge Distillation (Fang et al., AAAI 2022)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.synthesizers import MetaGenerator


class FastDFKD(DataFreeDistillation):
    """A meta-generator (:class:`MetaGenerator`) adapted for a few steps per round on
    ``bn * R_feature + oh * CE + adv * L_adv`` with the BN statistics blended across rounds
    (``bn: {momentum: 0.9}``, Eq. 6). The teacher sees a random crop (padding 4) and flip.

    Schedule: the release counts synthesis rounds from 1 and adds the adversarial term once
    ``ep >= warmup``, one round before the student starts; the configs reproduce it with
    ``adv: {start_epoch: warmup - 1}`` (19 with warmup 20; epochs count from 0 here). The class
    default ``after_warmup`` starts it with the student instead. ``reset_l0`` is the
    synthesizer's (:class:`MetaGenerator`).
    """

    summary = "FastDFKD (AAAI 2022): meta-learned generator, a few steps per round"

    default_synthesizer = MetaGenerator
    default_synthesis_loss = {
        "bn": {"weight": 10.0, "momentum": 0.9},
        "oh": 0.5,
        "adv": {"weight": 1.33, "after_warmup": True},
    }
    default_synthesis_augment = BatchAugment
