"""Non-exemplar class-incremental learning: the method, its replay and its configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import QUIET

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.methods import ClassIncrementalLearning
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.synthesis.replay import InversionReplay

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "incremental"
#: Two tasks of five digits, two epochs each; a small inversion.
SHORT = [
    "--data.init_args.num_tasks",
    "2",
    "--data.init_args.epochs_per_task",
    "2",
    "--trainer.max_epochs",
    "4",
    "--test_after_fit",
    "false",
]
SMALL_REPLAY = [
    "--model.init_args.replay.init_args.images_per_class",
    "16",
    "--model.init_args.replay.init_args.steps",
    "20",
]


def short_run(strategy: str, *overrides: str) -> DFKDCLI:
    args = ["fit", "--config", str(CONFIGS / f"digits_{strategy}.yaml"), *QUIET, *SHORT]
    return DFKDCLI(args=[*args, *overrides])


@pytest.mark.slow
def test_inversion_replay_beats_fine_tuning_on_the_old_classes() -> None:
    finetune = short_run("finetune").model
    replay = short_run("replay", *SMALL_REPLAY).model
    old = {
        name: model.evaluate_tasks(1)["incremental/old_acc"]
        for name, model in (("finetune", finetune), ("replay", replay))
    }
    assert old["replay"] > old["finetune"] + 0.2, old
    # the replay set: 16 images of each of the 5 old classes on average (one round of 128)
    assert replay.replay_images is not None and replay.replay_targets is not None
    assert replay.replay_images.shape == (128, 1, 32, 32)
    assert set(replay.replay_targets.tolist()) == set(range(5))
    assert replay.accuracy_after_task[0] > 0.8  # the first task was learned
    assert len(finetune.accuracy_after_task) == 2


def test_lwf_and_joint_run_every_task_and_log_per_task_metrics(tmp_path: Path) -> None:
    for strategy in ("lwf", "joint"):
        cli = short_run(
            strategy, "--data.init_args.epochs_per_task", "1", "--trainer.max_epochs", "2"
        )
        metrics = cli.trainer.callback_metrics
        assert {"incremental/acc", "incremental/old_acc", "incremental/average_acc"} <= set(metrics)
        assert {"incremental/task_0_acc", "incremental/task_1_acc"} <= set(metrics)
        accuracies = cli.model.accuracy_after_task
        assert len(accuracies) == 2
        assert float(metrics["incremental/average_acc"]) == pytest.approx(sum(accuracies) / 2)
        assert cli.model.task == 1 and cli.model.__dict__["previous"] is not None


def test_a_schedule_that_does_not_match_the_tasks_is_refused() -> None:
    with pytest.raises(ConfigError, match="trainer.max_epochs: 4"):
        short_run("finetune", "--trainer.max_epochs", "3")


def test_the_replay_inverts_old_classes_only_and_leaves_the_model_untouched() -> None:
    torch.manual_seed(0)
    previous = build_classifier("lenet5_bn", 10, 1).eval()
    before = {k: v.clone() for k, v in previous.state_dict().items()}
    replay = InversionReplay(images_per_class=4, batch_size=8, steps=3, triplet=0.1)
    batch, values = replay.synthesize(previous, 3, (1, 32, 32), lambda x: x, lambda x: x)
    assert batch.samples.shape == (16, 1, 32, 32)  # two whole rounds of 8 for 3 x 4
    assert batch.samples.min() >= 0 and batch.samples.max() <= 1
    assert batch.targets is not None and set(batch.targets.tolist()) <= {0, 1, 2}
    assert set(values) == {"oh", "bn", "triplet"}
    for key, value in previous.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in previous.parameters())  # as it was given
    with pytest.raises(ConfigError, match="replay"):
        InversionReplay(batch_size=1)


def test_the_checkpoint_keeps_the_previous_model_and_the_replay_set() -> None:
    model = ClassIncrementalLearning("lenet5_bn", 10, (1, 32, 32))
    model.__dict__["previous"] = build_classifier("lenet5_bn", 10, 1)
    model.task, model.accuracy_after_task = 2, [1.0, 0.7, 0.6]
    model.replay_images = torch.rand(6, 1, 32, 32)
    model.replay_targets = torch.arange(6) % 4
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    restored = ClassIncrementalLearning("lenet5_bn", 10, (1, 32, 32))
    restored.on_load_checkpoint(checkpoint)
    assert restored.task == 2 and restored.accuracy_after_task == [1.0, 0.7, 0.6]
    assert torch.equal(restored.replay_images, model.replay_images)
    assert torch.equal(restored.replay_targets, model.replay_targets)
    previous = restored.__dict__["previous"]
    for key, value in model.__dict__["previous"].state_dict().items():
        assert torch.equal(previous.state_dict()[key], value), key
    assert not any(p.requires_grad for p in previous.parameters())
