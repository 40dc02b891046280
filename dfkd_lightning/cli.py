"""The ``dfkd`` command: LightningCLI with the suite's links and defaults."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.host_memory import keep_freed_host_memory
from dfkd_lightning.legacy import legacy_config_message
from dfkd_lightning.messages import user_error_message
from dfkd_lightning.nets.checkpoint import read_checkpoint
from dfkd_lightning.quiet import quiet_library_output
from dfkd_lightning.records import RunRecord, StudyRecord

#: DataModule attributes linked into the model (never set in a model config).
LINKED_TO_MODEL = ("num_classes", "input_shape", "mean", "std", "in_features")
#: ``--ckpt_path`` values that Lightning resolves itself.
LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")


@dataclass(frozen=True)
class SavedCheckpoint:
    """What the CLI checks of a ``--ckpt_path`` before the run (the file is read once)."""

    #: The model class that wrote it (None: written without the CLI).
    class_path: str | None
    #: Its saved model settings, less the DataModule-linked ones.
    init_args: dict[str, Any]
    #: The names of its weights (None: not a Lightning checkpoint).
    weight_names: frozenset[str] | None

    @classmethod
    def read(cls, path: str) -> SavedCheckpoint:
        checkpoint = read_checkpoint(path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        state = checkpoint.get("state_dict")
        return cls(
            class_path=hparams.get("_class_path"),
            init_args={
                k: v for k, v in hparams.items() if k not in LINKED_TO_MODEL and k[0] != "_"
            },
            weight_names=frozenset(state) if isinstance(state, Mapping) else None,
        )

    def check_fits(self, model: LightningModule, ckpt_path: str) -> None:
        """Stop before a run whose ``--ckpt_path`` holds the weights of another model."""
        name = type(model).__name__
        if self.weight_names is None:
            raise ConfigError(
                f"--ckpt_path {ckpt_path} is not a Lightning checkpoint (it has no state_dict); "
                "to start from a network's weights, give it as teacher_checkpoint instead"
            )
        expected = set(model.state_dict())
        missing = sorted(expected - self.weight_names)
        foreign = sorted(self.weight_names - expected)
        if missing or foreign:
            raise ConfigError(
                f"--ckpt_path {ckpt_path} holds the weights of another model than {name}: "
                f"{len(missing)} of {name}'s weights are not in it (e.g. {missing[:2]}) and "
                f"{len(foreign)} of its weights are not {name}'s (e.g. {foreign[:2]}). Resume "
                "with the config that wrote the checkpoint"
            )


def ckpt_path_argument(args: list[str]) -> str | None:
    """The last ``--ckpt_path`` on the command line that names a file, or None."""
    paths = [a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")]
    paths += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--ckpt_path"]
    return paths[-1] if paths and paths[-1] not in LIGHTNING_CKPT_ALIASES else None


#: The subcommands the suite adds to Lightning's (``dfkd --help`` lists them).
SUITE_SUBCOMMANDS: dict[str, str] = {
    "demo": "Train a digits teacher and distil it with and without data (offline, CPU).",
    "list": "List the registered methods, synthesizers and loss terms.",
    "results": "Tabulate the CSV-logged runs under directories (--format, --group-seeds, --plot).",
    "export-student": "Write a run's student as a state dict, TorchScript and JSON.",
    "export-pool": "Write the synthetic pool a checkpoint saved as PNGs per class or shards.",
}


DEFAULT_TRAINER: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": "runs", "name": "default"},
    },
}


class DFKDCLI(LightningCLI):
    """LightningCLI whose DataModule hands ``num_classes``, ``input_shape`` and the
    normalisation ``mean``/``std`` (image data) or ``in_features`` (tabular data) to the
    model (to those models that take them).

    Models and data are chosen by ``class_path`` (subclass mode), optimizers are
    ``OptimizerCallable`` arguments of the model, and ``fit`` ends by testing the
    final weights on the real test split (``--test_after_fit false`` skips it). On Linux it
    first keeps freed host memory in the process (:mod:`dfkd_lightning.host_memory`: fewer
    page faults per CPU step; ``DFKD_KEEP_FREED_MEMORY=0`` turns it off).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        keep_freed_host_memory()
        kwargs.setdefault("trainer_defaults", DEFAULT_TRAINER)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in LINKED_TO_MODEL:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the final weights on the real test split.",
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for name, description in SUITE_SUBCOMMANDS.items():  # listed by --help; main() runs them
            parser._subcommands_action.add_subcommand(
                name, ArgumentParser(description=description), help=description
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, with the model settings a ``--ckpt_path`` checkpoint saved inserted right
        after the subcommand: the configs and the command line given later override them."""
        args = list(sys.argv[1:] if args is None else args)
        self._saved_checkpoints: dict[str, SavedCheckpoint] = {}
        path = ckpt_path_argument(args)
        at = next((i for i, a in enumerate(args) if a in self.subcommands()), None)
        if path is not None and at is not None:
            saved = self._saved_checkpoint(path)
            if saved.class_path is not None:
                model = json.dumps({"class_path": saved.class_path, "init_args": saved.init_args})
                args = [*args[: at + 1], "--model", model, *args[at + 1 :]]
        with warnings.catch_warnings():  # main() passes argv as args on purpose
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)

    def _saved_checkpoint(self, path: str) -> SavedCheckpoint:
        if path not in self._saved_checkpoints:
            self._saved_checkpoints[path] = SavedCheckpoint.read(path)
        return self._saved_checkpoints[path]

    def _ckpt_path(self, subcommand: str | None) -> str | None:
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        return ckpt_path if ckpt_path and ckpt_path not in LIGHTNING_CKPT_ALIASES else None

    def _parse_ckpt_path(self) -> None:
        """Stop when the config's model is another class than the checkpoint's."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self._ckpt_path(subcommand)
        if ckpt_path is None:
            return
        model = self.config[subcommand].get("model")
        given = model.get("class_path") if model is not None else None
        saved = self._saved_checkpoint(ckpt_path).class_path
        if saved is not None and given is not None and saved != given:
            raise ConfigError(
                f"--ckpt_path {ckpt_path} was written by {saved}, but the config trains "
                f"{given}. Resume a run with the config that made it, or load weights into "
                f"{given.rsplit('.', 1)[-1]} another way (e.g. teacher_checkpoint)"
            )

    def _run_subcommand(self, subcommand: str) -> None:
        ckpt_path = self._ckpt_path(subcommand)
        if ckpt_path is not None:
            self._saved_checkpoint(ckpt_path).check_fits(self.model, ckpt_path)
        super()._run_subcommand(subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(RunRecord())  # provenance in every logger and checkpoint
        study = StudyRecord()  # W&B group, keys, tags and summary
        study.name_runs(trainer, self.model, self.datamodule)
        trainer.callbacks.append(study)
        return trainer

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True):
            self.trainer.test(self.model, datamodule=self.datamodule)


def _suite_subcommand(name: str, args: list[str]) -> None:
    if name == "demo":
        from dfkd_lightning.demo import main as demo_main

        demo_main(args)
    elif name == "results":
        from dfkd_lightning.results import main as results_main

        results_main(args)
    elif name.startswith("export-"):
        from dfkd_lightning.export import main as export_main

        export_main([name, *args])
    else:
        from dfkd_lightning.catalog import main as list_main

        list_main(args)


def debug_requested(args: list[str]) -> bool:
    """``--debug`` on the command line or ``DFKD_DEBUG`` set to anything but 0."""
    return "--debug" in args or os.environ.get("DFKD_DEBUG", "0") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``dfkd demo``, ``dfkd list`` or any LightningCLI subcommand.

    A user error (:class:`~dfkd_lightning.errors.UserError`, a config jsonargparse or
    Lightning rejects) ends with its message and exit status 2, without a traceback;
    ``--debug`` or ``DFKD_DEBUG=1`` shows the traceback and every library warning.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(args)
    args = [arg for arg in args if arg != "--debug"]
    try:
        with quiet_library_output(enabled=not debug):
            if args and args[0] in SUITE_SUBCOMMANDS:
                _suite_subcommand(args[0], args[1:])
                return
            message = legacy_config_message(args)
            if message is not None:
                raise ConfigError(message)
            raising = {"exit_on_error": False}  # errors reach the handler below
            parser_kwargs = {**raising, **{name: raising for name in DFKDCLI.subcommands()}}
            DFKDCLI(args=args, parser_kwargs=parser_kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        message = None if debug else user_error_message(error)
        if message is None:
            raise
        print(f"error: {message}\n(run again with --debug for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # A gloo/NCCL process group left to interpreter shutdown can abort the process
        # ("terminate called without an active exception") after a successful run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
