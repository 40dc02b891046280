"""Non-exemplar class-incremental learning: every task in turn in one ``dfkd fit``, old
classes kept by distillation from the previous task's model (on the new real images: LwF;
on inverted old-class images: data-free replay) and never by stored real images."""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods.evaluation import ClassifierEvaluation
from dfkd_lightning.methods.hyperparameters import record_hyperparameters
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.optim import build_optimization
from dfkd_lightning.synthesis.replay import InversionReplay

__all__ = ["ClassIncrementalLearning"]

#: Version of the incremental state in checkpoints (``checkpoint["dfkd_incremental"]``).
CHECKPOINT_KEY = "dfkd_incremental"


class ClassIncrementalLearning(ClassifierEvaluation):
    """One network ``net`` with a head over every class, learning the tasks of a
    :class:`~dfkd_lightning.data.ClassIncrementalDataModule` in turn (labels in arrival order:
    task ``t`` holds ``[t k, (t + 1) k)``); predictions are over the classes seen so far.

    On task ``t`` with real batch ``(x, y)`` and ``o = t k`` old classes, the loss is
    ``CE(f(x), y)`` over the seen classes (``ce_scope: seen``) or over the task's own
    (``task``: ABD's local CE), plus, from the second task on, with ``P`` the frozen model
    of the end of the previous task and KD Hinton's ``T^2 KL`` at ``temperature`` on the
    old classes' logits:

    - ``lwf * KD(f(x)_o, P(x)_o)`` (Learning without Forgetting, Li & Hoiem 2016);
    - ``replay_kd * KD(f(x~)_o, P(x~)_o) + replay_ce * CE(f(x~), y~)`` on a batch ``x~`` of
      old-class images ``replay`` inverted from ``P`` at the start of the task
      (:class:`~dfkd_lightning.synthesis.replay.InversionReplay`: ABD / R-DFCIL's data-free
      replay, optionally with RGAL's triplet).

    Fine-tuning is all of these off; joint training (the upper bound) is the DataModule's
    ``joint: true``. At the end of every task the test split is evaluated and logged:
    ``incremental/acc`` (every seen class), ``incremental/old_acc`` (earlier tasks'),
    ``incremental/new_acc``, ``incremental/task_<j>_acc`` and ``incremental/average_acc``,
    the average incremental accuracy (the mean of ``incremental/acc`` over the tasks so
    far). The optimizer's state is reset at the start of each task. Checkpoints hold the
    task, the previous model, the replay images and the accuracies so far: a resumed run
    goes on with them (no second inversion)."""

    summary = "non-exemplar class-incremental learning: fine-tuning, LwF, inversion replay"

    def __init__(
        self,
        net: str = "resnet18",
        num_classes: int = 100,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        ce_scope: Literal["seen", "task"] = "seen",
        lwf: float = 0.0,
        replay: InversionReplay | None = None,
        replay_kd: float = 1.0,
        replay_ce: float = 1.0,
        replay_batch_size: int | None = None,
        temperature: float = 2.0,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_classes, input_shape, mean, std)
        record_hyperparameters(self)
        if ce_scope not in ("seen", "task"):
            raise ConfigError(f"ce_scope must be 'seen' or 'task', got {ce_scope!r}")
        if min(lwf, replay_kd, replay_ce) < 0 or temperature <= 0:
            raise ConfigError("lwf, replay_kd and replay_ce must be >= 0 and temperature > 0")
        self.net = build_classifier(net, num_classes=num_classes, in_channels=input_shape[0])
        self.ce_scope, self.lwf, self.temperature = ce_scope, lwf, temperature
        self.replay_kd, self.replay_ce = replay_kd, replay_ce
        self.replay_batch_size = replay_batch_size
        self.__dict__["replay"] = replay  # its synthesizer is rebuilt per task: not state
        self.__dict__["previous"] = None  # the frozen model of the previous task
        self.optimizer, self.scheduler = optimizer, scheduler
        self.register_buffer("_mean", torch.tensor(self.mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(-1, 1, 1), persistent=False)
        self.task = -1  # the task whose start has been prepared
        self.replay_images: torch.Tensor | None = None
        self.replay_targets: torch.Tensor | None = None
        self.accuracy_after_task: list[float] = []

    # ----------------------------------------------------------------- the tasks
    @property
    def tasks(self) -> Any:
        """The class-incremental DataModule (its task schedule and splits)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "task_labels"):
            raise ConfigError(
                "ClassIncrementalLearning needs the tasks of a ClassIncrementalDataModule; "
                "set data.class_path: dfkd_lightning.data.ClassIncrementalDataModule"
            )
        return datamodule

    def seen_classes(self, task: int | None = None) -> int:
        task = self.tasks.current_task if task is None else task
        return len(self.tasks.seen_labels(task))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self._mean.to(images.dtype)) / self._std.to(images.dtype)

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self._std.to(inputs.dtype) + self._mean.to(inputs.dtype)

    def on_fit_start(self) -> None:
        tasks = self.tasks
        if self.trainer.max_epochs != tasks.max_epochs:
            raise ConfigError(
                f"trainer.max_epochs is {self.trainer.max_epochs} but the {tasks.num_tasks} tasks "
                f"of {tasks.epochs_per_task} epochs take {tasks.max_epochs}; set "
                f"trainer.max_epochs: {tasks.max_epochs}"
            )

    def on_train_epoch_start(self) -> None:
        task = self.tasks.current_task
        if task != self.task:
            self.begin_task(task)
        previous: nn.Module | None = self.__dict__["previous"]
        if previous is not None:  # restored from a checkpoint on the CPU
            previous.to(self.device)
        if self.replay_images is not None and self.replay_targets is not None:
            self.replay_images = self.replay_images.to(self.device)
            self.replay_targets = self.replay_targets.to(self.device)

    def begin_task(self, task: int) -> None:
        """Freeze the previous model, invert the old classes (with ``replay``) and reset the
        optimizer's state."""
        self.task = task
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()
        if task == 0:
            return
        previous = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.__dict__["previous"] = previous
        replay: InversionReplay | None = self.__dict__["replay"]
        if replay is None:
            return
        old = len(self.tasks.seen_labels(task - 1))
        batch, values = replay.synthesize(
            previous, old, self.input_shape, self.normalize, self.denormalize
        )
        self.replay_images, self.replay_targets = batch.samples, batch.targets
        self.log_dict({f"replay/{name}": value for name, value in values.items()})

    # ----------------------------------------------------------------- training
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the classes seen so far (the others masked to -inf)."""
        logits = self.net(x)
        seen = self.seen_classes() if self._trainer is not None else logits.shape[1]
        if seen < logits.shape[1]:
            logits = logits.masked_fill(
                torch.arange(logits.shape[1], device=logits.device) >= seen, float("-inf")
            )
        return logits

    def evaluated_net(self) -> nn.Module:
        return self

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        images, labels = batch
        seen = self.seen_classes(self.task)
        old = len(self.tasks.seen_labels(self.task - 1)) if self.task > 0 else 0
        logits = self.net(images)
        if self.ce_scope == "task":
            loss_ce = F.cross_entropy(logits[:, old:seen].float(), labels - old)
        else:
            loss_ce = F.cross_entropy(logits[:, :seen].float(), labels)
        loss, values = loss_ce, {"ce": loss_ce}
        previous: nn.Module | None = self.__dict__["previous"]
        if previous is not None and self.lwf:
            with torch.no_grad():
                reference = previous(images)[:, :old]
            values["lwf"] = kd_loss(logits[:, :old], reference, self.temperature)
            loss = loss + self.lwf * values["lwf"]
        if previous is not None and self.replay_images is not None:
            loss = loss + self._replay_loss(previous, old, seen, len(images), values)
        self.log_dict({f"train/{name}": value for name, value in values.items()})
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _replay_loss(
        self, previous: nn.Module, old: int, seen: int, size: int, values: dict[str, Any]
    ) -> torch.Tensor:
        assert self.replay_images is not None and self.replay_targets is not None
        count = self.replay_batch_size or size
        index = torch.randint(len(self.replay_images), (count,), device=self.replay_images.device)
        inputs = self.normalize(self.replay_images[index])
        logits = self.net(inputs)
        with torch.no_grad():
            reference = previous(inputs)[:, :old]
        values["replay_kd"] = kd_loss(logits[:, :old], reference, self.temperature)
        values["replay_ce"] = F.cross_entropy(logits[:, :seen].float(), self.replay_targets[index])
        return self.replay_kd * values["replay_kd"] + self.replay_ce * values["replay_ce"]

    def configure_optimizers(self) -> dict[str, Any]:
        return build_optimization(self.net.parameters(), self.optimizer, self.scheduler)

    # ----------------------------------------------------------------- per-task metrics
    def on_train_epoch_end(self) -> None:
        tasks = self.tasks
        if tasks.task_at(self.current_epoch + 1) == self.task and (
            self.current_epoch + 1 < tasks.max_epochs
        ):
            return  # the task goes on
        self.log_dict(self.evaluate_tasks(self.task))

    @torch.no_grad()
    def evaluate_tasks(self, task: int) -> dict[str, float]:
        """Test-split accuracies after ``task`` over the classes seen so far."""
        was_training = self.net.training
        self.net.eval()
        seen, k = self.seen_classes(task), self.tasks.classes_per_task
        correct = torch.zeros(task + 1, dtype=torch.long, device=self.device)
        total = torch.zeros(task + 1, dtype=torch.long, device=self.device)
        for images, labels in self.tasks.eval_loader("test", self.tasks.seen_labels(task)):
            images, labels = images.to(self.device), labels.to(self.device)
            hits = self.net(images)[:, :seen].argmax(1) == labels
            total += torch.bincount(labels // k, minlength=task + 1)
            correct += torch.bincount(labels // k, weights=hits.float(), minlength=task + 1).long()
        self.net.train(was_training)
        correct, total = dict(enumerate(correct.tolist())), dict(enumerate(total.tolist()))
        accuracy = sum(correct.values()) / max(sum(total.values()), 1)
        self.accuracy_after_task = [*self.accuracy_after_task[:task], accuracy]
        metrics = {f"incremental/task_{j}_acc": correct[j] / max(total[j], 1) for j in correct}
        metrics["incremental/acc"] = accuracy
        metrics["incremental/new_acc"] = metrics[f"incremental/task_{task}_acc"]
        if task > 0:
            old_total = sum(total[j] for j in range(task))
            metrics["incremental/old_acc"] = sum(correct[j] for j in range(task)) / old_total
        metrics["incremental/average_acc"] = sum(self.accuracy_after_task) / (task + 1)
        return metrics

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        previous: nn.Module | None = self.__dict__["previous"]
        checkpoint[CHECKPOINT_KEY] = {
            "task": self.task,
            "previous": previous.state_dict() if previous is not None else None,
            "replay_images": self.replay_images,
            "replay_targets": self.replay_targets,
            "accuracy_after_task": list(self.accuracy_after_task),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            return
        self.task = int(state["task"])
        self.accuracy_after_task = [float(a) for a in state["accuracy_after_task"]]
        self.replay_images, self.replay_targets = state["replay_images"], state["replay_targets"]
        if state["previous"] is not None:
            previous = copy.deepcopy(self.net)
            previous.load_state_dict(state["previous"])
            self.__dict__["previous"] = previous.eval().requires_grad_(False)
