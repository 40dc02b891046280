"""The ``dfkd`` command: configs, composition, ``--print_config``, loggers, DDP and resume."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, fit_with_cpu_ddp

from dfkd_lightning.cli import DFKDCLI, main
from dfkd_lightning.methods import KnowledgeDistillation, TeacherTraining

TEACHER = CONFIGS / "experiments/digits/teacher_lenet5.yaml"
KD = CONFIGS / "experiments/digits/kd_lenet5_lenet5_half.yaml"
SHORT = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "4",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
]


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Experiments write runs/ relative to the working directory; argv is not pytest's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])


def _metrics(csv_dir: Path) -> list[dict[str, str]]:
    [metrics_file] = csv_dir.rglob("metrics.csv")
    with metrics_file.open() as handle:
        return list(csv.DictReader(handle))


def test_fit_from_config_links_data_into_model_and_tests_final_weights() -> None:
    cli = DFKDCLI(args=["fit", "--config", str(TEACHER), *SHORT])
    assert isinstance(cli.model, TeacherTraining)
    assert cli.model.num_classes == 10 and cli.model.input_shape == (1, 32, 32)
    assert cli.trainer.max_epochs == 1
    [optimizer] = cli.trainer.optimizers  # the YAML's Adam 2e-3, built by configure_optimizers
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == pytest.approx(2e-3)
    assert "test/acc" in cli.trainer.callback_metrics
    assert Path("runs/digits/teacher_lenet5/checkpoints/final.ckpt").is_file()
    rows = _metrics(Path("runs/digits/teacher_lenet5"))
    assert any(row.get("test/acc") for row in rows)


def test_print_config_prints_a_complete_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(KD), "--print_config"])
    assert info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]["init_args"]
    assert config["model"]["class_path"] == "dfkd_lightning.methods.KnowledgeDistillation"
    assert (model["teacher"], model["student"], model["temperature"]) == (
        "lenet5",
        "lenet5_half",
        4.0,
    )
    assert model["optimizer"]["class_path"] == "torch.optim.Adam"
    assert config["data"]["init_args"]["dataset"] == "digits"
    assert config["trainer"]["max_epochs"] == 50 and config["seed_everything"] == 0


def test_configs_compose_later_files_override(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text("trainer:\n  max_epochs: 2\ndata:\n  init_args:\n    batch_size: 32\n")
    cli = DFKDCLI(
        args=[
            "--config",
            str(TEACHER),
            "--config",
            str(override),
            "--config",
            str(CONFIGS / "trainer/cpu.yaml"),
        ],
        run=False,
    )
    assert cli.trainer.max_epochs == 2
    assert cli.datamodule.batch_size == 32 and cli.datamodule.dataset == "digits"


def test_every_experiment_config_parses() -> None:
    for config in sorted((CONFIGS / "experiments").rglob("*.yaml")):
        with pytest.raises(SystemExit) as info:
            main(["fit", "--config", str(config), "--print_config"])
        assert info.value.code == 0, config


@pytest.mark.parametrize(
    "config",
    sorted((CONFIGS / "experiments").rglob("teacher_*.yaml")),
    ids=lambda path: f"{path.parent.name}/{path.stem}",
)
def test_teacher_experiments_instantiate(config: Path) -> None:
    cli = DFKDCLI(args=["--config", str(config)], run=False)
    if config.parent.name == "regression":
        assert cli.model.in_features == cli.datamodule.in_features
        predictions = cli.model(torch.zeros(2, cli.datamodule.in_features))
        assert predictions.shape == (2, 1)
        return
    assert cli.model.num_classes == cli.datamodule.num_classes
    logits = cli.model(torch.zeros(2, *cli.datamodule.input_shape))
    assert logits.shape == (2, cli.datamodule.num_classes)


def test_wandb_logger_config_runs_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(TEACHER),
            "--config",
            str(CONFIGS / "logger/wandb.yaml"),
            *SHORT,
            "--test_after_fit",
            "false",
        ]
    )
    assert type(cli.trainer.logger).__name__ == "WandbLogger"
    assert list(Path("runs/wandb").glob("offline-run-*"))


def test_kd_from_config_with_trained_teacher_and_resume(digits_teacher_ckpt: Path) -> None:
    args = [
        "fit",
        "--config",
        str(KD),
        *SHORT,
        "--model.init_args.teacher_checkpoint",
        str(digits_teacher_ckpt),
    ]
    first = DFKDCLI(args=args)
    assert isinstance(first.model, KnowledgeDistillation)
    ckpt = Path("runs/digits/kd_lenet5_lenet5_half/checkpoints/final.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0
    resumed = DFKDCLI(args=[*args, "--trainer.max_epochs", "2", "--ckpt_path", str(ckpt)])
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.callback_metrics["test/teacher_acc"] > 0.85


@pytest.mark.slow
def test_two_process_cpu_ddp(tmp_path: Path) -> None:
    done = fit_with_cpu_ddp(["--config", str(TEACHER), *SHORT], tmp_path, "ddp")
    assert "distributed_backend=gloo" in done.stderr + done.stdout
    assert "All distributed processes registered. Starting with 2 processes" in (
        done.stderr + done.stdout
    )
    assert any(row.get("test/acc") for row in _metrics(tmp_path / "runs/digits/teacher_lenet5"))
