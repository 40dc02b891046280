"""DiffDFKD: data-free knowledge distillation with a teacher-guided diffusion model and latent
CutMix (Qi et al., ICME 2025, arXiv 2504.00870)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from dfkd_lightning.data.synthetic_set import SyntheticSetDataModule
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.export.labels import teacher_labels
from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.diffusion.generation import GenerationPlan, generate_set
from dfkd_lightning.synthesis.synthesizers.diffusion import DiffusionSynthesizer

__all__ = ["DiffDFKD"]

Mode = Literal["generate_then_distil", "online"]


class DiffDFKD(DataFreeDistillation):
    """A frozen diffusion model (:class:`DiffusionSynthesizer`) steered by
    ``L_inv = bn * L_BN + oh * CE(T(x0), y) + adv * L_adv`` (defaults 0.1 / 1 / 0, the
    release's), then KD with temperature 30 (``student_loss``).

    ``mode: generate_then_distil`` (the paper's): at the start of fit the run writes a labelled
    set of ``images_per_class`` images per class to the DataModule's ``synthetic_dir``
    (:class:`~dfkd_lightning.data.SyntheticSetDataModule` with ``written_by_run: true``), each
    DDP rank its share of the rounds (``synthesis_batch_size`` images of consecutive classes,
    round ``r`` seeded by ``generation_seed`` and ``r``: the same set whatever the number of
    ranks) into its own shard, with a progress bar; finished rounds survive an interruption and
    a finished set is reused. Each new round passes through the sample callbacks (filters,
    monitoring, like every method's samples) before it is kept. Then the student trains on
    that set through the DataModule, by epochs (the release's 240 epochs, SGD 0.2, multistep
    at 150/180/210). ``set_labels``:
    the targets the images were guided toward (``targets``) or the teacher's argmax
    (``teacher``: for unguided sampling).

    ``mode: online``: synthesis rounds interleaved with student steps like the other pool
    methods (every ``kd_steps`` student steps a round of ``synthesis_batch_size`` guided
    images enters the pool): what the adversarial term needs (the release's adversarial loop
    with ``adv > 0`` after ``warmup`` epochs on what was generated so far).
    """

    summary = "DiffDFKD (ICME 2025): teacher-guided diffusion with latent CutMix"

    default_synthesis_loss = {"bn": 0.1, "oh": 1.0, "adv": 0.0}
    default_student_loss = {"kd": {"weight": 1.0, "temperature": 30.0}}

    def __init__(
        self,
        mode: Mode = "generate_then_distil",
        images_per_class: int = 200,
        generation_seed: int = 0,
        set_labels: Literal["targets", "teacher"] = "targets",
        set_storage: Literal["uint8", "float16", "float32"] = "uint8",
        **kwargs: Any,
    ) -> None:
        """``kwargs``: :class:`DataFreeDistillation`'s (teacher, synthesizer, losses, ...)."""
        if mode not in ("generate_then_distil", "online"):
            raise ConfigError(f"mode must be generate_then_distil or online, got {mode!r}")
        if set_labels not in ("targets", "teacher"):
            raise ConfigError(f"set_labels must be targets or teacher, got {set_labels!r}")
        if images_per_class < 1:
            raise ConfigError(f"images_per_class must be >= 1, got {images_per_class}")
        super().__init__(**kwargs)
        if not isinstance(self.synthesizer, DiffusionSynthesizer):
            raise ConfigError(
                "DiffDFKD needs model.init_args.synthesizer: a dfkd_lightning.synthesis."
                "synthesizers.DiffusionSynthesizer with pretrained set to a diffusers model"
            )
        self.mode: Mode = mode
        self.images_per_class, self.generation_seed = images_per_class, generation_seed
        self.set_labels, self.set_storage = set_labels, set_storage

    # ----------------------------------------------------------------- generate, then distil
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.mode == "generate_then_distil":
            self.write_synthetic_set()

    def synthetic_dir(self) -> str:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, SyntheticSetDataModule) or not datamodule.written_by_run:
            raise ConfigError(
                "DiffDFKD's generate_then_distil mode writes its set and trains on it through "
                "dfkd_lightning.data.SyntheticSetDataModule with written_by_run: true and "
                "synthetic_dir set (see configs/experiments/digits/diffdfkd.yaml); or use "
                "model.init_args.mode: online with a step-paced DataModule"
            )
        return datamodule.synthetic_dir

    def write_synthetic_set(self) -> None:
        """Write (or reuse) the labelled set in the DataModule's ``synthetic_dir``."""
        weights = self.synthesis_objective.active(student_trains=False, epoch=0)
        if weights.get("adv", 0.0) > 0:
            raise ConfigError(
                "the adv term needs a student that learns while images are generated: use "
                "model.init_args.mode: online, or set adv to 0 in synthesis_loss"
            )
        self.synthesizer.attach(lambda batch: self.synthesis_context(batch, weights)[0])
        plan = GenerationPlan(
            num_classes=self.num_classes,
            images_per_class=self.images_per_class,
            round_size=self.synthesis_batch_size,
            seed=self.generation_seed,
        )
        generate_set(
            self.synthesizer,
            plan,
            self.synthetic_dir(),
            rank=self.global_rank,
            world_size=self.trainer.world_size,
            label_with=self.teacher_labels if self.set_labels == "teacher" else None,
            storage=self.set_storage,
            description={
                "method": type(self).__name__,
                "teacher_checkpoint": str(self.teacher_checkpoint),
                "set_labels": self.set_labels,
                **self.synthesizer.description(),
            },
            progress=self.trainer.is_global_zero and self.trainer.progress_bar_callback is not None,
            process=self.run_sample_callbacks,
        )
        self.synthesizer.attach(self.synthesis_loss_of)
        self.trainer.strategy.barrier("diffdfkd-set-written")

    def teacher_labels(self, images: torch.Tensor) -> torch.Tensor:
        return teacher_labels(self.teacher, images, lambda x: self.network_inputs(x, None))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.mode == "online":
            return super().training_step(batch, batch_idx)
        images, labels = batch  # the DataModule's normalised images at the input size
        samples = SyntheticBatch(self.denormalize(images), labels)
        self.student_update(samples, augment=None)
        return None
