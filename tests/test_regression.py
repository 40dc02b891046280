"""Data-free distillation for regression (Zhou & Chiam, 2023): losses, terms, synthesizers,
data, method, CLI and resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.error import URLError

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CONFIGS, QUIET, fit_with_cpu_ddp, quick_trainer

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data import DatasetNotFoundError, RegressionDataModule, tables
from dfkd_lightning.methods import DataFreeRegression, RegressionTeacherTraining
from dfkd_lightning.methods.datafree import CHECKPOINT_FORMAT, CheckpointFormatError
from dfkd_lightning.synthesis import regression as losses
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import (
    DirectOptimization,
    GaussianSampler,
    LatinHypercubeSampler,
    SampleSpec,
    Synthesizer,
    TabularGenerator,
)
from dfkd_lightning.synthesis.terms import NetOutput, StepContext, build_objective
from dfkd_lightning.synthesis.terms.regression import (
    GAUSSIAN,
    DisagreementTerm,
    InputNormTerm,
    MixedMSETerm,
    StudentNormTerm,
)

REGRESSION = CONFIGS / "experiments" / "regression"
TEACHER_HIDDEN = [64]
#: The paper's objective of direct input optimisation (beta is the optimizer's weight decay).
DIRECT_LOSS = {"disagreement": 1.0, "student_norm": 1e-5}


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


# ----------------------------------------------------------------------------- terms
# The batch of the hand computations: T = (1, 2), S = (0, 4) on x = (1, 2), (0, 3);
# (T - S)^2 = 1, 4; ||x||^2 = 5, 9; S^2 = 0, 16. The student batch adds one Gaussian input
# x_p with T = 3, S = 0.
TEACHER, STUDENT = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
INPUTS = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
TEACHER_P, STUDENT_P, INPUT_P = torch.tensor([[3.0]]), torch.tensor([[0.0]]), torch.ones(1, 2)


def step_context(
    inputs: torch.Tensor,
    teacher: torch.Tensor,
    student: torch.Tensor,
    extras: dict[str, torch.Tensor] | None = None,
    epoch: int = 0,
    max_epochs: int | None = 4,
    phase: str = "synthesis",
) -> StepContext:
    """A hand-made context; the module stand-in only carries the training progress."""
    module = SimpleNamespace(current_epoch=epoch, trainer=SimpleNamespace(max_epochs=max_epochs))
    return StepContext(
        batch=SyntheticBatch(inputs, extras=extras or {}),
        inputs=inputs,
        teacher=NetOutput(teacher),
        student=NetOutput(student),
        phase=phase,
        module=cast(Any, module),
    )


def student_context(epoch: int = 0, max_epochs: int | None = 4) -> StepContext:
    """``x_g`` (the two hand-computed inputs) then ``x_p``, marked :data:`GAUSSIAN`."""
    return step_context(
        torch.cat([INPUTS, INPUT_P]),
        torch.cat([TEACHER, TEACHER_P]),
        torch.cat([STUDENT, STUDENT_P]),
        {GAUSSIAN: torch.tensor([False, False, True])},
        epoch,
        max_epochs,
        phase="student",
    )


def test_synthesis_terms_match_hand_computation() -> None:
    ctx = step_context(INPUTS, TEACHER, STUDENT)
    assert DisagreementTerm()(ctx).item() == pytest.approx(-(1 + 4) / 2)
    assert InputNormTerm()(ctx).item() == pytest.approx((5 + 9) / 2)
    assert InputNormTerm(penalty="batch")(ctx).item() == pytest.approx(5 + 9)
    assert StudentNormTerm()(ctx).item() == pytest.approx((0 + 16) / 2)
    assert DisagreementTerm().needs.student and StudentNormTerm().needs.student
    without_student = StepContext(
        ctx.batch, INPUTS, NetOutput(TEACHER), None, "synthesis", ctx.module
    )
    with pytest.raises(RuntimeError, match="Needs"):
        DisagreementTerm()(without_student)


@pytest.mark.parametrize("penalty", ["sample", "batch"])
def test_weighted_terms_add_up_to_the_generator_and_direct_losses(penalty: str) -> None:
    ctx = step_context(INPUTS, TEACHER, STUDENT)
    generator = build_objective(
        {
            "disagreement": 1.0,
            "input_norm": {"weight": 0.1, "penalty": penalty},
            "student_norm": 0.01,
        }
    )
    loss, values = generator(ctx, generator.active())
    expected = losses.generator_loss(TEACHER, STUDENT, INPUTS, 0.1, 0.01, input_penalty=penalty)
    assert loss.item() == pytest.approx(expected.item())
    assert set(values) == {"disagreement", "input_norm", "student_norm"}
    direct = build_objective({"disagreement": 1.0, "student_norm": 0.5})
    loss, _ = direct(ctx, direct.active())
    assert loss.item() == pytest.approx(losses.direct_loss(TEACHER, STUDENT, 0.5).item())


def test_mixed_mse_matches_student_loss_for_fixed_and_decreasing_alpha() -> None:
    for alpha in (0.0, 0.25, 1.0):
        expected = losses.student_loss(TEACHER, STUDENT, TEACHER_P, STUDENT_P, alpha)["loss"]
        assert MixedMSETerm(alpha)(student_context()).item() == pytest.approx(expected.item())
    assert MixedMSETerm(0.25)(student_context()).item() == pytest.approx(0.25 * 2.5 + 0.75 * 9)
    # decreasing: a = 1 - (epoch + 1) / max_epochs -> 0.75, 0.5, 0.25, 0 over 4 epochs
    decreasing = MixedMSETerm("decreasing")
    for epoch, alpha in enumerate((0.75, 0.5, 0.25, 0.0)):
        assert decreasing.current_alpha(epoch, 4) == pytest.approx(alpha)
        value = decreasing(student_context(epoch=epoch)).item()
        assert value == pytest.approx(alpha * 2.5 + (1 - alpha) * 9.0)
    with pytest.raises(ValueError, match="needs --trainer.max_epochs"):
        decreasing(student_context(max_epochs=None))
    # the registry builds it from the YAML form
    objective = build_objective({"mixed_mse": {"alpha": 0.25}})
    loss, values = objective(student_context(), objective.active())
    assert loss.item() == pytest.approx(values["mixed_mse"].item()) == pytest.approx(7.375)


def test_bad_term_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\], got 1.5"):
        MixedMSETerm(1.5)
    with pytest.raises(ValueError, match="alpha must be a number in .* or 'decreasing'"):
        MixedMSETerm("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_norm penalty must be 'sample' or 'batch'"):
        build_objective({"input_norm": {"weight": 1e-5, "penalty": "mean"}})


# ----------------------------------------------------------------------------- synthesizers
def bound(synthesizer: Synthesizer, features: int = 3, batch_size: int = 8) -> Synthesizer:
    synthesizer.bind(SampleSpec(shape=(features,), batch_size=batch_size))
    return synthesizer


def test_latin_hypercube_sampler_stratifies_its_box() -> None:
    torch.manual_seed(0)
    sampler = bound(LatinHypercubeSampler(box=(-1.0, 2.0)))
    samples = sampler.sample(8).samples
    assert samples.shape == (8, 3) and not samples.requires_grad
    unit = (samples + 1.0) / 3.0
    assert ((unit >= 0) & (unit < 1)).all()
    for axis in range(3):
        assert torch.equal(torch.floor(unit[:, axis] * 8).long().sort().values, torch.arange(8))
    assert len(sampler.render()) == 8  # the spec's batch size by default


def test_tabular_synthesizers_reject_bad_options_and_image_shapes() -> None:
    for box in ((3.0, -3.0), (1.0, 1.0)):
        with pytest.raises(ValueError, match="box must be .*low < high"):
            LatinHypercubeSampler(box=box)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        DirectOptimization(steps=-1)
    with pytest.raises(ValueError, match="tabular synthesizers make feature vectors"):
        TabularGenerator().bind(SampleSpec(shape=(1, 8, 8)))
    with pytest.raises(RuntimeError, match="call attach"):
        bound(DirectOptimization()).sample(4)


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


def steps_data(**kwargs: Any) -> RegressionDataModule:
    options = dict(samples=1000, noise=0.5, train_source="steps", steps_per_epoch=10)
    return RegressionDataModule("friedman1", **{**options, **kwargs})


def regression_model(teacher: Path, **kwargs: Any) -> DataFreeRegression:
    return DataFreeRegression(10, str(teacher), teacher_hidden=TEACHER_HIDDEN, **kwargs)


#: The paper's four strategies: synthesizer and synthesis objective (None: the default).
SYNTHESIZERS: dict[str, tuple[Callable[[], Synthesizer], dict[str, Any] | None]] = {
    "generator": (TabularGenerator, None),
    "direct": (DirectOptimization, DIRECT_LOSS),
    "gaussian": (GaussianSampler, None),
    "latin_hypercube": (LatinHypercubeSampler, None),
}


@pytest.mark.parametrize("strategy", list(SYNTHESIZERS))
def test_every_synthesizer_trains_the_student_and_logs_rmse_and_r2(
    strategy: str, friedman_teacher: Path, tmp_path: Path
) -> None:
    make, synthesis_loss = SYNTHESIZERS[strategy]
    data = steps_data()
    model = regression_model(friedman_teacher, synthesizer=make(), synthesis_loss=synthesis_loss)
    before = [p.detach().clone() for p in model.student.parameters()]
    trainer = quick_trainer(tmp_path, max_epochs=2)
    trainer.fit(model, datamodule=data)
    assert model.student_steps == 20
    after = model.student.parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/mixed_mse", "val/rmse", "val/r2"} <= logged
    # the synthesis objective runs (and is logged) only where something is optimised
    optimised = strategy in ("generator", "direct")
    assert ("synth/loss" in logged) == optimised
    assert ("synth/disagreement" in logged) == optimised
    assert ("synth/input_norm" in logged) == (strategy == "generator")
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(
        float(trainer.callback_metrics["train/mixed_mse"])
    )
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    assert {"test/rmse", "test/r2", "test/teacher_rmse", "test/teacher_r2"} <= metrics.keys()
    assert all(np.isfinite(v) for v in metrics.values())


def generator_objective(model: DataFreeRegression, latents: torch.Tensor) -> float:
    """The generator's synthesis loss on fixed latents (a measurement: nothing is logged)."""
    generator = cast(TabularGenerator, model.synthesizer).generator
    assert generator is not None
    with torch.no_grad():
        loss, _, _ = model.synthesis_context(
            SyntheticBatch(generator(latents)), model.synthesis_weights()
        )
    return float(loss)


def test_every_synthesis_round_lowers_the_generator_objective(
    friedman_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured on fixed latents around each round of the loop (20 generator steps; the
    student does not move during a round)."""
    L.seed_everything(0)
    model = regression_model(friedman_teacher, g_steps=20)
    latents = torch.randn(500, 50)
    measured: list[tuple[float, float]] = []
    round_ = model._round

    def measured_round(optimizer: Any) -> SyntheticBatch:
        before = generator_objective(model, latents)
        kept = round_(optimizer)
        measured.append((before, generator_objective(model, latents)))
        return kept

    monkeypatch.setattr(model, "_round", measured_round)
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(model, datamodule=steps_data())
    assert len(measured) == 2 and model.student_steps == 20
    assert all(after < before - 1.0 for before, after in measured), measured
    assert {"synth/loss", "synth/disagreement", "synth/student_norm"} <= set(
        trainer.callback_metrics
    )


def test_direct_optimisation_steps_lower_the_objective_of_their_batch(
    friedman_teacher: Path,
) -> None:
    """Every inner step evaluates (and records) the method's synthesis loss; starting from
    the same draw, more steps end lower."""
    reached: list[float] = []
    for steps in (0, 1, 2, 5):
        model = regression_model(friedman_teacher, synthesizer=DirectOptimization(steps=steps))
        torch.manual_seed(1)
        start = model.synthesizer.render(200).samples
        torch.manual_seed(1)
        moved = model.synthesizer.sample(200).samples
        assert not moved.requires_grad
        assert torch.equal(moved, start) == (steps == 0)
        assert len(model._epoch_terms.get("synth/loss", [])) == steps
        with torch.no_grad():
            reached.append(float(model.synthesis_context(SyntheticBatch(moved), DIRECT_LOSS)[0]))
    pairs = zip(reached[:-1], reached[1:], strict=True)
    assert all(later < earlier - 1.0 for earlier, later in pairs), reached


def test_direct_optimisation_defaults_to_the_paper_objective(friedman_teacher: Path) -> None:
    """Its beta is the optimizer's weight decay: no input_norm term on top."""
    model = regression_model(friedman_teacher, synthesizer=DirectOptimization(weight_decay=0.1))
    assert set(model.synthesis_objective.active()) == {"disagreement", "student_norm"}
    assert model.synthesis_objective.weights["student_norm"] == pytest.approx(1e-5)
    generator = regression_model(friedman_teacher)
    assert generator.synthesis_objective.weights == {
        "disagreement": 1.0,
        "input_norm": 1e-5,
        "student_norm": 1e-5,
    }


def test_generator_weights_move_and_alpha_decreases_to_zero(
    friedman_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = regression_model(friedman_teacher)
    generator = cast(TabularGenerator, model.synthesizer).generator
    assert generator is not None
    before = [p.detach().clone() for p in generator.parameters()]
    term = model.student_objective.terms["mixed_mse"]
    assert isinstance(term, MixedMSETerm) and term.alpha == "decreasing"
    alphas: list[float] = []
    current_alpha = term.current_alpha

    def recorded(epoch: int, max_epochs: int | None) -> float:
        alphas.append(current_alpha(epoch, max_epochs))
        return alphas[-1]

    monkeypatch.setattr(term, "current_alpha", recorded)
    trainer = quick_trainer(tmp_path, max_epochs=4, limit_val_batches=0)
    trainer.fit(model, datamodule=steps_data())
    after = generator.parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # 1 - (epoch + 1) / 4 at each of the 10 student steps of every epoch
    assert alphas == pytest.approx([0.75] * 10 + [0.5] * 10 + [0.25] * 10 + [0.0] * 10)


def test_bad_options_and_missing_teacher_fail_clearly(friedman_teacher: Path) -> None:
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        regression_model(friedman_teacher, student_loss={"mixed_mse": {"alpha": 1.5}})
    with pytest.raises(ValueError, match="alpha must be a number in .* or 'decreasing'"):
        regression_model(friedman_teacher, student_loss={"mixed_mse": {"alpha": "x"}})
    with pytest.raises(ValueError, match="input_norm penalty must be 'sample' or 'batch'"):
        regression_model(friedman_teacher, synthesis_loss={"input_norm": {"penalty": "mean"}})
    with pytest.raises(ValueError, match="box must be"):
        regression_model(friedman_teacher, synthesizer=LatinHypercubeSampler(box=(3.0, -3.0)))
    with pytest.raises(ValueError, match="unknown loss term 'gan'"):
        regression_model(friedman_teacher, synthesis_loss={"gan": 1.0})
    with pytest.raises(ValueError, match="kd_steps must be >= 1"):
        regression_model(friedman_teacher, kd_steps=0)
    with pytest.raises(ValueError, match="teacher_checkpoint is not set"):
        DataFreeRegression(10, None)
    with pytest.raises(Exception, match="does not match MLPRegressor"):
        DataFreeRegression(7, str(friedman_teacher), TEACHER_HIDDEN)


def test_direct_optimisation_student_clearly_beats_a_constant_predictor(
    friedman_teacher: Path, tmp_path: Path
) -> None:
    """A constant predictor has RMSE ~1 on the standardised target (R^2 ~0)."""
    L.seed_everything(0)
    data = steps_data()
    model = regression_model(
        friedman_teacher,
        student_hidden=[25],
        synthesizer=DirectOptimization(),
        synthesis_loss=DIRECT_LOSS,
    )
    trainer = quick_trainer(tmp_path, max_epochs=150, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    assert metrics["test/teacher_r2"] > 0.8
    assert metrics["test/rmse"] < 0.6 and metrics["test/r2"] > 0.6


# ----------------------------------------------------------------------------- CLI and resume
def test_config_runs_through_dfkd_fit_and_resumes_exactly(
    friedman_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The YAML runs from the CLI; an interrupted, resumed run matches an uninterrupted one."""
    monkeypatch.chdir(tmp_path)  # the CLI saves its config.yaml in the working directory
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
        json.dumps(TEACHER_HIDDEN),
        *QUIET,
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.check_val_every_n_epoch",
        "1",
        # 'decreasing' follows max_epochs, which the interrupted run shortens
        "--model.init_args.student_loss",
        json.dumps({"mixed_mse": {"alpha": 0.5}}),
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
    assert isinstance(straight.model, DataFreeRegression)
    assert isinstance(straight.model.synthesizer, TabularGenerator)
    assert straight.model.student_steps == 60
    assert 0 < float(straight.trainer.callback_metrics["test/rmse"]) < 5
    assert "test/r2" in straight.trainer.callback_metrics
    ckpt = tmp_path / "epoch3.ckpt"
    run(3, save=ckpt)
    saved = torch.load(ckpt, weights_only=False)
    assert saved["dfkd_datafree_format"] == CHECKPOINT_FORMAT == 2
    assert "datafree_regression" not in saved and len(saved["datafree_ranks"]) == 1
    assert saved["datafree_ranks"][0]["student_steps"] == 30
    resumed = run(6, ckpt=ckpt)
    assert resumed.model.student_steps == 60
    for net in ("student", "synthesizer"):
        weights = (
            getattr(straight.model, net).parameters(),
            getattr(resumed.model, net).parameters(),
        )
        assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_an_old_format_checkpoint_cannot_be_resumed(friedman_teacher: Path, tmp_path: Path) -> None:
    """A checkpoint of the strategy-based DataFreeRegression (``datafree_regression``)."""
    trainer = quick_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(regression_model(friedman_teacher), datamodule=steps_data())
    ckpt = tmp_path / "new.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=False)
    checkpoint = torch.load(ckpt, weights_only=False)
    del checkpoint["datafree_ranks"], checkpoint["dfkd_datafree_format"]
    checkpoint["datafree_regression"] = {
        "rng": {"cpu": torch.get_rng_state()},
        "samples_synthesized": 500,
        "student_steps": 10,
    }
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    resume = quick_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    with pytest.raises(CheckpointFormatError, match="predates"):
        resume.fit(regression_model(friedman_teacher), datamodule=steps_data(), ckpt_path=old)


def test_teacher_config_trains_with_plateau_schedule_and_keeps_best_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI saves its config.yaml in the working directory
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(tmp_path), "filename": "best", "monitor": "val/loss"},
        }
    ]
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(REGRESSION / "teacher_diabetes.yaml"),
            "--trainer.max_epochs",
            "3",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.callbacks",
            json.dumps(callbacks),
        ]
    )
    config = cli.trainer.lr_scheduler_configs[0]
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config.monitor == "val/loss"
    assert (tmp_path / "best.ckpt").is_file()
    assert (tmp_path / "config.yaml").is_file()  # where the CLI saved the run's config
    assert 0 < float(cli.trainer.callback_metrics["test/rmse"]) < 1.5
    student = DataFreeRegression(10, str(tmp_path / "best.ckpt"), teacher_hidden=[500])
    assert not any(p.requires_grad for p in student.teacher.parameters())


@pytest.mark.slow
def test_two_process_cpu_ddp_shares_the_generator_and_keeps_a_state_per_rank(
    friedman_teacher: Path, tmp_path: Path
) -> None:
    fit_with_cpu_ddp(
        [
            "--config",
            str(REGRESSION / "friedman1_generator.yaml"),
            "--data.init_args.samples",
            "1000",
            "--model.init_args.teacher_checkpoint",
            str(friedman_teacher),
            "--model.init_args.teacher_hidden",
            json.dumps(TEACHER_HIDDEN),
            "--trainer.max_epochs",
            "3",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.logger",
            "false",
        ],
        tmp_path,
        "ddp_find_unused_parameters_true",
    )
    [checkpoint_path] = (tmp_path / "runs").rglob("final.ckpt")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    ranks = checkpoint["datafree_ranks"]
    assert len(ranks) == 2
    # The step pacer is split across ranks like a dataset: 10 steps an epoch, 5 per rank.
    assert [rank["student_steps"] for rank in ranks] == [15, 15]
    assert not torch.equal(ranks[0]["rng"]["cpu"], ranks[1]["rng"]["cpu"])
    assert any(key.startswith("synthesizer.generator.") for key in checkpoint["state_dict"])
