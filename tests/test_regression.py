"""Data-free distillation for regression (Zhou & Chiam, 2023): losses, data, method, CLI."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CONFIGS, QUIET, quick_trainer

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data import DatasetNotFoundError, RegressionDataModule, tables
from dfkd_lightning.methods import DataFreeRegression, RegressionTeacherTraining
from dfkd_lightning.methods.regression_datafree import STRATEGIES
from dfkd_lightning.synthesis import regression as losses

REGRESSION = CONFIGS / "experiments" / "regression"
TEACHER_HIDDEN = [64]


# ----------------------------------------------------------------------------- losses
def test_generator_loss_matches_hand_computation() -> None:
    teacher = torch.tensor([[1.0], [2.0]])
    student = torch.tensor([[0.0], [4.0]])
    inputs = torch.tensor([[1.0, 2.0], [0.0, 3.0]])  # ||x||^2 = 5, 9
    # per sample: -(1)^2 + 0.1*5 + 0.01*0 = -0.5 ; -(2)^2 + 0.1*9 + 0.01*16 = -2.94
    loss = losses.generator_loss(teacher, student, inputs, beta=0.1, gamma=0.01)
    assert loss.item() == pytest.approx((-0.5 - 2.94) / 2)
    # the released code: beta * (5 + 9) added to every sample
    batch = losses.generator_loss(teacher, student, inputs, 0.1, 0.01, input_penalty="batch")
    assert batch.item() == pytest.approx((-1 + 1.4 + 0 - 4 + 1.4 + 0.16) / 2)
    with pytest.raises(ValueError, match="input_penalty"):
        losses.generator_loss(teacher, student, inputs, 0.1, 0.01, input_penalty="mean")


def test_direct_loss_and_student_loss_match_hand_computation() -> None:
    teacher = torch.tensor([[1.0], [2.0]])
    student = torch.tensor([[0.0], [4.0]])
    assert losses.direct_loss(teacher, student, gamma=0.5).item() == pytest.approx(
        ((-1 + 0) + (-4 + 8)) / 2
    )
    teacher_p, student_p = torch.tensor([[3.0]]), torch.tensor([[0.0]])
    terms = losses.student_loss(teacher, student, teacher_p, student_p, alpha=0.25)
    assert terms["mse_synthetic"].item() == pytest.approx(2.5)
    assert terms["mse_gaussian"].item() == pytest.approx(9.0)
    assert terms["loss"].item() == pytest.approx(0.25 * 2.5 + 0.75 * 9.0)


def test_latin_hypercube_puts_one_sample_in_every_stratum_of_every_axis() -> None:
    low, high = torch.tensor([-3.0, 0.0, 10.0]), torch.tensor([3.0, 1.0, 20.0])
    samples = losses.latin_hypercube(8, low, high, torch.Generator().manual_seed(0))
    assert samples.shape == (8, 3)
    unit = (samples - low) / (high - low)
    assert ((unit >= 0) & (unit < 1)).all()
    for axis in range(3):
        strata = torch.floor(unit[:, axis] * 8).long().sort().values
        assert torch.equal(strata, torch.arange(8))


# ----------------------------------------------------------------------------- data
def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_loader_reads_features_and_target_and_standardises_on_train(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(60, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    lines = ["a,y,b"] + [f"{r[0]},{r[1]},{r[2]}" for r in rows]
    path = write_csv(tmp_path / "t.csv", "\n".join(lines) + "\n")
    data = RegressionDataModule("csv", csv_path=str(path), target="y", split_seed=3)
    assert data.in_features == 2
    assert data.split_sizes() == {"test": 12, "val": 5, "train": 43}
    train_x, train_y = data.splits["train"]
    assert torch.allclose(train_x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(train_x.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert abs(float(train_y.mean())) < 1e-5 and train_y.shape == (43, 1)
    x, y = next(iter(data.test_dataloader()))
    assert x.dtype == torch.float32 and y.shape == (12, 1)
    again = RegressionDataModule("csv", csv_path=str(path), target="y", split_seed=3)
    assert torch.equal(again.splits["test"][1], data.splits["test"][1])


def test_csv_loader_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="missing.csv not found"):
        RegressionDataModule("csv", csv_path=str(tmp_path / "missing.csv"), target="y")
    path = write_csv(tmp_path / "t.csv", "a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"target column 'y' is not in .*\['a', 'b'\]"):
        RegressionDataModule("csv", csv_path=str(path), target="y")
    path = write_csv(tmp_path / "s.csv", "a,colour,y\n1,red,2\n3,blue,4\n")
    with pytest.raises(ValueError, match="column 'colour' holds the non-numeric value 'red'"):
        RegressionDataModule("csv", csv_path=str(path), target="y")
    with pytest.raises(ValueError, match="needs data.target"):
        RegressionDataModule("csv", csv_path=str(path))


def test_offline_tables_and_unknown_names() -> None:
    diabetes = RegressionDataModule("diabetes")
    assert diabetes.in_features == 10 and sum(diabetes.split_sizes().values()) == 442
    friedman = RegressionDataModule("friedman2", samples=100, noise=0.0)
    assert friedman.in_features == 4 and friedman.split_sizes()["test"] == 20
    with pytest.raises(ValueError, match="unknown regression dataset 'boston'"):
        RegressionDataModule("boston")


def test_openml_offline_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    def offline(**kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tables.skdatasets, "fetch_openml", offline)
    with pytest.raises(DatasetNotFoundError, match="'cpu_small' is not cached in .*openml"):
        RegressionDataModule("openml", openml_name="cpusmall", root=str(tmp_path))


# ----------------------------------------------------------------------------- method
def train_teacher(root: Path, samples: int = 1000, epochs: int = 30) -> Path:
    L.seed_everything(0)
    data = RegressionDataModule("friedman1", samples=samples, noise=0.5, batch_size=32)
    model = RegressionTeacherTraining(
        data.in_features,
        hidden=TEACHER_HIDDEN,
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
    )
    trainer = quick_trainer(root, max_epochs=epochs)
    trainer.fit(model, datamodule=data)
    path = root / "teacher.ckpt"
    trainer.save_checkpoint(path, weights_only=False)
    return path


@pytest.fixture(scope="module")
def friedman_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_teacher(tmp_path_factory.mktemp("friedman_teacher"))


def steps_data(**kwargs) -> RegressionDataModule:
    options = dict(samples=1000, noise=0.5, train_source="steps", steps_per_epoch=10)
    return RegressionDataModule("friedman1", **{**options, **kwargs})


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_the_student_and_logs_rmse_and_r2(
    strategy: str, friedman_teacher: Path, tmp_path: Path
) -> None:
    data = steps_data()
    model = DataFreeRegression(
        data.in_features, str(friedman_teacher), teacher_hidden=TEACHER_HIDDEN, strategy=strategy
    )
    before = [p.detach().clone() for p in model.student.parameters()]
    trainer = quick_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, datamodule=data)
    assert model.student_steps == 20
    after = model.student.parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/mse_synthetic", "train/mse_gaussian", "val/rmse"} <= logged
    assert ("synth/loss" in logged) == (strategy in ("generator", "direct"))
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    assert {"test/rmse", "test/r2", "test/teacher_rmse", "test/teacher_r2"} <= metrics.keys()
    assert all(np.isfinite(v) for v in metrics.values())


def test_generator_strategy_updates_the_generator_and_alpha_decreases(
    friedman_teacher: Path, tmp_path: Path
) -> None:
    data = steps_data()
    model = DataFreeRegression(data.in_features, str(friedman_teacher), [64])
    assert model.generator is not None
    before = [p.detach().clone() for p in model.generator.parameters()]
    trainer = quick_trainer(tmp_path, max_epochs=4)
    trainer.fit(model, datamodule=data)
    after = model.generator.parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert float(trainer.callback_metrics["train/alpha"]) == pytest.approx(0.0)  # 1 - 4/4


def test_bad_options_and_missing_teacher_fail_clearly(friedman_teacher: Path) -> None:
    with pytest.raises(ValueError, match="unknown strategy 'gan'"):
        DataFreeRegression(10, str(friedman_teacher), [64], strategy="gan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha must lie in"):
        DataFreeRegression(10, str(friedman_teacher), [64], alpha=1.5)
    with pytest.raises(ValueError, match="teacher_checkpoint is not set"):
        DataFreeRegression(10, None)
    with pytest.raises(Exception, match="does not match MLPRegressor"):
        DataFreeRegression(7, str(friedman_teacher), [64])


def test_direct_optimisation_student_clearly_beats_a_constant_predictor(
    friedman_teacher: Path, tmp_path: Path
) -> None:
    """A constant predictor has RMSE ~1 on the standardised target (R^2 ~0)."""
    L.seed_everything(0)
    data = steps_data()
    model = DataFreeRegression(
        data.in_features, str(friedman_teacher), [64], strategy="direct", student_hidden=[25]
    )
    trainer = quick_trainer(tmp_path, max_epochs=150)
    trainer.fit(model, datamodule=data)
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    assert metrics["test/teacher_r2"] > 0.8
    assert metrics["test/rmse"] < 0.6 and metrics["test/r2"] > 0.6


def test_config_runs_through_dfkd_fit_and_resumes_exactly(
    friedman_teacher: Path, tmp_path: Path
) -> None:
    """The YAML runs from the CLI; an interrupted, resumed run matches an uninterrupted one."""
    args = [
        "--config",
        str(REGRESSION / "friedman1_generator.yaml"),
        "--data.init_args.samples",
        "1000",
        "--data.init_args.noise",
        "0.5",
        "--model.init_args.teacher_checkpoint",
        str(friedman_teacher),
        "--model.init_args.teacher_hidden",
        "[64]",
        *QUIET,
        "--trainer.check_val_every_n_epoch",
        "1",
        "--model.init_args.alpha",
        "0.5",  # 'decreasing' follows max_epochs, which the interrupted run shortens
    ]

    def run(max_epochs: int, ckpt: Path | None = None, save: Path | None = None) -> DFKDCLI:
        extra = ["--trainer.max_epochs", str(max_epochs)]
        extra += ["--ckpt_path", str(ckpt)] if ckpt else []
        extra += ["--test_after_fit", "false"] if ckpt or save else []
        cli = DFKDCLI(args=["fit", *args, *extra])
        if save:
            cli.trainer.save_checkpoint(save, weights_only=False)
        return cli

    straight = run(6)
    assert 0 < float(straight.trainer.callback_metrics["test/rmse"]) < 5
    assert "test/r2" in straight.trainer.callback_metrics
    ckpt = tmp_path / "epoch3.ckpt"
    run(3, save=ckpt)
    resumed = run(6, ckpt=ckpt)
    weights = straight.model.student.parameters(), resumed.model.student.parameters()
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_teacher_config_trains_with_plateau_schedule_and_keeps_best_checkpoint(
    tmp_path: Path,
) -> None:
    callbacks = (
        '[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": '
        f'{{"dirpath": "{tmp_path}", "filename": "best", "monitor": "val/loss"}}}}]'
    )
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(REGRESSION / "teacher_diabetes.yaml"),
            "--trainer.max_epochs",
            "3",
            "--trainer.logger",
            "false",
            "--trainer.callbacks",
            callbacks,
        ]
    )
    config = cli.trainer.lr_scheduler_configs[0]
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config.monitor == "val/loss"
    assert (tmp_path / "best.ckpt").is_file()
    assert 0 < float(cli.trainer.callback_metrics["test/rmse"]) < 1.5
    student = DataFreeRegression(10, str(tmp_path / "best.ckpt"), teacher_hidden=[500])
    assert not any(p.requires_grad for p in student.teacher.parameters())
