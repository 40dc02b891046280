"""Export: synthetic sets to disk for reuse, and trained students as plain files.

* :func:`export_pool` writes a :class:`~dfkd_lightning.synthesis.pool.SyntheticPool` (or an
  image tensor) with its labels as a torchvision ``ImageFolder`` of PNGs or as tensor shards;
  :func:`load_exported` reads either back; :func:`teacher_labels` labels images the synthesizer
  aimed at no class; :func:`export_checkpoint_pool` exports the pool a checkpoint saved.
* :func:`export_student` writes a student as a plain state dict, TorchScript and JSON.
* The :class:`~dfkd_lightning.callbacks.ExportPool` callback exports during a run and
  :class:`~dfkd_lightning.data.SyntheticSetDataModule` trains on an exported set.

:func:`main` is the command line of both exports::

    dfkd export-student CKPT OUT
    dfkd export-pool CKPT OUT --format shards
"""

from __future__ import annotations

import argparse
import sys

from dfkd_lightning.errors import UserError
from dfkd_lightning.export.checkpoint_pool import export_checkpoint_pool
from dfkd_lightning.export.images import resize_images
from dfkd_lightning.export.labels import LabelSource, choose_labels, teacher_labels
from dfkd_lightning.export.pool import FORMATS, INDEX_FILE, ExportFormat, export_pool
from dfkd_lightning.export.read import load_exported, read_index
from dfkd_lightning.export.student import STUDENT_FILES, export_student

__all__ = [
    "FORMATS",
    "INDEX_FILE",
    "STUDENT_FILES",
    "ExportFormat",
    "LabelSource",
    "choose_labels",
    "export_checkpoint_pool",
    "export_pool",
    "export_student",
    "load_exported",
    "main",
    "read_index",
    "resize_images",
    "teacher_labels",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfkd", description="Export a run's student or synthetic pool."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser(
        "export-student",
        help="student.pt (state dict), student.torchscript.pt and student.json",
    )
    student.add_argument("checkpoint", help="a Lightning checkpoint of a distillation run")
    student.add_argument("out_dir", help="directory to write the files to")
    pool = commands.add_parser(
        "export-pool", help="the synthetic pool a data-free checkpoint saved, as a dataset"
    )
    pool.add_argument("checkpoint", help="a Lightning checkpoint of a data-free pool method")
    pool.add_argument("out_dir", help="directory of the exported set (replaced if an export)")
    pool.add_argument("--format", choices=FORMATS, default="imagefolder")
    pool.add_argument("--labels", choices=("auto", "target", "teacher"), default="auto")
    pool.add_argument("--storage", choices=("uint8", "float16", "float32"), default=None)
    pool.add_argument("--shard_size", type=int, default=4096)
    return parser


def main(argv: list[str] | None = None) -> None:
    """``export-student CKPT OUT`` or ``export-pool CKPT OUT [--format F] [--labels L]
    [--storage S] [--shard_size N]``; a user error ends with its message and status 2."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "export-student":
            paths = export_student(args.checkpoint, args.out_dir)
            written = [str(path) for path in paths.values()]
        else:
            directories = export_checkpoint_pool(
                args.checkpoint,
                args.out_dir,
                format=args.format,
                labels=args.labels,
                storage=args.storage,
                shard_size=args.shard_size,
                overwrite=True,
            )
            written = [str(path) for path in directories]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    for path in written:
        print(path)
