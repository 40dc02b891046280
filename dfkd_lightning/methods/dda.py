"""DDA: data-free knowledge distillation via diverse diffusion augmentation (Li, Zhang et al.,
ACM MM 2024, arXiv 2410.17606)."""

from __future__ import annotations

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.synthesizers import ResetGenerator


class DDA(DataFreeDistillation):
    """Model inversion, then diffusion variations of every new image, filtered by cosine
    similarity to their source, into the pool.

    Synthesis (the paper's figure: contrastive, CMI-like): a re-initialised generator and
    latents (:class:`ResetGenerator`) on ``bn * R_feature + oh * CE + adv * L_adv + cr * L_cr``
    (CMI's terms). The release's synthesis (the CSD code it ships) is ``bn + oh + 10 *
    rotation_adv``: samples on which the student's rotation head fails
    (``configs/experiments/*/dda_release.yaml``).

    Variations are not the method's own: the :class:`~dfkd_lightning.callbacks.DiffusionVariations`
    callback adds ``copies`` variations of every new image (image variations of Stable
    Diffusion, or img2img with any diffusers model), and the
    :class:`~dfkd_lightning.callbacks.SimilarityFilter` after it keeps a variation when
    ``cos(e(variation), e(source)) >= omega`` (teacher penultimate features by default); the
    ``dda`` configs list both, the ``dda_release`` ones neither (the release has no such
    stage).

    Student: the release's loss, each a weighted term: ``kd`` (KL at T = 20) + ``ce`` (CE to
    the samples' targets) + ``30 * cd`` with ``penultimate: true`` (MSE of an alignment head on
    the student's penultimate features to the teacher's) + ``rotation`` (a 4C-way class x
    rotation head on the student's features, L2-normalised, re-initialised every round). The
    paper's text is not public; its figure shows "two student heads" and a self-supervised
    term: our reading is that the alignment head (``cd``) and the rotation head
    (``rotation``) are those two heads and ``rotation`` the self-supervised term. As released
    the rotation head learns on detached features (``rotation: {detach_student: true}``), so
    it shapes the student only through the synthesis it attacks.
    """

    summary = "DDA (ACM MM 2024): inversion + diffusion variations filtered by cosine similarity"

    default_synthesizer = ResetGenerator
    default_synthesis_loss = {"bn": 1.0, "oh": 1.0, "adv": 0.5, "cr": 0.8}
    default_student_loss = {
        "kd": {"weight": 1.0, "temperature": 20.0},
        "ce": 1.0,
        "cd": {"weight": 30.0, "penultimate": True},
        "rotation": 1.0,
    }
    default_synthesis_augment = BatchAugment
