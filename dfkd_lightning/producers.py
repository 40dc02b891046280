"""Which experiment config writes a file: named in the error a missing checkpoint or model
raises, so the user learns the command that makes it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["command_that_writes", "written_by"]

EXPERIMENTS = Path("configs") / "experiments"


def _config_roots() -> list[Path]:
    """The experiment configs of the working directory and of the source checkout."""
    roots = [Path.cwd() / EXPERIMENTS, Path(__file__).resolve().parents[1] / EXPERIMENTS]
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def _outputs(config: dict[str, Any]) -> Iterator[str]:
    """The files and directories a config's run writes: its final checkpoint, a saved model."""
    trainer = config.get("trainer") or {}
    for callback in trainer.get("callbacks") or []:
        checkpointing = isinstance(callback, dict) and "ModelCheckpoint" in str(
            callback.get("class_path")
        )
        if not checkpointing:
            continue
        args = callback.get("init_args") or {}
        if args.get("dirpath") and args.get("filename"):
            yield f"{args['dirpath']}/{args['filename']}.ckpt"
    save_dir = ((config.get("model") or {}).get("init_args") or {}).get("save_dir")
    if save_dir:
        yield str(save_dir)


def _normal(path: str | os.PathLike) -> str:
    return os.path.normpath(os.path.relpath(Path(path).expanduser().absolute(), Path.cwd()))


def written_by(path: str | os.PathLike) -> Path | None:
    """The experiment config (relative to the working directory when inside it) whose run
    writes ``path``, or None."""
    wanted = _normal(path)
    for root in _config_roots():
        for config_file in sorted(root.rglob("*.yaml")):
            try:
                config = yaml.safe_load(config_file.read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(config, dict) and any(_normal(o) == wanted for o in _outputs(config)):
                try:
                    return config_file.relative_to(Path.cwd())
                except ValueError:
                    return config_file
    return None


def command_that_writes(path: str | os.PathLike) -> str | None:
    """``"make it with `dfkd fit --config <config>`"`` for a file an experiment writes."""
    config = written_by(path)
    return None if config is None else f"make it with `dfkd fit --config {config}`"
