"""Hyperparameters every module records: the whole method configuration, primitives only.

Under ``dfkd`` (LightningCLI) the recorded values are the resolved config of the model
(``class_path`` and ``init_args`` of every nested component: synthesizer, optimizer, loss
terms), which loggers and checkpoints receive, and from which ``load_from_checkpoint``
rebuilds the module. A module built in Python records its constructor's arguments, less the
objects among them (a synthesizer, an optimizer callable): ``load_from_checkpoint`` then
builds those from their defaults unless they are passed again as keyword arguments. Only
dicts, lists, strings, numbers, booleans and None remain, so checkpoints still load with
``torch.load(..., weights_only=True)``. Loggers receive the values from
:class:`~dfkd_lightning.records.RunRecord` under ``model`` (and the DataModule's under
``data``), so the two never clash over a shared name such as ``batch_size``.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Mapping
from typing import Any

from lightning.pytorch import LightningModule

__all__ = ["primitive_entries", "record_hyperparameters", "to_primitive"]

Primitive = None | bool | int | float | str | list[Any] | dict[str, Any]


class _NotPrimitive(Exception):
    pass


def to_primitive(value: Any) -> Primitive:
    """``value`` as dicts, lists and scalars; raises for any other object inside it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_primitive(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_primitive(item) for item in value]
    raise _NotPrimitive(type(value).__name__)


def primitive_entries(hparams: Mapping[str, Any]) -> dict[str, Primitive]:
    """The entries of ``hparams`` that are primitives all the way down."""
    kept: dict[str, Primitive] = {}
    for name, value in hparams.items():
        try:
            kept[name] = to_primitive(value)
        except _NotPrimitive:
            continue
    return kept


def record_hyperparameters(module: LightningModule) -> None:
    """Call from ``__init__``: save the hyperparameters (see the module docstring)."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    with warnings.catch_warnings():  # objects are dropped below, on purpose
        warnings.filterwarnings("ignore", message=".*(cannot be pickled|is an instance of)")
        module.save_hyperparameters(frame=frame.f_back, logger=False)  # RunRecord logs them
    module._set_hparams(primitive_entries(module.hparams))
    module._hparams_initial = copy.deepcopy(module._hparams)
