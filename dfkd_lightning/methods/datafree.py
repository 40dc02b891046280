"""The one data-free loop: synthesis rounds alternating with student steps.

A method is a synthesizer (:mod:`dfkd_lightning.synthesis.synthesizers`), a synthesis
objective and a student objective (weighted loss terms, :mod:`dfkd_lightning.synthesis.terms`)
and a schedule; :class:`DataFreeDistillation` runs them for images and for tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import DDPStrategy
from torch import nn

from dfkd_lightning.callbacks.base import run_sample_callbacks
from dfkd_lightning.errors import ConfigError, UserError
from dfkd_lightning.methods.evaluators import build_evaluator
from dfkd_lightning.methods.frozen_teacher import StudentWithFrozenTeacher, load_frozen_teacher
from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.methods.manual_steps import ManualSteps
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.optim import build_optimization
from dfkd_lightning.synthesis.augment import BatchAugment
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.bn_statistics import BNStatisticsLoss
from dfkd_lightning.synthesis.pool import SyntheticPool, rank_directory
from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer
from dfkd_lightning.synthesis.terms.base import build_objective
from dfkd_lightning.synthesis.terms.classic import BNStatisticsTerm
from dfkd_lightning.synthesis.terms.context import (
    Needs,
    NetOutput,
    StepContext,
    forward_with_features,
)

__all__ = ["CHECKPOINT_FORMAT", "CheckpointFormatError", "DataFreeDistillation"]

#: Version of the data-free state in checkpoints (``checkpoint["dfkd_datafree_format"]``).
CHECKPOINT_FORMAT = 2

StudentSamples = Literal["pool", "fresh", "reuse"]


class CheckpointFormatError(UserError, ValueError):
    """A checkpoint written by an older layout of the data-free methods."""


class DataFreeDistillation(StudentWithFrozenTeacher, ManualSteps):
    """Base of every data-free method (manual optimisation).

    The loop the field uses (Fast-Datafree ``datafree_kd.py``, CMI): the DataModule's train
    loader only paces it (``train_source: steps``). Every ``kd_steps``-th step runs a
    synthesis round: ``synthesizer.begin_round``, then ``g_steps`` optimizer steps of the
    synthesizer on the weighted ``synthesis_loss`` of its rendered batch, then
    ``end_round``. Pool methods keep the round's lowest-loss batch (``keep: best``) or its
    last (``keep: last``), pass it through the :class:`~dfkd_lightning.callbacks.SampleCallback`
    callbacks and into the pool. Every step after ``warmup`` epochs is one student step on
    ``batch_size`` samples (``student_samples``: from the pool, augmented by a random crop and
    flip when ``student_augment``; ``fresh`` from the synthesizer, through the callbacks;
    ``reuse``: the round's last latents again) with the weighted ``student_loss``.
    ``paired_views`` (RGAL): a pool batch is ``batch_size / 2`` images drawn once and taken
    twice, each copy with its own crop and flip, so that every sample has a positive of its
    own class (RGAL's release draws 128 images and trains on their 256 views).

    The pool is sampled uniformly with replacement; the releases of the pool methods
    (DeepInversion, CMI, FastDFKD) rebuild a loader over it every round and draw its
    reshuffled epochs (each image once per pass).

    Images: samples are in image space at ``synthesis_size`` (default: the input size); the
    networks see them upsampled bilinearly to the input size, augmented
    (``synthesis_augment`` during synthesis) and normalised with the dataset's mean/std.
    Tables: samples are the network inputs.

    Optimizers: index 0 is the student's (``optimizer``, SGD 0.1/momentum 0.9 by default, with
    the parameters of the student terms, e.g. RGAL's ``cd`` adapters;
    ``scheduler`` stepped once per epoch after warmup), the others the synthesizer's (their
    first also trains the synthesis terms' parameters). Under DDP each rank synthesizes its
    own samples and keeps its own pool; a synthesizer shared across ranks (a persistent
    generator) has its gradients averaged. Checkpoints hold every rank's pool (with targets),
    synthesizer and term state and RNG state: a resumed run continues exactly. Terms are
    logged every step (``log_terms_every: step``) or as epoch means (``epoch``: cheaper for
    networks so small that logging costs more than the step).

    A method subclass sets the class defaults below (synthesizer, objectives, schedule); paper
    settings live in its YAML (``configs/methods``).
    """

    #: The synthesizer when the config gives none.
    default_synthesizer: ClassVar[Callable[[], Synthesizer] | None] = None
    default_synthesis_loss: ClassVar[Mapping[str, Any]] = {}
    default_student_loss: ClassVar[Mapping[str, Any]] = {"kd": 1.0}
    #: The view the teacher sees during synthesis when the config gives none (None: as is).
    default_synthesis_augment: ClassVar[Callable[[], nn.Module] | None] = None
    #: Whether a student batch is pairs of views of the same pool images (``paired_views``).
    default_paired_views: ClassVar[bool] = False

    def __init__(
        self,
        teacher: str = "resnet34",
        student: str = "resnet18",
        teacher_checkpoint: str | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (3, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        synthesizer: Synthesizer | None = None,
        synthesis_loss: dict[str, float | dict[str, Any]] | None = None,
        student_loss: dict[str, float | dict[str, Any]] | None = None,
        batch_size: int = 256,
        synthesis_batch_size: int = 256,
        kd_steps: int = 400,
        g_steps: int = 200,
        warmup: int = 0,
        synthesis_size: int | None = None,
        student_samples: StudentSamples | None = None,
        keep: Literal["best", "last"] = "best",
        synthesis_augment: nn.Module | None = None,
        student_augment: bool = True,
        paired_views: bool | None = None,
        log_terms_every: Literal["step", "epoch"] = "step",
        pool_capacity: int | None = None,
        pool_storage: Literal["uint8", "float16", "float32"] = "uint8",
        pool_directory: str | None = None,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        record_hyperparameters(self)
        self.automatic_optimization = False
        if batch_size < 1 or synthesis_batch_size < 1:
            raise ConfigError(
                f"batch_size and synthesis_batch_size must be >= 1, got {batch_size} and "
                f"{synthesis_batch_size}"
            )
        if warmup < 0:
            raise ConfigError(f"warmup must be >= 0 epochs, got {warmup}")
        if kd_steps < 1 or g_steps < 0:
            raise ConfigError(f"kd_steps must be >= 1 and g_steps >= 0, got {kd_steps}, {g_steps}")
        if synthesis_size is not None and synthesis_size < 1:
            raise ConfigError(f"synthesis_size must be >= 1 or null, got {synthesis_size}")
        if keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {keep!r}")
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.is_image = len(self.input_shape) == 3
        self.register_buffer("_mean", self._channel_constants(mean), persistent=False)
        self.register_buffer("_std", self._channel_constants(std), persistent=False)
        self.mean, self.std = tuple(mean), tuple(std)
        self.teacher, self.student = self.build_networks(teacher, student, teacher_checkpoint)
        self.teacher_checkpoint = teacher_checkpoint
        self.evaluation = build_evaluator(num_classes if num_classes > 0 else None)
        self.batch_size, self.synthesis_batch_size = batch_size, synthesis_batch_size
        self.kd_steps, self.g_steps, self.warmup, self.keep = kd_steps, g_steps, warmup, keep
        self.synthesis_size: int = synthesis_size or self.input_shape[-1]
        self.optimizer, self.scheduler = optimizer, scheduler
        self.log_terms_every = log_terms_every

        synthesizer = synthesizer if synthesizer is not None else self._default_synthesizer()
        synthesizer.bind(
            SampleSpec(
                shape=self.synthesis_shape,
                num_classes=max(num_classes, 0),
                batch_size=synthesis_batch_size,
                steps_per_round=g_steps,
                normalize=self.normalize,
                denormalize=self.denormalize,
            )
        )
        if synthesizer.frozen_pretrained:  # out of state_dict, DDP and .to(); see setup()
            self.__dict__["synthesizer"] = synthesizer
        else:
            self.synthesizer = synthesizer
        self.student_samples: StudentSamples = student_samples or (
            "pool" if synthesizer.pools else "fresh"
        )
        if self.student_samples not in ("pool", "fresh", "reuse"):
            raise ConfigError(f"student_samples must be pool, fresh or reuse: {student_samples!r}")
        self.synthesis_objective = build_objective(
            self.default_synthesis_loss if synthesis_loss is None else synthesis_loss
        )
        self.student_objective = build_objective(
            self.default_student_loss if student_loss is None else student_loss
        )
        self.synthesis_objective.bind(self)
        self.student_objective.bind(self)
        synthesizer.attach(self.synthesis_loss_of)
        if synthesis_augment is None and self.default_synthesis_augment is not None:
            synthesis_augment = self.default_synthesis_augment()
        self.synthesis_augment = synthesis_augment
        self.student_augmenter = (
            BatchAugment(crop_padding=self.input_shape[-1] // 8, flip=True)
            if self.is_image and student_augment
            else None
        )
        self.paired_views = self.default_paired_views if paired_views is None else paired_views
        if self.paired_views and (self.student_samples != "pool" or batch_size % 2):
            raise ConfigError(
                "paired_views takes two views of each pool image: it needs student_samples: "
                f"pool and an even batch_size, got {self.student_samples} and {batch_size}"
            )
        self._pool_options = dict(capacity=pool_capacity, storage=pool_storage)
        self._pool_directory = pool_directory
        self.pool = SyntheticPool(**self._pool_options)
        self.bn_recorder: BNStatisticsLoss | None = None
        self.images_synthesized = 0
        self.student_steps = 0
        self._pending_rng: dict[str, torch.Tensor] | None = None
        self._pending_bn_state: dict[str, torch.Tensor] | None = None
        self._epoch_terms: dict[str, list[torch.Tensor]] = {}
        self._log_calls = 0

    # ----------------------------------------------------------------- construction
    def build_networks(
        self, teacher: str, student: str, teacher_checkpoint: str | None
    ) -> tuple[nn.Module, nn.Module]:
        """The frozen teacher (from ``teacher_checkpoint``) and the student, by zoo name."""
        channels = self.input_shape[0]
        return (
            load_frozen_teacher(teacher, teacher_checkpoint, self.num_classes, channels),
            build_classifier(student, num_classes=self.num_classes, in_channels=channels),
        )

    def _default_synthesizer(self) -> Synthesizer:
        if self.default_synthesizer is None:
            raise ConfigError(
                f"{type(self).__name__} has no default synthesizer: set model.init_args."
                "synthesizer (a class_path, e.g. dfkd_lightning.synthesis.synthesizers."
                "LearnablePixels)"
            )
        return self.default_synthesizer()

    def _channel_constants(self, values: tuple[float, ...]) -> torch.Tensor:
        tensor = torch.tensor(values, dtype=torch.float32)
        return tensor.view(1, -1, 1, 1) if self.is_image else tensor.view(1, -1)

    # ----------------------------------------------------------------- samples -> inputs
    def normalize(self, samples: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> network inputs with the dataset's mean/std (tables: as is)."""
        if not self.is_image:
            return samples
        return (samples - self._mean.to(samples.dtype)) / self._std.to(samples.dtype)

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        if not self.is_image:
            return inputs
        return inputs * self._std.to(inputs.dtype) + self._mean.to(inputs.dtype)

    @property
    def synthesis_shape(self) -> tuple[int, ...]:
        """One sample as the synthesizer makes it: ``(C, synthesis_size, synthesis_size)``."""
        if not self.is_image:
            return self.input_shape
        return (self.input_shape[0], self.synthesis_size, self.synthesis_size)

    def to_input_size(self, images: torch.Tensor) -> torch.Tensor:
        """Images at ``synthesis_size`` -> the network's input size (bilinear)."""
        size = self.input_shape[-2:]
        if not self.is_image or tuple(images.shape[-2:]) == tuple(size):
            return images
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def network_inputs(
        self, samples: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> torch.Tensor:
        """Samples -> what the networks see: resized, augmented, normalised."""
        images = self.to_input_size(samples)
        if augment is not None:
            images = augment(images)
        return self.normalize(images)

    def teacher_output(
        self,
        inputs: torch.Tensor,
        *,
        features: bool = False,
        stages: tuple[str, ...] = (),
        bn: bool = False,
        input_means: tuple[str, ...] = (),
    ) -> NetOutput:
        """One teacher forward with what was asked for (``bn``: its BN statistics)."""
        recorder = None
        if bn:
            if self.bn_recorder is None:
                raise RuntimeError("BN statistics are recorded during fit only")
            recorder = self.bn_recorder
        return forward_with_features(
            self.teacher,
            inputs,
            features=features,
            stages=stages,
            bn=recorder,
            input_means=input_means,
        )

    def outputs(
        self, inputs: torch.Tensor, needs: Needs, synthesis: bool
    ) -> tuple[NetOutput, NetOutput | None]:
        """The teacher's (no grad on student steps) and, when needed, the student's output."""
        grad = nullcontext() if synthesis else torch.no_grad()
        with grad:
            teacher = self.teacher_output(
                inputs,
                features=needs.teacher_features,
                stages=needs.teacher_stages,
                bn=needs.teacher_bn and synthesis,
                input_means=needs.teacher_input_means,
            )
        student = None
        if needs.runs_student or not synthesis:
            student = forward_with_features(
                self.student, inputs, features=needs.student_features, stages=needs.student_stages
            )
        return teacher, student

    # ----------------------------------------------------------------- objectives
    def synthesis_context(
        self, batch: SyntheticBatch, weights: Mapping[str, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], StepContext]:
        """The weighted synthesis loss of ``batch``, every term's value and the context."""
        inputs = self.network_inputs(batch.samples, self.synthesis_augment)
        needs = self.synthesis_objective.needs(weights)
        teacher, student = self.outputs(inputs, needs, synthesis=True)
        ctx = StepContext(batch, inputs, teacher, student, "synthesis", self)
        loss, values = self.synthesis_objective(ctx, weights)
        return loss, values, ctx

    def synthesis_weights(self) -> dict[str, float]:
        epoch = self.current_epoch
        return self.synthesis_objective.active(student_trains=epoch >= self.warmup, epoch=epoch)

    def synthesis_loss_of(self, batch: SyntheticBatch) -> torch.Tensor:
        """The synthesis loss of ``batch`` (logged under ``synth/``), for synthesizers that
        optimise their samples themselves."""
        loss, values, _ = self.synthesis_context(batch, self.synthesis_weights())
        self.log_terms("synth", {"loss": loss, **values})
        return loss

    # ----------------------------------------------------------------- the loop
    def configure_optimizers(self) -> Any:
        trained = [*self.student.parameters(), *self.student_objective.parameters()]
        student = build_optimization(trained, self.optimizer, self.scheduler)
        synthesis: list[torch.optim.Optimizer] = []
        if not self.synthesizer.frozen_pretrained:
            extra = [p for p in self.synthesis_objective.parameters() if p.requires_grad]
            synthesis = self.synthesizer.configure_optimizers(extra)
            if synthesis:
                self.synthesis_objective.separate_parameter_groups(synthesis[0])
        optimizers = [student["optimizer"], *synthesis]
        if "lr_scheduler" in student:
            return optimizers, [student["lr_scheduler"]]
        return optimizers

    def synthesis_optimizers(self) -> list[LightningOptimizer]:
        optimizers = self.optimizers()
        return list(optimizers[1:]) if isinstance(optimizers, list) else []

    def training_step(self, batch: Any, batch_idx: int) -> None:
        rounds = self.student_samples == "pool" or bool(self.synthesis_optimizers())
        if rounds and batch_idx % self.kd_steps == 0:
            self._synthesis_round()
        if self.current_epoch >= self.warmup:
            self._student_step()

    def _synthesis_round(self) -> None:
        optimizers = self.synthesis_optimizers()
        student_was_training = self.student.training
        self.student.eval()
        before, start = self.images_synthesized, time.perf_counter()
        toggle = (
            optimizers[0].toggle_model(sync_grad=self.synthesizer.shared_across_ranks)
            if optimizers
            else nullcontext()
        )
        with toggle:
            kept = self._round(optimizers[0] if optimizers else None)
        self.student.train(student_was_training)
        if self.student_samples == "pool":
            batch = self.run_sample_callbacks(kept)
            self.pool.add_batch(batch)
            self.images_synthesized += len(batch)
        seconds = time.perf_counter() - start
        self.log_dict(
            {
                "synth/images_per_s": (self.images_synthesized - before) / max(seconds, 1e-9),
                "synth/images": float(self.images_synthesized),
                "pool/size": float(len(self.pool)),
            }
        )

    def _round(self, optimizer: LightningOptimizer | None) -> SyntheticBatch:
        """``g_steps`` synthesizer steps; the batch kept for the pool (the round's best or
        last; without a pool, the last, for the synthesizer's and terms' ``end_round``)."""
        weights = self.synthesis_weights()
        pooling = self.student_samples == "pool"
        self.synthesizer.begin_round(self.current_epoch)
        best_loss = torch.full((), float("inf"), device=self.device)
        kept: SyntheticBatch | None = None
        values: dict[str, torch.Tensor] = {}
        steps = self.g_steps if optimizer is not None else 0
        for _ in range(steps):
            batch = self.synthesizer.render(self.synthesis_batch_size)
            loss, values, ctx = self.synthesis_context(batch, weights)
            candidate = batch.detach().with_extras(**ctx.keep)
            if not pooling or self.keep == "last" or kept is None:
                kept = candidate
                best_loss = loss.detach().float()
            else:
                with torch.no_grad():  # tracked on the device: no host sync
                    better = loss.detach() < best_loss
                    best_loss = torch.where(better, loss.detach().float(), best_loss)
                    kept = candidate.where(better, kept)
            assert optimizer is not None
            self.optimizer_step(optimizer, loss)
            self.synthesizer.after_step()
            if not pooling:
                self.images_synthesized += len(batch)
            values = {"loss": loss, **values}
        if kept is None:  # no optimisation (g_steps 0, a sampler, a frozen synthesizer)
            with torch.no_grad():
                kept = self.synthesizer.render(self.synthesis_batch_size).detach()
        if pooling and self.is_image:
            kept = SyntheticBatch(kept.samples.float().clamp(0, 1), kept.targets, kept.extras)
        if self.bn_recorder is not None and self.bn_recorder.momentum > 0 and steps:
            self.bn_recorder.update_momentum()
        self.synthesis_objective.end_round(kept)
        self.student_objective.end_round(kept)
        self.synthesizer.end_round(kept)
        if values:
            self.log_terms("synth", values)
        return kept

    def run_sample_callbacks(self, batch: SyntheticBatch) -> SyntheticBatch:
        """New samples through every :class:`SampleCallback` (no gradients)."""
        with torch.no_grad():
            return run_sample_callbacks(self.trainer, self, batch.detach())

    def student_batch(self) -> tuple[SyntheticBatch, bool]:
        """The samples of one student step and whether they come from the pool."""
        if self.student_samples == "pool":
            if self.paired_views:  # each image twice; the student augmenter draws per sample
                half = self.pool.sample_batch(self.batch_size // 2, device=self.device)
                return SyntheticBatch.cat([half, half]), True
            return self.pool.sample_batch(self.batch_size, device=self.device), True
        if self.student_samples == "reuse":
            return self.run_sample_callbacks(self.synthesizer.render_last()), False
        batch = self.run_sample_callbacks(self.synthesizer.sample(self.batch_size))
        self.images_synthesized += len(batch)
        return batch, False

    def _student_step(self) -> None:
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        if self.student_samples == "pool" and len(self.pool) == 0:
            return  # sample filters have kept nothing yet
        with optimizer.toggle_model():
            batch, pooled = self.student_batch()
            if len(batch) == 0:
                return  # a sample filter kept none of this step's samples
            self.student_update(batch, self.student_augmenter if pooled else None)

    def student_update(
        self, batch: SyntheticBatch, augment: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> None:
        """One optimizer step of the student on ``batch`` with the student objective."""
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        weights = self.student_objective.active(epoch=self.current_epoch)
        inputs = self.network_inputs(batch.samples, augment)
        teacher, student = self.outputs(
            inputs, self.student_objective.needs(weights), synthesis=False
        )
        ctx = StepContext(batch, inputs, teacher, student, "student", self)
        loss, values = self.student_objective(ctx, weights)
        self.optimizer_step(optimizer, loss)
        self.student_steps += 1
        self.log_terms("train", {"loss": loss, **values})

    def on_train_epoch_end(self) -> None:
        if self._epoch_terms:
            means = {name: torch.stack(v).mean() for name, v in self._epoch_terms.items()}
            self._epoch_terms = {}
            self.check_finite("epoch", means)
            self.log_dict(means)
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.current_epoch >= self.warmup:
            scheduler.step()

    def log_terms(self, prefix: str, terms: dict[str, torch.Tensor], **kwargs: Any) -> None:
        """Log each term as ``prefix/name`` (every step, or as epoch means with
        ``log_terms_every: epoch``); NaN/inf is checked where values are logged anyway."""
        self._log_calls += 1
        check = self.device.type == "cpu" or (self._log_calls - 1) % self._check_interval() == 0
        if check and self.log_terms_every == "step":
            values = self.check_finite(prefix, terms)  # epoch means are checked per epoch
        else:
            values = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
        if self.log_terms_every == "epoch":
            for name, value in zip(terms, values, strict=True):
                self._epoch_terms.setdefault(f"{prefix}/{name}", []).append(value)
            return
        self.log_dict(
            dict(zip((f"{prefix}/{name}" for name in terms), values, strict=True)),
            prog_bar=False,
            **kwargs,
        )

    def _check_interval(self) -> int:
        trainer = self._trainer
        return max(int(getattr(trainer, "log_every_n_steps", 50) or 50), 1) if trainer else 1

    # ----------------------------------------------------------------- evaluation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation.evaluate(self, batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.evaluation.evaluate(self, batch, "test")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.evaluation.teacher_val_logged = True

    # ----------------------------------------------------------------- ranks and resume
    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get(
            "find_unused_parameters", False
        ):
            raise ConfigError(
                "data-free methods alternate the student's and the synthesizer's optimizers, "
                "which DDP only allows with unused-parameter detection: use "
                "--trainer.strategy ddp_find_unused_parameters_true (configs/trainer/ddp.yaml)"
            )
        if self.synthesizer.frozen_pretrained:
            self.synthesizer.to(strategy.root_device)

    def on_fit_start(self) -> None:
        needs = self.synthesis_objective.needs()
        if needs.teacher_bn and self.bn_recorder is None:
            [bn_term] = self.synthesis_objective.of_type(BNStatisticsTerm) or [None]
            self.bn_recorder = BNStatisticsLoss(
                self.teacher,
                momentum=bn_term.momentum if bn_term is not None else 0.0,
                first_bn_multiplier=bn_term.first_bn_multiplier if bn_term is not None else 1.0,
                gated=True,
            )
        if self.bn_recorder is not None and self._pending_bn_state is not None:
            self.bn_recorder.load_state_dict(self._pending_bn_state)
            self._pending_bn_state = None

    def on_fit_end(self) -> None:
        if self.bn_recorder is not None:
            self.bn_recorder.remove()
            self.bn_recorder = None

    def on_train_start(self) -> None:
        if self._pending_rng is not None:
            self.restore_rng_state(self._pending_rng)
            self._pending_rng = None
        elif self.trainer.world_size > 1:
            # Lightning seeds every rank alike; each rank must synthesize its own samples.
            torch.manual_seed(torch.initial_seed() + self.global_rank)
        if self._pool_directory is not None and len(self.pool) == 0:
            self.pool = self._rank_pool()
        self.pool.to(self.device)  # a resumed pool was loaded before the move to the device

    def _rank_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "pool": self.pool.state_dict(),
            "rng": self.rng_state(),
            "images_synthesized": self.images_synthesized,
            "student_steps": self.student_steps,
            "synthesizer": self.synthesizer.rank_state(),
            "synthesis_terms": self.synthesis_objective.rank_state(),
            "student_terms": self.student_objective.rank_state(),
        }
        if self.bn_recorder is not None:
            state["bn_statistics"] = {k: v.cpu() for k, v in self.bn_recorder.state_dict().items()}
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self._rank_state()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)
        else:
            states = [state]
        checkpoint["datafree_ranks"] = states
        checkpoint["dfkd_datafree_format"] = CHECKPOINT_FORMAT

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("datafree_ranks")
        legacy = "datafree_regression" in checkpoint
        if legacy or (states and checkpoint.get("dfkd_datafree_format") != CHECKPOINT_FORMAT):
            raise CheckpointFormatError(
                "this checkpoint predates the component layout of the data-free methods "
                "(synthesizer + loss terms); it cannot be resumed with this version. Start the "
                "run again with the current config, or resume it with dfkd-lightning 0.1 "
                "(its student weights load as a teacher or student anywhere)"
            )
        if not states:
            return
        state = states[self.global_rank % len(states)]
        self.pool = self._rank_pool()
        self.pool.load_state_dict(state["pool"])
        self.images_synthesized = int(state["images_synthesized"])
        self.student_steps = int(state["student_steps"])
        self._pending_rng = state["rng"]
        self._pending_bn_state = state.get("bn_statistics")
        self.synthesizer.load_rank_state(state.get("synthesizer", {}))
        self.synthesis_objective.load_rank_state(state.get("synthesis_terms", {}))
        self.student_objective.load_rank_state(state.get("student_terms", {}))

    def _rank_pool(self) -> SyntheticPool:
        """An empty pool for this rank (on disk under ``pool_directory/rank_<r>`` if set)."""
        directory = None
        if self._pool_directory is not None:
            directory = rank_directory(self._pool_directory, self.global_rank)
        return SyntheticPool(**self._pool_options, directory=directory)
