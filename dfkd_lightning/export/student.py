"""A trained student (or teacher) as files that need no Lightning: a plain state dict, a
TorchScript module and a small JSON description.

``export_student(checkpoint_or_module, out_dir)`` writes

* ``student.pt``: the net's own ``state_dict()`` (zoo names, no ``student.`` prefix), which
  :func:`~dfkd_lightning.nets.load_classifier_weights` loads into our nets and
  ``net.load_state_dict(torch.load(path, weights_only=True))`` into the Fast-Datafree/CMI nets
  of the same name;
* ``student.torchscript.pt``: ``torch.jit.trace`` of the net in eval mode on an input of the
  module's ``input_shape`` (``torch.jit.load`` runs it without this package);
* ``student.json``: architecture, ``num_classes``, ``input_shape`` and the ``mean``/``std``
  the net expects its [0, 1] inputs normalised with.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets import build_classifier, load_classifier_weights
from dfkd_lightning.nets.checkpoint import read_checkpoint

__all__ = ["STUDENT_FILES", "export_student"]

#: What :func:`export_student` writes, by kind.
STUDENT_FILES: dict[str, str] = {
    "state_dict": "student.pt",
    "torchscript": "student.torchscript.pt",
    "description": "student.json",
}
# (hyperparameter naming the architecture, prefix of its weights in the module)
_ROLES: tuple[tuple[str, str], ...] = (("student", "student."), ("arch", "net."))


def _network_facts(hparams: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Architecture, weight prefix, classes, input shape and normalisation from hparams."""
    found = next(
        ((hparams[name], prefix) for name, prefix in _ROLES if isinstance(hparams.get(name), str)),
        None,
    )
    if found is None:
        raise ConfigError(
            f"{what} records no student (or teacher-training arch) name in its "
            "hyperparameters; export a checkpoint written by a distillation or teacher run "
            "of this package (a raw state dict needs no export)"
        )
    arch, prefix = found
    shape = hparams.get("input_shape")
    if shape is None or len(shape) != 3:
        raise ConfigError(
            f"{what} records no image input_shape (C, H, W), got {shape!r}; only image "
            "classifiers are exported"
        )
    return {
        "arch": arch,
        "prefix": prefix,
        "num_classes": int(hparams.get("num_classes", 0)),
        "input_shape": [int(s) for s in shape],
        "mean": [float(m) for m in hparams.get("mean", ())],
        "std": [float(s) for s in hparams.get("std", ())],
    }


def _from_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    payload = read_checkpoint(path)
    hparams = payload.get("hyper_parameters") if isinstance(payload, Mapping) else None
    if not isinstance(hparams, Mapping):
        raise ConfigError(
            f"{path} has no hyper_parameters: it is not a Lightning checkpoint of this package "
            "(a raw or Fast-Datafree state dict is already a plain state dict)"
        )
    facts = _network_facts(hparams, str(path))
    net = build_classifier(facts["arch"], facts["num_classes"], facts["input_shape"][0])
    load_classifier_weights(net, path, prefix=facts["prefix"])
    return net, facts


def _from_module(module: LightningModule) -> tuple[nn.Module, dict[str, Any]]:
    hparams = dict(module.hparams)
    for name in ("num_classes", "input_shape", "mean", "std"):
        if hasattr(module, name):
            hparams[name] = getattr(module, name)
    facts = _network_facts(hparams, type(module).__name__)
    net = getattr(module, facts["prefix"].rstrip("."), None)
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{type(module).__name__} has no {facts['prefix'].rstrip('.')} net")
    return copy.deepcopy(net).cpu(), facts


def export_student(
    source: str | os.PathLike | LightningModule, out_dir: str | os.PathLike
) -> dict[str, Path]:
    """Write ``student.pt``, ``student.torchscript.pt`` and ``student.json`` (see the module
    docstring) for a distillation run's student (a teacher-training run: its ``net``);
    returns the written paths by kind (:data:`STUDENT_FILES`).

    ``source``: a Lightning checkpoint of this package (read with ``weights_only=True``) or a
    module in memory (its current weights; the module itself is left as it is).
    """
    if isinstance(source, LightningModule):
        net, facts = _from_module(source)
        origin = type(source).__name__
    else:
        net, facts = _from_checkpoint(Path(source))
        origin = str(Path(source).resolve())
    net.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in STUDENT_FILES.items()}

    state = {name: value.detach().cpu().clone() for name, value in net.state_dict().items()}
    torch.save(state, paths["state_dict"])

    example = torch.rand(1, *facts["input_shape"], generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        traced = torch.jit.trace(net, example)
        torch.jit.save(traced, str(paths["torchscript"]))

    description = {
        "arch": facts["arch"],
        "num_classes": facts["num_classes"],
        "input_shape": facts["input_shape"],
        "mean": facts["mean"],
        "std": facts["std"],
        "inputs": "images in [0, 1], normalised per channel: (x - mean) / std",
        "files": {kind: path.name for kind, path in paths.items()},
        "from": origin,
        "how_to_load": (
            "dfkd_lightning.nets.load_classifier_weights(build_classifier(arch, num_classes, "
            "input_shape[0]), 'student.pt'), or net.load_state_dict(torch.load('student.pt', "
            "weights_only=True)) for a net of the same module names; or "
            "torch.jit.load('student.torchscript.pt')"
        ),
    }
    paths["description"].write_text(json.dumps(description, indent=2) + "\n")
    return paths
