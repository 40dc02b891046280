"""The data-free distillation loop: synthesis rounds alternating with student steps."""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import DDPStrategy

from dfkd_lightning.data.specs import normalize
from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods.manual_steps import ManualSteps
from dfkd_lightning.methods.teacher_student import TeacherStudentModule
from dfkd_lightning.optim import build_optimization
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.pool import SyntheticPool, rank_directory


class DataFreeDistillation(ManualSteps, TeacherStudentModule):
    """Base of every data-free method (manual optimisation, ``automatic_optimization=False``).

    The loop the field uses (Fast-Datafree ``datafree_kd.py``, CMI): the DataModule's
    train loader only paces the loop (``train_source: steps``, ``steps_per_epoch`` =
    the papers' ``ep_steps``). At every ``kd_steps``-th step a synthesis round runs
    (``g_steps`` optimizer steps of the synthesizer, see :meth:`synthesize`); its
    images pass through the callbacks' ``on_samples_synthesized`` and go into the
    pool. ``synthesis_size`` sets the side length the synthesizer works at (default: the
    input size); smaller images are upsampled bilinearly to the input size, the way a
    dataset of small images is resized for its network (digits: 8x8 -> 32x32).
    Every step after ``warmup`` epochs is one student step on a batch from
    :meth:`student_inputs` (a pool batch, or fresh generator samples for the
    generator methods) with the loss of :meth:`student_loss` (Hinton KD at
    ``temperature`` by default).

    Optimizers: index 0 is the student's (``optimizer``, SGD 0.1/momentum 0.9 by
    default; ``scheduler`` stepped once per epoch after warmup), the others are
    the synthesizer's from :meth:`configure_synthesis_optimizers`. Synthesis runs
    with only the synthesizer trainable and, under DDP, without gradient
    all-reduce unless ``sync_synthesis`` is set: each rank synthesizes its own
    images and keeps its own pool; checkpoints hold every rank's pool and RNG state.
    """

    #: Whether synthesizer gradients are averaged across DDP ranks (shared generator).
    sync_synthesis: bool = False
    #: Whether the pool is used (inversion methods) or the student samples a generator.
    uses_pool: bool = True

    def __init__(
        self,
        teacher: str = "resnet34",
        student: str = "resnet18",
        teacher_checkpoint: str | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        batch_size: int = 256,
        synthesis_batch_size: int = 256,
        kd_steps: int = 400,
        g_steps: int = 200,
        warmup: int = 0,
        temperature: float = 1.0,
        synthesis_size: int | None = None,
        student_augment: bool = True,
        pool_capacity: int | None = None,
        pool_storage: Literal["uint8", "float16", "float32"] = "uint8",
        pool_directory: str | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(teacher, student, teacher_checkpoint, num_classes, input_shape, mean, std)
        self.automatic_optimization = False
        if kd_steps < 1 or g_steps < 0:
            raise ValueError(f"kd_steps must be >= 1 and g_steps >= 0, got {kd_steps}, {g_steps}")
        self.batch_size = batch_size
        self.synthesis_batch_size = synthesis_batch_size
        self.kd_steps, self.g_steps, self.warmup = kd_steps, g_steps, warmup
        self.temperature = temperature
        if synthesis_size is not None and synthesis_size < 1:
            raise ValueError(f"synthesis_size must be >= 1 or null, got {synthesis_size}")
        self.synthesis_size: int = synthesis_size or input_shape[-1]
        self.optimizer, self.scheduler = optimizer, scheduler
        self.student_augmenter = BatchAugment(crop_padding=input_shape[-1] // 8, flip=True)
        self.student_augment = student_augment
        self._pool_options = dict(capacity=pool_capacity, storage=pool_storage)
        self._pool_directory = pool_directory
        self.pool = SyntheticPool(**self._pool_options)
        self.images_synthesized = 0
        self.student_steps = 0
        self._pending_rng: dict[str, torch.Tensor] | None = None

    # ----------------------------------------------------------------- to override
    def configure_synthesis_optimizers(self) -> list[torch.optim.Optimizer]:
        """The synthesizer's optimizers (indices 1.. of :meth:`optimizers`)."""
        return []

    def synthesize(self) -> torch.Tensor | None:
        """One synthesis round; return new images in [0, 1] for the pool (or None)."""
        raise NotImplementedError

    def student_inputs(self) -> torch.Tensor:
        """A normalised student batch: pool images, augmented (crop + flip)."""
        images = self.pool.sample(self.batch_size, device=self.device)
        if self.student_augment:
            images = self.student_augmenter(images)
        return self.normalize(images)

    def student_loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, inputs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{"loss": ..., other terms}``; Hinton KD at ``temperature`` by default."""
        loss = kd_loss(student_logits, teacher_logits, self.temperature)
        return {"loss": loss, "loss_kd": loss}

    # ----------------------------------------------------------------- helpers
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> network inputs with the dataset's mean/std."""
        return normalize(images, self.mean, self.std)

    @property
    def synthesis_shape(self) -> tuple[int, int, int]:
        """``(channels, synthesis_size, synthesis_size)``: what the synthesizer produces."""
        return (self.input_shape[0], self.synthesis_size, self.synthesis_size)

    def to_input_size(self, images: torch.Tensor) -> torch.Tensor:
        """Synthesized images at ``synthesis_size`` -> the network's input size (bilinear)."""
        size = self.input_shape[-2:]
        if tuple(images.shape[-2:]) == tuple(size):
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def random_targets(self, n: int) -> torch.Tensor:
        """Uniformly drawn class labels for a synthesis batch (sorted, as CMI does)."""
        return torch.randint(0, self.num_classes, (n,), device=self.device).sort().values

    def synthesis_optimizers(self) -> list[LightningOptimizer]:
        optimizers = self.optimizers()
        return list(optimizers[1:]) if isinstance(optimizers, list) else []

    # ----------------------------------------------------------------- the loop
    def configure_optimizers(self) -> Any:
        student = build_optimization(self.student.parameters(), self.optimizer, self.scheduler)
        optimizers = [student["optimizer"], *self.configure_synthesis_optimizers()]
        if "lr_scheduler" in student:
            return optimizers, [student["lr_scheduler"]]
        return optimizers

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if batch_idx % self.kd_steps == 0:
            self._synthesis_round()
        if self.current_epoch >= self.warmup:
            self._student_step()

    def _synthesis_round(self) -> None:
        optimizers = self.synthesis_optimizers()
        student_was_training = self.student.training
        self.student.eval()
        before, start = self.images_synthesized, time.perf_counter()
        if optimizers:
            with optimizers[0].toggle_model(sync_grad=self.sync_synthesis):
                images = self.synthesize()
        else:
            images = self.synthesize()
        self.student.train(student_was_training)
        if images is not None:
            images = self._filter_through_callbacks(images.detach())
            self.pool.add(images)
            self.images_synthesized += len(images)
        seconds = time.perf_counter() - start
        self.log_dict(
            {
                "synth/images_per_s": (self.images_synthesized - before) / max(seconds, 1e-9),
                "synth/images": float(self.images_synthesized),
                "pool/size": float(len(self.pool)),
            }
        )

    def _filter_through_callbacks(self, images: torch.Tensor) -> torch.Tensor:
        """Pass new samples through every callback's ``on_samples_synthesized``."""
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "on_samples_synthesized", None)
            if hook is not None:
                kept = hook(self.trainer, self, images)
                images = images if kept is None else kept
        return images

    def _student_step(self) -> None:
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        with optimizer.toggle_model():
            inputs = self.student_inputs()
            with torch.no_grad():
                teacher_logits = self.teacher(inputs)
            terms = self.student_loss(self.student(inputs), teacher_logits, inputs)
            self.optimizer_step(optimizer, terms["loss"])
        self.student_steps += 1
        self.log_terms("train", terms, prog_bar=False)

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.current_epoch >= self.warmup:
            scheduler.step()

    # ----------------------------------------------------------------- ranks and resume
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get(
            "find_unused_parameters", False
        ):
            raise ValueError(
                "data-free methods alternate the student's and the synthesizer's optimizers, "
                "which DDP only allows with unused-parameter detection: use "
                "--trainer.strategy ddp_find_unused_parameters_true (configs/trainer/ddp.yaml)"
            )

    def on_train_start(self) -> None:
        if self._pending_rng is not None:
            self.restore_rng_state(self._pending_rng)
            self._pending_rng = None
        elif self.trainer.world_size > 1:
            # Lightning seeds every rank alike; each rank must synthesize its own images.
            torch.manual_seed(torch.initial_seed() + self.global_rank)
        if self._pool_directory is not None and len(self.pool) == 0:
            self.pool = self._rank_pool()

    def _rank_state(self) -> dict[str, Any]:
        return {
            "pool": self.pool.state_dict(),
            "rng": self.rng_state(),
            "images_synthesized": self.images_synthesized,
            "student_steps": self.student_steps,
            **self.extra_rank_state(),
        }

    def extra_rank_state(self) -> dict[str, Any]:
        """Per-rank synthesizer state beyond the module's parameters (tensors/primitives)."""
        return {}

    def load_extra_rank_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_rank_state` saved."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self._rank_state()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)
        else:
            states = [state]
        checkpoint["datafree_ranks"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("datafree_ranks")
        if not states:
            return
        state = states[self.global_rank % len(states)]
        self.pool = self._rank_pool()
        self.pool.load_state_dict(state["pool"], device=self.device)
        self.images_synthesized = int(state["images_synthesized"])
        self.student_steps = int(state.get("student_steps", 0))
        self._pending_rng = state["rng"]
        self.load_extra_rank_state(state)

    def _rank_pool(self) -> SyntheticPool:
        """An empty pool for this rank (on disk under ``pool_directory/rank_<r>`` if set)."""
        directory = None
        if self._pool_directory is not None:
            directory = rank_directory(self._pool_directory, self.global_rank)
        return SyntheticPool(**self._pool_options, directory=directory)
