"""Find the CSV-logged runs under directories and read what ``dfkd results`` tabulates."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Run", "find_runs", "read_run"]

#: Study keys that :class:`~dfkd_lightning.records.StudyRecord` writes to ``hparams.yaml``.
STUDY_KEYS = ("method", "dataset", "teacher", "student", "seed")


@dataclass
class Run:
    """One run: where it is, its study keys, its final figures and its accuracy over time."""

    path: Path
    keys: dict[str, Any]
    figures: dict[str, float]
    hparams: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (seconds, val/acc)

    def configuration(self) -> str:
        """What identifies the experiment apart from its seed (for ``--group-seeds``)."""
        model = dict(self.hparams.get("model") or {})
        data = {k: v for k, v in (self.hparams.get("data") or {}).items() if k != "seed"}
        keys = {k: v for k, v in self.keys.items() if k != "seed"}
        return yaml.safe_dump({"keys": keys, "model": model, "data": data}, sort_keys=True)


def find_runs(directories: list[str | Path]) -> list[Run]:
    """Every run (a ``metrics.csv``) under ``directories``, in path order."""
    paths = sorted({p.parent for d in directories for p in Path(d).rglob("metrics.csv")})
    return [read_run(path) for path in paths]


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _hparams(directory: Path) -> dict[str, Any]:
    path = directory / "hparams.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_run(directory: Path) -> Run:
    """The run logged by Lightning's CSVLogger in ``directory`` (``metrics.csv`` and
    ``hparams.yaml``). Final figures are each metric's last logged value."""
    with (directory / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    figures: dict[str, float] = {}
    curve: list[tuple[float, float]] = []
    for row in rows:
        for name, text in row.items():
            value = _number(text)
            if value is not None and name not in ("epoch", "step"):
                figures[name] = value
        seconds, accuracy = _number(row.get("time/elapsed_s")), _number(row.get("val/acc"))
        if seconds is not None and accuracy is not None:
            curve.append((seconds, accuracy))
    hparams = _hparams(directory)
    keys = {name: hparams[name] for name in STUDY_KEYS if name in hparams}
    return Run(directory, keys, figures, hparams, curve)
