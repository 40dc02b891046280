"""User errors end with the suite's message and exit status 2, without a traceback; a bug keeps
its traceback; --debug shows it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import DIGITS_EXPERIMENTS, QUIET, tiny_fake_args

from dfkd_lightning.cli import main
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.synthesis.terms.base import LossTerm
from dfkd_lightning.synthesis.terms.context import StepContext


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI writes its config.yaml into the working directory; argv is not pytest's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])


def run_cmi(teacher: Path | str, *overrides: str, method: str = "cmi") -> list[str]:
    """``dfkd fit`` on the digits CMI config at smoke-run size on fake data."""
    return tiny_fake_args(method, teacher, *overrides)


def user_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``dfkd ARGS``; assert exit status 2 and no traceback; return the last lines."""
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1] == "(run again with --debug for the traceback)"
    return "\n".join(lines[-3:])


class Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class NaNTerm(LossTerm):
    """A synthesis term whose value is NaN."""

    def forward(self, ctx: StepContext) -> torch.Tensor:
        return ctx.teacher.logits.sum() * float("nan")


def test_unknown_dataset(fake_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = user_error(run_cmi(fake_teacher, "--data.init_args.dataset", "cifar11"), capsys)
    assert "Unknown dataset 'cifar11'; known datasets:" in message
    assert "digits" in message


def test_unknown_student(fake_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = user_error(run_cmi(fake_teacher, "--model.init_args.student", "resnet19"), capsys)
    assert "unknown classifier 'resnet19'; available:" in message
    assert "resnet18" in message


def test_missing_teacher_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = user_error(run_cmi(tmp_path / "nowhere.ckpt"), capsys)
    assert "checkpoint file not found" in message and "nowhere.ckpt" in message


def test_unsafe_pickle_is_refused_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": Payload(marker)}, path)
    message = user_error(run_cmi(path), capsys)
    assert "refuses to unpickle (nothing in it was run)" in message
    assert not marker.exists()


def test_state_dict_of_another_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vgg.pt"
    torch.save(build_classifier("vgg8", 10, 1).state_dict(), path)
    message = user_error(run_cmi(path), capsys)
    assert "lenet5_bn" in message.lower() or "LeNet5BN" in message


def test_teacher_with_other_class_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lenet5_bn_100.pt"
    torch.save(build_classifier("lenet5_bn", 100, 1).state_dict(), path)
    message = user_error(run_cmi(path), capsys)
    assert "100" in message and "10" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("kd_steps", "0", "kd_steps must be >= 1"),
        ("synthesis_size", "0", "synthesis_size must be >= 1"),
        ("batch_size", "-4", "batch_size and synthesis_batch_size must be >= 1"),
    ],
)
def test_out_of_range_values(
    fake_teacher: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, expected: str
) -> None:
    message = user_error(run_cmi(fake_teacher, f"--model.init_args.{key}", value), capsys)
    assert expected in message


def test_truncated_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(build_classifier("lenet5_bn", 10, 1).state_dict(), whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    message = user_error(run_cmi(cut), capsys)
    assert f"checkpoint {cut} is truncated or corrupt" in message


def test_checkpoint_of_another_method(
    digits_teacher_ckpt: Path, fake_teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A teacher-training checkpoint given as --ckpt_path to the DAFL config."""
    teacher_args = ["fit", "--config", str(DIGITS_EXPERIMENTS / "teacher_lenet5.yaml"), *QUIET]
    teacher_args += ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"]
    teacher_args += ["--trainer.limit_val_batches", "1", "--test_after_fit", "false"]
    teacher_args += ["--trainer.enable_checkpointing", "true", "--trainer.default_root_dir", "t"]
    main(teacher_args)
    [written] = Path("t").rglob("*.ckpt")
    args = run_cmi(fake_teacher, "--ckpt_path", str(written), method="dafl")
    message = user_error(args, capsys)
    assert "written by dfkd_lightning.methods.TeacherTraining" in message
    assert "the config trains dfkd_lightning.methods.DAFL" in message

    # A checkpoint written without the CLI records no class: its weights tell.
    args = run_cmi(fake_teacher, "--ckpt_path", str(digits_teacher_ckpt), method="dafl")
    message = user_error(args, capsys)
    assert "holds the weights of another model than DAFL" in message
    assert "net.conv1.weight" in message


def test_nan_loss(fake_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = run_cmi(
        fake_teacher,
        "--model.init_args.synthesis_loss",
        "{nan: {class_path: test_errors.NaNTerm, weight: 1.0}}",
    )
    message = user_error(args, capsys)
    assert "synth loss terms" in message and "became NaN/inf" in message


def test_unknown_loss_term(fake_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = user_error(run_cmi(fake_teacher, "--model.init_args.synthesis_loss.bnn", "1"), capsys)
    assert "unknown loss term 'bnn'; registered terms:" in message and "'bn'" in message


def test_loss_term_class_path_that_does_not_import(
    fake_teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = run_cmi(
        fake_teacher, "--model.init_args.synthesis_loss.mine", "{class_path: no_such_pkg.Term}"
    )
    message = user_error(args, capsys)
    assert "cannot import loss term class_path 'no_such_pkg.Term'" in message
    assert "No module named 'no_such_pkg'" in message


def test_negative_weight(fake_teacher: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = user_error(run_cmi(fake_teacher, "--model.init_args.synthesis_loss.oh", "-1"), capsys)
    assert "loss term 'oh': negative weight -1" in message


def test_misspelt_key_names_the_closest(
    fake_teacher: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = user_error(run_cmi(fake_teacher, "--model.init_args.kd_stepz", "5"), capsys)
    assert "'kd_stepz'" in message and "did you mean kd_steps" in message


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, fake_teacher: Path) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("dfkd_lightning.methods.datafree.DataFreeDistillation._round", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(run_cmi(fake_teacher))


def test_debug_shows_the_traceback(fake_teacher: Path) -> None:
    with pytest.raises(ValueError, match="kd_steps must be >= 1"):
        main([*run_cmi(fake_teacher, "--model.init_args.kd_steps", "0"), "--debug"])
