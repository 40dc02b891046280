"""The ``dfkd`` command: LightningCLI with the suite's links and defaults."""

from __future__ import annotations

import sys
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dfkd_lightning.host_memory import keep_freed_host_memory
from dfkd_lightning.legacy import legacy_config_message

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
        for name in ("num_classes", "input_shape", "mean", "std", "in_features"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the final weights on the real test split.",
        )

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True):
            self.trainer.test(self.model, datamodule=self.datamodule)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: ``dfkd demo``, ``dfkd list`` or any LightningCLI subcommand."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "demo":
        from dfkd_lightning.demo import main as demo_main

        demo_main(args[1:])
        return
    if args and args[0] == "list":
        from dfkd_lightning.catalog import main as list_main

        list_main(args[1:])
        return
    message = legacy_config_message(args)
    if message is not None:
        print(message, file=sys.stderr)
        raise SystemExit(2)
    try:
        DFKDCLI(args=argv)  # None: LightningCLI reads sys.argv itself
    finally:
        # A gloo/NCCL process group left to interpreter shutdown can abort the process
        # ("terminate called without an active exception") after a successful run.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
