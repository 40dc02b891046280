"""CMI: Contrastive Model Inversion (Fang et al., IJCAI 2021)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.synthesizers import ResetGenerator


class CMI(DataFreeDistillation):
    """Every round re-initialises a generator and learnable latents (:class:`ResetGenerator`)
    and optimises both on ``bn * R_feature + oh * CE + adv * L_adv + cr * L_cr``:
    DeepInversion's terms, the decision-adversarial KL on agreeing samples (Eq. 4) and the
    contrastive loss between a global and a local view of every image against a memory bank
    (Eq. 6-8, ``cr``). The teacher sees a random crop (padding 4) and flip.

    As released: the instance features of a ResNet teacher are the inputs of ``layer1``-
    ``layer4``, of other teachers every BN layer's (``cr: {feature_layers: ...}``); the head
    trains with Adam's default betas (0.9, 0.999) while the generator uses (0.5, 0.999). The
    CIFAR configs take ``cr_T`` 0.2 from ``cmi_cifar10.sh`` (student batch 256, as ours);
    its scratch script's 0.1 goes with a student batch of 128.
    """

    summary = "CMI (IJCAI 2021): re-initialised generator with a contrastive diversity loss"

    default_synthesizer = ResetGenerator
    default_synthesis_loss = {"bn": 1.0, "oh": 1.0, "adv": 0.5, "cr": 0.8}
    default_synthesis_augment = BatchAugment
