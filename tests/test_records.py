"""What a run records: the method's whole configuration and the run's provenance, in
checkpoints and loggers; --ckpt_path takes the saved settings under the given ones; quiet
output; the suite's subcommands in --help."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import CONFIGS, DIGITS_EXPERIMENTS, tiny_fake_args

from dfkd_lightning.cli import DFKDCLI, main

QUIET_BAR = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])


def dafl_args(teacher: Path, *overrides: str) -> list[str]:
    """A few DAFL steps on fake digits-shaped data, logging and checkpointing under runs/."""
    return tiny_fake_args("dafl", teacher, *overrides, quiet=QUIET_BAR)


CKPT = Path("runs/digits/dafl/checkpoints/final.ckpt")


def test_checkpoint_records_the_method_configuration_and_provenance(fake_teacher: Path) -> None:
    DFKDCLI(args=dafl_args(fake_teacher))
    checkpoint = torch.load(CKPT, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["_class_path"] == "dfkd_lightning.methods.DAFL"
    assert hparams["kd_steps"] == 2 and hparams["batch_size"] == 8
    assert hparams["synthesizer"]["class_path"].endswith("PersistentGenerator")
    assert hparams["synthesizer"]["init_args"]["nz"] == 100
    assert hparams["synthesis_loss"] == {"oh": 1.0, "act": 0.1, "ie": 5.0}
    assert hparams["optimizer"]["class_path"] == "torch.optim.Adam"
    record = checkpoint["dfkd_provenance"]
    assert record["libraries"]["torch"] == torch.__version__
    teacher = record["pretrained"]["teacher"]
    assert teacher["path"] == str(fake_teacher.resolve())
    assert teacher["sha256"] == hashlib.sha256(fake_teacher.read_bytes()).hexdigest()
    assert record["dfkd_lightning"]
    saved = yaml.safe_load(next(Path("runs/digits/dafl").rglob("hparams.yaml")).read_text())
    assert saved["model"]["synthesizer"]["init_args"]["ngf"] == 16
    assert saved["data"]["dataset"] == "fake" and saved["data"]["batch_size"] == 256
    assert saved["provenance"]["libraries"]["lightning"]


def test_offline_wandb_run_records_the_configuration(
    fake_teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = DFKDCLI(args=dafl_args(fake_teacher, "--config", str(CONFIGS / "logger/wandb.yaml")))
    run = cli.trainer.logger.experiment
    config = dict(run.config)  # what the run syncs as its config
    run.finish()  # a later test's logger starts its own run
    model = config["model"]
    assert model["kd_steps"] == 2
    assert model["synthesizer"]["class_path"].endswith("PersistentGenerator")
    assert config["data"]["dataset"] == "fake"
    assert config["provenance"]["libraries"]["torch"] == torch.__version__


def test_ckpt_path_takes_saved_settings_under_the_given_ones(fake_teacher: Path) -> None:
    DFKDCLI(args=dafl_args(fake_teacher))
    more = ["--trainer.max_epochs", "2", "--ckpt_path", str(CKPT)]
    resumed = DFKDCLI(args=[*dafl_args(fake_teacher), "--model.init_args.g_steps", "3", *more])
    assert resumed.model.g_steps == 3  # the command line over the checkpoint's 2
    assert resumed.model.hparams["g_steps"] == 3
    assert resumed.trainer.current_epoch == 2

    # Without a model in the config, the checkpoint's settings come back.
    config = yaml.safe_load((DIGITS_EXPERIMENTS / "dafl.yaml").read_text())
    data_only = Path("data_only.yaml")
    data_only.write_text(yaml.safe_dump({"data": config["data"], "trainer": config["trainer"]}))
    args = ["fit", "--config", str(data_only), *QUIET_BAR, "--data.init_args.dataset", "fake"]
    args += ["--data.init_args.steps_per_epoch", "4", "--test_after_fit", "false"]
    again = DFKDCLI(args=[*args, "--trainer.max_epochs", "3", "--ckpt_path", str(CKPT)])
    assert type(again.model).__name__ == "DAFL"
    assert (again.model.kd_steps, again.model.batch_size) == (2, 8)
    assert again.trainer.current_epoch == 3


def test_help_lists_the_suites_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for name in ("fit", "test", "demo", "list"):
        assert f"    {name}" in out


def test_runs_are_quiet_unless_debug(fake_teacher: Path) -> None:
    args = dafl_args(fake_teacher, "--trainer.logger", "false", "--trainer.callbacks", "[]")
    args += ["--trainer.enable_checkpointing", "false"]

    def output(*extra: str) -> str:
        command = [sys.executable, "-m", "dfkd_lightning.cli", *args, *extra]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
        return done.stdout + done.stderr

    quiet, debug = output(), output("--debug")
    assert "Seed set to 0" in quiet  # what is not hidden still shows
    for hidden in ("Tip:", "is deprecated", "in eval mode"):
        assert hidden not in quiet
        assert hidden in debug


def test_pretrained_sources_name_file_directory_and_hub_id(tmp_path: Path) -> None:
    from dfkd_lightning.records import pretrained_source

    weights = tmp_path / "model" / "weights.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"abc")
    assert pretrained_source(weights)["sha256"] == hashlib.sha256(b"abc").hexdigest()
    before = pretrained_source(weights.parent)["sha256"]
    weights.write_bytes(b"abd")
    assert pretrained_source(weights.parent)["sha256"] != before  # content, not names
    assert pretrained_source("org/model", revision="v1") == {
        "hub_id": "org/model",
        "revision": "v1",
    }


def _offline_wandb_run(directory: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The run record, config and summary of an offline W&B run, read from its ``.wandb`` file
    (a LevelDB-style log of protobuf records: 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2

    [path] = directory.glob("run-*.wandb")
    data, block, position = path.read_bytes(), 32768, 7  # after the ":W&B" file header
    raw_records, pending = [], b""
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (kind == 0 and length == 0):
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a whole record, or its last piece
            raw_records.append(pending)
    run, config, summary = None, {}, {}
    for raw in raw_records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind in ("config", "summary"):
            updates = getattr(record, kind).update
            target = config if kind == "config" else summary
            for item in updates:  # a key with "/" may come as its path ("test", "acc")
                target[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run, config, summary


def test_offline_wandb_run_groups_tags_and_summarises_for_a_dashboard(
    fake_teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = dafl_args(fake_teacher, "--config", str(CONFIGS / "logger/wandb.yaml"))
    grids = "--trainer.callbacks+=dfkd_lightning.callbacks.ImageGrids"
    cli = DFKDCLI(args=[*args, grids, "--seed_everything", "3", "--test_after_fit", "true"])
    experiment = cli.trainer.logger.experiment
    directory = Path(experiment.dir).parent
    experiment.finish()  # writes the offline run out; a later test's logger starts its own
    run, config, summary = _offline_wandb_run(directory)
    keys = {name: config[name] for name in ("method", "dataset", "teacher", "student", "seed")}
    assert keys == {
        "method": "DAFL",
        "dataset": "fake",
        "teacher": "lenet5_bn",
        "student": "lenet5_half",
        "seed": 3,
    }
    assert run.run_group == "dafl_fake_lenet5_bn_lenet5_half"
    assert {"DAFL", "fake", "lenet5_bn", "lenet5_half"} <= set(run.tags)
    assert 0.0 <= summary["test/acc"] <= 1.0 and "test/teacher_acc" in summary
    assert summary["fit/images_per_s"] > 0 and summary["fit/seconds"] > 0
    assert summary["test/samples"] == 51  # the fake dataset's test split
    assert summary["synth/grid/_type"] == "images/separated"  # ImageGrids' per-class grid
    assert summary["synth/grid/count"] == 1
